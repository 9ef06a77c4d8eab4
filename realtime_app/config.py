"""Every setting in one place: defaults, environment (REALTIME_*), then the command line.

Each field's metadata carries its help text; the command-line flag is the field name with
dashes and the environment variable is REALTIME_ plus the upper-cased name.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from realtime_app.clientaddr import IPNetwork, parse_networks
from realtime_app.sockjs import SESSION_TRANSPORTS

ENV_PREFIX = "REALTIME_"
PROXY_HEADERS = {"x-forwarded-for", "forwarded"}
# Process names go into log lines, HAProxy's configuration and the welcome frame.
PROCESS_NAME = re.compile(r"[A-Za-z0-9._-]{1,48}")
MAX_PROCESSES = 64
ASYMMETRIC_ALGORITHMS = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}
SYMMETRIC_ALGORITHMS = {"HS256", "HS384", "HS512"}


class ConfigError(Exception):
    """A setting is missing or inconsistent; the message says which and how to fix it."""


def _opt(default: Any, help: str, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "secret": secret})


@dataclass(frozen=True)
class Settings:
    host: str = _opt("127.0.0.1", "address to listen on")
    port: int = _opt(8080, "port to listen on (0 picks a free one)")
    mongo_uri: str = _opt("", "MongoDB URI; empty starts an embedded mongod under data_dir", secret=True)
    mongo_db: str = _opt("realtime", "database holding the served collections and users")
    mongod_path: str = _opt("", "mongod binary for the embedded default (else PATH, else the embedded extra)")
    data_dir: str = _opt("var", "folder for the embedded mongod's data and the demo JWT key")
    jwt_secret: str = _opt("", "HMAC secret for HS* algorithms", secret=True)
    jwt_public_key_file: str = _opt("", "PEM public key for RS*/ES*/PS*/EdDSA verification")
    jwt_private_key_file: str = _opt("", "PEM private key, to issue tokens when verifying with a public key")
    jwt_algorithms: str = _opt("HS256", "comma-separated algorithms accepted; all HMAC or all public-key")
    jwt_audience: str = _opt("", "required 'aud' claim, checked when set")
    jwt_issuer: str = _opt("", "required 'iss' claim, checked when set; also put in issued tokens")
    jwt_leeway_s: float = _opt(10.0, "clock skew tolerated on exp/iat/nbf, in seconds")
    access_token_ttl_s: int = _opt(900, "lifetime of issued access tokens")
    refresh_token_ttl_s: int = _opt(7 * 24 * 3600, "lifetime of issued refresh tokens")
    login_attempts_per_minute: int = _opt(10, "failed logins allowed a minute for one username from one client address")
    login_attempts_per_address_per_minute: int = _opt(30, "failed logins allowed a minute from one client address, all usernames")
    login_attempts_per_user_per_hour: int = _opt(100, "failed logins allowed an hour for one username from all addresses")
    max_token_ttl_s: int = _opt(24 * 3600, "longest lifetime the token command may give (its --ttl)")
    trusted_proxies: str = _opt("", "comma-separated proxy addresses or CIDRs whose forwarding header names the client")
    proxy_header: str = _opt("X-Forwarded-For", "the header trusted proxies set: X-Forwarded-For or Forwarded")
    behind_tls_proxy: bool = _opt(False, "clients reach this server over HTTPS through a proxy: send Strict-Transport-Security")
    resources_file: str = _opt("", "JSON file declaring the served collections (default: the demo set)")
    max_body_bytes: int = _opt(1024 * 1024, "largest accepted request body (413 above)")
    list_default_limit: int = _opt(50, "page size when a list asks for none")
    list_max_limit: int = _opt(500, "largest page a list may ask for")
    max_filter_depth: int = _opt(8, "deepest nesting a filter may have")
    max_filter_cost: int = _opt(1000, "conditions plus listed values one filter may hold (REST lists and live queries)")
    allowed_origins: str = _opt("", "comma-separated browser origins allowed besides the server's own; * for any")
    auth_timeout_s: float = _opt(10.0, "a socket must authenticate within this many seconds (close 4001)")
    reauth_lead_s: float = _opt(60.0, "send reauth_required this long before a socket's token expires")
    max_frame_bytes: int = _opt(64 * 1024, "largest client frame on the socket (close 4008 above)")
    frames_per_second: float = _opt(20.0, "sustained client frames per second per socket (error, then close 4008)")
    frame_burst: int = _opt(40, "client frames allowed in a burst above frames_per_second")
    max_subscriptions: int = _opt(100, "subscriptions per socket")
    snapshots_per_second: float = _opt(2.0, "subscribe and refresh frames per second per socket, sustained (error above)")
    snapshot_burst: int = _opt(20, "subscribe and refresh frames allowed in a burst above snapshots_per_second")
    live_filter_cost_per_user: int = _opt(5000, "cost of one user's distinct live-query filters, all sockets together")
    max_connections_per_user: int = _opt(20, "authenticated sockets per user (close 4008 above)")
    max_connections_per_address: int = _opt(500, "open SockJS sessions per client address, any transport (close 4008 above; 0: no cap)")
    outbox_max_frames: int = _opt(10_000, "frames queued for a slow socket before it is closed with 4009")
    outbox_max_bytes: int = _opt(16 * 1024 * 1024, "bytes queued for a slow socket before it is closed with 4009")
    replay_buffer_events: int = _opt(10_000, "recent changes kept for clients that resume with since (about 5 KB each)")
    snapshot_max_docs: int = _opt(10_000, "largest live-query result; narrower filters above")
    snapshot_max_bytes: int = _opt(8 * 1024 * 1024, "largest live-query result in bytes as stored; narrower filters above")
    sockjs_disconnect_delay_s: float = _opt(5.0, "how long a polling session waits for the next poll before it ends")
    sockjs_heartbeat_s: float = _opt(25.0, "SockJS heartbeat interval, keeping proxies from closing idle sockets")
    sockjs_disabled_transports: str = _opt("", "comma-separated SockJS transports not served; jsonp,htmlfile are only for old browsers")
    shutdown_reconnect_after_ms: int = _opt(2000, "in the goodbye frame on shutdown: when clients should reconnect")
    metrics_public: bool = _opt(False, "serve /metrics without an admin token (for a Prometheus on a trusted network)")
    process_name: str = _opt("", "this process's name in the welcome frame, stats and log lines (empty: a random one)")
    processes: int = _opt(1, "processes to start on this machine behind HAProxy (1: this process serves alone)")
    haproxy_path: str = _opt("", "HAProxy binary for processes above 1 (else PATH, then /usr/sbin)")
    demo: bool = _opt(False, "create demo users and documents in an empty database; generate a JWT key")
    log_format: str = _opt("text", "text or json (one JSON object per line)")
    log_level: str = _opt("INFO", "DEBUG, INFO, WARNING or ERROR")

    @property
    def algorithms(self) -> list[str]:
        return [a.strip() for a in self.jwt_algorithms.split(",") if a.strip()]

    @property
    def origins(self) -> list[str]:
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()]

    @property
    def disabled_transports(self) -> list[str]:
        return [t.strip() for t in self.sockjs_disabled_transports.split(",") if t.strip()]

    @property
    def proxies(self) -> list[IPNetwork]:
        return parse_networks(self.trusted_proxies)

    @property
    def uses_public_key(self) -> bool:
        return bool(self.jwt_public_key_file)

    def summary(self) -> str:
        """One line per setting; secrets shown only as set or unset."""
        lines = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret"):
                value = "<set>" if value else "<unset>"
            lines.append(f"  {f.name:<26} {value}")
        return "\n".join(lines)


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def _convert(name: str, kind: type, raw: str) -> Any:
    try:
        if kind is bool:
            return _parse_bool(raw)
        return kind(raw)
    except ValueError as exc:
        raise ConfigError(f"setting {name}: {exc}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; unset flags fall back to the environment, then defaults."""
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        env = ENV_PREFIX + f.name.upper()
        helptext = f"{f.metadata['help']} [env {env}, default {f.default!r}]"
        if f.type in ("bool", bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        else:
            parser.add_argument(flag, dest=f.name, default=None, help=helptext)


def settings_from(args: argparse.Namespace | None = None, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build validated Settings: defaults < environment < command line < keyword overrides."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    kinds = {"str": str, "int": int, "float": float, "bool": bool}
    for f in dataclasses.fields(Settings):
        kind = kinds[f.type] if isinstance(f.type, str) else f.type
        raw_env = environ.get(ENV_PREFIX + f.name.upper())
        if raw_env is not None:
            values[f.name] = _convert(f.name, kind, raw_env)
        cli_value = getattr(args, f.name, None) if args is not None else None
        if cli_value is not None:
            values[f.name] = cli_value if kind is bool else _convert(f.name, kind, cli_value)
    values.update(overrides)
    if not values.get("process_name"):
        values["process_name"] = secrets.token_hex(3)
    settings = Settings(**values)
    validate(settings)
    return settings


def as_environment(settings: Settings) -> dict[str, str]:
    """Every setting as its REALTIME_* variable, which `settings_from` reads back unchanged."""
    return {ENV_PREFIX + f.name.upper(): str(getattr(settings, f.name)).lower() if f.type in ("bool", bool) else str(getattr(settings, f.name))
            for f in dataclasses.fields(settings)}


def validate(settings: Settings) -> None:
    """Refuse inconsistent settings before anything starts; every message names the fix."""
    if not 0 <= settings.port <= 65535:
        raise ConfigError(f"port {settings.port} is out of range 0-65535")
    if settings.log_format not in {"text", "json"}:
        raise ConfigError("log_format must be 'text' or 'json'")
    algorithms = settings.algorithms
    if not algorithms:
        raise ConfigError("jwt_algorithms is empty: name at least one, e.g. HS256")
    unknown = [a for a in algorithms if a not in SYMMETRIC_ALGORITHMS | ASYMMETRIC_ALGORITHMS]
    if unknown:
        raise ConfigError(f"jwt_algorithms: unsupported {', '.join(unknown)} ('none' is never accepted)")
    symmetric = [a for a in algorithms if a in SYMMETRIC_ALGORITHMS]
    if symmetric and len(symmetric) != len(algorithms):
        raise ConfigError("jwt_algorithms mixes HMAC and public-key algorithms; choose one family")
    if symmetric:
        if settings.jwt_public_key_file:
            raise ConfigError("jwt_public_key_file is set but jwt_algorithms are HMAC; use RS256/ES256 with a public key")
        if not settings.jwt_secret and not settings.demo:
            raise ConfigError("no JWT key: set REALTIME_JWT_SECRET (or --jwt-secret), or a public key file, or run with --demo")
        if settings.jwt_secret and len(settings.jwt_secret) < 32:
            raise ConfigError("jwt_secret is shorter than 32 characters; use a long random secret")
    else:
        if not settings.jwt_public_key_file:
            raise ConfigError(f"jwt_algorithms {settings.jwt_algorithms} need jwt_public_key_file")
        if settings.jwt_secret:
            raise ConfigError("jwt_secret is set but jwt_algorithms are public-key; unset one of them")
        for path in filter(None, [settings.jwt_public_key_file, settings.jwt_private_key_file]):
            if not Path(path).is_file():
                raise ConfigError(f"key file not found: {path}")
    if settings.list_default_limit < 1 or settings.list_max_limit < settings.list_default_limit:
        raise ConfigError("list limits must satisfy 1 <= list_default_limit <= list_max_limit")
    if settings.max_body_bytes < 1024:
        raise ConfigError("max_body_bytes must be at least 1024")
    for name in ("access_token_ttl_s", "refresh_token_ttl_s", "login_attempts_per_minute", "login_attempts_per_address_per_minute",
                 "login_attempts_per_user_per_hour", "max_token_ttl_s", "max_filter_depth",
                 "max_filter_cost"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    if not 0 <= settings.jwt_leeway_s <= 300:
        raise ConfigError("jwt_leeway_s must be from 0 to 300 seconds")
    for name in ("auth_timeout_s", "frames_per_second", "snapshots_per_second", "sockjs_disconnect_delay_s", "sockjs_heartbeat_s"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{name} must be positive")
    for name in ("max_frame_bytes", "frame_burst", "max_subscriptions", "max_connections_per_user", "snapshot_burst",
                 "live_filter_cost_per_user", "outbox_max_frames", "replay_buffer_events", "snapshot_max_docs"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    if settings.outbox_max_bytes < 1024 * 1024 or settings.snapshot_max_bytes < 64 * 1024:
        raise ConfigError("outbox_max_bytes must be at least 1 MiB and snapshot_max_bytes at least 64 KiB")
    if settings.snapshot_max_bytes > settings.outbox_max_bytes:
        raise ConfigError("snapshot_max_bytes must not exceed outbox_max_bytes, or a full snapshot would close its own socket")
    if settings.max_connections_per_address < 0:
        raise ConfigError("max_connections_per_address must be 0 (no cap) or more")
    unknown = sorted(set(settings.disabled_transports) - set(SESSION_TRANSPORTS))
    if unknown:
        raise ConfigError(f"sockjs_disabled_transports: unknown {', '.join(unknown)}; the transports are {', '.join(SESSION_TRANSPORTS)}")
    if set(SESSION_TRANSPORTS) <= set(settings.disabled_transports):
        raise ConfigError("sockjs_disabled_transports names every transport; keep at least websocket or xhr")
    if settings.proxy_header.lower() not in PROXY_HEADERS:
        raise ConfigError(f"proxy_header must be X-Forwarded-For or Forwarded, not {settings.proxy_header!r}")
    try:
        parse_networks(settings.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(f"trusted_proxies: {exc}") from None
    if not PROCESS_NAME.fullmatch(settings.process_name):
        raise ConfigError("process_name may hold only letters, digits, '.', '_' and '-', at most 48 of them")
    if not 1 <= settings.processes <= MAX_PROCESSES:
        raise ConfigError(f"processes must be from 1 to {MAX_PROCESSES}")
    if settings.resources_file and not Path(settings.resources_file).is_file():
        raise ConfigError(f"resources file not found: {settings.resources_file}")


def demo_jwt_secret(data_dir: str) -> str:
    """The demo mode's HMAC secret, generated once and kept under data_dir."""
    path = Path(data_dir) / "demo-jwt-secret"
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret
