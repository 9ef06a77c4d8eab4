"""Scale-out: processes on one MongoDB behind HAProxy, with change streams as the only link.

The HAProxy tests run `realtime-app --processes 3` as a user would, against the session's
mongod, and skip with a message where HAProxy is not installed (CI installs it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymongo
import pytest
from bson import ObjectId
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from realtime_app.client import RealtimeClient, XhrPollingTransport
from realtime_app.data.db import Database
from realtime_app.supervisor import BalancerNotFound, find_haproxy
from tests.helpers import TEST_JWT_SECRET, TEST_TOKENS, ApiClient, eventually, issue_token
from tests.test_realtime_consistency import FrameChecker, expected

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
STATUSES = ["up", "down", "degraded"]
PROCESS_LINE = re.compile(r"^\s+(\S+)\s+pid (\d+)\s+(http://\S+)$", re.MULTILINE)


def haproxy_or_none() -> str | None:
    try:
        return find_haproxy()
    except BalancerNotFound:
        return None


needs_haproxy = pytest.mark.skipif(haproxy_or_none() is None, reason="HAProxy is not installed (apt-get install haproxy)")


@dataclass
class Group:
    """`realtime-app --processes N` running as a child of the test."""

    supervisor: subprocess.Popen[bytes]
    url: str
    processes: dict[str, tuple[int, str]]  # name -> (pid, its own URL)
    db_name: str


def read_banner(process: subprocess.Popen[bytes], count: int, timeout: float) -> tuple[str, dict[str, tuple[int, str]]]:
    """The balancer's URL and the processes, from the lines the supervisor prints once it serves."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    output = b""
    while True:
        text = output.decode(errors="replace")
        serving = re.search(r"is serving (http://\S+) through HAProxy", text)
        processes = {found.group(1): (int(found.group(2)), found.group(3).rstrip("/")) for found in PROCESS_LINE.finditer(text)}
        if serving and len(processes) == count:
            return serving.group(1).rstrip("/"), processes
        if not select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise AssertionError(f"the supervisor did not start within {timeout:.0f} s")
        chunk = os.read(process.stdout.fileno(), 1 << 16)
        if not chunk:
            raise AssertionError(f"the supervisor exited with {process.wait()} before serving")
        output += chunk


