"""What starting a local development node needs, whatever its chain family: a free loopback
port, and a JSON-RPC call over HTTP with the standard library alone (to tell when the node is
up, before any client of ours is built)."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Sequence
from typing import Any

__all__ = ["free_port", "loopback_rpc"]


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
