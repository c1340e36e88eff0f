"""SubstrateSubmitter against a real chopsticks chain: batches delivered once, replays skipped,
a restart resumes, the pool's refusals map to what the delivery worker acts on, and the real
DeliveryWorker takes attested messages to DELIVERED."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from chains.substrate.chopsticks import (
    ChopsticksNode,
)
from chains.substrate.config import SubstrateChainConfig
from chains.substrate.evidence import RemarkCalls, decode_remark_extrinsic
from chains.substrate.extrinsic import ExtraField
from chains.substrate.keys import Sr25519Keypair
from chains.substrate.remark import Delivery as DeliveryRemark
from chains.substrate.remark import decode_remark, is_ours
from chains.substrate.rpc import SubstrateRpc
from chains.substrate.submitter import SignedDelivery, SubstrateSubmitter
from proofs.errors import MalformedEncodingError
from proofs.hashing import blake2_256
from relayer.delivery import DeliveryWorker
from relayer.errors import PermanentChainError, TransientChainError
from relayer.message import Message
from relayer.plugin import BroadcastResult, Delivery, DeliverySettings
from relayer.store import Ledger, ObservedRow, State
from tests.integration.chopsticks import running_chopsticks
from tests.integration.substrate_proxy import WsRpcProxy

pytestmark = pytest.mark.slow

CHAIN = "xrly-substrate-dst"
ORIGIN, DESTINATION = 1000, 3000
T = TypeVar("T")


@pytest.fixture(scope="module")
def chopsticks() -> Iterator[ChopsticksNode]:
    with running_chopsticks(CHAIN) as node:
        yield node


def config(url: str) -> SubstrateChainConfig:
    return SubstrateChainConfig(
        rpc=url, system_chain=CHAIN, dev=True, extrinsics_commitment="dev-concat"
    )


_nonces = iter(range(1, 1_000_000))


def deliveries(count: int) -> list[Delivery]:
    """Messages no other test of the module delivers (the chain is shared)."""
    out = []
    for _ in range(count):
        message = Message(
            next(_nonces), ORIGIN, b"\x11" * 32, DESTINATION, b"\x22" * 32, b"substrate delivery"
        )
        out.append(Delivery(message.id, message.encode(), b"\x01" * 32, ()))
    return out


def attested_ledger(path: Path, batch: list[Delivery], chain: str) -> Ledger:
    """A ledger holding ``batch`` attested for delivery to ``chain``."""
    ledger = Ledger.open(path)
    ids = [d.message_id for d in batch]
    ledger.record_observed_many(
        [
            ObservedRow(
                id=d.message_id,
                origin_chain="origin",
                destination_chain=chain,
                route=f"origin->{chain}",
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
    return ledger


@pytest.fixture
async def submitter(chopsticks: ChopsticksNode) -> AsyncIterator[SubstrateSubmitter]:
    sub = SubstrateSubmitter(
        chain_name=CHAIN,
        config=config(chopsticks.ws_url),
        signer=Sr25519Keypair.from_uri("//Alice"),
    )
    await sub.start()
    try:
        yield sub
    finally:
        await sub.close()


async def until(probe: Callable[[], Awaitable[T | None]], timeout: float = 60.0) -> T:
    async with asyncio.timeout(timeout):
        while (value := await probe()) is None:
            await asyncio.sleep(0.05)
    return value


async def delivery_counts(url: str) -> Counter[bytes]:
    """Every delivery remark on the chain that made its Remarked event, by message id, read
    without the submitter's index."""
    counts: Counter[bytes] = Counter()
    calls = RemarkCalls((0, 7), (24, 2))
    layout = (ExtraField.ERA, ExtraField.COMPACT, ExtraField.COMPACT)
    async with SubstrateRpc.connect(url, chain=CHAIN, timeout=60) as rpc:
        head = await rpc.header(await rpc.finalized_head())
        assert head is not None
        for number in range(1, head.number + 1):
            block_hash = await rpc.block_hash(number)
            assert block_hash is not None
            block = await rpc.block(block_hash)
            assert block is not None
            events = {
                (e.extrinsic_index, e.remark_hash) for e in await rpc.remarked_events(block_hash)
            }
            for index, extrinsic in enumerate(block.extrinsics):
                try:
                    decoded = decode_remark_extrinsic(extrinsic, layout, calls)
                except MalformedEncodingError:
                    continue
                for remark in decoded.remarks:
                    if is_ours(remark) and (index, blake2_256(remark)) in events:
                        content = decode_remark(remark)
                        if isinstance(content, DeliveryRemark):
                            counts[content.message_id] += 1
    return counts


