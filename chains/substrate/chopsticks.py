"""Local Substrate chains for the devnet and the tests (chopsticks 1.5.1, repo node_modules).

``start_chopsticks()`` starts a chain from the "Kusama Local Testnet" raw chain spec on a free
127.0.0.1 port (or on the ``host`` and ``port`` given: ``relayer-dev chopsticks``) and returns
once it answers ``system_chain``; ``ChopsticksNode.stop()`` ends the whole process group it
started. Such a chain has zero state roots, a stand-in extrinsics root and no GRANDPA
justifications (``../shared/fixtures/substrate/README.md``): it is for wiring and throughput,
not for proving finality.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from chains.localnode import free_port, log_tail, loopback_rpc, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
_BINARY = REPO_ROOT / "node_modules" / ".bin" / "chopsticks"

SPEC_ENV = "XRELAYER_SUBSTRATE_SPEC"
# The shared test fixtures first (tests read test data in place), then the copy the project
# ships so that `make demo` runs from a clone alone (chains/substrate/spec/README.md).
SHARED_SPEC = REPO_ROOT.parent / "shared" / "fixtures" / "substrate" / "kusama.json.gz"
SHIPPED_SPEC = REPO_ROOT / "chains" / "substrate" / "spec" / "kusama.json.gz"

BlockMode = Literal["Instant", "Batch", "Manual"]

# Cold start is about 3-5 s on two cores (wasm compile of the runtime); leave room for a
# machine busy with other tests.
_START_TIMEOUT_S = 60.0
_START_ATTEMPTS = 3
_STOP_TIMEOUT_S = 10.0


class ChopsticksError(RuntimeError):
    """chopsticks is missing, did not start, or did not answer."""


def chopsticks_binary() -> Path | None:
    """The chopsticks launcher in this repo's node_modules, or None before ``npm ci``.

    The launcher, never npx: npx runs the chain in a child it does not stop when killed.
    """
    if _BINARY.exists() and os.access(_BINARY, os.X_OK):
        return _BINARY
    return None


def find_kusama_spec() -> Path | None:
    """The gzipped kusama chain spec: ``$XRELAYER_SUBSTRATE_SPEC``, else the shared fixtures,
    else the copy shipped in the project; None when there is none.

    An env var naming a missing file is an error, not a fallback: the operator asked for that
    file, and quietly starting another chain would test something they did not ask for.
    """
    override = os.environ.get(SPEC_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise ChopsticksError(f"${SPEC_ENV} names {path}, which is not a file")
        return path
    for candidate in (SHARED_SPEC, SHIPPED_SPEC):
        if candidate.is_file():
            return candidate
    return None


@dataclass
class ChopsticksNode:
    """A running chopsticks process; ``stop()`` ends it (idempotent)."""

    url: str
    ws_url: str
    port: int
    chain_name: str
    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    spawned_at: float
    _log: IO[bytes] = field(repr=False)
    # Seconds from spawn to the first right answer: the cold-start cost a test session pays.
    started_in_s: float = 0.0

    def rpc(self, method: str, params: Sequence[Any] = (), timeout: float = 5.0) -> Any:
        """One JSON-RPC call over HTTP with the standard library (chopsticks serves both)."""
        return loopback_rpc(self.url, method, params, timeout, error=ChopsticksError)

    def rss_bytes(self) -> int:
        """Resident memory of the chain process (Linux); 0 when it is gone."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def log_tail(self, limit: int = 4000) -> str:
        return log_tail(self.log_path, limit)

    def stop(self, timeout: float = _STOP_TIMEOUT_S) -> None:
        # The process group: node may spawn workers (wasm executor threads are threads today,
        # but a later chopsticks may fork).
        stop_process(self.process, self._log, group=True, timeout=timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ChopsticksNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_chopsticks(
    *,
    chain_name: str | None = None,
    block_mode: BlockMode = "Instant",
    spec: Path | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout: float = _START_TIMEOUT_S,
) -> ChopsticksNode:
    """Start a chain bound to ``host`` and wait until it answers ``system_chain``.

    ``port`` None: a free port, and another if that one was taken between choosing and
    binding. A given port is tried once: the caller chose it and told others about it.
    ``chain_name`` replaces the spec's ``id``, which is what chopsticks answers to
    ``system_chain`` (``name`` is what it answers to ``system_name``): two chains started from
    one spec are otherwise indistinguishable, since both have the genesis hash 0x4545...45.
    Raises ``ChopsticksError`` if chopsticks or the spec is missing or the chain does not start.
    """
    binary = chopsticks_binary()
    if binary is None:
        raise ChopsticksError(f"chopsticks not found at {_BINARY}: run `make setup` (npm ci)")
    spec = spec if spec is not None else find_kusama_spec()
    if spec is None:
        raise ChopsticksError(
            f"no kusama chain spec: set ${SPEC_ENV}, or provide {SHARED_SPEC} or {SHIPPED_SPEC}"
        )
    workdir = Path(tempfile.mkdtemp(prefix="chopsticks-"))
    try:
        expected_name = _write_spec(spec, workdir / "spec.json", chain_name)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    last_error = ""
    for _ in range(_START_ATTEMPTS if port is None else 1):
        chosen = port if port is not None else free_port()
        node = _spawn(binary, workdir, expected_name, block_mode, host, chosen)
        try:
            _wait_ready(node, timeout)
        except ChopsticksError as exc:
            last_error = f"{exc}\n--- chopsticks output ---\n{node.log_tail()}"
            _stop_keeping_workdir(node)
            continue
        except BaseException:
            # Ctrl-C or a test timeout while waiting: the chain must not outlive us.
            node.stop()
            raise
        return node
    shutil.rmtree(workdir, ignore_errors=True)
    raise ChopsticksError(f"chopsticks ({expected_name}) did not start: {last_error}")


def _write_spec(source: Path, target: Path, chain_name: str | None) -> str:
    with gzip.open(source, "rb") as compressed:
        raw = compressed.read()
    spec = json.loads(raw)
    if chain_name is not None:
        spec["id"] = chain_name
        spec["name"] = chain_name
        raw = json.dumps(spec).encode()
    target.write_bytes(raw)
    return str(spec["id"])


def _spawn(
    binary: Path, workdir: Path, chain_name: str, block_mode: BlockMode, host: str, port: int
) -> ChopsticksNode:
    config = workdir / f"chopsticks-{port}.yml"
    # JSON is YAML, and json.dumps quotes paths that YAML would otherwise misread.
    config.write_text(
        "\n".join(
            f"{key}: {json.dumps(value)}"
            for key, value in (
                ("genesis", str(workdir / "spec.json")),
                ("host", host),
                ("port", port),
                ("build-block-mode", block_mode),
            )
        )
        + "\n"
    )
    log_path = workdir / f"chopsticks-{port}.log"
    log = log_path.open("wb")
    started = time.monotonic()
    process = subprocess.Popen(  # noqa: S603  (our own binary, fixed args)
        [str(binary), "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    reach = _client_host(host)
    return ChopsticksNode(
        url=f"http://{reach}:{port}",
        ws_url=f"ws://{reach}:{port}",
        port=port,
        chain_name=chain_name,
        process=process,
        workdir=workdir,
        log_path=log_path,
        spawned_at=started,
        _log=log,
    )


def _client_host(host: str) -> str:
    """Where a local client reaches a server bound to ``host``: a wildcard bind through
    loopback. (``chains.evm.anvil`` has the same rule; one family does not import the other.)"""
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104  (compared, not bound)


def _stop_keeping_workdir(node: ChopsticksNode) -> None:
    """Stop a failed attempt but keep the spec for the next one (its log goes with it)."""
    stop_process(node.process, node._log, group=True, timeout=_STOP_TIMEOUT_S)


def _wait_ready(node: ChopsticksNode, timeout: float) -> None:
    deadline = node.spawned_at + timeout
    while time.monotonic() < deadline:
        code = node.process.poll()
        if code is not None:
            raise ChopsticksError(f"chopsticks exited with code {code}")
        try:
            answered = node.rpc("system_chain", timeout=1.0)
        except (OSError, urllib.error.URLError, ChopsticksError, ValueError):
            time.sleep(0.1)
            continue
        if answered != node.chain_name:
            raise ChopsticksError(
                f"port {node.port} answers system_chain {answered!r}, not {node.chain_name!r}"
            )
        node.started_in_s = time.monotonic() - node.spawned_at
        return
    raise ChopsticksError(f"no answer to system_chain on {node.url} within {timeout:g} s")
