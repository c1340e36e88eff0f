"""chains.evm.submitter without a chain: a scripted RPC, a real key, a real config.

What is protected: nonces (pending count, pipelining, release, resync), the chain-id guard, the
fee cap (also when bumping), what is signed, how node errors are mapped, how receipts are read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import msgspec
import pytest
import rlp
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from chains.evm.config import EvmChainConfig
from chains.evm.errors import RpcErrorKind
from chains.evm.rpc import EvmRpc, RpcError
from chains.evm.submitter import EvmSubmitter, SignedBatch, encode_batch
from proofs.hashing import keccak256
from relayer.ecdsa_key import EcdsaKey
from relayer.errors import PermanentChainError, TransientChainError
from relayer.plugin import BroadcastResult, Delivery

# anvil's dev account #1: a public test key, funded on every anvil chain.
DEV_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
DEV_ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
GATEWAY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER_CONTRACT = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
CHAIN_ID = 31337
GWEI = 10**9
ENDPOINT = "http://fake-node:8545"

DELIVERED_TOPIC = keccak256(b"Delivered(bytes32)")
FAILED_TOPIC = keccak256(b"DeliveryFailed(bytes32,bytes)")
BATCH_SELECTOR = keccak256(b"deliverBatch((bytes,bytes32,bytes[],uint64)[])")[:4]


def _h(value: bytes) -> str:
    return "0x" + value.hex()


class FakeRpc:
    """Stands in for ``EvmRpc``: records every call, answers from a script."""

    endpoint = ENDPOINT

    def __init__(self, *, chain_id: int = CHAIN_ID, pending: int = 0, base_fee: int = GWEI) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.chain_id_answer = chain_id
        self.pending = pending
        self.base_fee: int | None = base_fee
        self.gas_estimate = 100_000
        self.access_list_unsupported = False
        self.sent: list[bytes] = []
        self.send_errors: list[RpcError] = []
        self.receipts: dict[bytes, dict[str, Any] | None] = {}
        self.call_answer = b""
        self.simulate_v1_answer: tuple[bytes, int] | None = None
        self.batch_answers: list[list[Any]] = []
        self.closed = False

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    async def chain_id(self) -> int:
        self.calls.append(("chain_id", ()))
        return self.chain_id_answer

    async def nonce(self, address: str, tag: str = "pending") -> int:
        self.calls.append(("nonce", (address, tag)))
        return self.pending

    async def block(self, number: int | str) -> dict[str, Any] | None:
        self.calls.append(("block", (number,)))
        if self.base_fee is None:
            return {"number": "0x10"}
        return {"number": "0x10", "baseFeePerGas": hex(self.base_fee)}

    async def estimate_gas(self, sender: str, to: str, data: bytes) -> int:
        self.calls.append(("estimate_gas", (sender, to, data)))
        return self.gas_estimate

    async def gas_used(self, sender: str, to: str, data: bytes) -> int:
        self.calls.append(("gas_used", (sender, to, data)))
        if self.access_list_unsupported:
            raise RpcError("fake", "eth_createAccessList", "method not found", RpcErrorKind.OTHER)
        return self.gas_estimate

    async def send_raw(self, raw_tx: bytes) -> bytes:
        self.calls.append(("send_raw", (raw_tx,)))
        if self.send_errors:
            raise self.send_errors.pop(0)
        self.sent.append(raw_tx)
        return keccak256(raw_tx)

    async def receipt(self, tx_hash: bytes) -> dict[str, Any] | None:
        self.calls.append(("receipt", (tx_hash,)))
        return self.receipts.get(tx_hash)

    async def simulate_call(self, sender: str, to: str, data: bytes) -> tuple[bytes, int]:
        self.calls.append(("simulate_call", (sender, to, data)))
        if self.simulate_v1_answer is None:
            raise RpcError("fake", "eth_simulateV1", "method not found", RpcErrorKind.OTHER)
        return self.simulate_v1_answer

    async def call(self, to: str, data: bytes, *, sender: str | None = None) -> bytes:
        self.calls.append(("call", (to, data, sender)))
        return self.call_answer

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        self.calls.append(("batch", (calls,)))
        return self.batch_answers.pop(0)

    async def close(self) -> None:
        self.calls.append(("close", ()))
        self.closed = True


def rpc_error(kind: RpcErrorKind, message: str = "node says no") -> RpcError:
    return RpcError(ENDPOINT, "eth_sendRawTransaction", message, kind)


def make_config(**overrides: Any) -> EvmChainConfig:
    values: dict[str, Any] = {
        "chain_id": CHAIN_ID,
        "rpc": "http://127.0.0.1:8545",
        "gateway": GATEWAY,
        "max_fee_gwei": 200.0,
        "priority_fee_gwei": 1.0,
        "recipient_gas_limit": 500_000,
    }
    values.update(overrides)
    return EvmChainConfig(**values)


def make_submitter(rpc: FakeRpc, **config: Any) -> EvmSubmitter:
    return EvmSubmitter(
        chain_name="chain-b",
        config=make_config(**config),
        rpc=cast("EvmRpc", rpc),
        key=EcdsaKey(Account.from_key(DEV_KEY), "test"),
    )


def delivery(n: int, *, signatures: int = 2) -> Delivery:
    message = b"\x03" + n.to_bytes(4, "big") + bytes(72) + b"body %d" % n
    return Delivery(
        message_id=keccak256(message),
        message=message,
        origin_block_hash=keccak256(b"block %d" % n),
        signatures=tuple(bytes([i + 1]) * 64 + b"\x1b" for i in range(signatures)),
    )


def decode_tx(raw: bytes) -> dict[str, Any]:
    """An EIP-1559 transaction's fields, decoded by hand from its envelope."""
    assert raw[0] == 2
    fields = rlp.decode(raw[1:])
    assert len(fields) == 12
    chain_id, nonce, priority, max_fee, gas, to, value, data, access_list = fields[:9]
    return {
        "chainId": int.from_bytes(chain_id, "big"),
        "nonce": int.from_bytes(nonce, "big"),
        "maxPriorityFeePerGas": int.from_bytes(priority, "big"),
        "maxFeePerGas": int.from_bytes(max_fee, "big"),
        "gas": int.from_bytes(gas, "big"),
        "to": to,
        "value": int.from_bytes(value, "big"),
        "data": data,
        "accessList": access_list,
    }


