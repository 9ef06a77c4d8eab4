"""Shared fixtures: one real mongod replica set per test session, one app server per test.

Set REALTIME_TEST_MONGO_URI to run against an existing replica set instead of starting one.
"""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pymongo
import pytest
from tornado.ioloop import IOLoop

from realtime_app.app import Server
from realtime_app.config import Settings, settings_from
from realtime_app.data.embedded_mongo import EmbeddedMongo, find_mongod
from tests.helpers import ApiClient

TEST_JWT_SECRET = secrets.token_urlsafe(48)
# Each phase's report ("setup", "call", "teardown") on its item, for fixtures that act on a
# failure: the browser tests save screenshots.
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


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
    """Settings for a server on a free port with a database of its own."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "host": "127.0.0.1", "port": 0, "mongo_uri": mongo_uri, "mongo_db": f"test_{uuid.uuid4().hex[:12]}",
            "jwt_secret": TEST_JWT_SECRET, "data_dir": str(tmp_path / "var"), "log_level": "WARNING",
        }
        values.update(overrides)
        return settings_from(environ={}, **values)

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