async def test_a_batch_is_delivered_once_and_then_skipped_by_simulate(
    submitter: SubstrateSubmitter, chopsticks: ChopsticksNode
) -> None:
    batch = deliveries(100)
    ids = [d.message_id for d in batch]
    assert await submitter.simulate(batch) == [True] * len(batch)
    pending = await submitter.prepare(batch)
    assert pending.tx_hash == blake2_256(pending.extrinsic)
    balance = await submitter.balance()
    sent = time.monotonic()
    assert await submitter.broadcast(pending) is BroadcastResult.ACCEPTED
    outcomes = await until(lambda: submitter.outcome(pending))
    latency = time.monotonic() - sent
    print(f"\n{len(batch)} messages in one extrinsic of {len(pending.extrinsic)} bytes: "
          f"submit -> finalized outcome {latency:.2f} s")  # fmt: skip

    assert [o.message_id for o in outcomes] == ids
    assert all(o.delivered and o.tx_hash == pending.tx_hash for o in outcomes)
    # TransactionFeePaid's actual fee, on the first outcome only (the core counts it once per
    # extrinsic): what the extrinsic took from the signer, nothing else having moved its funds.
    fee = outcomes[0].fee
    assert fee is not None and fee > 0
    assert all(o.fee is None for o in outcomes[1:])
    assert balance - await submitter.balance() == fee
    assert await submitter.delivered_flags(ids) == [True] * len(ids)
    assert await submitter.simulate(batch) == [False] * len(batch)
    assert await submitter.confirmations(pending.tx_hash) == 1
    counts = await delivery_counts(chopsticks.ws_url)
    assert [counts[mid] for mid in ids] == [1] * len(ids)


async def test_a_restarted_submitter_resumes_a_recorded_bumped_extrinsic(
    submitter: SubstrateSubmitter, chopsticks: ChopsticksNode
) -> None:
    batch = deliveries(3)
    first = await submitter.prepare(batch)
    bumped = submitter.bump(first)
    assert bumped is not None
    assert bumped.nonce == first.nonce and bumped.tip == first.tip + 1
    assert bumped.hashes == (first.tx_hash, bumped.tx_hash)
    raw = bumped.encode()  # what the ledger holds; the process dies before the broadcast
    await submitter.close()

    restarted = SubstrateSubmitter(
        chain_name=CHAIN,
        config=config(chopsticks.ws_url),
        signer=Sr25519Keypair.from_uri("//Alice"),
        scan_window=2,  # the inclusion lies above the window start: found by the forward scan
    )
    await restarted.start()
    try:
        pending = restarted.decode_pending(raw)
        assert isinstance(pending, SignedDelivery) and pending == bumped
        assert await restarted.resync_nonce(at_least=pending.nonce + 1) == pending.nonce + 1
        assert await restarted.broadcast(pending) is BroadcastResult.ACCEPTED
        outcomes = await until(lambda: restarted.outcome(pending))
        assert all(o.delivered and o.tx_hash == bumped.tx_hash for o in outcomes)
        assert await restarted.delivered_flags([d.message_id for d in batch]) == [True] * 3
    finally:
        await restarted.close()


@pytest.fixture
async def proxied(
    chopsticks: ChopsticksNode,
) -> AsyncIterator[tuple[WsRpcProxy, SubstrateSubmitter]]:
    async with WsRpcProxy(chopsticks.ws_url) as proxy:
        sub = SubstrateSubmitter(
            chain_name=CHAIN, config=config(proxy.url), signer=Sr25519Keypair.from_uri("//Alice")
        )
        await sub.start()
        try:
            yield proxy, sub
        finally:
            await sub.close()