def signed(batch: SignedBatch) -> dict[str, Any]:
    """Check the raw transaction is signed by the dev key and matches the batch's fields."""
    assert Account.recover_transaction(batch.raw) == DEV_ADDRESS
    assert keccak256(batch.raw) == batch.tx_hash
    tx = decode_tx(batch.raw)
    assert tx["chainId"] == CHAIN_ID
    assert tx["to"] == bytes.fromhex(GATEWAY[2:])
    assert tx["value"] == 0
    assert tx["accessList"] == []
    assert tx["nonce"] == batch.nonce
    assert tx["maxFeePerGas"] == batch.max_fee
    assert tx["maxPriorityFeePerGas"] == batch.priority_fee
    assert tx["gas"] == batch.gas
    assert tx["data"] == batch.calldata
    return tx


# --- start / close ---------------------------------------------------------------------------


async def test_start_accepts_the_configured_chain_id() -> None:
    rpc = FakeRpc()
    await make_submitter(rpc).start()
    assert rpc.names() == ["chain_id"]


async def test_start_refuses_an_endpoint_serving_another_chain() -> None:
    rpc = FakeRpc(chain_id=1)
    submitter = make_submitter(rpc)
    with pytest.raises(PermanentChainError, match="chain id 1") as info:
        await submitter.start()
    assert not info.value.retryable
    assert ENDPOINT in str(info.value)


async def test_close_closes_the_rpc() -> None:
    rpc = FakeRpc()
    await make_submitter(rpc).close()
    assert rpc.closed


# --- nonces ----------------------------------------------------------------------------------


async def test_first_nonce_is_the_nodes_pending_count() -> None:
    rpc = FakeRpc(pending=17)
    batch = await make_submitter(rpc).prepare([delivery(1)])
    assert batch.nonce == 17
    assert ("nonce", (DEV_ADDRESS, "pending")) in rpc.calls
    assert signed(batch)["nonce"] == 17


async def test_consecutive_prepares_pipeline_consecutive_nonces_without_asking_again() -> None:
    rpc = FakeRpc(pending=5)
    submitter = make_submitter(rpc)
    batches = [await submitter.prepare([delivery(i)]) for i in range(4)]
    assert [b.nonce for b in batches] == [5, 6, 7, 8]
    assert rpc.names().count("nonce") == 1
    assert len({b.tx_hash for b in batches}) == 4


async def test_prepare_sends_nothing() -> None:
    rpc = FakeRpc()
    await make_submitter(rpc).prepare([delivery(1)])
    assert "send_raw" not in rpc.names()
    assert rpc.sent == []


async def test_released_latest_nonce_is_handed_out_again() -> None:
    rpc = FakeRpc(pending=3)
    submitter = make_submitter(rpc)
    first = await submitter.prepare([delivery(1)])
    second = await submitter.prepare([delivery(2)])
    submitter.release_nonce(second.nonce)
    again = await submitter.prepare([delivery(3)])
    assert (first.nonce, second.nonce, again.nonce) == (3, 4, 4)


