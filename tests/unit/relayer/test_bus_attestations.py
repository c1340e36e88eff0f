"""relayer.bus.attestations on the in-process bus: attesters publish what they store, the
relayer keeps only what verifies, a replay changes nothing, and a block short of a quorum is
asked for again and answered from the attester's own store.

Signatures are real (anvil's public dev keys, eth-account as the signer); the MQTT broker
versions of these paths are in tests/integration/test_bus_attestations_mqtt.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from eth_account import Account

from chains.evm.config import EvmChainConfig
from relayer.bus import (
    AttestationNotice,
    AttestationRequest,
    MemoryBus,
    Topics,
    decode_notice,
    encode_notice,
)
from relayer.bus.attestations import (
    AttestationCheck,
    AttestationCollector,
    AttestationRefusedError,
    AttestationRequester,
    PublishingCheckpointStore,
    blocks_short_of_quorum,
)
from relayer.bus.errors import PayloadError, PayloadTooLargeError
from relayer.bus.payloads import MAX_BATCH_ENTRIES, MAX_PAYLOAD_BYTES, AttestationBatchNotice
from relayer.checkpoints import Attestation, DirectoryCheckpointStore
from relayer.config import Config, load_config
from relayer.core import Core
from relayer.plugin import load_plugin
from relayer.store import Ledger, State
from tests.unit.relayer.test_core import (
    COMMITTEE,
    COMMITTEE_KEYS,
    CONFIG,
    STRANGER_KEY,
    RecordingLog,
    genuine,
    sign,
)

BLOCK = b"\xb1" * 32
ORIGIN, DESTINATION = 1000, 2000


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "relayer.toml"
    committee = ", ".join(f'"{a}"' for a in COMMITTEE)
    path.write_text(CONFIG.format(committee=committee), encoding="utf-8")
    return load_config(path, plugin_models={"evm": EvmChainConfig})


def address(key: str) -> bytes:
    return bytes.fromhex(Account.from_key(key).address[2:])


def signed(
    config: Config,
    key: str,
    index: int,
    *,
    block: bytes = BLOCK,
    claimed_signer: bytes | None = None,
    destination: int = DESTINATION,
) -> Attestation:
    """``key``'s real attestation of message ``index`` of ``block``."""
    message_id = index.to_bytes(32, "big")
    chain = config.chain_by_domain(destination)
    digest = load_plugin(chain.type).attestation_digest(chain, ORIGIN, message_id, block)
    return Attestation(
        signer=address(key) if claimed_signer is None else claimed_signer,
        signature=sign(key, digest),
        origin_domain=ORIGIN,
        message_id=message_id,
        origin_block_hash=block,
        destination_domain=destination,
    )


def notice(attestation: Attestation) -> AttestationNotice:
    return AttestationNotice.from_attestation(attestation)


# --- the check ---------------------------------------------------------------------------------


def test_a_committee_members_real_signature_counts(config: Config) -> None:
    attestation = signed(config, COMMITTEE_KEYS[0], 1)
    assert AttestationCheck(config).check(notice(attestation)) == attestation


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ("stranger", "not_a_member"),
        ("claims_a_member", "wrong_signer"),
        ("other_block", "wrong_signer"),
        ("garbage_signature", "bad_signature"),
        ("unknown_origin", "unknown_origin"),
        ("unknown_destination", "unknown_destination"),
    ],
)
def test_a_forged_notice_is_refused_with_its_reason(
    config: Config, forge: str, reason: str
) -> None:
    member = address(COMMITTEE_KEYS[0])
    real = notice(signed(config, COMMITTEE_KEYS[1], 1))
    forged = {
        "stranger": notice(signed(config, STRANGER_KEY, 1)),
        # A stranger's signature filed under a member's name.
        "claims_a_member": notice(signed(config, STRANGER_KEY, 1, claimed_signer=member)),
        # A member's real signature over another block, claimed for this one.
        "other_block": AttestationNotice(
            origin_domain=ORIGIN,
            destination_domain=DESTINATION,
            message_id=real.message_id,
            origin_block_hash=BLOCK,
            signer=real.signer,
            signature=signed(config, COMMITTEE_KEYS[1], 1, block=b"\xb2" * 32).signature,
        ),
        "garbage_signature": AttestationNotice(
            origin_domain=ORIGIN,
            destination_domain=DESTINATION,
            message_id=real.message_id,
            origin_block_hash=BLOCK,
            signer=real.signer,
            signature=b"\x01" * 64 + b"\x1d",  # v = 29: no such recovery id
        ),
        "unknown_origin": AttestationNotice(
            origin_domain=7,
            destination_domain=DESTINATION,
            message_id=real.message_id,
            origin_block_hash=BLOCK,
            signer=real.signer,
            signature=real.signature,
        ),
        "unknown_destination": AttestationNotice(
            origin_domain=ORIGIN,
            destination_domain=9,
            message_id=real.message_id,
            origin_block_hash=BLOCK,
            signer=real.signer,
            signature=real.signature,
        ),
    }[forge]
    with pytest.raises(AttestationRefusedError) as caught:
        AttestationCheck(config).check(forged)
    assert caught.value.reason == reason