@pytest.fixture
def group(mongo_uri: str, tmp_path: Path) -> Iterator[Group]:
    db_name = f"test_scaleout_{uuid.uuid4().hex[:12]}"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    environment.update({
        "REALTIME_MONGO_URI": mongo_uri, "REALTIME_MONGO_DB": db_name, "REALTIME_JWT_SECRET": TEST_JWT_SECRET,
        "REALTIME_DATA_DIR": str(tmp_path / "var"), "REALTIME_LOG_LEVEL": "WARNING", "REALTIME_PORT": "0",
        "REALTIME_PROCESS_NAME": "web", "REALTIME_SHUTDOWN_RECONNECT_AFTER_MS": "100",
    })
    supervisor = subprocess.Popen([sys.executable, "-m", "realtime_app", "--processes", "3"], env=environment, cwd=ROOT,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        url, processes = read_banner(supervisor, 3, timeout=120)
        yield Group(supervisor, url, processes, db_name)
    finally:
        if supervisor.poll() is None:
            supervisor.terminate()
            try:
                supervisor.wait(60)
            except subprocess.TimeoutExpired:
                supervisor.kill()
                supervisor.wait()
        assert supervisor.stdout is not None
        supervisor.stdout.close()
        with pymongo.MongoClient(mongo_uri) as client:
            client.drop_database(db_name)


def token_for(role: str, tenant: str = "t1") -> str:
    return issue_token(TEST_TOKENS, f"{tenant}-{role}", tenant, (role,))


async def rest(url: str, method: str, path: str, body: Any = None, token: str = "") -> Any:
    response = await AsyncHTTPClient().fetch(
        url + path, method=method, body=None if body is None else json.dumps(body), raise_error=True, request_timeout=30,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"}, allow_nonstandard_methods=True,
    )
    return json.loads(response.body) if response.body else None


@dataclass
class Watcher:
    client: RealtimeClient
    checker: FrameChecker
    transport: str

    @property
    def process(self) -> str:
        """The process serving the current session: the welcome frame's `server` ends with its name."""
        assert self.client.welcome is not None
        return str(self.client.welcome["server"]).rsplit(" ", 1)[-1]

    def versions(self) -> dict[str, int]:
        return {doc_id: doc["version"] for doc_id, doc in self.client.queries["all"].docs.items()}

    def change_positions(self) -> list[str]:
        return [frame["position"] for frame in self.checker.frames if frame.get("type") == "change"]


async def watch_until_spread(url: str, names: list[str], per_process: int) -> list[Watcher]:
    """Websocket and xhr-polling subscribers through the balancer until every process serves at
    least `per_process` of each (the balancer places sessions by a hash of their random URL)."""
    watchers: list[Watcher] = []
    for transport in ("websocket", "xhr-polling"):
        for _ in range(30 * per_process):
            placed = Counter(w.process for w in watchers if w.transport == transport)
            if all(placed[name] >= per_process for name in names):
                break
            checker = FrameChecker()
            client = RealtimeClient(url, token_for("viewer"), transport=transport, on_frame=checker)
            await client.connect()
            await client.subscribe("services", sub_id="all")
            watchers.append(Watcher(client, checker, transport))
    placed_all = Counter((w.process, w.transport) for w in watchers)
    assert all(placed_all[name, transport] >= per_process for name in names for transport in ("websocket", "xhr-polling")), placed_all
    return watchers


async def write_everywhere(targets: list[str], database: Database, count: int, rng: random.Random) -> None:
    """Inserts, updates and deletes, each through the next of the REST `targets` or straight
    into MongoDB, in turn."""
    token = token_for("editor")
    collection = database.collection("services")
    ids: list[str] = []
    for n, target in zip(range(count), itertools.cycle([*targets, None])):
        roll = rng.random()
        fields = {"status": rng.choice(STATUSES), "response_time_ms": rng.randint(0, 300)}
        if target is None:
            if roll < 0.5 or not ids:
                moment = dt.datetime.now(dt.UTC)
                result = await collection.insert_one({"name": f"direct{n}", **fields, "tenant": "t1", "version": 1,
                                                      "created_at": moment, "updated_at": moment})
                ids.append(str(result.inserted_id))
            elif roll < 0.85:
                await collection.update_one({"_id": ObjectId(rng.choice(ids))},
                                            {"$set": {**fields, "updated_at": dt.datetime.now(dt.UTC)}, "$inc": {"version": 1}})
            else:
                await collection.delete_one({"_id": ObjectId(ids.pop(rng.randrange(len(ids))))})
        else:
            try:
                if roll < 0.5 or not ids:
                    ids.append((await rest(target, "POST", "/api/v1/services", {"name": f"rest{n}", **fields}, token))["id"])
                elif roll < 0.85:
                    await rest(target, "PATCH", f"/api/v1/services/{rng.choice(ids)}", fields, token)
                else:
                    await rest(target, "DELETE", f"/api/v1/services/{ids.pop(rng.randrange(len(ids)))}", token=token)
            except HTTPClientError as exc:
                # In flight to the process being killed: HAProxy answers 502, whether or not the
                # write was applied. Views are compared with whatever the database then holds.
                if exc.code != 502:
                    raise
        await asyncio.sleep(0.01)


async def settle(watchers: list[Watcher], mongo_uri: str, db_name: str, timeout: float = 30.0) -> None:
    """Until every view equals the database."""
    with pymongo.MongoClient(mongo_uri) as sync:
        fields = {"name", "status", "response_time_ms", "details"}
        want = expected(sync[db_name]["services"], "t1", {}, fields)
    deadline = asyncio.get_running_loop().time() + timeout
    while any(w.versions() != want for w in watchers):
        if asyncio.get_running_loop().time() > deadline:
            wrong = [(w.process, w.transport, len(w.versions()), len(want)) for w in watchers if w.versions() != want]
            raise AssertionError(f"views still differ from the database: {wrong}")
        await asyncio.sleep(0.05)


@needs_haproxy
async def test_three_processes_behind_haproxy_deliver_everything_and_survive_a_kill(group: Group, mongo_uri: str) -> None:
    names = sorted(group.processes)
    rng = random.Random(11)
    database = Database(mongo_uri, group.db_name)
    watchers = await watch_until_spread(group.url, names, per_process=2)
    try:
        every_target = [group.url, *(url for _, url in group.processes.values())]
        await write_everywhere(every_target, database, 60, rng)
        await settle(watchers, mongo_uri, group.db_name)

        victim = names[0]
        orphans = [w for w in watchers if w.process == victim]
        survivors = [group.url, *(url for name, (_, url) in group.processes.items() if name != victim)]
        writes = asyncio.ensure_future(write_everywhere(survivors, database, 90, rng))
        await asyncio.sleep(0.3)
        assert not writes.done(), "the writes should still be going on when the process dies"
        os.kill(group.processes[victim][0], signal.SIGKILL)
        await writes
        await settle(watchers, mongo_uri, group.db_name)

        assert {w.transport for w in orphans} == {"websocket", "xhr-polling"}
        for watcher in orphans:
            assert watcher.process != victim and watcher.client.connections >= 2
            assert any(frame.get("type") == "resumed" for frame in watcher.checker.frames)
        for watcher in watchers:
            assert not watcher.checker.violations, watcher.checker.violations[:5]
            assert sum(frame.get("type") == "snapshot" for frame in watcher.checker.frames) == 1, "resynced instead of resuming"
            positions = watcher.change_positions()
            assert positions == sorted(set(positions)), "a change arrived twice or out of order"

        group.supervisor.send_signal(signal.SIGTERM)
        await eventually(lambda: group.supervisor.poll() is not None, timeout=60)
        assert group.supervisor.returncode == 0
        # A websocket is open through the whole shutdown, so its goodbye always arrives; a poll
        # may be between requests when its process stops listening.
        for watcher in watchers:
            if watcher.transport == "websocket":
                await eventually(lambda w=watcher: any(frame.get("type") == "goodbye" for frame in w.checker.frames))
    finally:
        for watcher in watchers:
            await watcher.client.close()
        database.close()


async def test_an_xhr_session_moved_to_another_process_reconnects_and_resumes_there(spawn_server, mongo_uri: str) -> None:
    """What a balancer does when a process goes: the next poll of a session lands on a process
    that never heard of it, which opens a new session."""
    first = await spawn_server()
    second = await spawn_server(mongo_db=first.settings.mongo_db)
    api = ApiClient(first)
    token = api.token(tenant="t1")
    checker = FrameChecker()
    client = RealtimeClient(api.base, token, transport="xhr-polling", on_frame=checker)
    try:
        await client.connect()
        view = await client.subscribe("services", sub_id="all")
        created = (await api.post("/api/v1/services", {"name": "before", "status": "up"}, token=token)).body
        await view.wait_for(lambda v: created["id"] in v.docs)
        moved = f"http://127.0.0.1:{second.port}"
        transport = client._transport
        assert isinstance(transport, XhrPollingTransport)
        client.base_url, transport.origin, transport.base = moved, moved, transport.base.replace(api.base, moved)
        later = (await api.post("/api/v1/services", {"name": "after", "status": "up"}, token=token)).body
        await view.wait_for(lambda v: later["id"] in v.docs and client.connections == 2, timeout=20)
        assert client.welcome is not None and client.welcome["server"].endswith(second.settings.process_name)
        assert [f["type"] for f in checker.frames].count("snapshot") == 1 and any(f["type"] == "resumed" for f in checker.frames)
        assert not checker.violations
    finally:
        await client.close()


async def test_processes_starting_together_on_an_empty_database_all_start(spawn_server) -> None:
    name = f"test_{uuid.uuid4().hex[:12]}"
    servers = await asyncio.gather(*(spawn_server(mongo_db=name) for _ in range(3)))
    assert len({server.port for server in servers}) == 3


async def test_behind_a_balancer_login_limits_count_per_forwarded_address(spawn_server) -> None:
    api = ApiClient(await spawn_server(trusted_proxies="127.0.0.1", login_attempts_per_address_per_minute=2))
    await api.context.auth.users.add("ops", "a long password", "t1", ["admin"])

    async def login(address: str, username: str) -> int:
        reply = await api.post("/api/v1/auth/login", {"username": username, "password": "wrong"},
                               headers={"X-Forwarded-For": f"203.0.113.9, {address}"})
        return reply.status

    assert [await login("198.51.100.1", f"nobody{n}") for n in range(3)] == [401, 401, 429]
    assert await login("198.51.100.2", "nobody9") == 401


def test_without_haproxy_the_command_says_what_to_install(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "realtime_app", "--processes", "2", "--demo", "--data-dir", str(tmp_path),
                             "--haproxy-path", str(tmp_path / "no-haproxy")], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")})
    assert result.returncode == 1
    assert "apt-get install haproxy" in result.stderr and "no-haproxy" in result.stderr
    assert not (tmp_path / "mongo").exists(), "nothing starts before the balancer is found"


@needs_haproxy
def test_the_printed_configuration_is_valid_for_haproxy(tmp_path: Path) -> None:
    config = subprocess.run([sys.executable, "-m", "realtime_app", "balancer-config", "--server", "a=10.0.0.1:8080",
                             "--server", "10.0.0.2:8080", "--bind", "127.0.0.1:18080"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=True).stdout
    assert "server a 10.0.0.1:8080" in config and "server p2 10.0.0.2:8080" in config
    (tmp_path / "haproxy.cfg").write_text(config)
    checked = subprocess.run([str(haproxy_or_none()), "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_a_process_names_itself_in_the_welcome_frame_stats_and_metrics(spawn_server) -> None:
    api = ApiClient(await spawn_server(process_name="web-7", metrics_public=True))
    client = RealtimeClient(api.base, api.token())
    try:
        await client.connect()
        assert client.welcome is not None and client.welcome["server"].endswith(" web-7")
    finally:
        await client.close()
    stats = (await api.get("/api/v1/stats", token=api.token(roles=("admin",)))).body
    assert stats["server"]["process"] == "web-7" and stats["server"]["pid"] == os.getpid()
    metrics = (await api.get("/metrics")).body
    assert 'realtime_process_info{process="web-7",version="' in metrics
