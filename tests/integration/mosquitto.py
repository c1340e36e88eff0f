"""Throwaway Mosquitto brokers for integration tests.

``start_mosquitto(tmp_dir)`` starts Debian's ``mosquitto`` on a free 127.0.0.1 port with a config
file of its own in ``tmp_dir`` (anonymous access, or with ``users={name: password}`` a password
file made by ``mosquitto_passwd`` and anonymous access refused; with ``tls=True`` a TLS listener
with a certificate of a throwaway CA, requiring a client certificate of the same CA, all made by
``openssl``), waits until it accepts
connections, and returns a ``MosquittoBroker``; ``stop()`` ends its process group, ``start()``
brings it back on the same port (a broker restart), ``wait_for_log`` waits for a line of its log
(the broker's own word that it dropped a client, instead of a sleep).

Without the binary the calling test is skipped, except in CI (``CI=true``), where a missing
binary or a broker that does not start is a failure (``scripts/services.sh`` installs it).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from chains.localnode import free_port

__all__ = [
    "BrokerTls",
    "MosquittoBroker",
    "MosquittoError",
    "mosquitto_binary",
    "mosquitto_passwd_binary",
    "require_mosquitto",
    "start_mosquitto",
]

# Debian puts the broker in /usr/sbin, which is not on a non-root user's PATH.
_DEBIAN_BROKER = Path("/usr/sbin/mosquitto")
_DEBIAN_PASSWD = Path("/usr/bin/mosquitto_passwd")
_START_TIMEOUT_S = 10.0
_START_ATTEMPTS = 3


class MosquittoError(RuntimeError):
    """The broker could not be started or stopped."""


def _binary(name: str, debian: Path) -> Path | None:
    found = shutil.which(name)
    if found is not None:
        return Path(found)
    if debian.is_file() and os.access(debian, os.X_OK):
        return debian
    return None


def mosquitto_binary() -> Path | None:
    return _binary("mosquitto", _DEBIAN_BROKER)


def mosquitto_passwd_binary() -> Path | None:
    return _binary("mosquitto_passwd", _DEBIAN_PASSWD)


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def require_mosquitto(*, passwords: bool = False) -> Path:
    """The broker binary; skip the calling test without it (fail in CI, where it must be there).
    ``passwords``: ``mosquitto_passwd`` is needed too."""
    binary = mosquitto_binary()
    if binary is None:
        _skip_or_fail("mosquitto not found (run scripts/services.sh: apt-get install mosquitto)")
    assert binary is not None
    if passwords and mosquitto_passwd_binary() is None:
        _skip_or_fail("mosquitto_passwd not found (it comes with Debian's mosquitto package)")
    return binary


@dataclass(frozen=True)
class BrokerTls:
    """The files of a TLS broker's throwaway CA: what a client trusts and presents."""

    ca_file: Path
    client_cert: Path
    client_key: Path
    server_cert: Path
    server_key: Path


