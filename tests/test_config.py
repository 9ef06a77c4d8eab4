"""Settings: validation, precedence of the sources, the printed summary, the demo key."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest

from realtime_app.auth.tokens import TokenService
from realtime_app.config import ConfigError, Settings, add_arguments, as_environment, demo_jwt_secret, settings_from

SECRET = "s" * 32


def build(**values: Any) -> Settings:
    return settings_from(environ={}, **values)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def refused(match: str, **values: Any) -> None:
    with pytest.raises(ConfigError, match=match):
        build(**values)


def test_defaults_with_a_secret_are_valid() -> None:
    settings = build(jwt_secret=SECRET)
    assert (settings.host, settings.port, settings.algorithms, settings.demo) == ("127.0.0.1", 8080, ["HS256"], False)
    assert not settings.uses_public_key


def test_no_key_outside_demo_mode() -> None:
    refused("no JWT key")
    assert build(demo=True).jwt_secret == ""


def test_algorithm_list_rules(tmp_path: Path) -> None:
    key = tmp_path / "public.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\n")
    refused("mixes HMAC and public-key", jwt_secret=SECRET, jwt_algorithms="HS256,RS256")
    refused("mixes HMAC and public-key", jwt_public_key_file=str(key), jwt_algorithms="RS256,HS512")
    for algorithms in ("none", "HS256,none", "None", "NONE", "HS1", "rs256"):
        refused("unsupported", jwt_secret=SECRET, jwt_algorithms=algorithms)
    for algorithms in ("", " , "):
        refused("empty", jwt_secret=SECRET, jwt_algorithms=algorithms)
    assert build(jwt_secret=SECRET, jwt_algorithms=" HS256 , HS512 ").algorithms == ["HS256", "HS512"]


def test_secret_length() -> None:
    refused("shorter than 32", jwt_secret="s" * 31)
    refused("shorter than 32", jwt_secret="s" * 31, demo=True)
    assert build(jwt_secret="s" * 32).jwt_secret == "s" * 32


def test_public_key_settings(tmp_path: Path) -> None:
    public, private = tmp_path / "public.pem", tmp_path / "private.pem"
    refused("need jwt_public_key_file", jwt_algorithms="RS256")
    refused("key file not found", jwt_algorithms="RS256", jwt_public_key_file=str(public))
    public.write_text("pem")
    refused("key file not found", jwt_algorithms="RS256", jwt_public_key_file=str(public), jwt_private_key_file=str(private))
    refused("jwt_secret is set", jwt_algorithms="RS256", jwt_public_key_file=str(public), jwt_secret=SECRET)
    refused("jwt_public_key_file is set", jwt_public_key_file=str(public), jwt_secret=SECRET)
    refused("key file not found", jwt_algorithms="ES256", jwt_public_key_file=str(tmp_path))
    private.write_text("pem")
    settings = build(jwt_algorithms="RS256", jwt_public_key_file=str(public), jwt_private_key_file=str(private))
    assert settings.uses_public_key


def test_other_validation_errors(tmp_path: Path) -> None:
    refused("out of range", jwt_secret=SECRET, port=70000)
    refused("out of range", jwt_secret=SECRET, port=-1)
    refused("log_format", jwt_secret=SECRET, log_format="xml")
    refused("list limits", jwt_secret=SECRET, list_default_limit=0)
    refused("list limits", jwt_secret=SECRET, list_default_limit=50, list_max_limit=10)
    refused("max_body_bytes", jwt_secret=SECRET, max_body_bytes=100)
    refused("resources file not found", jwt_secret=SECRET, resources_file=str(tmp_path / "nope.json"))
    # Zero would refuse every login (429), issue tokens that are already expired, or reject every filter.
    for name in ("login_attempts_per_minute", "access_token_ttl_s", "refresh_token_ttl_s", "max_filter_depth"):
        refused(name, jwt_secret=SECRET, **{name: 0})
    for leeway in (-1.0, float("nan"), 3600.0):
        refused("jwt_leeway_s", jwt_secret=SECRET, jwt_leeway_s=leeway)
    with pytest.raises(ConfigError, match="jwt_leeway_s"):
        settings_from(environ={"REALTIME_JWT_SECRET": SECRET, "REALTIME_JWT_LEEWAY_S": "nan"})


def test_sockjs_transports_and_the_per_address_cap() -> None:
    settings = settings_from(environ={"REALTIME_JWT_SECRET": SECRET, "REALTIME_SOCKJS_DISABLED_TRANSPORTS": " jsonp, htmlfile "})
    assert settings.disabled_transports == ["jsonp", "htmlfile"]
    with pytest.raises(ConfigError, match="unknown carrier-pigeon; the transports are websocket, xhr"):
        settings_from(environ={}, jwt_secret=SECRET, sockjs_disabled_transports="jsonp,carrier-pigeon")
    with pytest.raises(ConfigError, match="every transport"):
        settings_from(environ={}, jwt_secret=SECRET, sockjs_disabled_transports="websocket,xhr,xhr_streaming,jsonp,eventsource,htmlfile")
    assert settings_from(environ={}, jwt_secret=SECRET, max_connections_per_address=0).max_connections_per_address == 0
    with pytest.raises(ConfigError, match="max_connections_per_address"):
        settings_from(environ={}, jwt_secret=SECRET, max_connections_per_address=-1)


def test_malformed_values_name_the_setting() -> None:
    for name, raw in [("PORT", "eighty"), ("MAX_BODY_BYTES", "1.5"), ("DEMO", "maybe"), ("JWT_LEEWAY_S", "soon")]:
        with pytest.raises(ConfigError, match=name.lower()):
            settings_from(environ={"REALTIME_JWT_SECRET": SECRET, f"REALTIME_{name}": raw})
    with pytest.raises(ConfigError, match="port"):
        settings_from(parse("--port", "eighty"), environ={"REALTIME_JWT_SECRET": SECRET})


def test_environment_then_command_line_then_overrides() -> None:
    environ = {"REALTIME_JWT_SECRET": SECRET, "REALTIME_PORT": "9000", "REALTIME_DEMO": "yes", "REALTIME_LOG_LEVEL": "DEBUG",
               "REALTIME_JWT_LEEWAY_S": "2.5", "UNRELATED": "x"}
    from_env = settings_from(parse(), environ=environ)
    assert (from_env.port, from_env.demo, from_env.log_level, from_env.jwt_leeway_s) == (9000, True, "DEBUG", 2.5)
    from_cli = settings_from(parse("--port", "9001", "--no-demo", "--mongo-db", "cli"), environ=environ)
    assert (from_cli.port, from_cli.demo, from_cli.mongo_db, from_cli.log_level) == (9001, False, "cli", "DEBUG")
    assert settings_from(parse("--port", "9001"), environ=environ, port=9002).port == 9002
    assert settings_from(parse("--demo"), environ={}).demo is True
    assert settings_from(parse(), environ={"REALTIME_DEMO": "off", "REALTIME_JWT_SECRET": SECRET}).demo is False
    # Unset flags leave the environment alone; an empty variable still counts as set.
    assert settings_from(parse(), environ={**environ, "REALTIME_MONGO_URI": ""}).mongo_uri == ""
    assert settings_from(parse(), environ={**environ, "REALTIME_MONGO_URI": "mongodb://h/"}).mongo_uri == "mongodb://h/"


def test_summary_hides_secrets() -> None:
    settings = build(jwt_secret="a-very-secret-value-of-32-chars!", mongo_uri="mongodb://admin:hunter2@db.example:27017/?replicaSet=rs0",
                     mongo_db="visible_db")
    summary = settings.summary()
    assert "a-very-secret-value" not in summary and "hunter2" not in summary and "db.example" not in summary
    lines = summary_values(summary)
    assert lines["jwt_secret"] == "<set>" and lines["mongo_uri"] == "<set>"
    assert lines["mongo_db"] == "visible_db" and lines["port"] == "8080"
    assert set(lines) == set(Settings.__dataclass_fields__)
    assert summary_values(build(demo=True).summary())["jwt_secret"] == "<unset>"


def summary_values(summary: str) -> dict[str, str]:
    pairs = [line.strip().partition(" ") for line in summary.splitlines()]
    return {name: value.strip() for name, _, value in pairs}


def test_demo_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    first = demo_jwt_secret(str(data_dir))
    assert len(first) >= 32
    assert demo_jwt_secret(str(data_dir)) == first
    path = data_dir / "demo-jwt-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert demo_jwt_secret(str(tmp_path / "elsewhere")) != first
    # Tokens issued before a restart still verify after it.
    settings = build(demo=True, data_dir=str(data_dir))
    token = TokenService(settings).issue("ann", "acme", ["viewer"])
    assert TokenService(build(demo=True, data_dir=str(data_dir))).principal(token).user == "ann"
    assert jwt.decode(token, first, algorithms=["HS256"])["sub"] == "ann"
    # A configured secret wins over the kept one.
    assert TokenService(build(demo=True, data_dir=str(data_dir), jwt_secret=SECRET)).verification_key == SECRET


def test_each_process_gets_a_name_of_its_own_unless_given_one() -> None:
    generated = {build(jwt_secret=SECRET).process_name for _ in range(5)}
    assert len(generated) == 5 and all(name for name in generated)
    assert build(jwt_secret=SECRET, process_name="web-2.eu").process_name == "web-2.eu"
    for bad in ("web 2", "a/b", "x" * 49, "ünï"):
        refused("process_name may hold only", jwt_secret=SECRET, process_name=bad)
    refused("processes must be from 1 to 64", jwt_secret=SECRET, processes=0)


def test_settings_pass_to_another_process_through_the_environment_unchanged() -> None:
    settings = build(jwt_secret=SECRET, metrics_public=True, jwt_leeway_s=2.5, processes=3, allowed_origins="https://a.example")
    assert settings_from(environ=as_environment(settings)) == settings
