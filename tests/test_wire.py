"""The wire encoding on its own: messages are the frames of docs/PROTOCOL.md as SockJS carries
them, and a change is encoded once for every subscriber that gets the same frame."""

from __future__ import annotations

import json
import time

from realtime_app.live import positions, wire
from realtime_app.live.changefeed import ChangeEvent


def event(after: dict | None = None, position: int = 7) -> ChangeEvent:
    return ChangeEvent(position, "services", "d1", "update" if after is not None else "delete",
                       {"id": "d1", "name": "old"}, after, time.time())


def test_a_change_message_is_the_protocol_frame_as_a_json_string() -> None:
    change = event({"id": "d1", "name": "caf\u00e9 \u2028 </script>"})
    message = wire.change_message(change, wire.change_head('s"1'), "changed", 7)
    assert message.isascii()
    assert json.loads(json.loads(message)) == {
        "type": "change", "sub": 's"1', "op": "changed", "id": "d1", "doc": {"id": "d1", "name": "caf\u00e9 \u2028 </script>"},
        "position": positions.to_wire(7), "cause": "update",
    }
    removed = json.loads(json.loads(wire.change_message(event(None), wire.change_head("s"), "removed", 7)))
    assert removed == {"type": "change", "sub": "s", "op": "removed", "id": "d1", "position": positions.to_wire(7), "cause": "delete"}


def test_subscribers_with_equal_frames_get_the_same_string_until_the_turn_ends() -> None:
    change = event({"id": "d1", "name": "x"})
    head = wire.change_head("s1")
    first = wire.change_message(change, head, "changed", 7)
    assert wire.change_message(change, wire.change_head("s1"), "changed", 7) is first
    assert wire.change_message(change, head, "added", 7) is not first
    assert wire.document_size(change) == len('{"id":"d1","name":"x"}')
    change.release_caches()
    assert not change.encoded
    assert wire.change_message(change, head, "changed", 7) == first


def test_a_whole_frame_is_one_message() -> None:
    text = json.dumps({"type": "pong", "ts": "\u00e9"}, ensure_ascii=False)
    assert json.loads(wire.frame_message(text)) == text and wire.frame_message(text).isascii()
    assert wire.document_size(event(None)) == 0