@dataclass
class MosquittoBroker:
    """A throwaway broker; ``stop()`` is idempotent, ``start()`` restarts it on the same port."""

    binary: Path
    port: int
    config_path: Path
    #: the broker's log (``log_dest file``), and what it writes to stdout/stderr (start-up errors)
    log_path: Path
    output_path: Path
    tls: BrokerTls | None = None
    process: subprocess.Popen[bytes] | None = None
    _output: IO[bytes] | None = field(default=None, repr=False)

    host = "127.0.0.1"

    def start(self, timeout: float = _START_TIMEOUT_S) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self._output = self.output_path.open("ab")
        # Its own session (process group), so that stop() ends it and nothing else.
        self.process = subprocess.Popen(
            [str(self.binary), "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready(timeout)
        except MosquittoError:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise MosquittoError(
                    f"mosquitto exited with code {code} (port {self.port}):\n{self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise MosquittoError(f"mosquitto on port {self.port} not accepting within {timeout:g} s")

    def stop(self, timeout: float = 10.0) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout)
        if self._output is not None and not self._output.closed:
            self._output.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return _read(self.log_path)

    def log_tail(self, limit: int = 4000) -> str:
        return (_read(self.output_path) + self.log_text())[-limit:]

    def wait_for_log(self, pattern: str, timeout: float = 10.0, *, after: int = 0) -> str:
        """The first line matching ``pattern`` (a regex) at or past character ``after`` of the
        log; raises ``MosquittoError`` if none is written within ``timeout`` seconds."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.log_text(), after)
            if found is not None:
                return found.group(0)
            if time.monotonic() >= deadline:
                raise MosquittoError(
                    f"mosquitto wrote no line matching {pattern!r} in {timeout:g} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.02)

    def __enter__(self) -> MosquittoBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _config(port: int, password_file: Path | None, log_path: Path, tls: BrokerTls | None) -> str:
    lines = [
        f"listener {port} 127.0.0.1",
        f"allow_anonymous {'false' if password_file is not None else 'true'}",
        "persistence false",
        # As docker/mosquitto.conf: past the default 1,000 queued messages per client,
        # mosquitto silently drops notices for a connected subscriber that falls behind.
        "max_queued_messages 100000",
        # A file, not stdout: mosquitto flushes its log file at each line, but its stdout (a
        # pipe or file here) only when the buffer fills, and wait_for_log reads it live.
        f"log_dest file {log_path}",
        "log_type all",
        "log_timestamp true",
        "connection_messages true",
        # As root, mosquitto switches to the `mosquitto` user, which cannot read the password
        # file in a private tmp dir; naming the current user keeps it as it is.
        f"user {pwd.getpwuid(os.getuid()).pw_name}",
    ]
    if password_file is not None:
        lines.append(f"password_file {password_file}")
    if tls is not None:
        lines += [
            f"cafile {tls.ca_file}",
            f"certfile {tls.server_cert}",
            f"keyfile {tls.server_key}",
            "require_certificate true",
        ]
    return "\n".join(lines) + "\n"


def _password_file(tmp_dir: Path, users: Mapping[str, str]) -> Path:
    tool = mosquitto_passwd_binary()
    if tool is None:
        raise MosquittoError("mosquitto_passwd not found")
    path = tmp_dir / "passwords"
    for index, (user, password) in enumerate(users.items()):
        create = ["-c"] if index == 0 else []
        subprocess.run(
            [str(tool), "-b", *create, str(path), user, password],
            check=True,
            capture_output=True,
            timeout=10,
        )
    path.chmod(0o600)
    return path


def _openssl(*args: str) -> None:
    tool = shutil.which("openssl")
    if tool is None:
        _skip_or_fail("openssl not found (Debian: apt-get install openssl)")
    assert tool is not None
    subprocess.run([tool, *args], check=True, capture_output=True, timeout=30)


# A fresh P-256 key, no passphrase (tests only).
_NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _certificate(tmp_dir: Path, name: str, subject_alt_name: str | None, ca: Path) -> None:
    """``<name>.key`` and ``<name>.pem`` in ``tmp_dir``, signed by ``ca`` (+ ``ca.key``)."""
    extensions = tmp_dir / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE"]
    if subject_alt_name is not None:
        lines.append(f"subjectAltName={subject_alt_name}")
    extensions.write_text("\n".join(lines) + "\n")
    key, request, cert = (tmp_dir / f"{name}.{suffix}" for suffix in ("key", "csr", "pem"))
    # Each certificate its own subject: one named like its issuer would pass for self-signed.
    _openssl(
        "req",
        "-new",
        *_NEW_KEY,
        "-subj",
        f"/CN=xrelayer-test-{name}",
        "-keyout",
        str(key),
        "-out",
        str(request),
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(request),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca.with_suffix(".key")),
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        str(cert),
        "-extfile",
        str(extensions),
    )


def _tls_files(tmp_dir: Path) -> BrokerTls:
    ca = tmp_dir / "ca.pem"
    _openssl(
        "req",
        "-x509",
        *_NEW_KEY,
        "-subj",
        "/CN=xrelayer-test-ca",
        "-keyout",
        str(ca.with_suffix(".key")),
        "-out",
        str(ca),
        "-days",
        "1",
    )
    _certificate(tmp_dir, "server", "IP:127.0.0.1", ca)
    _certificate(tmp_dir, "client", None, ca)
    return BrokerTls(
        ca_file=ca,
        client_cert=tmp_dir / "client.pem",
        client_key=tmp_dir / "client.key",
        server_cert=tmp_dir / "server.pem",
        server_key=tmp_dir / "server.key",
    )


def start_mosquitto(
    tmp_dir: Path, *, users: Mapping[str, str] | None = None, tls: bool = False
) -> MosquittoBroker:
    """A broker on a free 127.0.0.1 port, its files in ``tmp_dir``; skips (fails in CI) without
    the binary. ``users``: refuse anonymous clients and accept these names and passwords.
    ``tls``: a TLS listener requiring a client certificate (``broker.tls`` holds the files)."""
    binary = require_mosquitto(passwords=users is not None)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    password_file = _password_file(tmp_dir, users) if users is not None else None
    tls_files = _tls_files(tmp_dir) if tls else None
    last_error = ""
    for attempt in range(_START_ATTEMPTS):
        # Another process may take the port between free_port() and the broker's bind.
        port = free_port()
        config_path = tmp_dir / f"mosquitto-{attempt}.conf"
        log_path = tmp_dir / f"mosquitto-{attempt}.log"
        config_path.write_text(_config(port, password_file, log_path, tls_files))
        broker = MosquittoBroker(
            binary=binary,
            port=port,
            config_path=config_path,
            log_path=log_path,
            output_path=tmp_dir / f"mosquitto-{attempt}.out",
            tls=tls_files,
        )
        try:
            broker.start()
        except MosquittoError as exc:
            last_error = str(exc)
            continue
        return broker
    message = f"mosquitto did not start: {last_error}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    raise MosquittoError(message)
