"""relayer.roles on the in-process bus: a watcher records then announces; a worker re-verifies
what it takes off the bus, hands the genuine observations to its core once however often they
are replayed, and drops forged, garbled and misaddressed notices without recording anything.

The observations are real EVM evidence (a 20-receipt block with three Dispatches, built by the
evidence tests); the core and ledger are the real ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
import pytest

from relayer.bus import MemoryBus, ObservationNotice
from relayer.checkpoints import DirectoryCheckpointStore
from relayer.core import Core
from relayer.message import Message
from relayer.plugin import Observation
from relayer.roles import ObservationAnnouncer, ObservationIntake, Role
from relayer.store import Ledger, State
from tests.unit.chains.evm.test_evidence import with_evidence
from tests.unit.relayer.test_core import Harness, RecordingLog, genuine


@pytest.fixture
def watcher(tmp_path: Path) -> Iterator[Harness]:
    (tmp_path / "watcher").mkdir()
    harness = Harness(tmp_path / "watcher")
    try:
        yield harness
    finally:
        harness.ledger.close()


@pytest.fixture
def worker_ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger.open(tmp_path / "worker.db")
    try:
        yield ledger
    finally:
        ledger.close()


def notice_of(watcher: Harness, observation: Observation) -> ObservationNotice:
    return ObservationNotice.from_observation(
        observation,
        origin_domain=watcher.config.chain(observation.origin_chain).domain,
        message_id=Message.decode(observation.message).id,
    )


def test_roles_say_what_they_run() -> None:
    assert (Role.ALL.watches, Role.ALL.works) == (True, True)
    assert (Role.WATCHER.watches, Role.WATCHER.works) == (True, False)
    assert (Role.WORKER.watches, Role.WORKER.works) == (False, True)


async def test_a_watchers_observations_reach_a_worker_verified_and_recorded_once(
    watcher: Harness, worker_ledger: Ledger, tmp_path: Path
) -> None:
    log = RecordingLog()
    worker_core = Core(watcher.config, worker_ledger, DirectoryCheckpointStore(tmp_path / "c"), log)
    observations = genuine()
    async with MemoryBus() as bus:
        intake = ObservationIntake(bus, watcher.config, worker_core.accept, log)
        running = asyncio.create_task(intake.run())
        await intake.wait_subscribed(5)
        announcer = ObservationAnnouncer(bus, watcher.config, log)
        await announcer.sink(watcher.core.accept)(observations)
        # Every notice again ten times, in reverse order.
        for _ in range(10):
            for observation in reversed(observations):
                await bus.publish(notice_of(watcher, observation))
        async with asyncio.timeout(5):
            while intake.stats["accepted"] + intake.stats["duplicate"] < 11 * len(observations):
                await asyncio.sleep(0.01)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    ids = [Message.decode(o.message).id for o in observations]
    # Recorded by the watcher before it announced; recorded once by the worker.
    assert all(watcher.state(i) is State.VERIFIED for i in ids)
    assert worker_ledger.states(ids) == {i: State.VERIFIED for i in ids}
    assert announcer.announced == len(observations)
    assert intake.stats["accepted"] == len(observations)
    assert intake.stats["duplicate"] == 10 * len(observations)


@pytest.mark.parametrize(
    "forgery", ["forged", "wrong_id", "wrong_chain", "unknown_origin", "garbage"]
)
async def test_a_bad_notice_is_dropped_and_nothing_is_recorded(
    watcher: Harness, worker_ledger: Ledger, tmp_path: Path, forgery: str
) -> None:
    log = RecordingLog()
    worker_core = Core(watcher.config, worker_ledger, DirectoryCheckpointStore(tmp_path / "c"), log)
    genuine_obs = genuine()[0]
    real = notice_of(watcher, genuine_obs)
    bad = {
        # The proof of another receipt of the block: it does not prove this message.
        "forged": notice_of(watcher, with_evidence(genuine_obs, tx_index=3)),
        "wrong_id": msgspec.structs.replace(real, message_id=b"\x01" * 32),
        "wrong_chain": msgspec.structs.replace(real, origin_chain="chain-b"),
        "unknown_origin": msgspec.structs.replace(real, origin_domain=7),
        "garbage": msgspec.structs.replace(real, message=b"\x00\x01"),
    }[forgery]
    intake = ObservationIntake(MemoryBus(), watcher.config, worker_core.accept, log)
    assert await intake.take([bad]) == 0
    assert intake.stats[forgery] == 1
    assert worker_ledger.get(real.message_id) is None
    (line,) = log.named("bus.observation_refused")
    assert line["reason"] == forgery
    # The genuine notice after the forgery is still accepted: nothing was condemned.
    assert await intake.take([real]) == 1
    assert worker_ledger.states([real.message_id]) == {real.message_id: State.VERIFIED}


async def test_what_the_shared_ledger_holds_is_not_verified_again(
    watcher: Harness, worker_ledger: Ledger
) -> None:
    observations = genuine()
    await watcher.core.accept(observations)
    handed: list[Observation] = []

    async def accept(batch: Sequence[Observation]) -> None:
        handed.extend(batch)

    async def known(ids: Sequence[bytes]) -> set[bytes]:
        return set(watcher.ledger.states(ids))

    intake = ObservationIntake(MemoryBus(), watcher.config, accept, RecordingLog(), known=known)
    forged = notice_of(watcher, with_evidence(observations[0], tx_index=3))
    unknown = msgspec.structs.replace(forged, message_id=b"\x02" * 32)
    assert await intake.take([notice_of(watcher, o) for o in observations]) == 0
    assert intake.stats["recorded"] == len(observations) and not handed
    # A notice of an id the ledger does not hold is checked as before.
    assert await intake.take([unknown]) == 0
    assert intake.stats["wrong_id"] == 1
