"""The wire encoding of live updates: the one module that turns frames into what SockJS sends.

A SockJS frame ``a[m1,m2,...]`` carries each protocol frame (docs/PROTOCOL.md) as a JSON string
literal of the frame's JSON text; a *message* here is such a literal, ready to be joined into
one. Connections queue frames and changes in their outbox as data; the outbox asks this module
for messages when it flushes.

A change that reaches thousands of subscribers is encoded once per distinct message: the
document's JSON once per event, the rest of the frame once per (op, position), the whole message
once per (subscription head, op, position). The texts are kept on the event
(`ChangeEvent.encoded`) until the loop turn that delivers it is over, so every subscriber with
equal frames gets the same string objects, and the SockJS layer builds the bytes of a frame
once for all the sockets that get the same messages (`SockJSRouter.frame_of`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from realtime_app.live import positions

if TYPE_CHECKING:
    from realtime_app.live.changefeed import ChangeEvent

_DOCUMENT = "document"
"""Key of the document's JSON in `ChangeEvent.encoded` (the other keys are tuples)."""


def frame_message(text: str) -> str:
    """A whole protocol frame, given as its JSON text, as a message."""
    return json.dumps(text)


def change_head(sub_id: str) -> str:
    """The start of a subscription's change frames, ``{"type":"change","sub":<id>``, escaped for
    a message and without its opening quote. A subscription builds it once and hands it back
    with each of its changes, so routing a change never encodes a subscription id."""
    return json.dumps('{"type":"change","sub":' + json.dumps(sub_id))[1:-1]


def document_json(event: ChangeEvent) -> str:
    """The document after the change as compact JSON; built once per event and loop turn."""
    text = event.encoded.get(_DOCUMENT)
    if text is None:
        text = event.encoded[_DOCUMENT] = json.dumps(event.after, ensure_ascii=False, separators=(",", ":"))
    return text


def document_size(event: ChangeEvent) -> int:
    """Length of `document_json` (0 when deleted): what a queued copy of the change weighs.
    Asked for each subscriber the change is queued for, so it looks in the cache itself."""
    if event.after is None:
        return 0
    return len(event.encoded.get(_DOCUMENT) or document_json(event))


def change_message(event: ChangeEvent, head: str, op: str, position: int) -> str:
    """The change frame for subscriptions whose frames start with ``head`` (`change_head`):
    one string shared by all of them, so what is built from it can be shared too."""
    key = (head, op, position)
    message = event.encoded.get(key)
    if message is None:
        message = event.encoded[key] = '"' + head + _change_tail(event, op, position) + '"'
    return message


def _change_tail(event: ChangeEvent, op: str, position: int) -> str:
    """The escaped frame after ``"sub":<id>``; built once per (op, position)."""
    key = (op, position)
    tail = event.encoded.get(key)
    if tail is None:
        parts = [',"op":"', op, '","id":', json.dumps(event.doc_id)]
        if op != "removed":
            parts += [',"doc":', document_json(event)]
        parts += [',"position":"', positions.to_wire(position), '","cause":"', event.cause, '"}']
        tail = event.encoded[key] = json.dumps("".join(parts))[1:-1]
    return tail
