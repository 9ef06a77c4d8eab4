"""Logins, refresh, rate limiting and the JWT attacks a verifier must refuse."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from realtime_app.auth.loginlimits import LoginLimiter, limits_from
from realtime_app.auth.passwords import hash_password, verify_password
from realtime_app.config import settings_from
from realtime_app.errors import RateLimited
from tests.helpers import TEST_JWT_SECRET, ApiClient, Reply

LOGIN, REFRESH, COLLECTIONS = "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/collections"
PASSWORD = "correct horse battery"


pytestmark = pytest.mark.usefixtures("errors_fail_the_test")


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[no-any-return]


def private_pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())  # type: ignore[no-any-return]


def key_files(tmp_path: Path, key: Any) -> dict[str, str]:
    public, private = tmp_path / "public.pem", tmp_path / "private.pem"
    public.write_bytes(public_pem(key))
    private.write_bytes(private_pem(key))
    return {"jwt_public_key_file": str(public), "jwt_private_key_file": str(private)}


@pytest.fixture
def rs256_api(start_server: Any, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> ApiClient:
    return ApiClient(start_server(jwt_algorithms="RS256", jwt_secret="", **key_files(tmp_path, rsa_key)))


@pytest.fixture
def limited_api(start_server: Any) -> ApiClient:
    return ApiClient(start_server(login_attempts_per_minute=3))


@pytest.fixture
def aud_iss_api(start_server: Any) -> ApiClient:
    return ApiClient(start_server(jwt_audience="realtime-api", jwt_issuer="https://issuer.test"))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None = None) -> str:
    """A token built by hand, as an attacker would: no library refuses to sign it."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b"" if hmac_key is None else hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {"sub": "mallory", "tenant": "acme", "roles": ["admin"], "iat": now, "exp": now + 300}
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


async def use(api: ApiClient, token: str) -> Reply:
    return await api.get(COLLECTIONS, token=token)


async def refused(api: ApiClient, token: str, code: str = "auth_failed") -> dict[str, Any]:
    reply = await use(api, token)
    assert reply.status == 401, reply.body
    assert reply.body["type"].endswith("/" + code), reply.body
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    return reply.problem


async def add_user(api: ApiClient, username: str = "alice", tenant: str = "acme", roles: tuple[str, ...] = ("editor",)) -> None:
    await api.context.auth.users.add(username, PASSWORD, tenant, list(roles))


async def login(api: ApiClient, username: str = "alice", password: str = PASSWORD) -> Reply:
    return await api.post(LOGIN, {"username": username, "password": password})


# -- login and refresh ------------------------------------------------------------------------


