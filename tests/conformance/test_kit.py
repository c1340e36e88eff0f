"""The conformance kit: what every chain family must do, checked through the plugin boundary
alone (``relayer.plugin`` and ``relayer.follower``, as the daemon uses them), against a real
chain of the family (``conftest.FAMILIES``).

- backfill after downtime: what was sent while nobody followed is read from the start block;
- restart from the cursor: a new follower on the same ledger reads only what is new;
- reconnect after the endpoint drops: what was sent during the outage arrives afterwards;
- a forged block is refused before anything is persisted, and tampered evidence never verifies;
- idempotent delivery: a delivered message is known delivered, never sent again, and shows
  once on the destination.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from relayer.config import ChainConfig
from relayer.errors import ChainError, EvidenceRejectedError
from relayer.follower import Follower, follow
from relayer.message import Message
from relayer.plugin import BroadcastResult, Observation, load_plugin
from relayer.store import Ledger
from tests.conformance.harness import ChainHarness

pytestmark = pytest.mark.slow

_OWNER = "kit"


class Seen:
    """A sink that keeps what it is handed, by message id."""

    def __init__(self) -> None:
        self.observations: dict[bytes, list[Observation]] = {}
        self.changed = asyncio.Event()

    async def __call__(self, observations: Sequence[Observation]) -> None:
        for obs in observations:
            self.observations.setdefault(Message.decode(obs.message).id, []).append(obs)
        self.changed.set()

    def has(self, ids: Sequence[bytes]) -> bool:
        return all(mid in self.observations for mid in ids)


def _follower(chain: ChainConfig, ledger: Ledger) -> Follower:
    return follow(chain, ledger=ledger, owner=_OWNER, rpc_url=None, log=structlog.get_logger())


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _running(follower: Follower, sink: Seen) -> Any:
    task = asyncio.ensure_future(follower.run(sink))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _collect(
    chain: ChainConfig,
    ledger: Ledger,
    ids: Sequence[bytes],
    *,
    timeout: float = 60,
    during: Callable[[], Awaitable[None]] | None = None,
) -> Seen:
    seen = Seen()
    async with _running(_follower(chain, ledger), seen):
        if during is not None:
            await during()
        await _until(lambda: seen.has(ids), timeout, f"{len(ids)} messages to be observed")
    return seen


def _verifies(chain: ChainConfig, observation: Observation) -> bool:
    try:
        load_plugin(chain.type).verify(chain, observation)
    except EvidenceRejectedError:
        return False
    return True


async def test_backfill_after_downtime(harness: ChainHarness, tmp_path: Path) -> None:
    ids = await harness.send(3)  # nobody follows the chain while these are sent
    chain = harness.chain()
    with Ledger.open(tmp_path / "kit.db") as ledger:
        seen = await _collect(chain, ledger, ids)
    for mid in ids:
        (observation,) = seen.observations[mid]
        assert observation.origin_chain == chain.name
        assert _verifies(chain, observation)


async def test_restart_from_the_cursor(harness: ChainHarness, tmp_path: Path) -> None:
    chain = harness.chain()
    with Ledger.open(tmp_path / "kit.db") as ledger:
        first = await harness.send(2)
        await _collect(chain, ledger, first)
        cursor = ledger.get_cursor(chain.name, _OWNER)
        assert cursor is not None
        later = await harness.send(2)
        seen = await _collect(chain, ledger, later)  # a new follower: a restarted process
        assert not any(mid in seen.observations for mid in first), "read again after a restart"
        moved = ledger.get_cursor(chain.name, _OWNER)
        assert moved is not None and moved.block_number > cursor.block_number


async def test_reconnect_after_the_endpoint_drops(harness: ChainHarness, tmp_path: Path) -> None:
    chain = harness.chain()
    with Ledger.open(tmp_path / "kit.db") as ledger:
        before = await harness.send(1)
        seen = Seen()
        async with _running(_follower(chain, ledger), seen):
            await _until(lambda: seen.has(before), 60, "the first message")
            harness.drop()
            try:
                during = await harness.send(2)  # sent to the node directly, not via the proxy
                await asyncio.sleep(2)
                assert not seen.has(during), "observed through an endpoint that was down"
            finally:
                harness.restore()
            await harness.advance()
            await _until(lambda: seen.has(during), 90, "the messages sent during the outage")


async def test_a_forged_block_is_refused_before_anything_is_persisted(
    harness: ChainHarness, tmp_path: Path
) -> None:
    ids = await harness.send(2)
    with Ledger.open(tmp_path / "kit.db") as ledger:
        async with harness.lying_chain() as lying:
            seen = Seen()
            with capture_logs() as logs:
                async with _running(_follower(lying, ledger), seen):
                    await _until(
                        lambda: any(e["event"] == "proof.rejected" for e in logs),
                        30,
                        "the forged block to be refused",
                    )
                    await asyncio.sleep(1)  # and retried, and refused again
            assert seen.observations == {}, "a forged block reached the sink"
            cursor_while_lying = ledger.get_cursor(lying.name, _OWNER)
        honest = await _collect(harness.chain(), ledger, ids)
    blocks = {obs.block_number for mid in ids for obs in honest.observations[mid]}
    assert cursor_while_lying is None or cursor_while_lying.block_number < min(blocks), (
        "the cursor moved past a block whose evidence did not verify"
    )


async def test_tampered_evidence_never_verifies(harness: ChainHarness, tmp_path: Path) -> None:
    ids = await harness.send(1)
    chain = harness.chain()
    with Ledger.open(tmp_path / "kit.db") as ledger:
        seen = await _collect(chain, ledger, ids)
    (genuine,) = seen.observations[ids[0]]
    assert _verifies(chain, genuine)
    message = bytearray(genuine.message)
    message[-1] ^= 1
    forged: list[Observation] = [
        Observation(
            origin_chain=genuine.origin_chain,
            message=bytes(message),
            block_number=genuine.block_number,
            block_hash=genuine.block_hash,
            evidence=genuine.evidence,
        ),
        Observation(
            origin_chain=genuine.origin_chain,
            message=genuine.message,
            block_number=genuine.block_number + 1,
            block_hash=genuine.block_hash,
            evidence=genuine.evidence,
        ),
        Observation(
            origin_chain=genuine.origin_chain,
            message=genuine.message,
            block_number=genuine.block_number,
            block_hash=bytes(32),
            evidence=genuine.evidence,
        ),
    ]
    evidence = genuine.evidence
    for at in {0, len(evidence) // 3, len(evidence) // 2, len(evidence) - 1}:
        changed = bytearray(evidence)
        changed[at] ^= 0x01
        forged.append(
            Observation(
                origin_chain=genuine.origin_chain,
                message=genuine.message,
                block_number=genuine.block_number,
                block_hash=genuine.block_hash,
                evidence=bytes(changed),
            )
        )
    for i, observation in enumerate(forged):
        assert not _verifies(chain, observation), f"forgery {i} verified"


async def test_idempotent_delivery(harness: ChainHarness) -> None:
    chain = harness.chain()
    plugin = load_plugin(chain.type)
    signer = plugin.load_signer(
        chain, harness.submitter_key(), base_dir=None, env=harness.key_env()
    )
    submitter = plugin.submitter(chain, signer=signer, log=structlog.get_logger())
    deliveries = harness.deliveries(3)
    ids = [d.message_id for d in deliveries]
    await submitter.start()
    try:
        assert await submitter.delivered_flags(ids) == [False] * 3
        assert await submitter.simulate(deliveries) == [True] * 3
        pending = await submitter.prepare(deliveries)
        assert await submitter.broadcast(pending) is BroadcastResult.ACCEPTED
        outcomes = None
        deadline = time.monotonic() + 90
        while outcomes is None:
            assert time.monotonic() < deadline, "the delivery was never included"
            await harness.advance()
            outcomes = await submitter.outcome(pending)
            if outcomes is None:
                await asyncio.sleep(0.3)
        assert [o.message_id for o in outcomes] == ids
        assert all(o.delivered for o in outcomes), outcomes
        assert await submitter.delivered_flags(ids) == [True] * 3
        assert await submitter.simulate(deliveries) == [False] * 3, "would deliver again"
        # The very same transaction sent again (a restart resending what it recorded): the
        # chain takes it at most as a no-op.
        with contextlib.suppress(ChainError):
            await submitter.broadcast(pending)
        await harness.advance()
        await asyncio.sleep(1)
        await harness.advance()
    finally:
        await submitter.close()
    assert await harness.delivered(ids) == [1, 1, 1]
