"""The Substrate side of ``relayer-dev`` (``chains/devservices.py``): a chopsticks chain and
its dev GRANDPA voters, each on an address and port of the caller's choosing rather than a free
loopback port.

Both reuse ``relayer devnet``'s pieces (``chains.substrate.chopsticks``,
``chains.substrate.grandpa_voter``) so that what runs here is what the demo runs; only the
address they bind is new.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import websockets
from websockets.asyncio.server import ServerConnection, serve

from chains.evm.devnet import _VOTER_CHANGE_DELAY
from chains.substrate.chopsticks import (
    REPO_ROOT,
    ChopsticksError,
    ChopsticksNode,
    _write_spec,
    chopsticks_binary,
    find_kusama_spec,
)
from chains.substrate.chopsticks import _wait_ready as _wait_chopsticks_ready
from chains.substrate.grandpa_voter import (
    GrandpaVoterError,
    VoterSchedule,
    _follow,
    _install,
    _serve_connection,
    _Voters,
)
from chains.substrate.rpc import SubstrateRpc

if TYPE_CHECKING:
    from chains.devservices import ReadyFile

__all__ = ["dev_voter_schedule", "serve_dev_voters", "start_dev_chopsticks"]

# Cold start compiles the runtime (3-5 s on two cores, more on a busy machine), as in
# chains.substrate.chopsticks.
_START_TIMEOUT_S = 60.0


def start_dev_chopsticks(
    *, chain_name: str, host: str, port: int, spec: Path | None
) -> ChopsticksNode:
    """Start chopsticks from the Kusama spec bound to ``host:port``, answering ``chain_name``
    to ``system_chain``, and wait until it does. Raises ``ChopsticksError`` when chopsticks or
    the spec is missing or the chain does not start (a taken port is not retried: the caller
    chose it, and others were told it)."""
    from chains.devservices import probe_host  # noqa: PLC0415  (the CLI module imports us)

    binary = chopsticks_binary()
    if binary is None:
        raise ChopsticksError("chopsticks not found in node_modules: run `npm ci`")
    spec = spec if spec is not None else find_kusama_spec()
    if spec is None:
        raise ChopsticksError("no kusama chain spec: pass --spec or set $XRELAYER_SUBSTRATE_SPEC")
    workdir = Path(tempfile.mkdtemp(prefix="chopsticks-"))
    try:
        expected = _write_spec(spec, workdir / "spec.json", chain_name)
        config = workdir / "chopsticks.yml"
        # JSON is YAML, and json.dumps quotes paths that YAML would otherwise misread.
        config.write_text(
            "".join(
                f"{key}: {json.dumps(value)}\n"
                for key, value in (
                    ("genesis", str(workdir / "spec.json")),
                    ("host", host),
                    ("port", port),
                    ("build-block-mode", "Instant"),
                )
            )
        )
        log_path = workdir / "chopsticks.log"
        log = log_path.open("wb")
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    started = time.monotonic()
    process = subprocess.Popen(  # noqa: S603  (our own binary, fixed args)
        [str(binary), "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    reach = probe_host(host)
    node = ChopsticksNode(
        url=f"http://{reach}:{port}",
        ws_url=f"ws://{reach}:{port}",
        port=port,
        chain_name=expected,
        process=process,
        workdir=workdir,
        log_path=log_path,
        spawned_at=started,
        _log=log,
    )
    try:
        _wait_chopsticks_ready(node, _START_TIMEOUT_S)
    except ChopsticksError as exc:
        tail = node.log_tail()
        node.stop()
        raise ChopsticksError(f"{exc}\n--- chopsticks output ---\n{tail}") from None
    except BaseException:
        node.stop()
        raise
    return node


def dev_voter_schedule(change_delay: int | None) -> VoterSchedule:
    """``relayer devnet``'s voters, with their set change ``change_delay`` blocks after the
    checkpoint (0: none; None: the devnet's own delay)."""
    delay = _VOTER_CHANGE_DELAY if change_delay is None else change_delay
    return VoterSchedule(change_delay=delay or None)


def serve_dev_voters(
    *, chain_ws: str, host: str, port: int, change_delay: int | None, ready: ReadyFile
) -> None:
    """Install the dev voters on the chain at ``chain_ws`` (``relayer devnet``'s schedule:
    one set change ``change_delay`` blocks after the checkpoint, 0 for none), then serve
    ``grandpa_proveFinality`` on ``host:port`` until SIGTERM or SIGINT. ``ready`` is written
    once they serve (the checkpoint built) and cleared when they stop."""
    schedule = dev_voter_schedule(change_delay)
    log = structlog.get_logger().bind(endpoint=chain_ws)

    async def run() -> None:
        voters = _Voters(schedule=schedule)
        async with SubstrateRpc.connect(chain_ws, chain="grandpa-dev", timeout=60.0) as rpc:
            await _install(rpc, voters)

            async def handler(connection: ServerConnection) -> None:
                with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                    await _serve_connection(connection, voters)

            # grandpa_voter.run_voters, with the bind address the caller chose.
            async with serve(handler, host, port):
                facts = {
                    "service": "grandpa-voters",
                    "chain_ws": chain_ws,
                    "host": host,
                    "port": port,
                    "checkpoint": voters.checkpoint_number,
                    "enactment": voters.enactment,
                }
                ready.write(facts)
                log.info("devservice.ready", **facts)
                await _follow(rpc, voters, log)
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
