"""Shared fixtures: one real mongod replica set per test session; an app server per test, or
one per module for tests that leave its settings alone (`fresh_server`).

Set REALTIME_TEST_MONGO_URI to run against an existing replica set instead of starting one.
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Generator, Iterator
from pathlib import Path

import pymongo
import pytest
from tornado.ioloop import IOLoop

from realtime_app.app import Server
from realtime_app.config import Settings
from realtime_app.data.embedded_mongo import EmbeddedMongo, find_mongod
from tests.background import BackgroundServer, background_server
from tests.helpers import ApiClient, no_errors_logged, server_settings

# Each phase's report ("setup", "call", "teardown") on its item, for fixtures that act on a
# failure: the browser tests save screenshots.
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move what importing and collecting built (modules, test functions) out of the cyclic
    collector's sight for good, as the server does after start-up: the tests that collect
    garbage after each test (`no_errors_logged`) then take a millisecond, not fifty."""
    gc.collect()
    gc.freeze()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("REALTIME_TEST_MONGO_URI")
    if configured:
        yield configured
        return
    mongod = EmbeddedMongo(find_mongod(os.environ.get("REALTIME_MONGOD_PATH", "")), tmp_path_factory.mktemp("mongo"))
    mongod.start()
    try:
        yield mongod.uri
    finally:
        mongod.stop()


@pytest.fixture
def make_settings(mongo_uri: str, tmp_path: Path):
    """Settings for a server on a free port with a database of its own (`server_settings`)."""

    def make(**overrides: object) -> Settings:
        return server_settings(mongo_uri, tmp_path / "var", **overrides)

    return make


@pytest.fixture
def spawn_server(io_loop: IOLoop, make_settings, mongo_uri: str):
    """`await spawn_server(**settings)` starts a server from inside a test; each is stopped
    and its database dropped after the test."""
    started: list[Server] = []

    async def spawn(**overrides: object) -> Server:
        server = Server(make_settings(**overrides))
        started.append(server)
        await server.start()
        return server

    yield spawn
    for server in reversed(started):
        io_loop.run_sync(server.stop, timeout=60)
    with pymongo.MongoClient(mongo_uri) as client:
        for server in started:
            client.drop_database(server.settings.mongo_db)


@pytest.fixture
def start_server(io_loop: IOLoop, spawn_server):
    """`start_server(**settings)` starts a server from a fixture (before the test's loop runs)."""

    def start(**overrides: object) -> Server:
        return io_loop.run_sync(lambda: spawn_server(**overrides), timeout=60)

    return start


@pytest.fixture
def server(start_server) -> Server:
    return start_server()


@pytest.fixture
def api(server: Server) -> ApiClient:
    return ApiClient(server)


@pytest.fixture(scope="module")
def module_server(mongo_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """One server with the default settings for the tests of a module that neither change its
    settings nor reach into it, on a loop of its own (a test's loop ends with the test); tests
    use it through `fresh_server`."""
    with background_server(mongo_uri, tmp_path_factory.mktemp("module-server")) as shared:
        yield shared


@pytest.fixture
def fresh_server(module_server: BackgroundServer) -> Server:
    """The module's server with its collections emptied: each test starts from an empty database."""
    module_server.empty_collections()
    return module_server.server


@pytest.fixture
def errors_fail_the_test() -> Iterator[None]:
    """Fail the test if anything logged an error meanwhile, loop shutdown included; modules
    that want it for every test say so with ``pytestmark = pytest.mark.usefixtures(...)``."""
    with no_errors_logged():
        yield


CONFORMANCE_MODULE = "tests/test_sockjs_conformance.py::"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line counting the ported SockJS conformance tests (``test_<UpstreamClass>_<test>``)."""
    outcomes: dict[str, str] = {}
    # From the best outcome to the worst: a test that passed and then errored in teardown errored.
    for outcome in ("passed", "skipped", "xfailed", "xpassed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            name = getattr(report, "nodeid", "").removeprefix(CONFORMANCE_MODULE)
            if report.nodeid.startswith(CONFORMANCE_MODULE) and re.fullmatch(r"test_[A-Z][A-Za-z0-9]*_\w+", name):
                outcomes[name] = outcome
    if outcomes:
        counts = {outcome: list(outcomes.values()).count(outcome) for outcome in sorted(set(outcomes.values()))}
        details = ", ".join(f"{count} {outcome}" for outcome, count in counts.items())
        terminalreporter.write_line(f"SockJS protocol conformance (sockjs-protocol, main): "
                                    f"{counts.get('passed', 0)} of {len(outcomes)} upstream tests pass ({details})")
