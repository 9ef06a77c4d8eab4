#!/usr/bin/env python3
"""The benchmark's floor: a bare Tornado WebSocket broadcast, started by scripts/bench.

It speaks just enough SockJS for the benchmark's generator (the ``o`` frame on open, an
``a[...]`` answer to the first client frame, ``a[...]`` frames for messages) and does the
least a server on this stack can do per delivery: each message becomes one websocket frame,
built once, and those bytes are written to every subscriber's stream. No matching, no
per-connection queue, no JSON per subscriber. ``/control`` takes a JSON list of message texts
from the benchmark's writer and broadcasts each one.

    .venv/bin/python scripts/bench_floor.py --port 0    # prints "floor listening on <port>"
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import signal
import struct

from tornado import web, websocket
from tornado.httpserver import HTTPServer
from tornado.iostream import StreamClosedError
from tornado.netutil import bind_sockets

SUBSCRIBED = 'a["{\\"type\\":\\"snapshot\\",\\"sub\\":\\"s1\\",\\"docs\\":[],\\"position\\":\\"0\\"}"]'


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final websocket text frame (RFC 6455 5.2)."""
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", 0x81, size) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


class Subscribers:
    def __init__(self) -> None:
        self.streams: dict[int, object] = {}
        self.delivered = 0

    def broadcast(self, message: str) -> None:
        frame = text_frame(("a[" + json.dumps(message) + "]").encode())
        gone = []
        for key, stream in self.streams.items():
            try:
                stream.write(frame)  # type: ignore[attr-defined]
            except StreamClosedError:
                gone.append(key)
        self.delivered += len(self.streams) - len(gone)
        for key in gone:
            self.streams.pop(key, None)


class SubscriberSocket(websocket.WebSocketHandler):
    def initialize(self, subscribers: Subscribers) -> None:
        self.subscribers = subscribers

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: str) -> None:
        self.set_nodelay(True)
        self.write_message("o")

    def on_message(self, message: str | bytes) -> None:
        if id(self) not in self.subscribers.streams:
            assert self.ws_connection is not None
            self.write_message(SUBSCRIBED)
            self.subscribers.streams[id(self)] = self.ws_connection.stream

    def on_close(self) -> None:
        self.subscribers.streams.pop(id(self), None)


class ControlSocket(websocket.WebSocketHandler):
    def initialize(self, subscribers: Subscribers) -> None:
        self.subscribers = subscribers

    def open(self, *args: str) -> None:
        self.set_nodelay(True)

    def on_message(self, message: str | bytes) -> None:
        for text in json.loads(message):
            self.subscribers.broadcast(text)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--gc", choices=["tuned", "default"], default="tuned",
                        help="tuned: the same collector settings as realtime-app (freeze start-up objects, larger generation 0)")
    args = parser.parse_args()
    subscribers = Subscribers()
    app = web.Application([
        (r"/realtime/[^/]+/[^/]+/websocket", SubscriberSocket, {"subscribers": subscribers}),
        (r"/control", ControlSocket, {"subscribers": subscribers}),
    ])
    server = HTTPServer(app)
    sockets = bind_sockets(args.port, args.host)
    server.add_sockets(sockets)
    if args.gc == "tuned":
        gc.collect()
        gc.freeze()
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(50_000, older, oldest)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"floor listening on {sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.stop()


if __name__ == "__main__":
    asyncio.run(main())
