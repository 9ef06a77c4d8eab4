"""The `realtime-app` command: serve (default), users add|list|remove|disable|enable|set-roles|set-password, token,
balancer-config."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import signal
import sys
from typing import Any

from realtime_app import demo
from realtime_app.app import Server, StartupError, tune_garbage_collector
from realtime_app.auth.tokens import TokenService
from realtime_app.auth.users import UserStore
from realtime_app.config import PROCESS_NAME, ConfigError, Settings, add_arguments, settings_from
from realtime_app.data.embedded_mongo import MongodNotFound
from realtime_app.data.resources import ROLES, ResourceFileError
from realtime_app.errors import AppError
from realtime_app.logs import setup_logging
from realtime_app.supervisor import Backend, BalancerNotFound, Supervisor, balancer_config

log = logging.getLogger("realtime_app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realtime-app", description="Live MongoDB data over REST and SockJS.")
    add_arguments(parser)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the server (the default)")
    users = commands.add_parser("users", help="manage users").add_subparsers(dest="users_command", required=True)
    add = users.add_parser("add", help="add a user (asks for the password unless --password is given)")
    add.add_argument("username")
    add.add_argument("--tenant", required=True)
    add.add_argument("--role", dest="roles", action="append", choices=ROLES, required=True, help="repeat for several")
    add.add_argument("--password", help="the password (prefer the prompt: arguments show in process lists)")
    users.add_parser("list", help="list users")
    for name, what in [("remove", "remove a user"), ("disable", "stop a user from signing in"), ("enable", "let a disabled user sign in again")]:
        users.add_parser(name, help=f"{what}; its tokens stop working at once").add_argument("username")
    set_roles = users.add_parser("set-roles", help="give a user other roles; its tokens stop working at once")
    set_roles.add_argument("username")
    set_roles.add_argument("--role", dest="roles", action="append", choices=ROLES, required=True, help="repeat for several")
    set_password = users.add_parser("set-password", help="give a user another password; its tokens stop working at once")
    set_password.add_argument("username")
    set_password.add_argument("--password", help="the password (prefer the prompt: arguments show in process lists)")
    token = commands.add_parser("token", help="print a signed access token, for ops and scripts")
    token.add_argument("--sub", required=True, help="subject (user name)")
    token.add_argument("--tenant", required=True)
    token.add_argument("--role", dest="roles", action="append", choices=ROLES, required=True)
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds, at most max_token_ttl_s")
    balancer = commands.add_parser("balancer-config", help="print an HAProxy configuration for processes of your own")
    balancer.add_argument("--server", dest="servers", action="append", type=_backend, required=True, metavar="[NAME=]HOST:PORT",
                          help="a realtime-app process; repeat for each")
    balancer.add_argument("--bind", default=":8080", help="where HAProxy listens, in its syntax (default :8080)")
    balancer.add_argument("--maxconn", type=int, default=50_000, help="connections HAProxy holds at most")
    return parser


def _backend(text: str) -> Backend:
    """`[NAME=]HOST:PORT` as a Backend; argparse reports the error with the flag's name."""
    name, _, address = text.rpartition("=")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not [NAME=]HOST:PORT")
    if name and not PROCESS_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(f"{name!r}: a name may hold only letters, digits, '.', '_' and '-'")
    return Backend(name, address)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "balancer-config":
        backends = [Backend(b.name or f"p{n}", b.address) for n, b in enumerate(args.servers, 1)]
        print(balancer_config(backends, args.bind, args.maxconn), end="")
        return 0
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"realtime-app: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_format, settings.log_level, settings.process_name)
    try:
        if args.command == "token":
            if not 1 <= args.ttl <= settings.max_token_ttl_s:
                print(f"realtime-app: --ttl must be from 1 to {settings.max_token_ttl_s} seconds (max_token_ttl_s)", file=sys.stderr)
                return 2
            print(TokenService(settings).issue(args.sub, args.tenant, args.roles, ttl_s=args.ttl))
            return 0
        if args.command == "users":
            return asyncio.run(_users(settings, args))
        if settings.processes > 1:
            return asyncio.run(_supervise(Supervisor(settings)))
        return asyncio.run(_serve(settings))
    except (MongodNotFound, BalancerNotFound, StartupError, ResourceFileError, AppError) as exc:
        print(f"realtime-app: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT (Ctrl-C) or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _serve(settings: Settings) -> int:
    server = Server(settings)
    stop = _stop_on_signals()
    log.info("settings:\n%s", settings.summary())
    await server.start()
    tune_garbage_collector()
    try:
        print(f"\nrealtime-app is serving {server.url}", flush=True)
        if settings.demo:
            print(demo.logins_banner(), flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        await server.stop()
    return 0


async def _supervise(supervisor: Supervisor) -> int:
    settings = supervisor.settings
    stop = _stop_on_signals()
    log.info("settings:\n%s", settings.summary())
    await supervisor.start()
    try:
        print(f"\n{supervisor.banner()}", flush=True)
        if settings.demo:
            print(demo.logins_banner(), flush=True)
        code = await supervisor.run(stop)
        log.info("shutting down")
    finally:
        await supervisor.stop()
    return code


async def _users(settings: Settings, args: Any) -> int:
    server = Server(settings)
    await server.start_database_only()
    try:
        assert server.db is not None
        users = UserStore(server.db)
        command = args.users_command
        if command == "list":
            for user in await users.all():
                print(f"{user.username:<24} {user.tenant:<16} {','.join(user.roles)}{'  (disabled)' if user.disabled else ''}")
            return 0
        try:
            print(await _change_user(users, command, args))
        except (ValueError, AppError) as exc:
            print(f"realtime-app: {exc}", file=sys.stderr)
            return 1
        return 0
    finally:
        await server.stop()


async def _change_user(users: UserStore, command: str, args: Any) -> str:
    """Carry out one `users` command that changes a user; what to print when it is done."""
    username = args.username
    if command == "add":
        user = await users.add(username, args.password or getpass.getpass(f"password for {username}: "), args.tenant, args.roles)
        return f"added {user.username} ({', '.join(user.roles)} in {user.tenant})"
    if command == "remove":
        await users.remove(username)
        return f"removed {username}"
    if command in ("disable", "enable"):
        await users.set_disabled(username, command == "disable")
        return f"{command}d {username}"
    if command == "set-roles":
        await users.set_roles(username, args.roles)
        return f"{username} now has the roles {', '.join(args.roles)}; its earlier tokens no longer work"
    await users.set_password(username, args.password or getpass.getpass(f"new password for {username}: "))
    return f"changed the password of {username}; its earlier tokens no longer work"


if __name__ == "__main__":
    sys.exit(main())
