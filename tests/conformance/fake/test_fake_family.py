"""The fake family fits the plugin boundary: its plugin is a ``ChainPlugin``, its verifier
refuses tampered evidence, its node refuses replays, and the core's follower reads it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from proofs.errors import ProofError
from relayer.config import ChainConfig
from relayer.delivery import DeliveryWorker
from relayer.errors import EvidenceRejectedError, TransientChainError
from relayer.follower import Follower, LedgerCursor
from relayer.message import Message
from relayer.plugin import (
    BroadcastResult,
    ChainPlugin,
    ChainReader,
    DeliverySettings,
    Observation,
    PendingTx,
    Signer,
    Submitter,
    load_plugin,
)
from relayer.store import Ledger, ObservedRow, State
from tests.conformance.fake import register, unregister
from tests.conformance.fake.blocks import Header, TxKind, encode_deliveries
from tests.conformance.fake.config import FakeChainConfig
from tests.conformance.fake.evidence import build_observation
from tests.conformance.fake.harness import FakeHarness, start
from tests.conformance.fake.keys import FakeSigner
from tests.conformance.fake.merkle import inclusion_path, root_from_path, tree_root
from tests.conformance.fake.plugin import PLUGIN
from tests.conformance.fake.reader import FakeReader
from tests.conformance.fake.submitter import FakeSubmitter
from tests.conformance.harness import ORIGIN_DOMAIN, PEER_DOMAIN


# Checked by mypy, not at run time (isinstance only sees that the members exist). Only the
# reader: no family's submitter fits ``Submitter`` statically, since each takes its own
# pending type where the protocol passes any ``PendingTx``.
def _static_reader(reader: FakeReader) -> ChainReader:
    return reader


# --- without a node ------------------------------------------------------------------------------


def test_plugin_is_a_chain_plugin_registered_by_its_own_entry_point() -> None:
    assert isinstance(PLUGIN, ChainPlugin)
    register()
    try:
        assert load_plugin("fake") is PLUGIN
    finally:
        unregister()


@pytest.mark.parametrize("size", range(1, 18))
def test_every_inclusion_path_leads_to_the_root(size: int) -> None:
    items = [b"tx %d" % i for i in range(size)]
    for index in range(size):
        path = inclusion_path(items, index)
        assert root_from_path(items[index], index, size, path) == tree_root(items)
        with pytest.raises(ProofError):
            root_from_path(items[index], index, size, path[:-1] if path else (b"\0" * 32,))


def _observation(domain: int = ORIGIN_DOMAIN) -> Observation:
    """A block of a delivery and two dispatches, and an observation of the second dispatch."""
    sender = FakeSigner(b"\x01" * 32, "a test")
    messages = [
        Message(i, domain, sender.address, PEER_DOMAIN, b"\x0b" * 32, b"hello %d" % i)
        for i in range(2)
    ]
    txs = [
        sender.sign(TxKind.DELIVERY, 0, 1, encode_deliveries([(b"\x02" * 32, b"x")])).encode(),
        *(
            sender.sign(TxKind.DISPATCH, 1 + i, 1, m.encode()).encode()
            for i, m in enumerate(messages)
        ),
    ]
    header = Header(number=5, parent=b"\x03" * 32, tx_count=3, tx_root=tree_root(txs))
    return build_observation(
        chain_name="kit-fake",
        message=messages[1].encode(),
        block_hash=header.hash,
        header=header.encode(),
        tx=txs[2],
        tx_index=2,
        path=inclusion_path(txs, 2),
    )


def _verify(observation: Observation) -> None:
    PLUGIN.verify(_chain(), observation)


def _chain() -> ChainConfig:
    return ChainConfig(
        name="kit-fake",
        type="fake",
        domain=ORIGIN_DOMAIN,
        finality="confirmations",
        plugin=FakeChainConfig(rpc="http://127.0.0.1:1", network="n"),
    )


def test_verify_takes_an_honest_observation() -> None:
    observation = _observation()
    verified = PLUGIN.verify(_chain(), observation)
    assert verified.message == observation.message
    assert verified.block_hash == observation.block_hash


def test_verify_refuses_other_message_bytes() -> None:
    observation = _observation()
    for position in (0, 50, len(observation.message) - 1):
        message = bytearray(observation.message)
        message[position] ^= 1
        with pytest.raises(EvidenceRejectedError):
            _verify(_replace(observation, message=bytes(message)))


def test_verify_refuses_evidence_changed_at_any_byte() -> None:
    observation = _observation()
    for position in range(len(observation.evidence)):
        evidence = bytearray(observation.evidence)
        evidence[position] ^= 1
        with pytest.raises(EvidenceRejectedError):
            _verify(_replace(observation, evidence=bytes(evidence)))


def test_verify_refuses_another_block_or_height_or_domain() -> None:
    observation = _observation()
    with pytest.raises(EvidenceRejectedError, match="hashes to"):
        _verify(_replace(observation, block_hash=b"\x04" * 32))
    with pytest.raises(EvidenceRejectedError, match="#5"):
        _verify(_replace(observation, block_number=6))
    with pytest.raises(EvidenceRejectedError, match="origin domain"):
        _verify(_observation(domain=ORIGIN_DOMAIN + 5))


def _replace(observation: Observation, **changes: object) -> Observation:
    return msgspec.structs.replace(observation, **changes)


# --- against a node ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def harness() -> Iterator[FakeHarness]:
    running = start()
    try:
        yield running
    finally:
        running.close()


def _submitter(harness: FakeHarness) -> FakeSubmitter:
    chain = harness.chain()
    key = PLUGIN.submitter_key(chain)
    assert key is not None
    signer = PLUGIN.load_signer(chain, key, base_dir=None, env=harness.key_env())
    assert isinstance(signer, Signer)
    assert "fake:" in repr(signer)
    assert harness.key_env()["KIT_FAKE_SUBMITTER_KEY"] not in repr(signer)
    submitter = PLUGIN.submitter(chain, signer=signer, log=None)
    assert isinstance(submitter, Submitter)
    return submitter


async def test_node_refuses_a_replayed_delivery(harness: FakeHarness) -> None:
    submitter = _submitter(harness)
    try:
        await submitter.start()
        deliveries = harness.deliveries(2)
        assert await submitter.simulate(deliveries) == [True, True]
        first = await submitter.prepare(deliveries)
        assert isinstance(first, PendingTx)
        assert submitter.decode_pending(first.encode()) == first
        assert await submitter.broadcast(first) is BroadcastResult.ACCEPTED
        outcomes = await submitter.outcome(first)
        assert outcomes is not None and all(o.delivered for o in outcomes)
        # The same bytes again: mined already, so its nonce is spent.
        assert await submitter.broadcast(first) is BroadcastResult.NONCE_USED
        assert await submitter.simulate(deliveries) == [False, False]
        assert await submitter.delivered_flags([d.message_id for d in deliveries]) == [True] * 2

        replay = await submitter.prepare(deliveries[:1])
        assert await submitter.broadcast(replay) is BroadcastResult.ACCEPTED
        outcomes = await submitter.outcome(replay)
        assert outcomes is not None
        assert not outcomes[0].delivered and "replay" in (outcomes[0].error or "")
        assert await harness.delivered([d.message_id for d in deliveries]) == [1, 1]
        assert await submitter.confirmations(first.tx_hash) == 2
    finally:
        await submitter.close()


async def test_pool_answers_map_to_broadcast_results(harness: FakeHarness) -> None:
    submitter = _submitter(harness)
    harness.call("POST", "/control/automine", {"on": False})
    try:
        pending = await submitter.prepare(harness.deliveries(1))
        assert await submitter.broadcast(pending) is BroadcastResult.ACCEPTED
        assert await submitter.broadcast(pending) is BroadcastResult.ACCEPTED  # already known
        bumped = submitter.bump(pending)
        assert bumped is not None and bumped.nonce == pending.nonce
        assert await submitter.broadcast(bumped) is BroadcastResult.ACCEPTED
        assert await submitter.broadcast(pending) is BroadcastResult.FEE_TOO_LOW
        assert await submitter.outcome(bumped) is None
        await harness.advance()
        outcomes = await submitter.outcome(bumped)
        assert outcomes is not None and outcomes[0].tx_hash == bumped.tx_hash
        assert outcomes[0].delivered
    finally:
        harness.call("POST", "/control/automine", {"on": True})
        await submitter.close()


async def test_follower_observes_sent_messages(harness: FakeHarness, tmp_path: Path) -> None:
    chain = harness.chain()
    reader = PLUGIN.reader(chain, rpc_url=None, log=None)
    assert isinstance(reader, ChainReader)
    seen: dict[bytes, Observation] = {}
    wanted: set[bytes] = set()
    got = asyncio.Event()

    async def sink(observations: Sequence[Observation]) -> None:
        for observation in observations:
            PLUGIN.verify(chain, observation)
            seen[Message.decode(observation.message).id] = observation
        if wanted and wanted <= seen.keys():
            got.set()

    ledger = Ledger.open(tmp_path / "ledger.db")
    try:
        cursor = LedgerCursor(ledger, chain.name, "test", start_block=reader.start_block)
        follower = Follower(chain=chain.name, reader=reader, cursor=cursor, log=None)
        task = asyncio.create_task(follower.run(sink))
        try:
            ids = await harness.send(3)
            wanted.update(ids)
            await sink([])
            async with asyncio.timeout(10):
                await got.wait()
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        mine = [seen[mid] for mid in ids]
        assert len({o.block_hash for o in mine}) == 1  # sent together, mined together
        assert [o.block_number for o in mine] == sorted(o.block_number for o in mine)
    finally:
        ledger.close()


async def test_reader_refuses_a_lying_endpoint(harness: FakeHarness) -> None:
    await harness.send(1)
    async with harness.lying_chain() as liar:
        reader = PLUGIN.reader(liar, rpc_url=None, log=None)
        try:
            head = await reader.confirmed_head()
            for mode in ("body", "header"):
                harness.call("POST", "/control/lie", {"mode": mode})
                with pytest.raises(ProofError):
                    await reader.read(0, head, after=b"")
        finally:
            await reader.close()
    honest = PLUGIN.reader(harness.chain(), rpc_url=None, log=None)
    try:
        span = await honest.read(0, await honest.confirmed_head(), after=b"")
        assert span.observations
    finally:
        await honest.close()


async def test_reader_reports_a_dropped_endpoint_as_transient(harness: FakeHarness) -> None:
    reader = PLUGIN.reader(harness.chain(), rpc_url=None, log=None)
    try:
        harness.drop()
        with pytest.raises(TransientChainError):
            await reader.confirmed_head()
        harness.restore()
        assert await reader.confirmed_head() >= -1  # answers again
    finally:
        harness.restore()
        await reader.close()


async def test_young_blocks_are_prepared_ahead(harness: FakeHarness) -> None:
    prepared: list[Observation] = []
    reader = PLUGIN.reader(harness.chain(), rpc_url=None, log=None, prepared=prepared.extend)

    class _Cursor:
        def next_block(self) -> int:
            return 0

    background = asyncio.create_task(reader.background(_Cursor()))
    try:
        ids = await harness.dispatch(2)
        async with asyncio.timeout(5):
            while len(prepared) < 2:
                await asyncio.sleep(0.05)
        assert [Message.decode(o.message).id for o in prepared] == ids
        await harness.advance()
    finally:
        background.cancel()
        with pytest.raises(asyncio.CancelledError):
            await background
        await reader.close()


class _QuietLog:
    def bind(self, **_: Any) -> _QuietLog:
        return self

    def debug(self, *_: Any, **__: Any) -> None: ...
    def info(self, *_: Any, **__: Any) -> None: ...
    def warning(self, *_: Any, **__: Any) -> None: ...
    def error(self, *_: Any, **__: Any) -> None: ...


async def test_the_delivery_worker_delivers_each_message_once(
    harness: FakeHarness, tmp_path: Path
) -> None:
    chain = harness.chain()
    batch = harness.deliveries(7)
    ids = [d.message_id for d in batch]
    ledger = Ledger.open(tmp_path / "ledger.db")
    ledger.record_observed_many(
        [
            ObservedRow(
                id=d.message_id,
                origin_chain="peer",
                destination_chain=chain.name,
                route=f"peer->{chain.name}",
                nonce=n,
                message=d.message,
                block_number=1,
                block_hash=d.origin_block_hash,
                evidence=b"",
            )
            for n, d in enumerate(batch)
        ]
    )
    ledger.transition_many(ids, State.VERIFIED, expect=State.OBSERVED)
    ledger.transition_many(ids, State.ATTESTED, expect=State.VERIFIED)
    settings = PLUGIN.delivery_settings(chain)
    worker = DeliveryWorker(
        chain=chain.name,
        submitter=_submitter(harness),  # type: ignore[arg-type]  # takes its own PendingTx type
        ledger=ledger,
        log=_QuietLog(),
        settings=DeliverySettings(
            batch_size=3,
            max_in_flight=settings.max_in_flight,
            submit_timeout=settings.submit_timeout,
            reorg_depth=settings.reorg_depth,
        ),
        poll_interval=0.05,
    )
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(10):
            while not all(s is State.DELIVERED for s in ledger.states(ids).values()):
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        ledger.close()
    assert await harness.delivered(ids) == [1] * len(ids)