async def test_releasing_a_nonce_that_is_not_the_latest_changes_nothing() -> None:
    rpc = FakeRpc(pending=3)
    submitter = make_submitter(rpc)
    first = await submitter.prepare([delivery(1)])
    await submitter.prepare([delivery(2)])
    submitter.release_nonce(first.nonce)  # 4 is taken after it: 3 cannot be reused
    assert (await submitter.prepare([delivery(3)])).nonce == 5


def test_releasing_before_any_nonce_was_taken_changes_nothing() -> None:
    submitter = make_submitter(FakeRpc())
    submitter.release_nonce(0)
    assert submitter._nonces.next is None


async def test_resync_after_an_outside_transaction_takes_the_new_pending_count() -> None:
    rpc = FakeRpc(pending=3)
    submitter = make_submitter(rpc)
    assert (await submitter.prepare([delivery(1)])).nonce == 3
    # Someone else sent from our account: nonces 4 and 5 are gone.
    rpc.pending = 6
    assert await submitter.resync_nonce() == 6
    assert (await submitter.prepare([delivery(2)])).nonce == 6


async def test_resync_never_goes_below_the_nonces_already_in_flight() -> None:
    rpc = FakeRpc(pending=3)
    submitter = make_submitter(rpc)
    # After a restart, the ledger holds signed transactions up to nonce 7 the node forgot.
    assert await submitter.resync_nonce(at_least=8) == 8
    assert (await submitter.prepare([delivery(1)])).nonce == 8
    rpc.pending = 12
    assert await submitter.resync_nonce(at_least=8) == 12


# --- fees ------------------------------------------------------------------------------------


async def test_fees_follow_the_base_fee_below_the_cap() -> None:
    rpc = FakeRpc(base_fee=10 * GWEI)
    batch = await make_submitter(rpc).prepare([delivery(1)])
    assert batch.priority_fee == 1 * GWEI
    assert batch.max_fee == 2 * 10 * GWEI + 1 * GWEI
    assert rpc.calls[-2][0] == "block"


async def test_max_fee_is_capped_at_max_fee_gwei() -> None:
    rpc = FakeRpc(base_fee=150 * GWEI)
    batch = await make_submitter(rpc, max_fee_gwei=200.0).prepare([delivery(1)])
    assert batch.max_fee == 200 * GWEI
    assert signed(batch)["maxFeePerGas"] == 200 * GWEI


async def test_base_fee_above_the_cap_signs_nothing_and_takes_no_nonce() -> None:
    rpc = FakeRpc(base_fee=201 * GWEI, pending=4)
    submitter = make_submitter(rpc, max_fee_gwei=200.0)
    with pytest.raises(TransientChainError, match="above the configured cap"):
        await submitter.prepare([delivery(1)])
    rpc.base_fee = 1 * GWEI
    assert (await submitter.prepare([delivery(1)])).nonce == 4


async def test_block_without_base_fee_is_a_transient_error() -> None:
    rpc = FakeRpc()
    rpc.base_fee = None
    with pytest.raises(TransientChainError, match="base fee"):
        await make_submitter(rpc).prepare([delivery(1)])


@settings(max_examples=150, deadline=None)
@given(
    base_fee=st.integers(0, 500 * GWEI),
    cap_gwei=st.floats(0.001, 300.0),
    priority_share=st.floats(0.0, 1.0),
)
async def test_fees_never_exceed_max_fee_gwei(
    base_fee: int, cap_gwei: float, priority_share: float
) -> None:
    rpc = FakeRpc(base_fee=base_fee)
    submitter = make_submitter(
        rpc, max_fee_gwei=cap_gwei, priority_fee_gwei=cap_gwei * priority_share
    )
    cap = submitter.config.max_fee_wei
    try:
        batch = await submitter.prepare([delivery(1)])
    except TransientChainError:
        assert base_fee > int(cap_gwei * GWEI)
        return
    assert batch.max_fee <= cap
    assert batch.priority_fee <= batch.max_fee
    assert batch.max_fee >= base_fee
    tx = signed(batch)
    assert tx["maxFeePerGas"] <= cap


# --- what is signed --------------------------------------------------------------------------


async def test_prepared_transaction_is_a_signed_deliver_batch_to_the_gateway() -> None:
    rpc = FakeRpc(pending=9)
    deliveries = [delivery(1), delivery(2, signatures=3)]
    batch = await make_submitter(rpc).prepare(deliveries)
    tx = signed(batch)
    assert tx["data"] == encode_batch(deliveries, 500_000)
    assert batch.message_ids == (deliveries[0].message_id, deliveries[1].message_id)
    assert batch.hashes == (batch.tx_hash,)
    assert batch.signed_at > 0
    # Gas is one run's use plus 25% for refunds plus the Gateway's per-recipient reserve
    # (cap * 64/63 + 5,000, rounded up here to + 10,000), for exactly the signed calldata.
    assert ("gas_used", (DEV_ADDRESS, GATEWAY, batch.calldata)) in rpc.calls
    assert batch.gas == 125_000 + 500_000 * 64 // 63 + 10_000


