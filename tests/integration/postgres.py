"""A throwaway PostgreSQL cluster for tests.

``start_postgres(tmp_dir)`` runs Debian's ``initdb`` and ``pg_ctl`` (from
``/usr/lib/postgresql/<v>/bin``, which ``scripts/services.sh`` installs) to create a cluster in
``tmp_dir`` and start it on a free 127.0.0.1 port, TCP only (no Unix socket), trust
authentication, fsync off (nothing here has to survive a power cut). ``initdb`` and
``postgres`` refuse to run as root, so when the tests run as root the cluster runs as ``nobody``
(through ``runuser``) in a directory owned by it.

Fixtures, for a test module to load with ``pytest_plugins = ["tests.integration.postgres"]``
(a plugin, not an import: pytest then builds each fixture once for the whole session):

- ``postgres_cluster`` (session): the one cluster of the test session, started on first use and
  stopped and deleted when the session ends, however many modules use it;
- ``postgres_url`` (function): a database of the test's own, dropped after the test;
- ``ledger_target`` (function, parametrized): a fresh SQLite file, then a fresh database, for
  the ledger's tests to run on both engines.

Without the binaries the calling test is skipped, except in CI (``CI=true``), where missing
binaries or a cluster that does not start are a failure. The system's own Postgres (port 5432),
if any, is never touched.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from chains.localnode import free_port

__all__ = [
    "PostgresCluster",
    "PostgresError",
    "ledger_target",
    "postgres_bin_dir",
    "postgres_cluster",
    "postgres_url",
    "start_postgres",
]

_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_START_TIMEOUT_S = 30
_START_ATTEMPTS = 3
# The user a root test run starts the cluster as.
_UNPRIVILEGED = "nobody"


class PostgresError(RuntimeError):
    """The cluster could not be created, started or stopped."""


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``pg_ctl``."""
    candidates = []
    for path in _DEBIAN_ROOT.glob("*/bin"):
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            version = path.parent.name
            if version.isdigit():
                candidates.append((int(version), path))
    return max(candidates)[1] if candidates else None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class PostgresCluster:
    """A running throwaway cluster; ``stop()`` is idempotent and deletes its directory."""

    bin_dir: Path
    root: Path
    port: int
    user: str | None  # the unprivileged user it runs as, None for the current user
    host = "127.0.0.1"
    superuser = "postgres"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.superuser}@{self.host}:{self.port}/{database}"

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        # cwd: the user must be able to enter it (initdb and pg_ctl change back to it).
        return subprocess.run(
            command,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def _initdb(self) -> None:
        done = self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            self.superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            timeout=120,
        )
        if done.returncode != 0:
            raise PostgresError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        options = " ".join(
            (
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                "-c unix_socket_directories=''",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            )
        )
        done = self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            str(_START_TIMEOUT_S),
            timeout=_START_TIMEOUT_S + 10,
        )
        if done.returncode != 0:
            raise PostgresError(
                f"pg_ctl start failed ({done.returncode}) on port {self.port}:\n"
                f"{done.stdout}{done.stderr}\n{self.log_tail()}"
            )

    def stop(self) -> None:
        """Stop the server (fast shutdown, then immediate) and delete the cluster's files."""
        if self.data_dir.joinpath("postmaster.pid").exists():
            for mode in ("fast", "immediate"):
                try:
                    done = self._run(
                        "pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", timeout=60
                    )
                except subprocess.TimeoutExpired:
                    continue
                if done.returncode == 0:
                    break
            else:
                self._kill_postmaster()
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 9)

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _unprivileged_user() -> str | None:
    if os.getuid() != 0:
        return None
    try:
        pwd.getpwnam(_UNPRIVILEGED)
    except KeyError as exc:
        raise PostgresError(
            f"running as root and there is no `{_UNPRIVILEGED}` user to run postgres as"
        ) from exc
    if shutil.which("runuser") is None:
        raise PostgresError("running as root and `runuser` (util-linux) is not installed")
    return _UNPRIVILEGED


def start_postgres(tmp_dir: Path | None = None) -> PostgresCluster:
    """A cluster on a free 127.0.0.1 port with its files in a new directory (under ``tmp_dir``
    if given); skips (fails in CI) without the binaries. Raises ``PostgresError``."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        _skip_or_fail(
            "postgresql not found under /usr/lib/postgresql/*/bin "
            "(run scripts/services.sh: apt-get install postgresql)"
        )
    assert bin_dir is not None
    user = _unprivileged_user()
    root = Path(tempfile.mkdtemp(prefix="xrelayer-pg-", dir=tmp_dir))
    # mkdtemp makes it 0700: the server's user must reach its files, and nothing else needs to.
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    cluster = PostgresCluster(bin_dir=bin_dir, root=root, port=0, user=user)
    try:
        cluster._initdb()
        last_error = ""
        for _ in range(_START_ATTEMPTS):
            # Another process may take the port between free_port() and the server's bind.
            cluster.port = free_port()
            try:
                cluster.start()
            except PostgresError as exc:
                last_error = str(exc)
                continue
            return cluster
        raise PostgresError(f"postgres did not start: {last_error}")
    except BaseException:
        cluster.stop()
        raise


class _Shared:
    """The session's one cluster: pytest builds a session fixture once per module that imports
    it, so the modules share the cluster here and the last one to finish stops it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cluster: PostgresCluster | None = None
        self._users = 0
        self._failure: str | None = None

    def acquire(self) -> PostgresCluster:
        with self._lock:
            if self._failure is not None:
                _skip_or_fail(self._failure)
            if self._cluster is None:
                try:
                    self._cluster = start_postgres()
                except PostgresError as exc:
                    self._failure = f"cannot start a throwaway postgres: {exc}"
                    _skip_or_fail(self._failure)
                atexit.register(self._stop)
            self._users += 1
            assert self._cluster is not None
            return self._cluster

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self._stop_locked()

    def _stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None


_SHARED = _Shared()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = _SHARED.acquire()
    try:
        yield cluster
    finally:
        _SHARED.release()


_NOT_AN_IDENTIFIER = re.compile(r"[^a-z0-9_]+")


@pytest.fixture
def postgres_url(
    postgres_cluster: PostgresCluster, request: pytest.FixtureRequest
) -> Iterator[str]:
    """The URL of a fresh database of this test's own, dropped afterwards."""
    stem = _NOT_AN_IDENTIFIER.sub("_", request.node.name.lower())[:40]
    name = f"t_{stem}_{uuid.uuid4().hex[:8]}"
    url = postgres_cluster.create_database(name)
    try:
        yield url
    finally:
        deadline = time.monotonic() + 10
        while True:
            try:
                postgres_cluster.drop_database(name)
                break
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What ``Ledger.open`` takes, once for each engine: a fresh SQLite file, then a fresh
    Postgres database (this test's own) on the session's cluster."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.db")
    url: str = request.getfixturevalue("postgres_url")
    return url
