"""Several processes on one machine behind HAProxy: what `realtime-app --processes N` runs.

The supervisor serves nothing itself. It starts the embedded mongod when no URI is configured,
then N plain `realtime-app serve` processes on free loopback ports (the first alone, so it
prepares the database and, in demo mode, seeds it before the others start), then HAProxy on
the configured address with `deploy/haproxy.cfg.template`. MongoDB's change streams are the
only link between the processes: each opens its own.

On SIGINT or SIGTERM it stops the processes first, each saying `goodbye` to its clients through
HAProxy, then HAProxy, then mongod. A process that dies is reported and not restarted: HAProxy
sends its clients to the others, where they resume with `since`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import resource
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from tornado.httpclient import AsyncHTTPClient

from realtime_app.app import REPO_ROOT, Server, StartupError, start_or_undo
from realtime_app.config import ENV_PREFIX, Settings, as_environment
from realtime_app.data.embedded_mongo import die_with_parent

log = logging.getLogger(__name__)

BALANCER_TEMPLATE = REPO_ROOT / "deploy" / "haproxy.cfg.template"
HAPROXY_HINT = "install HAProxy 2.6 or later (Debian and Ubuntu: apt-get install haproxy)"
# Where Debian puts HAProxy, off the PATH of users other than root.
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
# A process imports, connects to MongoDB and opens its change stream; slow on a busy machine.
START_TIMEOUT_S = 120.0
# How long a process may take to say goodbye and close its connections before it is killed.
STOP_TIMEOUT_S = 30.0
# HAProxy holds two descriptors per connection; these are kept for everything else.
FD_HEADROOM = 1000
SERVING = re.compile(r"serving (http://\S+)")


class BalancerNotFound(RuntimeError):
    """HAProxy is not installed (or not where the settings say); the message says what to install."""


def find_haproxy(configured_path: str = "") -> str:
    if configured_path:
        if os.access(configured_path, os.X_OK) and Path(configured_path).is_file():
            return configured_path
        raise BalancerNotFound(f"haproxy_path {configured_path} is not an executable file; {HAPROXY_HINT}")
    found = shutil.which("haproxy") or shutil.which("haproxy", path=SBIN_PATH)
    if found is None:
        raise BalancerNotFound(f"more than one process needs HAProxy, which is not installed: {HAPROXY_HINT}")
    return found


@dataclass(frozen=True)
class Backend:
    """One process as HAProxy knows it."""

    name: str
    address: str  # host:port


def balancer_config(backends: list[Backend], bind: str, maxconn: int) -> str:
    """HAProxy's configuration for `backends`, listening on `bind` (HAProxy's syntax: `:8080`,
    `10.0.0.5:80`, `fd@3`)."""
    servers = "\n".join(f"    server {backend.name} {backend.address}" for backend in backends)
    return Template(BALANCER_TEMPLATE.read_text()).substitute(bind=bind, maxconn=maxconn, servers=servers)


def local_maxconn() -> int:
    """The most connections HAProxy can hold under this machine's open-file limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    return max(100, (limit - FD_HEADROOM) // 2)


@dataclass
class Member:
    """One process of the group."""

    name: str
    process: asyncio.subprocess.Process
    url: str = ""
    drain: asyncio.Task[None] | None = field(default=None, repr=False)


