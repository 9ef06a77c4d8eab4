"""A lean SockJS websocket client over a bare asyncio stream (RFC 6455 framing by hand): a
thousand of them cost the server, not the test, and each shows the SockJS frames as sent."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import socket
import struct
from typing import Any


class RawSocket:
    """A SockJS websocket session over a bare asyncio stream (RFC 6455 framing by hand)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

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
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        writer.write((f"GET /realtime/000/{secrets.token_hex(8)}/websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def frame(self) -> str | None:
        """The next text frame; None when the server closes."""
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        payload = await self.reader.readexactly(size)
        if first & 0x0F == 0x8:
            return None
        return payload.decode()

    async def messages(self) -> list[dict[str, Any]]:
        """The protocol frames in the next SockJS frame; a close frame as {"type": "_closed"}."""
        while True:
            frame = await self.frame()
            if frame is None:
                return [{"type": "_closed", "code": None}]
            if frame.startswith("a"):
                return [json.loads(message) for message in json.loads(frame[1:])]
            if frame.startswith("c"):
                code, reason = json.loads(frame[1:])
                return [{"type": "_closed", "code": code, "reason": reason}]

    def send(self, *frames: dict[str, Any]) -> None:
        payload = json.dumps([json.dumps(frame) for frame in frames]).encode()
        mask = secrets.token_bytes(4)
        size = len(payload)
        if size < 126:
            header = bytes((0x81, 0x80 | size))
        elif size < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
        self.writer.write(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    async def close(self, abort: bool = False) -> None:
        """With a close frame, or (`abort`) by dropping the TCP connection."""
        if abort:
            self.writer.transport.abort()
        elif not self.writer.is_closing():
            self.writer.write(bytes((0x88, 0x80)) + secrets.token_bytes(4))
            self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def until(self, *kinds: str) -> dict[str, Any]:
        """The next message of one of ``kinds``, or the close."""
        while True:
            for message in await self.messages():
                if message["type"] in (*kinds, "_closed"):
                    return message
