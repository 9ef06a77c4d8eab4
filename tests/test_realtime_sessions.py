"""The app's SockJS sessions against abuse: bound to the client address that opened them,
capped per address, one principal each, and the legacy transports can be turned off."""

from __future__ import annotations

import json
import secrets
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import HTTPResponse

from realtime_app.testing.rawsocket import sockjs_messages, sockjs_payload
from tests.helpers import ApiClient
from tests.sockjs_wire import OTHER_ADDRESS, Peer, ws_close, ws_frames

FOREIGN_ADDRESS_REFUSAL = (403, b"Session belongs to another client address.")
OVER_CAP = 'c[4008,"too many connections from this address"]'


class PollingSession:
    """One xhr-polling session of /realtime, spoken by hand from one client address."""

    def __init__(self, peer: Peer, url: str | None = None) -> None:
        self.peer = peer
        self.url = url or f"/realtime/000/{secrets.token_hex(8)}"

    async def poll(self) -> str:
        reply = await self.peer.fetch(self.url + "/xhr", "POST")
        assert reply.code == 200, reply.code
        return reply.body.decode().rstrip("\n")

    async def until(self, kind: str) -> dict[str, Any]:
        """Poll until a frame of type ``kind`` arrives (heartbeats and other frames pass)."""
        for _ in range(20):
            body = await self.poll()
            assert not body.startswith("c"), body
            if body.startswith("a"):
                found = [frame for frame in sockjs_messages(body) if frame["type"] == kind]
                if found:
                    return found[0]  # type: ignore[no-any-return]
        raise AssertionError(f"no {kind} frame in 20 polls")

    async def close_frame(self) -> list[Any]:
        """Poll until the session's close frame, ``[code, reason]``."""
        for _ in range(20):
            body = await self.poll()
            if body.startswith("c"):
                return json.loads(body[1:])  # type: ignore[no-any-return]
        raise AssertionError("no close frame in 20 polls")

    async def send(self, frame: dict[str, Any]) -> HTTPResponse:
        return await self.peer.fetch(self.url + "/xhr_send", "POST", sockjs_payload(frame))

    async def send_by_form(self, frame: dict[str, Any]) -> HTTPResponse:
        """jsonp_send, as a form anyone's page can post."""
        form = "d=" + sockjs_payload(frame).replace("%", "%25").replace("&", "%26").replace("+", "%2B")
        return await self.peer.fetch(self.url + "/jsonp_send", "POST", form, **{"Content-Type": "application/x-www-form-urlencoded"})


async def test_another_address_cannot_inject_frames_into_a_polling_session(spawn_server: Any) -> None:
    """Knowing a session id is not enough: an injected first auth would bind the victim's
    session to the attacker's user, an injected subscribe would read through it."""
    server = await spawn_server(sockjs_heartbeat_s=1.0)
    api = ApiClient(server)
    own, foreign = Peer(server.port), Peer(server.port, OTHER_ADDRESS)
    victim = PollingSession(own)
    attacker = PollingSession(foreign, victim.url)
    assert await victim.poll() == "o"
    await victim.until("welcome")

    injected_auth = {"type": "auth", "token": api.token(user="mallory")}
    for sent in (await attacker.send(injected_auth), await attacker.send_by_form(injected_auth)):
        assert (sent.code, sent.body) == FOREIGN_ADDRESS_REFUSAL
    assert await attacker.poll() == 'c[2010,"Session belongs to another client address"]'

    assert (await victim.send({"type": "auth", "token": api.token(user="ed")})).code == 204
    assert (await victim.until("auth_ok"))["user"] == "ed"
    injected_subscribe = {"type": "subscribe", "id": "evil", "collection": "services"}
    for sent in (await attacker.send(injected_subscribe), await attacker.send_by_form(injected_subscribe)):
        assert (sent.code, sent.body) == FOREIGN_ADDRESS_REFUSAL
    assert (await victim.send({"type": "ping", "ts": 1})).code == 204
    assert (await victim.until("pong"))["ts"] == 1

    realtime = server.realtime
    assert realtime is not None
    [connection] = realtime.connections
    assert connection.principal is not None and connection.principal.user == "ed" and connection.subscriptions == {}
    own.close()
    foreign.close()


async def test_a_second_principal_on_a_polling_session_closes_it_4003(spawn_server: Any) -> None:
    """From the same address (behind the same NAT, say) an auth frame for another user cannot
    take an authenticated session over: the session closes."""
    server = await spawn_server(sockjs_heartbeat_s=1.0)
    api = ApiClient(server)
    peer = Peer(server.port)
    session = PollingSession(peer)
    assert await session.poll() == "o"
    await session.send({"type": "auth", "token": api.token(user="ed")})
    assert (await session.until("auth_ok"))["user"] == "ed"
    assert (await session.send({"type": "auth", "token": api.token(user="mallory")})).code == 204
    assert (await session.until("error"))["code"] == "forbidden"
    assert await session.close_frame() == [4003, "token for another user or tenant"]
    peer.close()


async def test_open_sessions_per_address_are_capped_and_counted(spawn_server: Any) -> None:
    server = await spawn_server(max_connections_per_address=2, sockjs_heartbeat_s=1.0)
    api = ApiClient(server)
    own, foreign = Peer(server.port), Peer(server.port, OTHER_ADDRESS)
    origin = {"Origin": own.base}
    first = await own.websocket(f"/realtime/000/{secrets.token_hex(4)}/websocket", **origin)
    unauthenticated = PollingSession(own)
    assert (await ws_frames(first, 1))[0] == "o" and await unauthenticated.poll() == "o"

    over = await own.websocket(f"/realtime/000/{secrets.token_hex(4)}/websocket", **origin)
    assert await ws_frames(over, 3) == ["o", OVER_CAP, None]
    over.close()
    plain = await own.websocket("/realtime/websocket", **origin)
    assert await ws_frames(plain, 1) == [None]
    plain.close()
    assert (plain.close_code, plain.close_reason) == (4008, "too many connections from this address")
    elsewhere = PollingSession(foreign)
    assert await elsewhere.poll() == "o"

    realtime = server.realtime
    assert realtime is not None and len(realtime.connections) == 3
    admin = api.token(user="root", roles=("admin",))
    stats = await api.get("/api/v1/stats", token=admin)
    assert stats.body["limits"]["connections_refused_per_address"] == 2
    metrics = await api.get("/metrics", token=admin)
    refused = {sample.name: sample.value for family in text_string_to_metric_families(metrics.body) for sample in family.samples}
    assert refused["realtime_connections_refused_per_address_total"] == 2
    await ws_close(first)
    own.close()
    foreign.close()


async def test_legacy_transports_can_be_turned_off(spawn_server: Any) -> None:
    server = await spawn_server(sockjs_disabled_transports="jsonp, htmlfile")
    peer = Peer(server.port)
    session = f"/realtime/000/{secrets.token_hex(4)}"
    for path, method in ((f"{session}/jsonp?c=cb", "GET"), (f"{session}/htmlfile?c=cb", "GET"), (f"{session}/jsonp_send", "POST")):
        assert (await peer.fetch(path, method)).code == 404, path
    assert (await peer.fetch(f"{session}/xhr", "POST")).body == b"o\n"
    peer.close()
