"""``relayer-dev``: each development stand-in of the example config as a service of its own.

``relayer devnet`` starts the whole devnet in one process, on free loopback ports. A deployment
of separate services (``docker/compose.yaml``: one container a component) needs each piece on
its own, on an address and port the others are told about::

    relayer-dev anvil --chain-id 31337 --domain 1000 --port 8545      # one chain, Gateway deployed
    relayer-dev beacon --rpc http://chain-a:8545 --port 5052          # its dev beacon-API server
    relayer-dev chopsticks --chain-name dot-a --port 9944             # a Substrate chain
    relayer-dev grandpa-voters --chain-ws ws://dot-a:9944 --port 9945 # its dev GRANDPA voters

Every one binds ``--host`` (127.0.0.1 unless told otherwise: these are development chains with
public keys), runs until SIGTERM or SIGINT, and stops what it started. Once it serves, it writes
what it serves (JSON) to ``--ready-file`` when given, and removes the file when it stops: a
container health check is then ``test -f`` on that file. The defaults are ``relayer devnet``'s,
so that a deployment of these services behaves as the demo does.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from relayer.log import configure_logging, get_logger

__all__ = ["ReadyFile", "main", "probe_host", "wait_until_stopped"]

_POLL_S = 0.5


def probe_host(host: str) -> str:
    """The address a local client reaches a server bound to ``host`` on: a wildcard bind is
    reached through loopback."""
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104  (compared, not bound)


class ReadyFile:
    """The file a health check looks for: absent until the service serves, and again after it
    stopped. A stale file from an earlier run in the same container is removed at start, so a
    restarted service is not reported healthy before it is."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.clear()

    def write(self, facts: Mapping[str, Any]) -> None:
        if self.path is None:
            return
        # Written whole, then renamed: a health check never reads half a file.
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(dict(facts), sort_keys=True) + "\n")
        partial.replace(self.path)

    def clear(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def wait_until_stopped(alive: Callable[[], bool]) -> bool:
    """Block until SIGTERM or SIGINT (True) or until ``alive()`` turns false (False).

    Signals are handled here rather than left to their defaults: as PID 1 of a container a
    process that installs no handler ignores SIGTERM, and `docker stop` would wait for SIGKILL,
    leaving a chain's children behind."""
    stop = threading.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
    try:
        while not stop.wait(_POLL_S):
            if not alive():
                return False
        return True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(ready: ReadyFile, facts: Mapping[str, Any], alive: Callable[[], bool]) -> None:
    """Report ready, then wait; a child that died is a failure (exit status 1)."""
    log = get_logger()
    ready.write(facts)
    log.info("devservice.ready", **facts)
    try:
        signalled = wait_until_stopped(alive)
    finally:
        ready.clear()
    if not signalled:
        log.error("devservice.exited", **facts)
        raise SystemExit(1)
    log.info("devservice.stopped", service=facts.get("service"))


_host = click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; 0.0.0.0 inside a container network.",
)
_ready_file = click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Written (JSON: what is served) once serving, removed when stopped.",
)


@click.group()
def main() -> None:
    """Development chains and finality sources of the example config, one service each."""
    configure_logging(json=True)


@main.command()
@click.option("--chain-id", type=int, required=True, help="The EVM chain id (config: chain_id).")
@click.option("--domain", type=int, required=True, help="The Gateway's domain (config: domain).")
@_host
@click.option("--port", type=int, default=8545, show_default=True)
@click.option(
    "--block-time",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds between blocks (0: mine each transaction at once).",
)
@_ready_file
def anvil(
    chain_id: int, domain: int, host: str, port: int, block_time: float, ready_file: Path | None
) -> None:
    """One anvil chain with a Gateway (committee: anvil accounts #5-#7, threshold 2) and a
    TestRecipient deployed from account #0, as `relayer devnet` deploys them."""
    from chains.evm.devservices import start_dev_anvil  # noqa: PLC0415  (one family per command)

    ready = ReadyFile(ready_file)
    chain = start_dev_anvil(
        chain_id=chain_id, domain=domain, host=host, port=port, block_time=block_time or None
    )
    try:
        _serve(ready, chain.facts(), chain.alive)
    finally:
        chain.stop()


@main.command()
@click.option("--rpc", required=True, help="The anvil chain's HTTP JSON-RPC URL.")
@_host
@click.option("--port", type=int, default=5052, show_default=True)
@click.option(
    "--finality-lag",
    type=int,
    default=None,
    help="Slots from a block to its finality [default: relayer devnet's].",
)
@click.option(
    "--first-slot",
    type=int,
    default=None,
    help="The slot of anvil's block 0 [default: relayer devnet's].",
)
@_ready_file
def beacon(
    rpc: str,
    host: str,
    port: int,
    finality_lag: int | None,
    first_slot: int | None,
    ready_file: Path | None,
) -> None:
    """The dev beacon-API server (a minimal-preset sync committee) following an anvil chain:
    the finality source of a chain with finality = "sync-committee", trusted_block_root = "dev"."""
    from chains.evm.devservices import serve_dev_beacon  # noqa: PLC0415

    serve_dev_beacon(
        rpc_url=rpc,
        host=host,
        port=port,
        finality_lag=finality_lag,
        first_slot=first_slot,
        ready=ReadyFile(ready_file),
    )


@main.command()
@click.option(
    "--chain-name",
    required=True,
    help="What the chain answers to system_chain (config: system_chain).",
)
@_host
@click.option("--port", type=int, default=9944, show_default=True)
@click.option(
    "--spec",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Gzipped raw chain spec [default: $XRELAYER_SUBSTRATE_SPEC, the shared fixtures, "
    "or the copy the project ships].",
)
@_ready_file
def chopsticks(
    chain_name: str, host: str, port: int, spec: Path | None, ready_file: Path | None
) -> None:
    """A chopsticks chain from the Kusama spec, building a block per extrinsic."""
    from chains.substrate.chopsticks import start_chopsticks  # noqa: PLC0415

    ready = ReadyFile(ready_file)
    # A given port is tried once (start_chopsticks): the caller chose it, others were told it.
    node = start_chopsticks(chain_name=chain_name, host=host, port=port, spec=spec)
    facts = {"service": "chopsticks", "chain": chain_name, "host": host, "port": port}
    try:
        _serve(ready, facts, lambda: node.process.poll() is None)
    finally:
        node.stop()


@main.command("grandpa-voters")
@click.option("--chain-ws", required=True, help="The chopsticks chain's WebSocket URL.")
@_host
@click.option("--port", type=int, default=9945, show_default=True)
@click.option(
    "--change-delay",
    type=click.IntRange(min=0),
    default=None,
    help="Blocks from the checkpoint to the set change, 0: none [default: relayer devnet's].",
)
@_ready_file
def grandpa_voters(
    chain_ws: str, host: str, port: int, change_delay: int | None, ready_file: Path | None
) -> None:
    """Dev GRANDPA voters on a chopsticks chain, serving grandpa_proveFinality: the finality
    source of a chain with finality = "grandpa", checkpoint = "dev"."""
    from chains.substrate.devservices import serve_dev_voters  # noqa: PLC0415

    serve_dev_voters(
        chain_ws=chain_ws,
        host=host,
        port=port,
        change_delay=change_delay,
        ready=ReadyFile(ready_file),
    )


if __name__ == "__main__":
    main()