# --- collector and publisher on one bus ---------------------------------------------------------


@contextlib.asynccontextmanager
async def running(*coroutines: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[DirectoryCheckpointStore, DirectoryCheckpointStore]]:
    """(the attester's own store, the relayer's)."""
    yield (
        DirectoryCheckpointStore(tmp_path / "attester"),
        DirectoryCheckpointStore(tmp_path / "relayer"),
    )


async def test_published_attestations_reach_the_relayers_store_once_and_forgeries_never(
    config: Config, stores: tuple[DirectoryCheckpointStore, DirectoryCheckpointStore]
) -> None:
    attester_store, relayer_store = stores
    log = RecordingLog()
    woken = asyncio.Event()
    async with MemoryBus() as bus:
        collector = AttestationCollector(
            bus, relayer_store, AttestationCheck(config), log, on_stored=woken.set
        )
        async with running(collector.run()):
            await collector.wait_subscribed(5)
            publisher = PublishingCheckpointStore(
                attester_store, bus, asyncio.get_running_loop(), log
            )
            block = [signed(config, COMMITTEE_KEYS[0], n) for n in range(5)]
            await asyncio.to_thread(
                publisher.put_block, ORIGIN, BLOCK, address(COMMITTEE_KEYS[0]), block
            )
            # Every notice again ten times, in reverse order, and a forgery among them.
            forged = notice(signed(config, STRANGER_KEY, 0, claimed_signer=block[0].signer))
            for _ in range(10):
                for attestation in reversed(block):
                    await bus.publish(notice(attestation))
                await bus.publish(forged)
            await asyncio.wait_for(woken.wait(), 5)
            async with asyncio.timeout(5):
                while collector.stats["duplicate"] < 50:
                    await asyncio.sleep(0.01)
            await collector.flush()
    assert attester_store.get_block(ORIGIN, BLOCK) == block
    kept = relayer_store.get_block(ORIGIN, BLOCK)
    assert sorted(kept, key=lambda a: a.message_id) == block
    assert collector.stats["stored"] == 5 and collector.stats["wrong_signer"] == 10
    # A replayed forgery is logged once, not ten times.
    assert len(log.named("bus.attestation_refused")) == 1


async def test_put_block_on_the_event_loop_is_refused(
    config: Config, stores: tuple[DirectoryCheckpointStore, DirectoryCheckpointStore]
) -> None:
    async with MemoryBus() as bus:
        publisher = PublishingCheckpointStore(
            stores[0], bus, asyncio.get_running_loop(), RecordingLog()
        )
        attestation = signed(config, COMMITTEE_KEYS[0], 1)
        with pytest.raises(RuntimeError, match="worker thread"):
            publisher.put_block(ORIGIN, BLOCK, attestation.signer, [attestation])


async def test_a_closed_bus_leaves_the_attestation_stored_locally_and_logged(
    config: Config, stores: tuple[DirectoryCheckpointStore, DirectoryCheckpointStore]
) -> None:
    log = RecordingLog()
    bus = MemoryBus()
    async with bus:
        publisher = PublishingCheckpointStore(
            stores[0], bus, asyncio.get_running_loop(), log, timeout=2
        )
    attestation = signed(config, COMMITTEE_KEYS[0], 1)
    await asyncio.to_thread(publisher.put_block, ORIGIN, BLOCK, attestation.signer, [attestation])
    assert stores[0].get_block(ORIGIN, BLOCK) == [attestation]
    assert log.named("bus.attestations_unpublished")