async def test_login_returns_a_working_token_pair(api: ApiClient) -> None:
    await add_user(api)
    reply = await login(api)
    assert reply.status == 200, reply.body
    assert set(reply.body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert (reply.body["token_type"], reply.body["expires_in"]) == ("Bearer", api.context.settings.access_token_ttl_s)
    assert (await use(api, reply.body["access_token"])).status == 200
    decoded = jwt.decode(reply.body["access_token"], TEST_JWT_SECRET, algorithms=["HS256"])
    assert (decoded["sub"], decoded["tenant"], decoded["roles"]) == ("alice", "acme", ["editor"])
    assert decoded["exp"] - decoded["iat"] == api.context.settings.access_token_ttl_s


async def test_login_failure_does_not_say_which_part_was_wrong(api: ApiClient) -> None:
    await add_user(api)
    wrong_password = await login(api, "alice", PASSWORD + "!")
    unknown_user = await login(api, "bob", PASSWORD)
    for reply in (wrong_password, unknown_user):
        assert reply.status == 401 and reply.problem
        assert "access_token" not in reply.body
    assert {k: v for k, v in wrong_password.body.items()} == {k: v for k, v in unknown_user.body.items()}
    for body in ({"username": "alice"}, {"password": PASSWORD}, {"username": "", "password": ""}, {"username": 5, "password": PASSWORD},
                 {"username": ["alice"], "password": PASSWORD}):
        reply = await api.post(LOGIN, body)
        assert reply.status == 401 and reply.problem
    for raw in ("[]", "{", ""):
        reply = await api.post(LOGIN, raw_body=raw)
        assert reply.status == 400 and reply.problem


async def test_failed_logins_are_rate_limited(limited_api: ApiClient) -> None:
    api = limited_api
    await add_user(api)
    for _ in range(3):
        assert (await login(api, "alice", "wrong password")).status == 401
    for username, password in [("alice", "wrong password"), ("alice", PASSWORD)]:
        reply = await login(api, username, password)
        assert reply.status == 429, reply.body
        assert reply.body["type"].endswith("/rate_limited") and reply.problem
        assert "login_attempts_per_minute" in reply.body["detail"] and "3 a minute" in reply.body["detail"]
        assert 1 <= int(reply.headers["Retry-After"]) <= 60
    # Another username from the same address has a pair window of its own.
    assert (await login(api, "someone-else", "x" * 12)).status == 401


async def test_parallel_wrong_logins_cannot_outrun_the_limit(spawn_server: Any) -> None:
    """Each attempt is counted before its password is hashed: 30 at once, 10 allowed."""
    api = ApiClient(await spawn_server(login_attempts_per_minute=10))
    await add_user(api)
    http = AsyncHTTPClient(force_instance=True, max_clients=40)
    try:
        replies = await asyncio.gather(*[
            http.fetch(api.base + LOGIN, method="POST", body=json.dumps({"username": "alice", "password": f"wrong {n}"}),
                       headers={"Content-Type": "application/json"}, raise_error=False, request_timeout=60)
            for n in range(30)
        ])
    finally:
        http.close()
    assert sorted(reply.code for reply in replies) == [401] * 10 + [429] * 20


def from_address(api: ApiClient, address: str) -> AsyncHTTPClient:
    """A client whose connections come from `address` (any of 127.0.0.0/8 reaches the server)."""
    return AsyncHTTPClient(force_instance=True, defaults={"network_interface": address})


async def login_from(api: ApiClient, address: str, password: str, username: str = "alice") -> HTTPResponse:
    http = from_address(api, address)
    try:
        return await http.fetch(api.base + LOGIN, method="POST", body=json.dumps({"username": username, "password": password}),
                                headers={"Content-Type": "application/json"}, raise_error=False, request_timeout=30)
    finally:
        http.close()


async def test_failures_from_one_address_do_not_lock_the_owner_out(spawn_server: Any) -> None:
    api = ApiClient(await spawn_server(login_attempts_per_minute=10, login_attempts_per_user_per_hour=15))
    await add_user(api)
    for _ in range(10):
        assert (await login_from(api, "127.0.0.2", "guess " * 3)).code == 401
    refused = await login_from(api, "127.0.0.2", PASSWORD)
    assert refused.code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    detail = json.loads(refused.body)["detail"]
    assert "for this username from this address" in detail and "login_attempts_per_minute" in detail, detail
    assert (await login_from(api, "127.0.0.1", PASSWORD)).code == 200
    # The slower limit over all addresses: 15 failures an hour, wherever they come from.
    for _ in range(5):
        assert (await login_from(api, "127.0.0.3", "guess " * 3)).code == 401
    spread = await login_from(api, "127.0.0.4", PASSWORD)
    assert spread.code == 429 and "login_attempts_per_user_per_hour" in json.loads(spread.body)["detail"]
    assert int(spread.headers["Retry-After"]) > 60


async def test_refresh_gives_a_new_pair_and_token_kinds_do_not_mix(api: ApiClient) -> None:
    await add_user(api)
    pair = (await login(api)).body
    renewed = await api.post(REFRESH, {"refresh_token": pair["refresh_token"]})
    assert renewed.status == 200, renewed.body
    assert set(renewed.body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert renewed.body["access_token"] != pair["access_token"] and renewed.body["refresh_token"] != pair["refresh_token"]
    assert (await use(api, renewed.body["access_token"])).status == 200
    assert (await api.post(REFRESH, {"refresh_token": renewed.body["refresh_token"]})).status == 200
    # An access token is not a refresh token, and a refresh token does not authorise requests.
    reply = await api.post(REFRESH, {"refresh_token": pair["access_token"]})
    assert reply.status == 401 and reply.problem
    await refused(api, pair["refresh_token"])
    for bad in ("garbage", "", 7, None, "a.b.c"):
        reply = await api.post(REFRESH, {"refresh_token": bad})
        assert reply.status == 401 and reply.problem
    for body in ({}, [], {"token": pair["refresh_token"]}):
        reply = await api.post(REFRESH, body)
        assert reply.status == 400 and reply.problem


async def test_refresh_follows_the_stored_user(api: ApiClient) -> None:
    await add_user(api)
    pair = (await login(api)).body
    await api.context.auth.users.set_roles("alice", ["viewer"])
    reply = await api.post(REFRESH, {"refresh_token": pair["refresh_token"]})
    assert reply.status == 401 and "revoked" in reply.problem["detail"]
    renewed = await api.post(REFRESH, {"refresh_token": (await login(api)).body["refresh_token"]})
    decoded = jwt.decode(renewed.body["access_token"], TEST_JWT_SECRET, algorithms=["HS256"])
    assert (decoded["tenant"], decoded["roles"]) == ("acme", ["viewer"])
    await api.context.auth.users.remove("alice")
    await api.context.auth.users.add("alice", PASSWORD, "globex", ["viewer"])
    reply = await api.post(REFRESH, {"refresh_token": renewed.body["refresh_token"]})
    assert reply.status == 401 and reply.problem


# -- JWT attacks on an HMAC server ----------------------------------------------------------


async def test_a_correctly_signed_forgery_is_the_control(api: ApiClient) -> None:
    assert (await use(api, forge({"alg": "HS256", "typ": "JWT"}, claims(), TEST_JWT_SECRET.encode()))).status == 200


async def test_alg_none_is_refused(api: ApiClient) -> None:
    for alg in ("none", "None", "NONE", ""):
        await refused(api, forge({"alg": alg, "typ": "JWT"}, claims()))
        await refused(api, forge({"alg": alg}, claims())[:-1] + "x")


async def test_a_wrong_key_or_another_algorithm_is_refused(api: ApiClient) -> None:
    await refused(api, jwt.encode(claims(), "another secret that is long enough to pass 32", algorithm="HS256"))
    await refused(api, jwt.encode(claims(), TEST_JWT_SECRET, algorithm="HS512"))
    await refused(api, forge({"alg": "HS256"}, claims(), b""))


async def test_expired_tokens_are_refused_beyond_the_leeway(api: ApiClient) -> None:
    now = int(time.time())
    body = await refused(api, jwt.encode(claims(exp=now - 60), TEST_JWT_SECRET, algorithm="HS256"), "token_expired")
    assert "expired" in body["detail"]
    assert (await use(api, jwt.encode(claims(exp=now - 3), TEST_JWT_SECRET, algorithm="HS256"))).status == 200
    await refused(api, api.token(ttl_s=-60), "token_expired")
    await refused(api, jwt.encode(claims(nbf=now + 600), TEST_JWT_SECRET, algorithm="HS256"))


async def test_a_tampered_payload_is_refused(api: ApiClient) -> None:
    token = api.token("eve", "acme", ("viewer",))
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for change in ({"roles": ["admin"]}, {"tenant": "globex"}, {"exp": decoded["exp"] + 3600}):
        forged_payload = b64(json.dumps({**decoded, **change}).encode())
        await refused(api, f"{header}.{forged_payload}.{signature}")
    await refused(api, f"{header}.{payload}.{signature[:-2]}AA")
    assert (await use(api, token)).status == 200


async def test_missing_or_malformed_claims_are_refused(api: ApiClient) -> None:
    secret = TEST_JWT_SECRET
    for changes in ({"exp": None}, {"sub": None}, {"roles": None}, {"roles": []}, {"roles": ["root"]}, {"roles": "admin"},
                    {"roles": [{"admin": True}]}, {"tenant": None}, {"tenant": ""}, {"tenant": {"$ne": ""}}, {"exp": "tomorrow"},
                    {"sub": 42}):
        await refused(api, jwt.encode(claims(**changes), secret, algorithm="HS256"))
    # Unknown roles next to a known one are dropped, not honoured.
    reply = await use(api, jwt.encode(claims(roles=["viewer", "superuser"]), secret, algorithm="HS256"))
    assert reply.status == 200
    assert (await api.post("/api/v1/services", {"name": "x", "status": "up"},
                           token=jwt.encode(claims(roles=["viewer", "superuser"]), secret, algorithm="HS256"))).status == 403


async def test_malformed_tokens_are_refused(api: ApiClient) -> None:
    for token in ("abc", "a.b.c", "a.b", "\u00e9.\u00e9.\u00e9", "x" * 9000, forge({"alg": "HS256"}, claims())[:20]):
        await refused(api, token)
    header = b64(b'{"alg": "HS256"')
    await refused(api, f"{header}.{b64(b'[]')}.abc")


async def test_audience_and_issuer_are_checked_when_configured(aud_iss_api: ApiClient) -> None:
    api = aud_iss_api
    await add_user(api)
    issued = (await login(api)).body["access_token"]
    assert (await use(api, issued)).status == 200
    good = {"aud": "realtime-api", "iss": "https://issuer.test"}
    assert (await use(api, jwt.encode(claims(**good), TEST_JWT_SECRET, algorithm="HS256"))).status == 200
    assert (await use(api, jwt.encode(claims(**{**good, "aud": ["other", "realtime-api"]}), TEST_JWT_SECRET, algorithm="HS256"))).status == 200
    for changes in ({"aud": "other-api"}, {"aud": None}, {"aud": ["other"]}, {"iss": "https://evil.test"}, {"iss": None}):
        await refused(api, jwt.encode(claims(**{**good, **changes}), TEST_JWT_SECRET, algorithm="HS256"))


# -- JWT attacks on a public-key server ---------------------------------------------------


async def test_rs256_server_issues_and_verifies_its_own_tokens(rs256_api: ApiClient, rsa_key: rsa.RSAPrivateKey) -> None:
    api = rs256_api
    await add_user(api)
    pair = (await login(api)).body
    assert jwt.get_unverified_header(pair["access_token"])["alg"] == "RS256"
    assert (await use(api, pair["access_token"])).status == 200
    assert (await api.post(REFRESH, {"refresh_token": pair["refresh_token"]})).status == 200
    assert (await use(api, jwt.encode(claims(), private_pem(rsa_key), algorithm="RS256"))).status == 200


async def test_the_public_key_is_no_hmac_secret(rs256_api: ApiClient, rsa_key: rsa.RSAPrivateKey) -> None:
    api = rs256_api
    public = public_pem(rsa_key)
    for key in (public, public.strip(), public.replace(b"\n", b"")):
        await refused(api, forge({"alg": "HS256", "typ": "JWT"}, claims(), key))
    await refused(api, forge({"alg": "none"}, claims()))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    await refused(api, jwt.encode(claims(), private_pem(other), algorithm="RS256"))
    await refused(api, jwt.encode(claims(), TEST_JWT_SECRET, algorithm="HS256"))


@pytest.fixture
def rs_es_api(start_server: Any, tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> ApiClient:
    files = key_files(tmp_path, rsa_key)
    del files["jwt_private_key_file"]
    return ApiClient(start_server(jwt_algorithms="RS256,ES256", jwt_secret="", **files))


async def test_an_accepted_algorithm_with_a_key_of_another_type_is_a_401(rs_es_api: ApiClient, rsa_key: rsa.RSAPrivateKey) -> None:
    api = rs_es_api
    ec_key = ec.generate_private_key(ec.SECP256R1())
    await refused(api, jwt.encode(claims(), private_pem(ec_key), algorithm="ES256"))
    assert (await use(api, jwt.encode(claims(), private_pem(rsa_key), algorithm="RS256"))).status == 200


# -- building blocks ----------------------------------------------------------------------


def test_passwords_are_salted_scrypt_hashes() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second and first.startswith("scrypt$") and PASSWORD not in first
    assert verify_password(PASSWORD, first) and verify_password(PASSWORD, second)
    assert not verify_password(PASSWORD + "x", first)
    for stored in ("", "plain", "bcrypt$1$2$3$4$5", "scrypt$x$8$1$AAAA$AAAA", "scrypt$16384$8$1$!!$!!"):
        assert not verify_password(PASSWORD, stored)


def test_login_limiter_keeps_counting_when_its_table_is_full() -> None:
    limiter = LoginLimiter(*limits_from(settings_from(environ={}, demo=True, login_attempts_per_minute=2)))
    for index in range(40_000):  # three windows each: past the size at which stale ones are pruned
        limiter.reserve(f"user{index}", f"10.0.{index >> 8}.{index & 255}")
    limiter.reserve("new", "10.9.9.9")
    second = limiter.reserve("new", "10.9.9.9")
    with pytest.raises(RateLimited):
        limiter.reserve("new", "10.9.9.9")
    limiter.release(second)
    limiter.reserve("new", "10.9.9.9")