async def test_gas_falls_back_to_estimate_gas_without_access_lists() -> None:
    rpc = FakeRpc(pending=9)
    rpc.access_list_unsupported = True
    batch = await make_submitter(rpc).prepare([delivery(1)])
    assert ("estimate_gas", (DEV_ADDRESS, GATEWAY, batch.calldata)) in rpc.calls
    assert batch.gas == 120_000


def test_encode_batch_decodes_back_to_the_same_items() -> None:
    deliveries = [delivery(1), delivery(2, signatures=0), delivery(3, signatures=3)]
    data = encode_batch(deliveries, 750_000)
    assert data[:4] == BATCH_SELECTOR
    (items,) = abi_decode(["(bytes,bytes32,bytes[],uint64)[]"], data[4:])
    assert [(bytes(m), bytes(h), tuple(bytes(s) for s in sigs), g) for m, h, sigs, g in items] == [
        (d.message, d.origin_block_hash, d.signatures, 750_000) for d in deliveries
    ]


def test_encode_batch_of_nothing_is_an_empty_array() -> None:
    data = encode_batch([], 1)
    assert abi_decode(["(bytes,bytes32,bytes[],uint64)[]"], data[4:]) == ((),)


async def test_signed_batch_round_trips_through_its_encoding() -> None:
    rpc = FakeRpc(pending=2)
    submitter = make_submitter(rpc)
    batch = await submitter.prepare([delivery(1), delivery(2)])
    bumped = submitter.bump(batch)
    assert bumped is not None
    for value in (batch, bumped):
        assert SignedBatch.decode(value.encode()) == value


def test_signed_batch_decoding_refuses_garbage() -> None:
    with pytest.raises(msgspec.DecodeError):
        SignedBatch.decode(b"\x93garbage")


# --- bumping ---------------------------------------------------------------------------------


async def test_bump_raises_both_fees_by_at_least_ten_percent_at_the_same_nonce() -> None:
    rpc = FakeRpc(pending=11, base_fee=10 * GWEI)
    submitter = make_submitter(rpc)
    batch = await submitter.prepare([delivery(1)])
    bumped = submitter.bump(batch)
    assert bumped is not None
    assert bumped.nonce == batch.nonce == 11
    assert bumped.max_fee * 10 >= batch.max_fee * 11
    assert bumped.priority_fee * 10 >= batch.priority_fee * 11
    assert (bumped.calldata, bumped.gas, bumped.message_ids) == (
        batch.calldata,
        batch.gas,
        batch.message_ids,
    )
    assert bumped.tx_hash != batch.tx_hash
    # Either transaction may be the one mined: both hashes are kept, newest last.
    assert bumped.hashes == (batch.tx_hash, bumped.tx_hash)
    signed(bumped)
    twice = submitter.bump(bumped)
    assert twice is not None
    assert twice.hashes == (batch.tx_hash, bumped.tx_hash, twice.tx_hash)
    # Bumping signs only: nothing is sent, no nonce is taken.
    assert "send_raw" not in rpc.names()
    assert (await submitter.prepare([delivery(2)])).nonce == 12


async def test_bump_at_the_fee_cap_returns_none() -> None:
    rpc = FakeRpc(base_fee=150 * GWEI)
    submitter = make_submitter(rpc, max_fee_gwei=200.0)
    batch = await submitter.prepare([delivery(1)])
    assert batch.max_fee == 200 * GWEI
    assert submitter.bump(batch) is None


async def test_bump_that_cannot_reach_ten_percent_below_the_cap_returns_none() -> None:
    rpc = FakeRpc(base_fee=10 * GWEI)
    submitter = make_submitter(rpc, max_fee_gwei=200.0)
    batch = await submitter.prepare([delivery(1)])
    near_cap = SignedBatch(**{**_fields(batch), "max_fee": 190 * GWEI})
    assert submitter.bump(near_cap) is None


async def test_bump_of_a_zero_priority_fee_still_raises_it() -> None:
    rpc = FakeRpc(base_fee=10 * GWEI)
    submitter = make_submitter(rpc, priority_fee_gwei=0.0)
    batch = await submitter.prepare([delivery(1)])
    assert batch.priority_fee == 0
    bumped = submitter.bump(batch)
    assert bumped is not None
    assert bumped.priority_fee >= 1
    assert bumped.max_fee * 10 >= batch.max_fee * 11