async def test_a_block_short_of_a_quorum_is_asked_for_and_the_attesters_answer(
    config: Config, stores: tuple[DirectoryCheckpointStore, DirectoryCheckpointStore]
) -> None:
    attester_store, relayer_store = stores
    log = RecordingLog()
    members = [address(key) for key in COMMITTEE_KEYS[:2]]
    # Both attesters stored their signatures while no relayer listened.
    for key in COMMITTEE_KEYS[:2]:
        attester_store.put_block(
            ORIGIN, BLOCK, address(key), [signed(config, key, n) for n in range(3)]
        )
    clock = [1000.0]
    async with MemoryBus() as bus:
        collector = AttestationCollector(bus, relayer_store, AttestationCheck(config), log)
        publishers = [
            PublishingCheckpointStore(attester_store, bus, asyncio.get_running_loop(), log)
            for _ in members
        ]
        requester = AttestationRequester(
            bus, lambda _before: {(ORIGIN, BLOCK)}, log, after=30, every=30, clock=lambda: clock[0]
        )
        async with running(
            collector.run(),
            *(p.answer_requests(m, [ORIGIN]) for p, m in zip(publishers, members, strict=True)),
        ):
            await collector.wait_subscribed(5)
            for publisher in publishers:
                await publisher.wait_answering(5)
            assert await requester.ask_once() == 1
            async with asyncio.timeout(5):
                while len(relayer_store.get_block(ORIGIN, BLOCK)) < 6:
                    await asyncio.sleep(0.02)
            # Asked again only after `every`, then after twice as long.
            assert await requester.ask_once() == 0
            for step, asked in ((15, 0), (15, 1), (30, 0), (30, 1)):
                clock[0] += step
                assert await requester.ask_once() == asked
    assert {a.signer for a in relayer_store.get_block(ORIGIN, BLOCK)} == set(members)
    assert sum(p.answered for p in publishers) >= 2


async def test_nothing_is_asked_for_while_the_worker_is_still_taking_notices(
    config: Config, stores: tuple[DirectoryCheckpointStore, DirectoryCheckpointStore]
) -> None:
    _, relayer_store = stores
    log = RecordingLog()
    async with MemoryBus() as bus, bus.subscribe(AttestationRequest, origins=[ORIGIN]) as asked:
        collector = AttestationCollector(bus, relayer_store, AttestationCheck(config), log)
        assert collector.last_taken == float("-inf")
        now = [0.0]
        requester = AttestationRequester(
            bus,
            lambda _before: {(ORIGIN, BLOCK)},
            log,
            busy=lambda: now[0] - collector.last_taken < 2.0,
            after=0,
            every=30,
        )
        # A notice just taken: the worker is behind, not short of signatures.
        collector.take(notice(signed(config, COMMITTEE_KEYS[0], 0)))
        now[0] = collector.last_taken + 1.0
        assert await requester.ask_once() == 0
        assert requester.requests == 0 and not log.named("bus.attestations_requested")
        # Quiet for longer than that: the block is asked for.
        now[0] = collector.last_taken + 2.5
        assert await requester.ask_once() == 1
        async with asyncio.timeout(5):
            assert await anext(asked) == AttestationRequest(origin_domain=ORIGIN, block_hash=BLOCK)


async def test_a_requester_without_busy_is_never_busy() -> None:
    async with MemoryBus() as bus:
        requester = AttestationRequester(bus, lambda _before: {(ORIGIN, BLOCK)}, RecordingLog())
        assert await requester.ask_once() == 1


