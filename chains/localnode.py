"""What starting a local development node needs, whatever its chain family: a free loopback
port, a JSON-RPC call over HTTP with the standard library alone (to tell when the node is up,
before any client of ours is built), the tail of its log, and stopping it for good."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["free_port", "log_tail", "loopback_rpc", "stop_process"]


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (callers retry if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loopback_rpc(
    url: str,
    method: str,
    params: Sequence[Any],
    timeout: float,
    *,
    error: type[Exception] = RuntimeError,
) -> Any:
    """One JSON-RPC call; a JSON-RPC error answer raises ``error`` naming the method."""
    payload = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(  # noqa: S310  (http to loopback, built here)
        url, data=payload.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        body = json.load(response)
    if "error" in body:
        raise error(f"{method}: {body['error']}")
    return body["result"]


def log_tail(path: Path, limit: int = 4000) -> str:
    """The last ``limit`` characters of a node's log ("" when there is none)."""
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def stop_process(
    process: subprocess.Popen[bytes], log: IO[bytes], *, group: bool, timeout: float
) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; closes ``log``. Idempotent.

    ``group``: signal the whole process group (the process was started with
    ``start_new_session=True``), and SIGKILL it at the end as well: a worker that outlived its
    parent (node's, say) still holds the group id."""

    def send(sig: signal.Signals) -> None:
        if group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
        elif process.poll() is None:
            process.send_signal(sig)

    if process.poll() is None:
        send(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            process.wait(timeout=timeout)
    if group:
        send(signal.SIGKILL)
    if not log.closed:
        log.close()
