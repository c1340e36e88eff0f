"""chains.substrate.submitter without a chain: pool answers, bumps, nonces, the pending record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest
import sr25519

from chains.substrate.config import SubstrateChainConfig
from chains.substrate.extrinsic import Extension, SigningContext
from chains.substrate.keys import Sr25519Keypair
from chains.substrate.rpc import (
    Block,
    ExtrinsicEvents,
    FeePaidEvent,
    PermanentRpcError,
    PoolRefusal,
    RemarkedEvent,
    RpcError,
    TransientRpcError,
    extrinsic_events,
    pool_refusal,
)
from chains.substrate.submitter import (
    SignedDelivery,
    SubstrateSubmitter,
    _delivery_remark,
    _signer_of,
)
from proofs.hashing import blake2_256
from proofs.substrate.scale import ScaleReader
from relayer.errors import PermanentChainError, TransientChainError
from relayer.message import Message
from relayer.plugin import BroadcastResult, Delivery, DeliveryOutcome, PendingTx, Submitter

ALICE = Sr25519Keypair.from_uri("//Alice")
CONTEXT = SigningContext(
    genesis_hash=b"\x45" * 32,
    spec_version=1_000_000,
    transaction_version=24,
    extensions=(
        Extension("CheckSpecVersion", True, False),
        Extension("CheckTxVersion", True, False),
        Extension("CheckGenesis", True, False),
        Extension("CheckMortality", False, False),
        Extension("CheckNonce", False, True),
        Extension("ChargeTransactionPayment", False, True),
    ),
    remark_with_event=(0, 7),
    batch_all=(24, 2),
)


@dataclass
class FakeRpc:
    """The few SubstrateRpc methods the tested paths call."""

    chain: str = "dst"
    endpoint: str = "ws://127.0.0.1:9944"
    refusal: RpcError | None = None
    submitted: list[bytes] = field(default_factory=list)
    nonce: int = 5

    async def submit(self, extrinsic: bytes) -> bytes:
        self.submitted.append(extrinsic)
        if self.refusal is not None:
            raise self.refusal
        return blake2_256(extrinsic)

    async def account_nonce(self, account: bytes) -> int:
        return self.nonce

    async def system_chain(self) -> str:
        return self.chain


def submitter(rpc: Any = None, **overrides: Any) -> SubstrateSubmitter:
    config = SubstrateChainConfig(
        rpc="ws://user:secret@127.0.0.1:9944/key?token=x", system_chain="dst", **overrides
    )
    sub = SubstrateSubmitter(chain_name="dst", config=config, signer=ALICE)
    sub._nodes.members[0].connection.current = rpc
    sub._context = CONTEXT
    return sub


def connected(sub: SubstrateSubmitter, index: int = 0) -> Any:
    """The client endpoint ``index`` of ``sub`` holds (a FakeRpc here), or None."""
    return sub._nodes.members[index].connection.current


def deliveries(count: int) -> list[Delivery]:
    messages = [Message(n, 1000, b"\x11" * 32, 3000, b"\x22" * 32, b"x") for n in range(count)]
    return [Delivery(m.id, m.encode(), b"\x01" * 32, ()) for m in messages]


def signed(sub: SubstrateSubmitter, count: int = 2, tip: int = 0) -> SignedDelivery:
    batch = deliveries(count)
    return sub._sign(
        CONTEXT,
        nonce=7,
        remarks=tuple(_delivery_remark(d) for d in batch),
        message_ids=tuple(d.message_id for d in batch),
        tip=tip,
        previous=(),
        signed_after=10,
    )


def test_submitter_and_its_pending_record_satisfy_the_plugin_protocols() -> None:
    sub = submitter()
    assert isinstance(sub, Submitter)
    assert isinstance(signed(sub), PendingTx)
    assert sub.endpoint == "ws://127.0.0.1:9944"  # no credentials, path or query in logs


def test_the_pending_record_survives_encoding() -> None:
    sub = submitter()
    pending = signed(sub)
    assert sub.decode_pending(pending.encode()) == pending
    assert pending.tx_hash == blake2_256(pending.extrinsic)
    assert _signer_of(pending.extrinsic) == ALICE.address


@pytest.mark.parametrize(
    ("code", "message", "data", "refusal"),
    [
        (1013, "Transaction Already Imported", None, PoolRefusal.ALREADY_IMPORTED),
        (1010, "Invalid Transaction", "Transaction is outdated", PoolRefusal.NONCE_USED),
        (1010, "Extrinsic is invalid", {"invalid": {"stale": None}}, PoolRefusal.NONCE_USED),
        (1014, "Priority is too low: (1 vs 1)", "too low priority", PoolRefusal.PRIORITY_TOO_LOW),
        (1010, "Invalid Transaction", "Transaction has a bad signature", PoolRefusal.INVALID),
        (1010, "Invalid Transaction", "Inability to pay some fees", PoolRefusal.INVALID),
        (1011, "Unknown Transaction Validity", None, PoolRefusal.TEMPORARY),
        (1012, "Transaction is temporarily banned", None, PoolRefusal.BANNED),
        (1016, "Immediately Dropped", None, PoolRefusal.TEMPORARY),
        (-32601, "Method not found", None, None),
    ],
)
def test_pool_errors_are_classified_by_code_and_reason(
    code: int, message: str, data: Any, refusal: PoolRefusal | None
) -> None:
    assert pool_refusal(code, message, data) is refusal


@pytest.mark.parametrize(
    ("error", "answer"),
    [
        (TransientRpcError("", 1013, None, PoolRefusal.ALREADY_IMPORTED), BroadcastResult.ACCEPTED),
        (TransientRpcError("", 1010, None, PoolRefusal.NONCE_USED), BroadcastResult.NONCE_USED),
        (TransientRpcError("", 1014, None, PoolRefusal.PRIORITY_TOO_LOW), BroadcastResult.FEE_TOO_LOW),  # noqa: E501
        (TransientRpcError("", 1012, None, PoolRefusal.BANNED), BroadcastResult.ACCEPTED),
        (None, BroadcastResult.ACCEPTED),
    ],
)  # fmt: skip
async def test_broadcast_maps_pool_answers_the_worker_acts_on(
    error: RpcError | None, answer: BroadcastResult
) -> None:
    rpc = FakeRpc(refusal=error)
    sub = submitter(rpc)
    pending = signed(sub)
    assert await sub.broadcast(pending) is answer
    assert rpc.submitted == [pending.extrinsic]
    assert connected(sub) is rpc  # a refusal is an answer: the connection stays


async def test_broadcast_raises_for_invalid_and_for_a_pool_that_cannot_judge() -> None:
    sub = submitter(FakeRpc(refusal=PermanentRpcError("bad", 1010, None, PoolRefusal.INVALID)))
    with pytest.raises(PermanentChainError):
        await sub.broadcast(signed(sub))
    sub = submitter(FakeRpc(refusal=TransientRpcError("?", 1011, None, PoolRefusal.TEMPORARY)))
    with pytest.raises(TransientChainError):
        await sub.broadcast(signed(sub))


def test_a_bump_re_signs_the_same_remarks_at_the_same_nonce_with_a_higher_tip() -> None:
    sub = submitter()
    first = signed(sub, tip=0)
    second = sub.bump(first)
    assert second is not None
    third = sub.bump(second)
    big = sub.bump(signed(sub, tip=1000))
    assert third is not None and big is not None
    assert (second.tip, third.tip, big.tip) == (1, 2, 1250)
    assert second.nonce == third.nonce == first.nonce
    assert (second.remarks, second.message_ids) == (first.remarks, first.message_ids)
    assert third.hashes == (first.tx_hash, second.tx_hash, third.tx_hash)
    assert third.signed_after == first.signed_after
    assert len({first.tx_hash, second.tx_hash, third.tx_hash}) == 3


def test_a_bump_never_offers_more_than_max_tip() -> None:
    sub = submitter(tip=80, max_tip=100)
    bumped = sub.bump(signed(sub, tip=80))
    assert bumped is not None and bumped.tip == 100
    assert sub.bump(bumped) is None  # 125 would pass the cap


def test_the_signature_covers_the_payload_the_runtime_checks() -> None:
    sub = submitter()
    pending = signed(sub, count=1, tip=3)
    reader = ScaleReader(pending.extrinsic)
    reader.compact("length")
    assert reader.u8("version") == 0x84
    reader.u8("address")
    assert reader.fixed(32, "signer") == ALICE.address
    assert reader.u8("sig") == 1
    signature = reader.fixed(64, "signature")
    extra = bytes([0]) + bytes([7 << 2]) + bytes([3 << 2])  # immortal, nonce 7, tip 3
    assert reader.fixed(3, "extra") == extra
    call = reader.fixed(reader.remaining, "call")
    additional = (
        CONTEXT.spec_version.to_bytes(4, "little")
        + CONTEXT.transaction_version.to_bytes(4, "little")
        + CONTEXT.genesis_hash * 2
    )
    payload = call + extra + additional
    if len(payload) > 256:
        payload = blake2_256(payload)
    assert sr25519.verify(signature, payload, ALICE.address)


async def test_nonces_are_taken_in_order_and_the_latest_can_be_given_back() -> None:
    sub = submitter(FakeRpc(nonce=5))
    assert [await sub._take_nonce() for _ in range(3)] == [5, 6, 7]
    sub.release_nonce(6)  # not the latest: ignored
    sub.release_nonce(7)
    assert await sub._take_nonce() == 7
    assert await sub.resync_nonce(at_least=20) == 20


async def test_start_refuses_an_endpoint_serving_another_chain() -> None:
    sub = submitter(FakeRpc(chain="other"))
    with pytest.raises(PermanentChainError, match="system_chain 'other', the config says 'dst'"):
        await sub._check(connected(sub))


def test_a_batch_needs_batch_all_in_the_runtime() -> None:
    sub = submitter()
    context = dataclasses.replace(CONTEXT, batch_all=None)
    with pytest.raises(PermanentChainError, match="batch_size = 1"):
        sub._extrinsic(context, 0, [b"a", b"b"], 0)


BOB = Sr25519Keypair.from_uri("//Bob")


def _record(index: int | None, pallet: str, name: str, attributes: Any) -> dict[str, Any]:
    """One ``System.Events`` record as scalecodec renders it (taken from a chopsticks block)."""
    event = {"module_id": pallet, "event_id": name, "attributes": attributes}
    phase = "Finalization" if index is None else "ApplyExtrinsic"
    return {"phase": phase, "extrinsic_idx": index, "event": event, "topics": []}


def test_remarked_and_fee_paid_events_are_read_per_extrinsic() -> None:
    remark_hash = b"\x33" * 32
    records = [
        _record(1, "Balances", "Withdraw", {"who": "0x" + BOB.address.hex(), "amount": 9}),
        _record(1, "TransactionPayment", "TransactionFeePaid",
                {"who": "0x" + BOB.address.hex(), "actual_fee": 9, "tip": 0}),
        _record(2, "System", "Remarked",
                {"sender": "0x" + ALICE.address.hex(), "hash": "0x" + remark_hash.hex()}),
        _record(2, "Utility", "BatchCompleted", None),
        # scalecodec may render an account as SS58 instead of hex
        _record(2, "TransactionPayment", "TransactionFeePaid",
                {"who": ALICE.printable_address, "actual_fee": 1_370_086_692, "tip": 5}),
        _record(None, "Balances", "Deposit", {"who": "0x" + ALICE.address.hex(), "amount": 1}),
    ]  # fmt: skip
    assert extrinsic_events(records) == ExtrinsicEvents(
        remarked=(RemarkedEvent(extrinsic_index=2, sender=ALICE.address, remark_hash=remark_hash),),
        fees_paid=(
            FeePaidEvent(extrinsic_index=1, who=BOB.address, actual_fee=9, tip=0),
            FeePaidEvent(extrinsic_index=2, who=ALICE.address, actual_fee=1_370_086_692, tip=5),
        ),
    )
    assert extrinsic_events([]) == ExtrinsicEvents(remarked=(), fees_paid=())


@dataclass
class BlockRpc(FakeRpc):
    """One finalized block (#12) holding ``extrinsics``, whose events are ``events``."""

    extrinsics: tuple[bytes, ...] = ()
    events: ExtrinsicEvents = field(
        default_factory=lambda: ExtrinsicEvents(remarked=(), fees_paid=())
    )

    async def block_hash(self, number: int) -> bytes:
        return number.to_bytes(32, "big")

    async def block(self, block_hash: bytes) -> Block:
        return Block(block_hash, None, self.extrinsics, None)  # type: ignore[arg-type]

    async def extrinsic_events(self, block_hash: bytes) -> ExtrinsicEvents:
        return self.events


def _remarked(pending: SignedDelivery, index: int) -> tuple[RemarkedEvent, ...]:
    return tuple(
        RemarkedEvent(extrinsic_index=index, sender=ALICE.address, remark_hash=blake2_256(r))
        for r in pending.remarks
    )


async def included_outcome(
    pending: SignedDelivery, events: ExtrinsicEvents
) -> list[DeliveryOutcome] | None:
    """``outcome`` of ``pending`` found at index 1 of block #12 with ``events``."""
    rpc = BlockRpc(extrinsics=(b"\x00", pending.extrinsic), events=events)
    sub = submitter(rpc)

    async def scanned(rpc: Any) -> int:
        await sub._index_block(rpc, 12)
        sub._scanned = (1, 12)
        return 12

    sub._scan = scanned  # type: ignore[method-assign]
    return await sub.outcome(pending)


async def test_the_fee_paid_for_our_extrinsic_is_on_its_first_outcome_only() -> None:
    pending = signed(submitter(), count=3, tip=5)
    events = ExtrinsicEvents(
        remarked=_remarked(pending, 1),
        fees_paid=(
            # another extrinsic's, and another account's at ours: neither is what we paid
            FeePaidEvent(extrinsic_index=0, who=ALICE.address, actual_fee=7, tip=0),
            FeePaidEvent(extrinsic_index=1, who=BOB.address, actual_fee=8, tip=0),
            FeePaidEvent(extrinsic_index=1, who=ALICE.address, actual_fee=1_000_005, tip=5),
        ),
    )
    outcomes = await included_outcome(pending, events)
    assert outcomes is not None
    assert all(o.delivered and o.tx_hash == pending.tx_hash for o in outcomes)
    assert [o.fee for o in outcomes] == [1_000_005, None, None]


async def test_a_failed_extrinsic_reports_its_fee_and_a_runtime_without_payment_none() -> None:
    pending = signed(submitter(), count=2)
    paid = FeePaidEvent(extrinsic_index=1, who=ALICE.address, actual_fee=42, tip=0)
    failed = await included_outcome(pending, ExtrinsicEvents(remarked=(), fees_paid=(paid,)))
    assert failed is not None
    assert [(o.delivered, o.fee) for o in failed] == [(False, 42), (False, None)]
    free = await included_outcome(
        pending, ExtrinsicEvents(remarked=_remarked(pending, 1), fees_paid=())
    )
    assert free is not None
    assert [(o.delivered, o.fee) for o in free] == [(True, None), (True, None)]