def _fields(batch: SignedBatch) -> dict[str, Any]:
    return {name: getattr(batch, name) for name in batch.__struct_fields__}


_SIGN_TEMPLATE = SignedBatch(
    nonce=0,
    raw=b"",
    tx_hash=b"\x00" * 32,
    max_fee=0,
    priority_fee=0,
    gas=100_000,
    calldata=b"\x01\x02",
    message_ids=(b"\x07" * 32,),
)


@settings(max_examples=200, deadline=None)
@given(
    cap_gwei=st.integers(1, 500),
    max_fee_share=st.floats(0.0, 1.0),
    priority_share=st.floats(0.0, 1.0),
    nonce=st.integers(0, 2**32),
)
def test_bump_never_exceeds_the_cap_and_always_raises_both_fees_by_ten_percent(
    cap_gwei: int, max_fee_share: float, priority_share: float, nonce: int
) -> None:
    submitter = make_submitter(FakeRpc(), max_fee_gwei=float(cap_gwei))
    cap = cap_gwei * GWEI
    max_fee = max(1, int(cap * max_fee_share))
    priority = int(max_fee * priority_share)
    batch = SignedBatch(
        **{**_fields(_SIGN_TEMPLATE), "nonce": nonce, "max_fee": max_fee, "priority_fee": priority}
    )
    bumped = submitter.bump(batch)
    if bumped is None:
        # Refused only when the 12.5% raise does not fit under the configured cap.
        raised_priority = max(math.ceil(priority * 9 / 8), priority + 1)
        assert max(math.ceil(max_fee * 9 / 8), raised_priority) > cap
        return
    assert bumped.max_fee <= cap
    assert bumped.priority_fee <= bumped.max_fee
    assert bumped.max_fee * 10 >= max_fee * 11
    assert bumped.priority_fee * 10 >= priority * 11
    assert bumped.priority_fee > priority
    assert bumped.nonce == nonce
    signed(bumped)


# --- broadcasting ----------------------------------------------------------------------------


async def _prepared(rpc: FakeRpc) -> tuple[EvmSubmitter, SignedBatch]:
    submitter = make_submitter(rpc)
    return submitter, await submitter.prepare([delivery(1)])


async def test_broadcast_sends_the_signed_raw_transaction() -> None:
    rpc = FakeRpc()
    submitter, batch = await _prepared(rpc)
    assert await submitter.broadcast(batch) is BroadcastResult.ACCEPTED
    assert rpc.sent == [batch.raw]


async def test_broadcast_of_an_already_known_transaction_counts_as_sent() -> None:
    rpc = FakeRpc()
    submitter, batch = await _prepared(rpc)
    rpc.send_errors.append(rpc_error(RpcErrorKind.ALREADY_KNOWN, "already known"))
    assert await submitter.broadcast(batch) is BroadcastResult.ACCEPTED


@pytest.mark.parametrize(
    ("kind", "answer"),
    [
        (RpcErrorKind.NONCE_TOO_LOW, BroadcastResult.NONCE_USED),
        (RpcErrorKind.REPLACEMENT_UNDERPRICED, BroadcastResult.FEE_TOO_LOW),
        (RpcErrorKind.UNDERPRICED, BroadcastResult.FEE_TOO_LOW),
    ],
)
async def test_broadcast_returns_the_answers_the_caller_acts_on(
    kind: RpcErrorKind, answer: BroadcastResult
) -> None:
    rpc = FakeRpc()
    submitter, batch = await _prepared(rpc)
    rpc.send_errors.append(rpc_error(kind))
    assert await submitter.broadcast(batch) is answer


@pytest.mark.parametrize(
    "kind",
    [RpcErrorKind.REVERTED, RpcErrorKind.INSUFFICIENT_FUNDS, RpcErrorKind.RATE_LIMITED],
)
async def test_broadcast_reraises_every_other_node_error(kind: RpcErrorKind) -> None:
    rpc = FakeRpc()
    submitter, batch = await _prepared(rpc)
    error = rpc_error(kind, "execution reverted")
    rpc.send_errors.append(error)
    with pytest.raises(RpcError) as info:
        await submitter.broadcast(batch)
    assert info.value is error


async def test_broadcast_lets_transport_errors_through() -> None:
    rpc = FakeRpc()
    submitter, batch = await _prepared(rpc)

    async def down(raw_tx: bytes) -> bytes:
        raise TransientChainError("connection refused")

    rpc.send_raw = down  # type: ignore[method-assign]
    with pytest.raises(TransientChainError, match="connection refused"):
        await submitter.broadcast(batch)


# --- outcomes --------------------------------------------------------------------------------


def receipt(
    logs: Sequence[dict[str, Any]], *, status: str = "0x1", block: str | None = "0x20"
) -> dict[str, Any]:
    return {"status": status, "blockNumber": block, "logs": list(logs)}


