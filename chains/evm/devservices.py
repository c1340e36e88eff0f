"""The EVM side of ``relayer-dev`` (``chains/devservices.py``): one anvil chain with its
Gateway deployed, and the dev beacon server of a sync-committee chain, each on an address and
port of the caller's choosing rather than a free loopback port.

Both reuse ``relayer devnet``'s pieces (``chains.evm.anvil``, ``chains.evm.devnet``'s
deployment, ``chains.evm.beacon_dev``), so a chain started here is the chain the demo runs:
the Gateway lands at the address the example config defaults to, with the same committee.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chains.evm import beacon_dev
from chains.evm.anvil import AnvilNode, start_anvil
from chains.evm.devnet import BEACON_FINALITY_LAG, BEACON_FIRST_SLOT, deploy_contracts

if TYPE_CHECKING:
    from chains.devservices import ReadyFile

__all__ = ["DevAnvil", "serve_dev_beacon", "start_dev_anvil"]

_BEACON_READY_POLL_S = 0.2


@dataclass
class DevAnvil:
    """A running anvil chain with its Gateway and TestRecipient; ``stop()`` ends it."""

    node: AnvilNode
    domain: int
    host: str
    gateway: str
    recipient: str
    block_time: float | None

    def facts(self) -> dict[str, Any]:
        return {
            "service": "anvil",
            "chain_id": self.node.chain_id,
            "domain": self.domain,
            "host": self.host,
            "port": self.node.port,
            "gateway": self.gateway,
            "recipient": self.recipient,
            "block_time": self.block_time,
        }

    def alive(self) -> bool:
        return self.node.process.poll() is None

    def stop(self) -> None:
        self.node.stop()


def start_dev_anvil(
    *, chain_id: int, domain: int, host: str, port: int, block_time: float | None
) -> DevAnvil:
    """Start anvil bound to ``host:port``, wait until it answers, deploy the Gateway and the
    TestRecipient. Raises ``AnvilError`` when anvil is missing or does not start (a taken port
    is not retried: the caller chose it, and others were told it)."""
    node = start_anvil(chain_id, host=host, port=port, block_time=block_time)
    try:
        deployed = asyncio.run(deploy_contracts(node, domain))
    except BaseException:
        node.stop()
        raise
    return DevAnvil(
        node=node,
        domain=domain,
        host=host,
        gateway=deployed.gateway,
        recipient=deployed.recipient,
        block_time=block_time,
    )


def serve_dev_beacon(
    *,
    rpc_url: str,
    host: str,
    port: int,
    finality_lag: int | None,
    first_slot: int | None,
    ready: ReadyFile,
) -> None:
    """Run ``chains.evm.beacon_dev``'s server in this process until SIGTERM or SIGINT, with
    ``relayer devnet``'s finality geometry unless told otherwise; ``ready`` is written once it
    answers ``/eth/v1/beacon/genesis`` (what the devnet waits for) and cleared when it stops."""
    from chains.devservices import probe_host  # noqa: PLC0415

    lag = BEACON_FINALITY_LAG if finality_lag is None else finality_lag
    first = BEACON_FIRST_SLOT if first_slot is None else first_slot
    url = f"http://{probe_host(host)}:{port}"
    stopped = threading.Event()

    def report_ready() -> None:
        while not stopped.is_set():
            try:
                with urllib.request.urlopen(  # noqa: S310  (http to our own server)
                    url + "/eth/v1/beacon/genesis", timeout=1.0
                ):
                    pass
            except (OSError, urllib.error.URLError, ValueError):
                stopped.wait(_BEACON_READY_POLL_S)
                continue
            ready.write(
                {
                    "service": "beacon",
                    "rpc": rpc_url,
                    "host": host,
                    "port": port,
                    "finality_lag": lag,
                    "first_slot": first,
                }
            )
            return

    watcher = threading.Thread(target=report_ready, name="beacon-dev-ready", daemon=True)
    watcher.start()
    try:
        # beacon_dev.main serves until SIGTERM (its own handler) or Ctrl-C.
        beacon_dev.main(
            [
                "--rpc",
                rpc_url,
                "--host",
                host,
                "--port",
                str(port),
                "--finality-lag",
                str(lag),
                "--first-slot",
                str(first),
            ]
        )
    finally:
        stopped.set()
        watcher.join(timeout=5)
        ready.clear()
