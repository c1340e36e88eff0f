"""relayer.bus.attestations over a real Mosquitto: two attesters (each its own MQTT connection
and store) publish real signatures, a relayer collects them; every notice replayed ten times and
reordered, with forgeries among them, leaves exactly the real signatures; a relayer that was
not listening gets a block's signatures by asking for them; a broker restart between publishing
and collecting loses nothing that a request cannot bring back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from relayer.bus import MqttBus
from relayer.bus.attestations import (
    AttestationCheck,
    AttestationCollector,
    AttestationRequester,
    PublishingCheckpointStore,
)
from relayer.bus.payloads import AttestationBatchNotice
from relayer.checkpoints import Attestation, DirectoryCheckpointStore
from relayer.config import Config
from tests.integration.mosquitto import MosquittoBroker, start_mosquitto
from tests.integration.test_bus_mqtt import settings_for
from tests.unit.relayer.test_bus_attestations import (
    BLOCK,
    ORIGIN,
    address,
    notice,
    signed,
)
from tests.unit.relayer.test_bus_attestations import config as config  # noqa: PLC0414  (fixture)
from tests.unit.relayer.test_core import COMMITTEE_KEYS, STRANGER_KEY, RecordingLog

MESSAGES = 40


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    with start_mosquitto(tmp_path / "mosquitto") as running:
        yield running


@contextlib.asynccontextmanager
async def tasks(*coroutines: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    started = [asyncio.create_task(c) for c in coroutines]
    try:
        yield
    finally:
        for task in started:
            task.cancel()
        await asyncio.gather(*started, return_exceptions=True)


async def stored(store: DirectoryCheckpointStore, count: int, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while len(store.get_block(ORIGIN, BLOCK)) < count:
            await asyncio.sleep(0.02)


def by_id(attestations: list[Attestation]) -> list[Attestation]:
    return sorted(attestations, key=lambda a: (a.signer, a.message_id))


async def test_real_signatures_arrive_once_and_replays_and_forgeries_change_nothing(
    broker: MosquittoBroker, config: Config, tmp_path: Path
) -> None:
    settings = settings_for(broker)
    relayer_store = DirectoryCheckpointStore(tmp_path / "relayer")
    keys = COMMITTEE_KEYS[:2]
    blocks = {key: [signed(config, key, n) for n in range(MESSAGES)] for key in keys}
    log = RecordingLog()
    loop = asyncio.get_running_loop()
    async with (
        MqttBus(settings) as relayer_bus,
        MqttBus(settings) as first,
        MqttBus(settings) as second,
    ):
        collector = AttestationCollector(relayer_bus, relayer_store, AttestationCheck(config), log)
        async with tasks(collector.run()):
            await collector.wait_subscribed(10)
            for key, bus in zip(keys, (first, second), strict=True):
                publisher = PublishingCheckpointStore(
                    DirectoryCheckpointStore(tmp_path / f"attester-{key[-4:]}"), bus, loop, log
                )
                await asyncio.to_thread(
                    publisher.put_block, ORIGIN, BLOCK, address(key), blocks[key]
                )
            await stored(relayer_store, 2 * MESSAGES)
            # Each notice replayed ten times in reverse order, with forgeries: a stranger's
            # signatures under a member's name, and a member's under another block.
            member = address(keys[0])
            for _ in range(10):
                for key in keys:
                    for attestation in reversed(blocks[key]):
                        await first.publish(notice(attestation))
                await first.publish(notice(signed(config, STRANGER_KEY, 1, claimed_signer=member)))
                await first.publish(notice(signed(config, STRANGER_KEY, 2)))
                # The batches replayed too, and a batch with a forged entry beside a real one.
                for key in keys:
                    for batch in AttestationBatchNotice.from_attestations(blocks[key]):
                        await second.publish(batch)
                forged = signed(config, STRANGER_KEY, 3, claimed_signer=member)
                for batch in AttestationBatchNotice.from_attestations([forged, blocks[keys[0]][0]]):
                    await second.publish(batch)
            async with asyncio.timeout(10):
                while collector.stats["duplicate"] < 10 * (4 * MESSAGES + 1):
                    await asyncio.sleep(0.02)
                while collector.stats["wrong_signer"] + collector.stats["not_a_member"] < 30:
                    await asyncio.sleep(0.02)
            await collector.flush()
    expected = by_id([att for key in keys for att in blocks[key]])
    assert by_id(relayer_store.get_block(ORIGIN, BLOCK)) == expected
    assert collector.stats["stored"] == 2 * MESSAGES
    assert (collector.stats["wrong_signer"], collector.stats["not_a_member"]) == (20, 10)


async def test_a_relayer_that_was_away_asks_and_gets_the_block_also_after_a_broker_restart(
    broker: MosquittoBroker, config: Config, tmp_path: Path
) -> None:
    settings = settings_for(broker)
    key = COMMITTEE_KEYS[0]
    attester_store = DirectoryCheckpointStore(tmp_path / "attester")
    relayer_store = DirectoryCheckpointStore(tmp_path / "relayer")
    block = [signed(config, key, n) for n in range(MESSAGES)]
    log = RecordingLog()
    loop = asyncio.get_running_loop()
    async with MqttBus(settings) as attester_bus:
        publisher = PublishingCheckpointStore(attester_store, attester_bus, loop, log)
        # Published while no relayer listened: the broker keeps nothing for it.
        await asyncio.to_thread(publisher.put_block, ORIGIN, BLOCK, address(key), block)
        async with tasks(publisher.answer_requests(address(key), [ORIGIN])):
            broker.restart()  # and whatever a broker might have held is gone too
            await attester_bus.wait_connected(10)
            async with MqttBus(settings) as relayer_bus:
                collector = AttestationCollector(
                    relayer_bus, relayer_store, AttestationCheck(config), log
                )
                requester = AttestationRequester(
                    relayer_bus, lambda _before: {(ORIGIN, BLOCK)}, log, after=0, every=1
                )
                async with tasks(collector.run()):
                    await collector.wait_subscribed(10)
                    assert relayer_store.get_block(ORIGIN, BLOCK) == []
                    # The answerer resubscribes after the restart; ask until it has answered.
                    async with asyncio.timeout(20):
                        while len(relayer_store.get_block(ORIGIN, BLOCK)) < MESSAGES:
                            await requester.ask_once()
                            await asyncio.sleep(0.2)
    assert by_id(relayer_store.get_block(ORIGIN, BLOCK)) == by_id(block)
    assert publisher.answered >= 1


async def test_a_broker_that_is_down_leaves_the_block_stored_and_says_so(
    broker: MosquittoBroker, config: Config, tmp_path: Path
) -> None:
    key = COMMITTEE_KEYS[0]
    store = DirectoryCheckpointStore(tmp_path / "attester")
    block = [signed(config, key, n) for n in range(3)]
    log = RecordingLog()
    async with MqttBus(settings_for(broker, publish_timeout=0.5)) as bus:
        broker.stop()
        publisher = PublishingCheckpointStore(store, bus, asyncio.get_running_loop(), log)
        await asyncio.to_thread(publisher.put_block, ORIGIN, BLOCK, address(key), block)
    assert store.get_block(ORIGIN, BLOCK) == block
    (line,) = log.named("bus.attestations_unpublished")
    assert "BusUnavailableError" in line["error"] and line["messages"] == 3
