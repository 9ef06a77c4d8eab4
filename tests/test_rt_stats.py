"""scripts/rt-stats as operators run it: a subprocess against a live server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from pathlib import Path

from tests.helpers import ApiClient

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "rt-stats"
OPS_PASSWORD = "ops-password-1"


async def rt_stats(*args: str, token: str | None = None) -> tuple[int, str, str]:
    """Run the script to its end; the server's loop keeps running while we wait."""
    process = await start(*args, token=token)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def start(*args: str, token: str | None = None) -> asyncio.subprocess.Process:
    env = {name: value for name, value in os.environ.items() if not name.startswith("REALTIME_")}
    if token is not None:
        env["REALTIME_TOKEN"] = token
    return await asyncio.create_subprocess_exec(str(SCRIPT), *args, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


def admin(api: ApiClient) -> str:
    return api.token(user="root", roles=("admin",))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_one_shot_table(api: ApiClient) -> None:
    code, out, err = await rt_stats("--url", api.base, token=admin(api))
    assert (code, err) == (0, "")
    assert out.startswith("realtime-app/")
    for label in ("connections", "subscriptions", "frames", "changes", "replay", "outbox", "delivery", "limits", "rest",
                  "process", "mongodb"):
        assert any(line.startswith(label) for line in out.splitlines()), label
    assert "mongodb       ok, ping" in out and "change_stream running" in out


async def test_json_with_a_login(api: ApiClient) -> None:
    await api.context.auth.users.add("ops", OPS_PASSWORD, "t1", ["admin"])
    code, out, err = await rt_stats("--url", api.base, "--json", "--username", "ops", "--password", OPS_PASSWORD)
    assert (code, err) == (0, "")
    figures = json.loads(out)
    assert figures["mongodb"]["ok"] is True
    assert [r["by_status"] for r in figures["rest"]["routes"] if (r["route"], r["method"]) == ("LoginHandler", "POST")] == [{"200": 1}]


async def test_refused_credentials(api: ApiClient) -> None:
    await api.context.auth.users.add("ops", OPS_PASSWORD, "t1", ["admin"])
    code, out, err = await rt_stats("--url", api.base, "--username", "ops", "--password", "wrong-password")
    assert (code, out) == (4, "")
    assert err.startswith(f"rt-stats: {api.base} refused the login (401") and err.count("\n") == 1
    code, out, err = await rt_stats("--url", api.base, token=api.token(roles=("viewer",)))
    assert (code, out) == (4, "")
    assert err.startswith(f"rt-stats: {api.base} refused the credentials (403") and err.count("\n") == 1
    code, _, err = await rt_stats("--url", api.base, "--token", "not-a-token")
    assert code == 4 and "(401" in err


async def test_unreachable_server() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    code, out, err = await rt_stats("--url", url, "--token", "anything")
    assert (code, out) == (3, "")
    assert err.startswith(f"rt-stats: cannot reach {url}: ") and err.count("\n") == 1


async def test_watch_refreshes_until_ctrl_c(api: ApiClient) -> None:
    process = await start("--url", api.base, "--watch", "0.2", token=admin(api))
    assert process.stdout is not None and process.stderr is not None
    seen = b""
    while seen.count(b"\033[H\033[2J") < 2:
        chunk = await asyncio.wait_for(process.stdout.read(4096), 15)
        assert chunk, (await process.stderr.read()).decode()
        seen += chunk
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0 and err == b""
    assert seen.count(b"connections") >= 2
