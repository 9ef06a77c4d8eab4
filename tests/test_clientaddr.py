"""The client's address behind trusted proxies: the header walk, the settings, and what the
running server does with it (login limits, access lines)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from tornado.httputil import HTTPHeaders

from realtime_app.clientaddr import TrustedProxies, parse_networks
from realtime_app.config import ConfigError, settings_from
from tests.helpers import ApiClient
from tests.test_auth import LOGIN, PASSWORD, add_user

WRONG = "not the password at all"


def headers(*pairs: tuple[str, str]) -> HTTPHeaders:
    parsed = HTTPHeaders()
    for name, value in pairs:
        parsed.add(name, value)
    return parsed


def client_of(peer: str, *pairs: tuple[str, str], trusted: str = "127.0.0.1, 10.0.0.0/8", header: str = "X-Forwarded-For") -> str:
    return TrustedProxies(parse_networks(trusted), header).client_of(peer, headers(*pairs))


def test_the_header_counts_only_from_a_trusted_peer() -> None:
    xff = ("X-Forwarded-For", "203.0.113.5")
    assert client_of("127.0.0.1", xff) == "203.0.113.5"
    assert client_of("10.9.8.7", xff) == "203.0.113.5"
    assert client_of("192.0.2.1", xff) == "192.0.2.1"
    assert client_of("127.0.0.1", xff, trusted="") == "127.0.0.1"
    assert client_of("::ffff:127.0.0.1", xff) == "203.0.113.5"
    assert client_of("127.0.0.1") == "127.0.0.1"


def test_the_chain_is_read_from_the_right_past_trusted_hops_only() -> None:
    # The client wrote the leftmost entry itself; the proxy appended the address it saw.
    assert client_of("127.0.0.1", ("X-Forwarded-For", "198.51.100.9, 203.0.113.5")) == "203.0.113.5"
    assert client_of("127.0.0.1", ("X-Forwarded-For", "198.51.100.9, 203.0.113.5, 10.1.1.1")) == "203.0.113.5"
    assert client_of("127.0.0.1", ("X-Forwarded-For", "198.51.100.9"), ("X-Forwarded-For", "203.0.113.5, 10.1.1.1")) == "203.0.113.5"
    assert client_of("127.0.0.1", ("X-Forwarded-For", "10.2.2.2, 10.1.1.1")) == "10.2.2.2"
    # A trusted hop that forwarded no address: the walk ends at that hop.
    assert client_of("127.0.0.1", ("X-Forwarded-For", "203.0.113.5, unknown, 10.1.1.1")) == "10.1.1.1"
    assert client_of("127.0.0.1", ("X-Forwarded-For", "")) == "127.0.0.1"
    assert client_of("127.0.0.1", ("X-Forwarded-For", "[2001:db8::1]:443")) == "2001:db8::1"


def test_forwarded_is_read_when_it_is_the_configured_header() -> None:
    forwarded = ("Forwarded", 'for=198.51.100.9;proto=https, for="[2001:db8:cafe::17]:4711";by=10.0.0.1')
    assert client_of("127.0.0.1", forwarded, header="Forwarded") == "2001:db8:cafe::17"
    assert client_of("127.0.0.1", ("Forwarded", "for=203.0.113.5, For=10.3.3.3"), header="Forwarded") == "203.0.113.5"
    assert client_of("127.0.0.1", ("Forwarded", "for=_hidden, for=10.3.3.3"), header="Forwarded") == "10.3.3.3"
    assert client_of("127.0.0.1", ("Forwarded", "proto=https"), header="Forwarded") == "127.0.0.1"
    assert client_of("127.0.0.1", ("Forwarded", 'for="203.0.113.5" junk'), header="Forwarded") == "127.0.0.1"
    # Only the configured header is believed: a client can send the other one through any proxy.
    assert client_of("127.0.0.1", forwarded, ("X-Forwarded-For", "203.0.113.5"), header="X-Forwarded-For") == "203.0.113.5"
    assert client_of("127.0.0.1", ("X-Forwarded-For", "203.0.113.5"), header="Forwarded") == "127.0.0.1"


def test_settings_name_a_bad_entry() -> None:
    base: dict[str, Any] = {"demo": True}
    with pytest.raises(ConfigError, match="'10.0.0.0/33'"):
        settings_from(environ={}, trusted_proxies="127.0.0.1, 10.0.0.0/33", **base)
    with pytest.raises(ConfigError, match="proxy_header"):
        settings_from(environ={}, proxy_header="X-Real-IP", **base)
    settings = settings_from(environ={"REALTIME_TRUSTED_PROXIES": "127.0.0.1,::1, 10.0.0.0/8"}, proxy_header="forwarded", **base)
    assert [str(network) for network in settings.proxies] == ["127.0.0.1/32", "::1/128", "10.0.0.0/8"]


async def wrong_logins(api: ApiClient, count: int, forwarded_for: str) -> list[int]:
    return [(await api.post(LOGIN, {"username": "alice", "password": WRONG}, headers={"X-Forwarded-For": forwarded_for})).status
            for _ in range(count)]


async def test_login_limits_follow_the_client_behind_a_trusted_proxy(spawn_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    api = ApiClient(await spawn_server(trusted_proxies="127.0.0.1", login_attempts_per_minute=3))
    await add_user(api)
    assert await wrong_logins(api, 4, "203.0.113.5") == [401, 401, 401, 429]
    caplog.set_level(logging.INFO, "realtime_app.access")
    owner = await api.post(LOGIN, {"username": "alice", "password": PASSWORD}, headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.6"})
    assert owner.status == 200, owner.body
    [line] = [record for record in caplog.records if record.name == "realtime_app.access"]
    assert line.client == "203.0.113.6" and "203.0.113.6 POST /api/v1/auth/login 200" in line.getMessage()  # type: ignore[attr-defined]


async def test_the_header_is_ignored_without_trusted_proxies(api: ApiClient) -> None:
    limit = api.context.settings.login_attempts_per_minute
    await add_user(api)
    for number in range(limit):
        assert await wrong_logins(api, 1, f"203.0.113.{number}") == [401]
    refused = await api.post(LOGIN, {"username": "alice", "password": PASSWORD}, headers={"X-Forwarded-For": "198.51.100.1"})
    assert refused.status == 429 and "from this address" in refused.problem["detail"]
