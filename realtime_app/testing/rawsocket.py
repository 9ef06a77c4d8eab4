"""A lean SockJS client by hand: RFC 6455 framing and SockJS frames, no client library.

It serves the programs that load a server from outside: scripts/bench drives thousands of
sockets with the pieces (`upgrade_request`, `client_frame`, `take_frames`) on an epoll loop of
its own, and the tests use `RawSocket` on asyncio. A thousand such clients cost the server, not
the client, and each shows the frames exactly as the server sent them. The Python client that
applications use is realtime_app.client.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import secrets
import socket
from typing import Any

TEXT, CLOSE = 0x1, 0x8
NO_MASK = bytes(4)
"""A valid mask key that leaves the payload as it is: the cheapest frames for a load generator."""
CLOSED = "_closed"
"""The type `sockjs_messages` gives a close frame: ``{"type": "_closed", "code", "reason"}``."""


def session_path(prefix: str = "/realtime") -> str:
    """A new SockJS session's websocket URL path: server 000, a random session id."""
    return f"{prefix}/000/{secrets.token_hex(8)}/websocket"


def upgrade_request(port: int, path: str, origin: str | None = None, host: str = "127.0.0.1") -> bytes:
    """The HTTP request that opens a websocket at ``path``."""
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def frame_head(size: int, opcode: int = TEXT, mask: bytes = NO_MASK) -> bytes:
    """The head of a final, masked client frame of ``size`` payload bytes (RFC 6455 5.2)."""
    first = 0x80 | opcode
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 1 << 16:
        head = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + mask


def client_frame(payload: bytes, opcode: int = TEXT, mask: bytes = NO_MASK) -> bytes:
    """A whole client frame; clients must mask, any key will do."""
    if any(mask):
        repeated = (mask * (len(payload) // 4 + 1))[:len(payload)]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")
    return frame_head(len(payload), opcode, mask) + payload


def take_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """The complete server frames at the start of ``buffer``, removed from it, as (opcode,
    payload); a frame not yet complete stays for the next call."""
    frames = []
    at, size = 0, len(buffer)
    while size - at >= 2:
        length, head = buffer[at + 1] & 0x7F, 2
        if length == 126:
            if size - at < 4:
                break
            length, head = int.from_bytes(buffer[at + 2:at + 4], "big"), 4
        elif length == 127:
            if size - at < 10:
                break
            length, head = int.from_bytes(buffer[at + 2:at + 10], "big"), 10
        if size - at < head + length:
            break
        frames.append((buffer[at] & 0x0F, bytes(buffer[at + head:at + head + length])))
        at += head + length
    del buffer[:at]
    return frames


def sockjs_payload(*frames: dict[str, Any]) -> str:
    """What a client sends SockJS: a JSON array of the protocol frames' JSON texts."""
    return json.dumps([json.dumps(frame) for frame in frames])


def sockjs_messages(frame: str) -> list[dict[str, Any]]:
    """The protocol frames a SockJS frame carries: those of ``a[...]``, a `CLOSED` one for
    ``c[code,"reason"]``, none for the open frame and heartbeats."""
    if frame.startswith("a"):
        return [json.loads(message) for message in json.loads(frame[1:])]
    if frame.startswith("c"):
        code, reason = json.loads(frame[1:])
        return [{"type": CLOSED, "code": code, "reason": reason}]
    return []


class RawSocket:
    """A SockJS websocket session over a bare asyncio stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self._buffer = bytearray()
        self._received: collections.deque[tuple[int, bytes]] = collections.deque()

    @classmethod
    async def open(cls, port: int, receive_buffer: int | None = None) -> RawSocket:
        """A session on the server at ``port``. A small ``receive_buffer`` (bytes) makes a client
        that stops reading back up the server's socket after a few frames, not megabytes."""
        if receive_buffer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(upgrade_request(port, session_path(), origin=f"http://127.0.0.1:{port}"))
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def frame(self) -> str | None:
        """The next text frame; None when the server closes the websocket. Raises
        asyncio.IncompleteReadError when the connection ends without a close frame."""
        while not self._received:
            data = await self.reader.read(1 << 16)
            if not data:
                raise asyncio.IncompleteReadError(bytes(self._buffer), None)
            self._buffer += data
            self._received.extend(take_frames(self._buffer))
        opcode, payload = self._received.popleft()
        return None if opcode == CLOSE else payload.decode()

    async def messages(self) -> list[dict[str, Any]]:
        """The protocol frames in the next SockJS frame that carries any; the websocket's close
        as ``{"type": "_closed", "code": None}``."""
        while True:
            frame = await self.frame()
            if frame is None:
                return [{"type": CLOSED, "code": None}]
            messages = sockjs_messages(frame)
            if messages:
                return messages

    def send(self, *frames: dict[str, Any]) -> None:
        self.writer.write(client_frame(sockjs_payload(*frames).encode(), mask=secrets.token_bytes(4)))

    async def close(self, abort: bool = False) -> None:
        """With a close frame, or (`abort`) by dropping the TCP connection."""
        if abort:
            self.writer.transport.abort()
        elif not self.writer.is_closing():
            self.writer.write(client_frame(b"", CLOSE, secrets.token_bytes(4)))
            self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def until(self, *kinds: str) -> dict[str, Any]:
        """The next message of one of ``kinds``, or the close."""
        while True:
            for message in await self.messages():
                if message["type"] in (*kinds, CLOSED):
                    return message
