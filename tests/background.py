"""A server on an event loop of its own, in a thread, for synchronous tests.

Hypothesis' @given and schemathesis' generated cases are synchronous and call the server
many times per test; pytest-tornasync's loop only runs while an async test awaits, so those
tests drive a server living in a background thread instead: `run` hands it a coroutine and
waits for the result. Clients that need the loop (the Python client, AsyncHTTPClient) run
there too, through `run`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pymongo

from realtime_app.app import Server
from tests.helpers import issue_token, server_settings

T = TypeVar("T")
# Long enough for a server start against a busy mongod; a test that waits longer has hung.
RUN_TIMEOUT_S = 60.0


class BackgroundServer:
    def __init__(self, server: Server, loop: asyncio.AbstractEventLoop):
        self.server = server
        self.loop = loop
        self.base = f"http://127.0.0.1:{server.port}"

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = RUN_TIMEOUT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def token(self, user: str = "ed", tenant: str = "t1", roles: tuple[str, ...] = ("editor",), **kwargs: Any) -> str:
        assert self.server.context is not None
        return issue_token(self.server.context.tokens, user, tenant, roles, **kwargs)

    def empty_collections(self) -> None:
        """Delete every document of the served collections, so the next test starts from an empty database."""
        context = self.server.context
        assert context is not None

        async def empty() -> None:
            for name in context.resources.names:
                await context.db.collection(name).delete_many({})

        self.run(empty())


@contextmanager
def background_server(mongo_uri: str, data_dir: Path, **overrides: Any) -> Iterator[BackgroundServer]:
    """Start a server (`server_settings` plus ``overrides``) on a loop in a daemon thread; stop
    it, the loop and the thread, and drop its database afterwards."""
    server = Server(server_settings(mongo_uri, data_dir, **overrides))
    loop = asyncio.new_event_loop()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    thread = threading.Thread(target=serve, name="background-server", daemon=True)
    thread.start()
    started = False
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(RUN_TIMEOUT_S)
        started = True
        yield BackgroundServer(server, loop)
    finally:
        if started:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(RUN_TIMEOUT_S)
        asyncio.run_coroutine_threadsafe(_cancel_leftovers(), loop).result(RUN_TIMEOUT_S)
        # On the loop's own thread: the calling thread may have a loop running (Playwright's
        # sync API keeps one), and run_until_complete refuses to start a second there.
        asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result(RUN_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(RUN_TIMEOUT_S)
        loop.close()
        with pymongo.MongoClient(mongo_uri) as client:
            client.drop_database(server.settings.mongo_db)


async def _cancel_leftovers() -> None:
    """Tasks a test left behind (a client's reader, say) end here, not in the closed loop."""
    current = asyncio.current_task()
    leftovers = [task for task in asyncio.all_tasks() if task is not current]
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)
