"""Structured logs: request ids, one access line per request, and no secret in any line."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from realtime_app.logs import log_handler, redact
from realtime_app.readiness import NotReady
from tests.helpers import ApiClient

GENERATED_ID = re.compile(r"[0-9a-f]{16}")
PASSWORD = "correct-horse-battery"


@dataclass
class Captured:
    json_stream: io.StringIO
    text_stream: io.StringIO

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.json_stream.getvalue().splitlines()]

    def everything(self) -> str:
        return self.json_stream.getvalue() + self.text_stream.getvalue()


@pytest.fixture
def logs() -> Iterator[Captured]:
    """Every record in the process, at DEBUG, through the real handlers in both formats."""
    captured = Captured(io.StringIO(), io.StringIO())
    handlers = [log_handler("json", captured.json_stream), log_handler("text", captured.text_stream)]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    for handler in handlers:
        root.addHandler(handler)
    try:
        yield captured
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        root.setLevel(level)


def access_lines(logs: Captured, request_id: str) -> list[dict[str, Any]]:
    return [e for e in logs.entries() if e["logger"] == "realtime_app.access" and e.get("request_id") == request_id]


async def test_request_ids_are_echoed_when_sane_and_made_otherwise(api: ApiClient) -> None:
    assert GENERATED_ID.fullmatch((await api.get("/api/v1/health")).headers["X-Request-Id"])
    echoed = await api.get("/api/v1/health", headers={"X-Request-Id": "edge-7f3a.1:2"})
    assert echoed.headers["X-Request-Id"] == "edge-7f3a.1:2"
    for insane in ("a b", "x" * 65, "<script>", "-leading-dash"):
        reply = await api.get("/api/v1/health", headers={"X-Request-Id": insane})
        assert GENERATED_ID.fullmatch(reply.headers["X-Request-Id"]), insane
    for path in ("/api/v1/services", "/api/v1/no/such/thing/here"):  # errors clear headers; the id must survive
        reply = await api.get(path, headers={"X-Request-Id": "err-1"})
        assert reply.status in (401, 404) and reply.headers["X-Request-Id"] == "err-1"


async def test_one_access_line_per_request_with_its_id_and_no_query_values(api: ApiClient, logs: Captured) -> None:
    query = '?filter={"name":"private"}&limit=5&sort=-name'
    reply = await api.get(f"/api/v1/services{query}", token=api.token(), headers={"X-Request-Id": "list-1"})
    assert reply.status == 200
    [line] = access_lines(logs, "list-1")
    assert line["level"] == "INFO" and line["method"] == "GET" and line["status"] == 200 and line["duration_ms"] > 0
    assert line["path"] == "/api/v1/services?filter=***&limit=5&sort=-name"
    ours = [e for e in logs.entries() if e["logger"].startswith(("realtime_app", "tornado"))]  # the driver logs its commands at DEBUG
    assert ours and not any("private" in json.dumps(e) for e in ours)
    await api.get("/api/v1/nothing-here/x", token=api.token(), headers={"X-Request-Id": "miss-1"})
    lines = [e for e in logs.entries() if e.get("request_id") == "miss-1"]
    assert {e["logger"] for e in lines} == {"realtime_app.http", "realtime_app.access"}
    assert "[request miss-1]" in logs.text_stream.getvalue()


async def test_no_password_or_token_in_any_log(api: ApiClient, logs: Captured) -> None:
    await api.context.auth.users.add("ops", PASSWORD, "t1", ["admin"])
    assert (await api.post("/api/v1/auth/login", {"username": "ops", "password": PASSWORD + "-wrong"})).status == 401
    tokens = (await api.post("/api/v1/auth/login", {"username": "ops", "password": PASSWORD})).body
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    assert (await api.get("/api/v1/services", token=access)).status == 200
    assert (await api.get("/api/v1/stats", token=access)).status == 200
    assert (await api.post("/api/v1/auth/refresh", {"refresh_token": refresh})).status == 200
    assert (await api.get("/api/v1/services", token=access[:-4] + "AAAA")).status == 401
    assert (await api.get(f"/no/such/page?access_token={access}")).status == 404
    text = logs.everything()
    assert "POST /api/v1/auth/login 200" in text and "GET /api/v1/services 200" in text
    for secret in (PASSWORD, access, refresh, access[:-4] + "AAAA", access.split(".")[2]):
        assert secret not in text


def test_redaction_catches_tokens_anywhere() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvcHMifQ.c2lnbmF0dXJl"
    assert redact(f"url /x?t={jwt}&y=1") == "url /x?t=<redacted>&y=1"
    assert redact("Authorization: Bearer opaque.Token-123==") == "Authorization: <redacted>"
    assert redact("send 'Authorization: Bearer <token>'") == "send 'Authorization: Bearer <token>'"


async def test_successful_probes_are_debug_and_failing_ones_are_not(spawn_server, logs: Captured) -> None:
    api = ApiClient(await spawn_server())
    for path in ("/api/v1/health", "/api/v1/ready"):
        await api.get(path, headers={"X-Request-Id": "probe-ok"})
    assert {line["level"] for line in access_lines(logs, "probe-ok")} == {"DEBUG"}
    api.context.readiness_checks.append(_never_ready)
    assert (await api.get("/api/v1/ready", headers={"X-Request-Id": "probe-failed"})).status == 503
    assert [line["level"] for line in access_lines(logs, "probe-failed")] == ["WARNING"]


async def _never_ready() -> NotReady:
    return NotReady("not today", "a check that always fails")


def test_lines_name_the_process_when_told() -> None:
    text, json_lines = io.StringIO(), io.StringIO()
    logger = logging.getLogger("test_logs.process")
    handlers = [log_handler("text", text, process_name="web-2"), log_handler("json", json_lines, process_name="web-2")]
    for handler in handlers:
        logger.addHandler(handler)
    try:
        logger.warning("hello")
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
    assert " [web-2] test_logs.process: hello" in text.getvalue()
    assert json.loads(json_lines.getvalue())["process"] == "web-2"