async def test_blocks_short_of_quorum_are_the_verified_messages_blocks(
    tmp_path: Path, config: Config
) -> None:
    ledger = Ledger.open(config.relayer.database)
    try:
        core = Core(config, ledger, DirectoryCheckpointStore(tmp_path / "c"), RecordingLog())
        await core.accept(genuine())
        verified = ledger.in_state(State.VERIFIED)
        assert verified
        waiting = blocks_short_of_quorum(ledger, config)
        newest = max(r.updated_at for r in verified)
        assert waiting(newest) == {(ORIGIN, r.block_hash) for r in verified}
        assert waiting(min(r.updated_at for r in verified) - 1) == set()
    finally:
        ledger.close()


async def test_a_request_crosses_the_bus_on_its_own_topic() -> None:
    request = AttestationRequest(origin_domain=ORIGIN, block_hash=BLOCK)
    assert Topics().for_notice(request) == f"relayer/v1/{ORIGIN}/attestation-requests"
    assert decode_notice(encode_notice(request)) == request
    async with MemoryBus() as bus, bus.subscribe(AttestationRequest, origins=[ORIGIN]) as got:
        await bus.publish(AttestationNotice.from_attestation(_fake_attestation()))
        await bus.publish(request)
        async with asyncio.timeout(5):
            assert await anext(got) == request


def _fake_attestation() -> Attestation:
    return Attestation(
        signer=b"\x11" * 20,
        signature=b"\x22" * 64 + b"\x1b",
        origin_domain=ORIGIN,
        message_id=b"\x01" * 32,
        origin_block_hash=BLOCK,
        destination_domain=DESTINATION,
    )


async def test_a_batch_the_store_cannot_take_is_kept_and_written_later(
    config: Config, tmp_path: Path
) -> None:
    # The store's root is a file: every write fails until it is moved away.
    root = tmp_path / "relayer"
    root.write_text("in the way")
    store = DirectoryCheckpointStore(root)
    log = RecordingLog()
    collector = AttestationCollector(MemoryBus(), store, AttestationCheck(config), log)
    block = [signed(config, COMMITTEE_KEYS[0], n) for n in range(3)]
    for attestation in block:
        collector.take(notice(attestation))
    assert await collector.flush() == 0
    assert log.named("bus.attestations_unstored")
    # Not counted as seen while unstored: a replay is still a duplicate of the queued one.
    collector.take(notice(block[0]))
    assert collector.stats["duplicate"] == 1
    root.unlink()
    assert await collector.flush() == 3
    assert sorted(store.get_block(ORIGIN, BLOCK), key=lambda a: a.message_id) == block
    collector.take(notice(block[1]))
    assert collector.stats["duplicate"] == 2 and await collector.flush() == 0


async def test_a_stopped_collector_stores_what_it_had_checked(
    config: Config, stores: tuple[DirectoryCheckpointStore, DirectoryCheckpointStore]
) -> None:
    relayer_store = stores[1]
    block = [signed(config, COMMITTEE_KEYS[0], n) for n in range(20)]
    async with MemoryBus() as bus:
        # A flush interval longer than the test: only the stop can write them.
        collector = AttestationCollector(
            bus, relayer_store, AttestationCheck(config), RecordingLog(), flush_interval=60
        )
        task = asyncio.create_task(collector.run())
        await collector.wait_subscribed(5)
        for attestation in block:
            await bus.publish(notice(attestation))
        async with asyncio.timeout(5):
            while collector.unstored < len(block):
                await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(relayer_store.get_block(ORIGIN, BLOCK)) == len(block)


# --- batches: one notice per block and signer --------------------------------------------------


def test_a_batch_round_trips_on_its_own_topic(config: Config) -> None:
    block = [signed(config, COMMITTEE_KEYS[0], n) for n in range(3)]
    (batch,) = AttestationBatchNotice.from_attestations(block)
    assert Topics().for_notice(batch) == f"relayer/v1/{ORIGIN}/attestation-batches"
    assert decode_notice(encode_notice(batch)) == batch
    assert [n.to_attestation() for n in batch.notices()] == block