def delivered_log(message_id: bytes, address: str = GATEWAY) -> dict[str, Any]:
    return {"address": address, "topics": [_h(DELIVERED_TOPIC), _h(message_id)], "data": "0x"}


def failed_log(message_id: bytes, reason: bytes, address: str = GATEWAY) -> dict[str, Any]:
    return {
        "address": address,
        "topics": [_h(FAILED_TOPIC), _h(message_id)],
        "data": _h(abi_encode(["bytes"], [reason])),
    }


async def _three(rpc: FakeRpc) -> tuple[EvmSubmitter, SignedBatch, list[bytes]]:
    submitter = make_submitter(rpc)
    deliveries = [delivery(1), delivery(2), delivery(3)]
    batch = await submitter.prepare(deliveries)
    return submitter, batch, [d.message_id for d in deliveries]


async def test_outcome_is_none_until_mined() -> None:
    rpc = FakeRpc()
    submitter, batch, _ = await _three(rpc)
    assert await submitter.outcome(batch) is None
    rpc.receipts[batch.tx_hash] = receipt([], block=None)  # pending: no block number yet
    assert await submitter.outcome(batch) is None


async def test_outcome_reads_delivered_and_failed_events_of_the_gateway() -> None:
    rpc = FakeRpc()
    submitter, batch, (a, b, c) = await _three(rpc)
    rpc.receipts[batch.tx_hash] = receipt(
        [
            # Same events from another contract: ignored.
            delivered_log(b, OTHER_CONTRACT),
            failed_log(a, b"forged", OTHER_CONTRACT),
            delivered_log(a, GATEWAY.lower()),  # addresses compare case-insensitively
            failed_log(b, b"\x08\xc3\x79\xa0boom"),
            {"address": GATEWAY, "topics": [_h(keccak256(b"Other()"))], "data": "0x"},
        ]
    )
    outcomes = await submitter.outcome(batch)
    assert outcomes is not None
    assert [o.message_id for o in outcomes] == [a, b, c]
    assert all(o.tx_hash == batch.tx_hash for o in outcomes)
    by_id = {o.message_id: o for o in outcomes}
    assert by_id[a].delivered
    assert by_id[a].error is None
    assert not by_id[b].delivered
    assert by_id[b].error == "recipient failed: 0x" + b"\x08\xc3\x79\xa0boom".hex()
    # Neither event: the Gateway skipped it as delivered before.
    assert not by_id[c].delivered
    assert by_id[c].error == "skipped: already delivered"


async def test_delivered_event_of_another_contract_does_not_count() -> None:
    rpc = FakeRpc()
    submitter, batch, ids = await _three(rpc)
    rpc.receipts[batch.tx_hash] = receipt([delivered_log(i, OTHER_CONTRACT) for i in ids])
    outcomes = await submitter.outcome(batch)
    assert outcomes is not None
    assert not any(o.delivered for o in outcomes)


async def test_reverted_transaction_leaves_every_message_undelivered() -> None:
    rpc = FakeRpc()
    submitter, batch, ids = await _three(rpc)
    # Logs of a reverted transaction are not real; they must not count either.
    rpc.receipts[batch.tx_hash] = receipt([delivered_log(i) for i in ids], status="0x0")
    outcomes = await submitter.outcome(batch)
    assert outcomes is not None
    assert [(o.message_id, o.delivered, o.error) for o in outcomes] == [
        (i, False, "transaction reverted") for i in ids
    ]


async def test_outcome_finds_the_original_when_the_replacement_was_not_mined() -> None:
    rpc = FakeRpc()
    submitter, batch, ids = await _three(rpc)
    bumped = submitter.bump(batch)
    assert bumped is not None
    rpc.receipts[batch.tx_hash] = receipt([delivered_log(i) for i in ids])
    outcomes = await submitter.outcome(bumped)
    assert outcomes is not None
    assert all(o.delivered and o.tx_hash == batch.tx_hash for o in outcomes)
    # The newest hash is asked first.
    asked = [args[0] for name, args in rpc.calls if name == "receipt"]
    assert asked == [bumped.tx_hash, batch.tx_hash]


async def test_outcome_of_a_mined_replacement() -> None:
    rpc = FakeRpc()
    submitter, batch, ids = await _three(rpc)
    bumped = submitter.bump(batch)
    assert bumped is not None
    rpc.receipts[bumped.tx_hash] = receipt([delivered_log(i) for i in ids])
    outcomes = await submitter.outcome(bumped)
    assert outcomes is not None
    assert all(o.delivered and o.tx_hash == bumped.tx_hash for o in outcomes)


# --- reads -----------------------------------------------------------------------------------