async def refused(
    proxied: tuple[WsRpcProxy, SubstrateSubmitter], error: dict[str, Any]
) -> tuple[SubstrateSubmitter, Any]:
    proxy, sub = proxied
    pending = await sub.prepare(deliveries(1))
    proxy.fail_next("author_submitExtrinsic", error)
    try:
        return sub, await sub.broadcast(pending)
    finally:
        assert proxy.replaced == ["author_submitExtrinsic"]


async def test_priority_too_low_asks_for_a_fee_bump(
    proxied: tuple[WsRpcProxy, SubstrateSubmitter],
) -> None:
    error = {
        "code": 1014,
        "message": "Priority is too low: (140000 vs 140000)",
        "data": "The transaction has too low priority to replace another transaction already "
        "in the pool.",
    }
    _, answer = await refused(proxied, error)
    assert answer is BroadcastResult.FEE_TOO_LOW


async def test_an_outdated_extrinsic_reports_its_nonce_used(
    proxied: tuple[WsRpcProxy, SubstrateSubmitter],
) -> None:
    error = {"code": 1010, "message": "Invalid Transaction", "data": "Transaction is outdated"}
    _, answer = await refused(proxied, error)
    assert answer is BroadcastResult.NONCE_USED


async def test_a_stale_extrinsic_reports_its_nonce_used(
    proxied: tuple[WsRpcProxy, SubstrateSubmitter],
) -> None:
    error = {"code": 1010, "message": "Extrinsic is invalid", "data": {"invalid": {"stale": None}}}
    _, answer = await refused(proxied, error)
    assert answer is BroadcastResult.NONCE_USED


async def test_any_other_invalid_extrinsic_is_a_permanent_error(
    proxied: tuple[WsRpcProxy, SubstrateSubmitter],
) -> None:
    error = {
        "code": 1010,
        "message": "Invalid Transaction",
        "data": "Transaction has a bad signature",
    }
    with pytest.raises(PermanentChainError, match="bad signature"):
        await refused(proxied, error)


async def test_a_dropped_websocket_is_retried_in_place_on_a_new_connection(
    proxied: tuple[WsRpcProxy, SubstrateSubmitter],
) -> None:
    proxy, sub = proxied
    await proxy.drop()
    assert await sub.resync_nonce() >= 0


async def test_a_node_that_stays_down_fails_the_read_and_the_next_one_reconnects(
    proxied: tuple[WsRpcProxy, SubstrateSubmitter],
) -> None:
    proxy, sub = proxied
    proxy.refuse(True)
    await proxy.drop()
    with pytest.raises(TransientChainError):
        await sub.resync_nonce()
    proxy.refuse(False)
    assert await sub.resync_nonce() >= 0


async def test_the_delivery_worker_takes_attested_messages_to_delivered(
    chopsticks: ChopsticksNode, tmp_path: Path
) -> None:
    batch = deliveries(25)
    ids = [d.message_id for d in batch]
    ledger = attested_ledger(tmp_path / "ledger.db", batch, CHAIN)
    sub = SubstrateSubmitter(
        chain_name=CHAIN,
        config=config(chopsticks.ws_url),
        signer=Sr25519Keypair.from_uri("//Alice"),
    )
    worker = DeliveryWorker(
        chain=CHAIN,
        submitter=sub,  # type: ignore[arg-type]  # takes its own PendingTx type
        ledger=ledger,
        log=_QuietLog(),
        settings=DeliverySettings(batch_size=20, max_in_flight=2, submit_timeout=60, reorg_depth=1),
        poll_interval=0.1,
    )
    task = asyncio.create_task(worker.run())
    try:

        async def all_delivered() -> bool | None:
            if task.done():
                task.result()
            states = ledger.states(ids)
            return True if all(s is State.DELIVERED for s in states.values()) else None

        await until(all_delivered)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        ledger.close()
    counts = await delivery_counts(chopsticks.ws_url)
    assert [counts[mid] for mid in ids] == [1] * len(ids)


class _QuietLog:
    def bind(self, **_: Any) -> _QuietLog:
        return self

    def debug(self, *_: Any, **__: Any) -> None: ...
    def info(self, *_: Any, **__: Any) -> None: ...
    def warning(self, *_: Any, **__: Any) -> None: ...
    def error(self, *_: Any, **__: Any) -> None: ...
