"""The `realtime-app` command: users add|list|remove|disable|enable|set-roles|set-password and
token, against the test mongod; what each change of a user does to its tokens at a running server."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pymongo
import pytest

from realtime_app import cli
from realtime_app.auth.passwords import verify_password
from realtime_app.auth.sessions import USERS_COLLECTION
from realtime_app.client import RealtimeClient
from tests.helpers import TEST_JWT_SECRET, ApiClient, Reply, refused_soon

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
    assert code == 1 and "12 to 128 characters" in err
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


def test_users_add_refuses_common_and_short_passwords(capsys: pytest.CaptureFixture[str]) -> None:
    """OWASP ASVS level 2: 12 characters at least, no common or guessable password, any characters."""
    refusals = {"12345678": "12 to 128", "password": "12 to 128", " " * 8: "12 to 128", "x" * 129: "12 to 128",
                " " * 12: "easy to guess", "password1234": "common", "qwerty123456": "common", "carol-carol-carol": "easy to guess"}
    for weak, reason in refusals.items():
        code, _, err = run(capsys, "users", "add", "carol", "--tenant", "acme", "--role", "viewer", "--password", weak)
        assert code == 1 and reason in err, (weak, err)
    assert run(capsys, "users", "list")[1] == ""
    for number, good in enumerate(["correct horse battery staple, then seven more words nobody would guess at all",
                                   "Zwölf Äpfel fielen vom Baum 🍎", "tulip orbit canvas", "k" + "Qx7#pL2$vN9!" * 10 + "zz4"]):
        code, _, err = run(capsys, "users", "add", f"user{number}", "--tenant", "acme", "--role", "viewer", "--password", good)
        assert code == 0, (good, err)


async def log_in(api: ApiClient, username: str = "erin", password: str = PASSWORD) -> Reply:
    return await api.post("/api/v1/auth/login", {"username": username, "password": password})


async def add_erin(capsys: pytest.CaptureFixture[str], *roles: str) -> None:
    argv = ["users", "add", "erin", "--tenant", "acme"] + [arg for role in roles or ("editor",) for arg in ("--role", role)]
    assert (await run_in_thread(capsys, *argv, "--password", PASSWORD))[0] == 0


async def test_removing_a_user_ends_its_tokens_and_sockets(cli_api: ApiClient, capsys: pytest.CaptureFixture[str]) -> None:
    await add_erin(capsys)
    pair = (await log_in(cli_api)).body
    token = pair["access_token"]
    assert (await cli_api.get("/api/v1/collections", token=token)).status == 200
    client = RealtimeClient(cli_api.base, token, reconnect=False)
    await client.connect()
    await client.subscribe("services", sub_id="all")
    outsider = cli_api.token("ops", "acme", ("admin",))  # an outside issuer's user: nothing stored to revoke

    assert (await run_in_thread(capsys, "users", "remove", "erin"))[0] == 0
    assert "no longer exists" in (await refused_soon(cli_api, token)).problem["detail"]
    error = await client.next_frame("error")
    assert error["code"] == "auth_failed" and "no longer exists" in error["message"]
    closed = await client.next_frame("_closed")
    assert (closed["code"], closed["reason"]) == (4001, "token revoked")
    refreshed = await cli_api.post("/api/v1/auth/refresh", {"refresh_token": pair["refresh_token"]})
    assert refreshed.status == 401 and "no longer exists" in refreshed.problem["detail"]
    assert (await cli_api.get("/api/v1/collections", token=outsider)).status == 200
    await client.close()


async def test_disabling_and_enabling_a_user(cli_api: ApiClient, capsys: pytest.CaptureFixture[str]) -> None:
    await add_erin(capsys)
    token = (await log_in(cli_api)).body["access_token"]
    code, out, _ = await run_in_thread(capsys, "users", "disable", "erin")
    assert (code, out.strip()) == (0, "disabled erin")
    assert "disabled" in (await refused_soon(cli_api, token)).problem["detail"]
    refused = await log_in(cli_api)
    assert refused.status == 401 and "disabled" in refused.problem["detail"]
    assert "(disabled)" in (await run_in_thread(capsys, "users", "list"))[1]
    assert (await run_in_thread(capsys, "users", "enable", "erin"))[:2] == (0, "enabled erin\n")
    fresh = (await log_in(cli_api)).body["access_token"]
    assert (await cli_api.get("/api/v1/collections", token=fresh)).status == 200
    assert "revoked" in (await refused_soon(cli_api, token)).problem["detail"]  # enabling brings no old token back
    code, _, err = await run_in_thread(capsys, "users", "disable", "nobody")
    assert code == 1 and "no user 'nobody'" in err


async def test_new_roles_end_old_tokens(cli_api: ApiClient, capsys: pytest.CaptureFixture[str]) -> None:
    await add_erin(capsys, "editor")
    token = (await log_in(cli_api)).body["access_token"]
    code, out, _ = await run_in_thread(capsys, "users", "set-roles", "erin", "--role", "viewer")
    assert code == 0 and "viewer" in out
    assert "roles" in (await refused_soon(cli_api, token)).problem["detail"]
    fresh = (await log_in(cli_api)).body["access_token"]
    assert jwt.decode(fresh, TEST_JWT_SECRET, algorithms=["HS256"])["roles"] == ["viewer"]
    assert (await cli_api.post("/api/v1/services", {"name": "x", "status": "up"}, token=fresh)).status == 403


async def test_a_new_password_ends_old_tokens(cli_api: ApiClient, capsys: pytest.CaptureFixture[str]) -> None:
    await add_erin(capsys)
    pair = (await log_in(cli_api)).body
    ops_token = (await run_in_thread(capsys, "token", "--sub", "erin", "--tenant", "acme", "--role", "editor"))[1].strip()
    assert (await cli_api.get("/api/v1/collections", token=ops_token)).status == 200
    code, _, err = await run_in_thread(capsys, "users", "set-password", "erin", "--password", "password1234")
    assert code == 1 and "common" in err
    assert (await cli_api.get("/api/v1/collections", token=pair["access_token"])).status == 200
    # `iat` counts whole seconds, and a token of the change's own second is kept: change in a later one.
    await asyncio.sleep(max(0.0, jwt.decode(ops_token, options={"verify_signature": False})["iat"] + 1 - time.time()))
    new_password = "a brand new passphrase"
    assert (await run_in_thread(capsys, "users", "set-password", "erin", "--password", new_password))[0] == 0
    await refused_soon(cli_api, pair["access_token"])
    # A token the token command made before the change (no epoch claim) is judged by its iat.
    assert "revoked" in (await refused_soon(cli_api, ops_token)).problem["detail"]
    assert (await cli_api.post("/api/v1/auth/refresh", {"refresh_token": pair["refresh_token"]})).status == 401
    assert (await log_in(cli_api)).status == 401
    assert (await log_in(cli_api, password=new_password)).status == 200


def test_token_lifetime_is_bounded(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for ttl in ("86401", "0", "-5"):
        code, out, err = run(capsys, "token", "--sub", "ops", "--tenant", "acme", "--role", "admin", "--ttl", ttl)
        assert (code, out) == (2, "") and "--ttl must be from 1 to 86400 seconds (max_token_ttl_s)" in err
    assert run(capsys, "token", "--sub", "ops", "--tenant", "acme", "--role", "admin", "--ttl", "86400")[0] == 0
    monkeypatch.setenv("REALTIME_MAX_TOKEN_TTL_S", "60")
    code, _, err = run(capsys, "token", "--sub", "ops", "--tenant", "acme", "--role", "admin", "--ttl", "120")
    assert code == 2 and "1 to 60 seconds" in err