async def test_delivered_flags_ask_the_gateway_in_batches_of_one_hundred() -> None:
    rpc = FakeRpc()
    submitter = make_submitter(rpc)
    ids = [keccak256(b"%d" % i) for i in range(150)]
    one, zero = "0x" + "00" * 31 + "01", "0x" + "00" * 32
    rpc.batch_answers = [[one if i % 3 == 0 else zero for i in range(100)], [zero] * 50]
    flags = await submitter.delivered_flags(ids)
    assert flags == [i % 3 == 0 for i in range(100)] + [False] * 50
    batches = [args[0] for name, args in rpc.calls if name == "batch"]
    assert [len(b) for b in batches] == [100, 50]
    method, (tx, tag) = batches[0][0]
    selector = keccak256(b"delivered(bytes32)")[:4]
    assert (method, tag, tx["to"], tx["data"]) == (
        "eth_call",
        "latest",
        GATEWAY,
        _h(selector + ids[0]),
    )


@pytest.mark.parametrize("answer", [None, "0x", "0x01", 1, "0x" + "00" * 33])
async def test_malformed_delivered_answer_is_a_transient_error(answer: object) -> None:
    rpc = FakeRpc()
    rpc.batch_answers = [[answer]]
    with pytest.raises(TransientChainError):
        await make_submitter(rpc).delivered_flags([b"\x01" * 32])


async def test_simulate_returns_the_gateways_per_item_flags() -> None:
    rpc = FakeRpc()
    submitter = make_submitter(rpc)
    deliveries = [delivery(1), delivery(2)]
    rpc.call_answer = abi_encode(["bool[]"], [[True, False]])
    assert await submitter.simulate(deliveries) == [True, False]
    assert rpc.calls[-1] == ("call", (GATEWAY, encode_batch(deliveries, 500_000), DEV_ADDRESS))


async def test_simulate_v1_gives_flags_and_the_gas_of_the_same_calldata() -> None:
    rpc = FakeRpc(pending=3)
    submitter = make_submitter(rpc)
    deliveries = [delivery(1), delivery(2)]
    rpc.simulate_v1_answer = (abi_encode(["bool[]"], [[True, True]]), 200_000)
    assert await submitter.simulate(deliveries) == [True, True]
    batch = await submitter.prepare(deliveries)
    # One execution answered both questions: no eth_call, no access-list run.
    assert "call" not in rpc.names()
    assert "gas_used" not in rpc.names()
    assert batch.gas == 250_000 + 500_000 * 64 // 63 + 10_000


async def test_gas_is_measured_again_when_the_batch_shrank_after_simulation() -> None:
    rpc = FakeRpc(pending=3)
    submitter = make_submitter(rpc)
    rpc.simulate_v1_answer = (abi_encode(["bool[]"], [[True, False]]), 900_000)
    assert await submitter.simulate([delivery(1), delivery(2)]) == [True, False]
    batch = await submitter.prepare([delivery(1)])
    assert ("gas_used", (DEV_ADDRESS, GATEWAY, batch.calldata)) in rpc.calls
    assert batch.gas == 125_000 + 500_000 * 64 // 63 + 10_000


async def test_a_node_without_simulate_v1_is_asked_with_eth_call_from_then_on() -> None:
    rpc = FakeRpc()
    submitter = make_submitter(rpc)
    rpc.call_answer = abi_encode(["bool[]"], [[True]])
    for _ in range(2):
        assert await submitter.simulate([delivery(1)]) == [True]
    assert rpc.names().count("simulate_call") == 1
    assert rpc.names().count("call") == 2


async def test_simulate_answer_of_the_wrong_length_is_permanent() -> None:
    rpc = FakeRpc()
    rpc.call_answer = abi_encode(["bool[]"], [[True]])
    with pytest.raises(PermanentChainError):
        await make_submitter(rpc).simulate([delivery(1), delivery(2)])


def test_bump_near_the_cap_clamps_the_priority_fee_like_the_max_fee() -> None:
    # max_fee == priority (what _fees signs when the base fee is 0), 90 of a 100 gwei cap: 99/99
    # gwei would be a valid replacement (+10% on both, under the cap).
    submitter = make_submitter(FakeRpc(), max_fee_gwei=100.0, priority_fee_gwei=90.0)
    batch = SignedBatch(
        **{**_fields(_SIGN_TEMPLATE), "max_fee": 90 * GWEI, "priority_fee": 90 * GWEI}
    )
    bumped = submitter.bump(batch)
    assert bumped is not None
    assert bumped.max_fee <= 100 * GWEI
    assert bumped.priority_fee * 10 >= batch.priority_fee * 11


# --- batch calldata against eth_abi ----------------------------------------------------------

