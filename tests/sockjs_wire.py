"""SockJS over the wire, from the client's side: HTTP requests (from any loopback address),
raw HTTP exchanges read chunk by chunk, websockets read with a deadline."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse
from tornado.httputil import HTTPHeaders
from tornado.iostream import IOStream, StreamClosedError
from tornado.tcpclient import TCPClient
from tornado.websocket import WebSocketClientConnection, websocket_connect

WAIT = 5.0  # seconds to wait for any one expected frame, response or condition before failing
OTHER_ADDRESS = "127.0.0.2"
"""A second client address on loopback (Linux routes all of 127/8 there): requests bound to it
reach a server listening on 127.0.0.1 from another client address."""


@dataclass
class Peer:
    """A client of the server on ``port``, connecting from ``address``."""

    port: int
    address: str = "127.0.0.1"
    http: AsyncHTTPClient = field(default_factory=lambda: AsyncHTTPClient(force_instance=True))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def fetch(self, path: str, method: str = "GET", body: str | bytes | None = None, **headers: str) -> HTTPResponse:
        if method == "POST" and body is None:
            body = b""
        request = HTTPRequest(self.base + path, method=method, body=body, headers=headers, allow_nonstandard_methods=True,
                              network_interface=self.address, request_timeout=WAIT)
        return await self.http.fetch(request, raise_error=False)

    async def websocket(self, path: str, **headers: str) -> WebSocketClientConnection:
        return await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{self.port}{path}", headers=headers, request_timeout=WAIT))

    async def raw(self) -> RawHttp:
        return await RawHttp.connect(self.port, self.address)

    def close(self) -> None:
        self.http.close()


class RawHttp:
    """HTTP exchanges on one plain TCP connection, read as they arrive."""

    def __init__(self, stream: IOStream, port: int) -> None:
        self.stream, self.port = stream, port
        self.version, self.status, self.headers = "", 0, HTTPHeaders()

    @classmethod
    async def connect(cls, port: int, address: str = "127.0.0.1") -> RawHttp:
        return cls(await TCPClient().connect("127.0.0.1", port, source_ip=address), port)

    @classmethod
    async def open(cls, port: int, method: str, path: str, version: str = "HTTP/1.1", **headers: str) -> RawHttp:
        """A new connection with one request sent and its response's head read."""
        raw = await cls.connect(port)
        await raw.send(method, path, version, **headers)
        await raw.response()
        return raw

    async def send(self, method: str, path: str, version: str = "HTTP/1.1", body: bytes = b"", **headers: str) -> None:
        lines = [f"{method} {path} {version}", f"Host: 127.0.0.1:{self.port}", f"Content-Length: {len(body)}",
                 *(f"{name}: {value}" for name, value in headers.items())]
        await self.stream.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def response(self) -> RawHttp:
        """Read the next response's status line and headers."""
        head = (await asyncio.wait_for(self.stream.read_until(b"\r\n\r\n"), WAIT)).decode("latin1")
        status_line, _, header_block = head.partition("\r\n")
        self.version, self.status = status_line.split()[0], int(status_line.split()[1])
        self.headers = HTTPHeaders.parse(header_block)
        return self

    async def chunk(self) -> str:
        """Next chunk of a chunked body ("" at its end)."""
        size = int(await asyncio.wait_for(self.stream.read_until(b"\r\n"), WAIT), 16)
        data = await asyncio.wait_for(self.stream.read_bytes(size + 2), WAIT)
        return data[:-2].decode()

    async def read(self, size: int) -> str:
        return (await asyncio.wait_for(self.stream.read_bytes(size), WAIT)).decode()

    async def until_closed(self) -> str:
        return (await asyncio.wait_for(self.stream.read_until_close(), WAIT)).decode()

    async def is_closed_by_server(self) -> bool:
        """True once the server has closed the connection with nothing more to read."""
        try:
            rest = await asyncio.wait_for(self.stream.read_until_close(), WAIT)
        except StreamClosedError:
            return True
        return rest == b""

    def close(self) -> None:
        self.stream.close()


async def ws_frames(conn: WebSocketClientConnection, count: int) -> list[str | bytes | None]:
    return [await asyncio.wait_for(conn.read_message(), WAIT) for _ in range(count)]


async def ws_close(conn: WebSocketClientConnection) -> None:
    """Close and wait for the server's answer, so nothing is left open on the loop."""
    conn.close()
    while await asyncio.wait_for(conn.read_message(), WAIT) is not None:
        pass
