"""The Substrate side of ``relayer-dev`` (``chains/devservices.py``): the dev GRANDPA voters of
a chopsticks chain, on an address and port of the caller's choosing rather than a free loopback
port. (The chain itself is ``chains.substrate.chopsticks.start_chopsticks`` with a host and
port.)

The voters are ``relayer devnet``'s (``chains.substrate.grandpa_voter.run_voters`` with the
devnet's schedule), so that what runs here is what the demo runs; only the address they bind
is new.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

import structlog

from chains.substrate.devnet import dev_voter_schedule
from chains.substrate.grandpa_voter import GrandpaVoterError, InstalledVoters, run_voters

if TYPE_CHECKING:
    from chains.devservices import ReadyFile

__all__ = ["serve_dev_voters"]


def serve_dev_voters(
    *, chain_ws: str, host: str, port: int, change_delay: int | None, ready: ReadyFile
) -> None:
    """Install the dev voters on the chain at ``chain_ws`` (``relayer devnet``'s schedule:
    one set change ``change_delay`` blocks after the checkpoint, 0 for none), then serve
    ``grandpa_proveFinality`` on ``host:port`` until SIGTERM or SIGINT. ``ready`` is written
    once they serve (the checkpoint built) and cleared when they stop."""
    schedule = dev_voter_schedule(change_delay)
    log = structlog.get_logger().bind(endpoint=chain_ws)

    def report_ready(installed: InstalledVoters) -> None:
        facts = {
            "service": "grandpa-voters",
            "chain_ws": chain_ws,
            "host": host,
            "port": port,
            "checkpoint": installed.checkpoint,
            "enactment": installed.enactment,
        }
        ready.write(facts)
        log.info("devservice.ready", **facts)

    async def run() -> None:
        await run_voters(chain_ws, port, schedule, host=host, on_ready=report_ready)
        # Only cancellation ends a healthy run: the chain's head stream ending means the
        # chain is gone, and the container should say so by exiting non-zero.
        raise GrandpaVoterError(f"the finalized-head stream of {chain_ws} ended")

    async def until_signalled() -> None:
        task = asyncio.ensure_future(run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(until_signalled())
    finally:
        ready.clear()
    log.info("devservice.stopped", service="grandpa-voters")