BATCH_TYPE = "(bytes,bytes32,bytes[],uint64)[]"

# Mostly 65-byte signatures (what the Gateway takes), but any length must encode the same:
# lengths around a word boundary are where padding bugs hide.
_signature = st.one_of(
    st.binary(min_size=65, max_size=65),
    st.binary(max_size=100),
    st.sampled_from([b"", b"\x01" * 31, b"\x02" * 32, b"\x03" * 33, b"\x04" * 64]),
)
_delivery = st.builds(
    Delivery,
    message_id=st.just(b"\x00" * 32),
    # st.binary(max_size=300) stays short nearly always; drawing the length first reaches the
    # long messages too.
    message=st.integers(0, 300).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    origin_block_hash=st.binary(min_size=32, max_size=32),
    signatures=st.lists(_signature, max_size=4).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(
    deliveries=st.lists(_delivery, max_size=20),
    gas_limit=st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 2**64 - 1, 500_000])),
)
def test_encode_batch_is_byte_for_byte_what_eth_abi_encodes(
    deliveries: list[Delivery], gas_limit: int
) -> None:
    items = [(d.message, d.origin_block_hash, list(d.signatures), gas_limit) for d in deliveries]
    expected = BATCH_SELECTOR + abi_encode([BATCH_TYPE], [items])
    assert encode_batch(deliveries, gas_limit) == expected


@pytest.mark.parametrize("gas_limit", [-1, 2**64, 2**256])
def test_encode_batch_refuses_a_gas_limit_outside_uint64(gas_limit: int) -> None:
    with pytest.raises(ValueError, match="uint64"):
        encode_batch([delivery(1)], gas_limit)


@pytest.mark.parametrize("gas_limit", [True, 1.0, "1"])
def test_encode_batch_refuses_a_gas_limit_that_is_not_an_int(gas_limit: object) -> None:
    with pytest.raises(TypeError):
        encode_batch([delivery(1)], gas_limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [0, 20, 31, 33, 64])
def test_encode_batch_refuses_a_block_hash_that_is_not_32_bytes(length: int) -> None:
    # eth_abi would right-pad a short one; a truncated hash must not reach the chain padded.
    bad = Delivery(
        message_id=b"\x00" * 32,
        message=b"m",
        origin_block_hash=b"\x01" * length,
        signatures=(),
    )
    with pytest.raises(ValueError, match="32 bytes"):
        encode_batch([delivery(1), bad], 500_000)


async def test_the_base_fee_is_read_once_a_second_not_once_a_batch() -> None:
    rpc = FakeRpc(pending=3)
    submitter = make_submitter(rpc)
    await submitter.prepare([delivery(1)])
    await submitter.prepare([delivery(2)])
    assert rpc.names().count("block") == 1
    assert submitter._fee_cache is not None
    read_at, fees = submitter._fee_cache
    submitter._fee_cache = (read_at - 2.0, fees)  # as if two seconds went by
    rpc.base_fee = 5 * GWEI
    batch = await submitter.prepare([delivery(3)])
    assert rpc.names().count("block") == 2
    assert batch.max_fee == 2 * 5 * GWEI + GWEI


async def test_a_simulated_batch_is_signed_without_giving_the_event_loop_away() -> None:
    # A burst signs its batches back to back: with the gas measured by the simulation and the
    # fees read within the second, prepare() completes without ever suspending.
    rpc = FakeRpc(pending=3)
    submitter = make_submitter(rpc)
    await submitter.prepare([delivery(9)])  # reads the fees and the nonce once
    deliveries = [delivery(1), delivery(2)]
    rpc.simulate_v1_answer = (abi_encode(["bool[]"], [[True, True]]), 200_000)
    assert await submitter.simulate(deliveries) == [True, True]
    calls = len(rpc.calls)
    coroutine = submitter.prepare(deliveries)
    with pytest.raises(StopIteration) as done:
        coroutine.send(None)
    batch = cast(SignedBatch, done.value.value)
    assert len(rpc.calls) == calls
    assert (batch.nonce, batch.gas) == (4, 250_000 + 500_000 * 64 // 63 + 10_000)
    assert submitter._measured == {}


async def test_a_batch_that_fails_to_sign_gives_its_nonce_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rpc = FakeRpc(pending=3)
    submitter = make_submitter(rpc)
    real = submitter._sign

    def broken(**_: Any) -> SignedBatch:
        raise ValueError("a field is not a uint256")

    monkeypatch.setattr(submitter, "_sign", broken)
    with pytest.raises(ValueError, match="uint256"):
        await submitter.prepare([delivery(1)])
    monkeypatch.setattr(submitter, "_sign", real)
    assert (await submitter.prepare([delivery(1)])).nonce == 3