async def _stop_process(process: asyncio.subprocess.Process, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _discard(stream: asyncio.StreamReader) -> None:
    while await stream.read(1 << 16):
        pass


class Supervisor:
    """Owns the processes and HAProxy, and through a database-only `Server`, the embedded mongod if any."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.haproxy = find_haproxy(settings.haproxy_path)
        self.config_path = Path(settings.data_dir) / "haproxy.cfg"
        self.database = Server(settings)
        self.members: list[Member] = []
        self.balancer: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> None:
        """Bring everything up; on any failure, stop what already started and raise."""
        await start_or_undo(self._start, self.stop)

    async def _start(self) -> None:
        settings = self.settings
        try:
            family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
            listener = socket.create_server((settings.host, settings.port), family=family, backlog=1024)
        except OSError as exc:
            raise StartupError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None
        with listener:
            await self.database.start_database_only()  # the embedded mongod if no URI, and a check that MongoDB answers
            uri = self.database.embedded.uri if self.database.embedded is not None else settings.mongo_uri
            environment = {**os.environ, **as_environment(settings)}
            environment.update({f"{ENV_PREFIX}{name.upper()}": value for name, value in (
                ("mongo_uri", uri), ("host", "127.0.0.1"), ("port", "0"), ("processes", "1"), ("trusted_proxies", "127.0.0.1"),
            )})
            names = [f"{settings.process_name}-{n}" for n in range(1, settings.processes + 1)]
            self.members.append(await self._spawn(names[0], environment))
            await self._spawn_together(names[1:], environment)
            backends = [Backend(m.name, m.url.split("//", 1)[1].rstrip("/")) for m in self.members]
            self.config_path.parent.mkdir(parents=True, exist_ok=True)
            self.config_path.write_text(balancer_config(backends, f"fd@{listener.fileno()}", local_maxconn()))
            self.balancer = await asyncio.create_subprocess_exec(
                self.haproxy, "-db", "-f", str(self.config_path), stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(listener.fileno(),), start_new_session=True, preexec_fn=die_with_parent,
            )
            host, port = listener.getsockname()[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.url = f"http://{shown}:{port}/"
        await self._wait_until_ready()

    async def _spawn_together(self, names: list[str], environment: dict[str, str]) -> None:
        """Start processes at once; when one fails, stop the others' start too, keep those that
        started (for `stop`) and raise the failure."""
        starts = [asyncio.ensure_future(self._spawn(name, environment)) for name in names]
        try:
            await asyncio.gather(*starts)
        finally:
            for start in starts:
                start.cancel()
            outcomes = await asyncio.gather(*starts, return_exceptions=True)
            self.members += [outcome for outcome in outcomes if isinstance(outcome, Member)]

    async def _spawn(self, name: str, environment: dict[str, str]) -> Member:
        """Start one process and return once it serves; its log lines go to our standard error."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "realtime_app", "serve", env={**environment, f"{ENV_PREFIX}PROCESS_NAME": name},
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            start_new_session=True, preexec_fn=die_with_parent,
        )
        member = Member(name, process)
        assert process.stdout is not None
        try:
            member.url = await asyncio.wait_for(self._serving_url(process.stdout), START_TIMEOUT_S)
        except BaseException as exc:
            await _stop_process(process, STOP_TIMEOUT_S)
            if isinstance(exc, TimeoutError):
                raise StartupError(f"process {name} did not start within {START_TIMEOUT_S:.0f} s; its log is above") from None
            if isinstance(exc, EOFError):
                raise StartupError(f"process {name} exited with code {process.returncode} while starting; its log is above") from None
            raise
        member.drain = asyncio.get_running_loop().create_task(_discard(process.stdout))
        return member

    @staticmethod
    async def _serving_url(stdout: asyncio.StreamReader) -> str:
        while line := await stdout.readline():
            found = SERVING.search(line.decode(errors="replace"))
            if found:
                return found.group(1)
        raise EOFError

    async def _wait_until_ready(self) -> None:
        """Until HAProxy answers /api/v1/ready with 200, so some process is behind it."""
        assert self.balancer is not None
        http = AsyncHTTPClient(force_instance=True)
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        try:
            while True:
                if self.balancer.returncode is not None:
                    raise StartupError(f"HAProxy exited with code {self.balancer.returncode}; its messages are above "
                                       f"(configuration: {self.config_path})")
                response = await http.fetch(f"{self.url}api/v1/ready", raise_error=False, request_timeout=5)
                if response.code == 200:
                    return
                if asyncio.get_running_loop().time() > deadline:
                    raise StartupError(f"HAProxy did not reach a ready process within {START_TIMEOUT_S:.0f} s")
                await asyncio.sleep(0.1)
        finally:
            http.close()

    def banner(self) -> str:
        """The URL, then one line per process: name, pid and its own URL."""
        rows = [f"    {m.name:<16} pid {m.process.pid:<8} {m.url}" for m in self.members]
        return (f"realtime-app is serving {self.url} through HAProxy ({self.config_path}), "
                f"{len(self.members)} processes:\n" + "\n".join(rows))

    async def run(self, stop: asyncio.Event) -> int:
        """Serve until `stop` is set (0); 1 when HAProxy or every process has exited."""
        assert self.balancer is not None
        loop = asyncio.get_running_loop()
        exits = {loop.create_task(m.process.wait()): m for m in self.members}
        balancer_exit = loop.create_task(self.balancer.wait())
        stopping = loop.create_task(stop.wait())
        try:
            while True:
                done, _ = await asyncio.wait({*exits, balancer_exit, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stopping in done:
                    return 0
                if balancer_exit in done:
                    log.error("HAProxy exited with code %s", self.balancer.returncode)
                    return 1
                for task in done:
                    member = exits.pop(task)
                    log.warning("process %s (pid %d) exited with code %s; HAProxy sends its clients to the others",
                                member.name, member.process.pid, member.process.returncode)
                if not exits:
                    log.error("every process has exited")
                    return 1
        finally:
            for task in (*exits, balancer_exit, stopping):
                task.cancel()

    async def stop(self) -> None:
        """Idempotent: the processes (each says goodbye to its clients), then HAProxy, then mongod."""
        members, self.members = self.members, []
        await asyncio.gather(*(_stop_process(m.process, STOP_TIMEOUT_S) for m in members))
        for member in members:
            if member.drain is not None:
                member.drain.cancel()
        if self.balancer is not None:
            await _stop_process(self.balancer, STOP_TIMEOUT_S)
            self.balancer = None
        await self.database.stop()