def test_a_big_block_is_split_into_batches_that_fit_a_payload(config: Config) -> None:
    one = signed(config, COMMITTEE_KEYS[0], 0)
    many = [
        Attestation(
            signer=one.signer,
            signature=one.signature,
            origin_domain=ORIGIN,
            message_id=n.to_bytes(32, "big"),
            origin_block_hash=BLOCK,
            destination_domain=DESTINATION,
        )
        for n in range(MAX_BATCH_ENTRIES + 1)
    ]
    batches = AttestationBatchNotice.from_attestations(many)
    assert [len(b.entries) for b in batches] == [MAX_BATCH_ENTRIES, 1]
    assert len(encode_notice(batches[0])) < MAX_PAYLOAD_BYTES // 2
    # One entry past the cap is not a batch a reader takes.
    too_many = msgspec.msgpack.encode(
        {
            "format": "bus.attestation_batch.v1",
            "origin_domain": ORIGIN,
            "origin_block_hash": BLOCK,
            "signer": one.signer,
            "entries": [[a.message_id, DESTINATION, a.signature] for a in many],
        }
    )
    with pytest.raises(PayloadError) as raised:
        decode_notice(too_many)
    assert raised.value.reason == "invalid"
    with pytest.raises(PayloadTooLargeError):
        decode_notice(too_many, max_bytes=1000)


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\x00garbage",
        msgspec.msgpack.encode({"format": "bus.attestation_batch.v1", "origin_domain": ORIGIN}),
        msgspec.msgpack.encode(
            {
                "format": "bus.attestation_batch.v1",
                "origin_domain": ORIGIN,
                "origin_block_hash": BLOCK,
                "signer": b"\x11" * 20,
                "entries": [[b"\x01" * 32, DESTINATION, b"\x22" * 64]],  # a short signature
            }
        ),
        msgspec.msgpack.encode(
            {
                "format": "bus.attestation_batch.v1",
                "origin_domain": ORIGIN,
                "origin_block_hash": BLOCK,
                "signer": b"\x11" * 20,
                "entries": [],
            }
        ),
    ],
)
def test_a_malformed_batch_is_a_payload_error(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_notice(payload)


async def test_a_batch_with_a_forged_entry_counts_its_real_ones_and_a_replay_nothing(
    config: Config, stores: tuple[DirectoryCheckpointStore, DirectoryCheckpointStore]
) -> None:
    _, relayer_store = stores
    log = RecordingLog()
    async with MemoryBus() as bus:
        collector = AttestationCollector(bus, relayer_store, AttestationCheck(config), log)
        real = [signed(config, COMMITTEE_KEYS[0], n) for n in range(4)]
        forged = signed(config, STRANGER_KEY, 9, claimed_signer=real[0].signer)
        (batch,) = AttestationBatchNotice.from_attestations([*real[:2], forged, *real[2:]])
        await collector.take_batch(batch)
        assert collector.stats["wrong_signer"] == 1 and collector.unstored == 4
        assert await collector.flush() == 4
        # The same batch again, and one entry of it as a single notice: nothing new.
        await collector.take_batch(batch)
        collector.take(notice(real[1]))
        assert await collector.flush() == 0
    assert collector.stats["duplicate"] == 5
    assert collector.stats["wrong_signer"] == 2
    assert len(log.named("bus.attestation_refused")) == 1
    assert sorted(relayer_store.get_block(ORIGIN, BLOCK), key=lambda a: a.message_id) == real


async def test_a_single_notice_of_the_previous_release_still_counts_beside_batches(
    config: Config, stores: tuple[DirectoryCheckpointStore, DirectoryCheckpointStore]
) -> None:
    _, relayer_store = stores
    woken = asyncio.Event()
    async with MemoryBus() as bus:
        collector = AttestationCollector(
            bus, relayer_store, AttestationCheck(config), RecordingLog(), on_stored=woken.set
        )
        async with running(collector.run()):
            await collector.wait_subscribed(5)
            old = signed(config, COMMITTEE_KEYS[1], 0)
            await bus.publish(notice(old))
            new = [signed(config, COMMITTEE_KEYS[0], n) for n in range(3)]
            for batch in AttestationBatchNotice.from_attestations(new):
                await bus.publish(batch)
            async with asyncio.timeout(5):
                while len(relayer_store.get_block(ORIGIN, BLOCK)) < 4:
                    await asyncio.sleep(0.01)
            await asyncio.wait_for(woken.wait(), 5)
    assert collector.stats["stored"] == 4
