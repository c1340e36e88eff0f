"""Local anvil chains: the devnet's and the tests' (anvil 1.7.1 from the repo's node_modules).

``start_anvil(chain_id)`` runs the binary on a free 127.0.0.1 port (or on the ``host`` and
``port`` given: ``relayer-dev anvil``) and returns once it answers ``eth_chainId``;
``AnvilNode.stop()`` ends exactly the process it started.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from chains.localnode import free_port, log_tail, loopback_rpc, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
_NODE_MODULES = REPO_ROOT / "node_modules"
# The platform package holds the real binary; .bin/anvil is a node wrapper that spawns it.
_CANDIDATES = (
    _NODE_MODULES / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil",
    _NODE_MODULES / "@foundry-rs" / "anvil-linux-arm64" / "bin" / "anvil",
    _NODE_MODULES / "@foundry-rs" / "anvil-darwin-arm64" / "bin" / "anvil",
    _NODE_MODULES / "@foundry-rs" / "anvil-darwin-amd64" / "bin" / "anvil",
)

# anvil's default dev accounts #0-#9 (mnemonic "test test test test test test test test test
# test test junk", m/44'/60'/0'/0/i): public keys known to everyone, funded with 10,000 ETH each
# and unlocked, so eth_sendTransaction works from them. For local chains only.
DEV_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)

_START_TIMEOUT_S = 15.0
_START_ATTEMPTS = 3


class AnvilError(RuntimeError):
    """anvil did not start or did not answer."""


def anvil_binary() -> Path | None:
    """The anvil binary in this repo's node_modules, or None if ``npm ci`` has not put it there."""
    for candidate in _CANDIDATES:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class AnvilNode:
    """A running anvil process; ``stop()`` ends it (idempotent)."""

    url: str
    ws_url: str
    chain_id: int
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    def rpc(self, method: str, params: Sequence[Any] = (), timeout: float = 5.0) -> Any:
        """One JSON-RPC call with the standard library (no web3 needed)."""
        return loopback_rpc(self.url, method, params, timeout, error=AnvilError)

    def log_tail(self, limit: int = 4000) -> str:
        return log_tail(self.log_path, limit)

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, self._log, group=False, timeout=timeout)
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> AnvilNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_anvil(
    chain_id: int = 31337,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    block_time: float | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = _START_TIMEOUT_S,
) -> AnvilNode:
    """Start anvil bound to ``host`` and wait until it answers ``eth_chainId``.

    ``port`` None: a free port, and another if that one was taken between choosing and
    binding. A given port is tried once: the caller chose it and told others about it.
    ``block_time`` (seconds) switches from mining each transaction at once to interval mining.
    Raises ``AnvilError`` if anvil is missing or does not start.
    """
    binary = anvil_binary()
    if binary is None:
        raise AnvilError(f"anvil not found under {_NODE_MODULES}: run `make setup` (npm ci)")
    last_error = ""
    for _ in range(_START_ATTEMPTS if port is None else 1):
        chosen = port if port is not None else free_port()
        node = _spawn(binary, chain_id, host, chosen, block_time, extra_args)
        try:
            _wait_ready(node, timeout)
        except AnvilError as exc:
            last_error = f"{exc}\n--- anvil output ---\n{node.log_tail()}"
            node.stop()
            continue
        except BaseException:
            # Ctrl-C or a test timeout while waiting: the chain must not outlive us.
            node.stop()
            raise
        return node
    raise AnvilError(f"anvil (chain id {chain_id}) did not start: {last_error}")


def _spawn(
    binary: Path,
    chain_id: int,
    host: str,
    port: int,
    block_time: float | None,
    extra_args: Sequence[str],
) -> AnvilNode:
    args = [
        str(binary),
        "--host",
        host,
        "--port",
        str(port),
        "--chain-id",
        str(chain_id),
        "--silent",
    ]
    if block_time is not None:
        args += ["--block-time", f"{block_time:g}"]
    args += list(extra_args)
    fd, log_name = tempfile.mkstemp(prefix=f"anvil-{chain_id}-", suffix=".log")
    log = os.fdopen(fd, "wb")
    process = subprocess.Popen(  # noqa: S603  (our own binary, fixed args)
        args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT
    )
    reach = _client_host(host)
    return AnvilNode(
        url=f"http://{reach}:{port}",
        ws_url=f"ws://{reach}:{port}",
        chain_id=chain_id,
        port=port,
        process=process,
        log_path=Path(log_name),
        _log=log,
    )


def _client_host(host: str) -> str:
    """Where a local client reaches a server bound to ``host``: a wildcard bind through
    loopback. (``chains.substrate.chopsticks`` has the same rule; one family does not import
    the other.)"""
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104  (compared, not bound)


def _wait_ready(node: AnvilNode, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = node.process.poll()
        if code is not None:
            raise AnvilError(f"anvil exited with code {code}")
        try:
            answered = int(node.rpc("eth_chainId", timeout=1.0), 16)
        except (OSError, urllib.error.URLError, AnvilError, ValueError):
            time.sleep(0.05)
            continue
        if answered != node.chain_id:
            raise AnvilError(f"port {node.port} answers chain id {answered}, not {node.chain_id}")
        return
    raise AnvilError(f"no answer to eth_chainId on {node.url} within {timeout:g} s")
