"""The `realtime-app` command: users add|list|remove and token, against the test mongod."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pymongo
import pytest

from realtime_app import cli
from realtime_app.auth import USERS_COLLECTION, verify_password
from tests.conftest import TEST_JWT_SECRET
from tests.helpers import ApiClient

PASSWORD = "open sesame 42"


@pytest.fixture
def cli_db(mongo_uri: str) -> Iterator[str]:
    name = f"test_cli_{uuid.uuid4().hex[:12]}"
    yield name
    with pymongo.MongoClient(mongo_uri) as client:
        client.drop_database(name)


@pytest.fixture(autouse=True)
def cli_env(monkeypatch: pytest.MonkeyPatch, mongo_uri: str, cli_db: str, tmp_path: Path) -> Iterator[None]:
    """The environment the command reads, pointed at the test mongod; logging restored afterwards."""
    for name in list(os.environ):
        if name.startswith("REALTIME_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REALTIME_MONGO_URI", mongo_uri)
    monkeypatch.setenv("REALTIME_MONGO_DB", cli_db)
    monkeypatch.setenv("REALTIME_JWT_SECRET", TEST_JWT_SECRET)
    monkeypatch.setenv("REALTIME_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("REALTIME_LOG_LEVEL", "WARNING")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def cli_api(start_server: Any, cli_db: str) -> ApiClient:
    return ApiClient(start_server(mongo_db=cli_db))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def run_in_thread(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """For commands that run their own event loop (asyncio.run), from inside an async test."""
    capsys.readouterr()
    code = await asyncio.get_running_loop().run_in_executor(None, cli.main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_users_add_list_remove(capsys: pytest.CaptureFixture[str], mongo_uri: str, cli_db: str) -> None:
    code, out, _ = run(capsys, "users", "add", "alice", "--tenant", "acme", "--role", "editor", "--role", "viewer", "--password", PASSWORD)
    assert (code, out.strip()) == (0, "added alice (editor, viewer in acme)")
    assert run(capsys, "users", "add", "bob", "--tenant", "globex", "--role", "admin", "--password", PASSWORD)[0] == 0
    code, out, _ = run(capsys, "users", "list")
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [["alice", "acme", "editor,viewer"], ["bob", "globex", "admin"]]
    with pymongo.MongoClient(mongo_uri) as client:
        stored = client[cli_db][USERS_COLLECTION].find_one({"_id": "alice"})
    assert stored is not None and PASSWORD not in stored["password"] and verify_password(PASSWORD, stored["password"])

    code, out, _ = run(capsys, "users", "remove", "alice")
    assert (code, out.strip()) == (0, "removed alice")
    code, _, err = run(capsys, "users", "remove", "alice")
    assert code == 1 and "no user 'alice'" in err
    assert [line.split()[0] for line in run(capsys, "users", "list")[1].splitlines()] == ["bob"]


def test_users_add_refuses_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "users", "add", "alice", "--tenant", "acme", "--role", "viewer", "--password", PASSWORD)[0] == 0
    code, _, err = run(capsys, "users", "add", "alice", "--tenant", "acme", "--role", "viewer", "--password", PASSWORD)
    assert code == 1 and "already exists" in err
    code, _, err = run(capsys, "users", "add", "carol", "--tenant", "has space", "--role", "viewer", "--password", PASSWORD)
    assert code == 1 and "tenant" in err
    code, _, err = run(capsys, "users", "add", "carol", "--tenant", "acme", "--role", "viewer", "--password", "short")
    assert code == 1 and "at least 8" in err
    with pytest.raises(SystemExit) as exit_info:
        run(capsys, "users", "add", "carol", "--tenant", "acme", "--role", "root", "--password", PASSWORD)
    assert exit_info.value.code == 2
    assert [line.split()[0] for line in run(capsys, "users", "list")[1].splitlines()] == ["alice"]


def test_users_add_prompts_for_the_password(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, mongo_uri: str,
                                            cli_db: str) -> None:
    prompts: list[str] = []
    monkeypatch.setattr(cli.getpass, "getpass", lambda prompt: prompts.append(prompt) or PASSWORD)
    assert run(capsys, "users", "add", "dave", "--tenant", "acme", "--role", "editor")[0] == 0
    assert prompts == ["password for dave: "]
    with pymongo.MongoClient(mongo_uri) as client:
        assert verify_password(PASSWORD, client[cli_db][USERS_COLLECTION].find_one({"_id": "dave"})["password"])


async def test_a_user_added_by_the_command_can_log_in(cli_api: ApiClient, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = await run_in_thread(capsys, "users", "add", "erin", "--tenant", "acme", "--role", "editor", "--password", PASSWORD)
    assert code == 0
    reply = await cli_api.post("/api/v1/auth/login", {"username": "erin", "password": PASSWORD})
    assert reply.status == 200, reply.body
    assert (await cli_api.get("/api/v1/collections", token=reply.body["access_token"])).status == 200


async def test_the_printed_token_verifies(api: ApiClient, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "token", "--sub", "ops", "--tenant", "acme", "--role", "admin", "--role", "viewer", "--ttl", "120")
    assert code == 0
    token = out.strip()
    assert "\n" not in token
    claims = jwt.decode(token, TEST_JWT_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["tenant"], claims["roles"], claims["exp"] - claims["iat"]) == ("ops", "acme", ["admin", "viewer"], 120)
    principal = api.context.tokens.principal(token)
    assert (principal.user, principal.tenant, principal.is_admin) == ("ops", "acme", True)
    reply = await api.get("/api/v1/collections", token=token)
    assert reply.status == 200
    assert (await api.get("/api/v1/collections", token=token[:-4] + "AAAA")).status == 401


def test_token_command_errors(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("REALTIME_JWT_SECRET")
    code, out, err = run(capsys, "token", "--sub", "ops", "--tenant", "acme", "--role", "admin")
    assert (code, out) == (2, "") and "configuration error" in err and "no JWT key" in err
    # A server configured only to verify (a public key, no private key) cannot mint tokens: a message, not a traceback.
    public = tmp_path / "public.pem"
    public.write_text("-----BEGIN PUBLIC KEY-----\n")
    monkeypatch.setenv("REALTIME_JWT_ALGORITHMS", "RS256")
    monkeypatch.setenv("REALTIME_JWT_PUBLIC_KEY_FILE", str(public))
    code, out, err = run(capsys, "token", "--sub", "ops", "--tenant", "acme", "--role", "admin")
    assert (code, out) == (1, "") and "no private key" in err and "Traceback" not in err
