"""Delivers attested messages to one EVM Gateway: batches, local signing, nonces, fee bumps.

The core drives the steps so that it can commit each one to the ledger before the next side
effect: ``prepare`` signs (nothing leaves the process), the core records the signed transaction,
``broadcast`` sends it, ``outcome`` reads its receipt. A crash anywhere in between leaves a
signed transaction in the ledger that ``broadcast`` can send again: the Gateway refuses replays,
so sending twice never delivers twice.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import structlog
from eth_abi.abi import decode as abi_decode

from chains.evm.config import EvmChainConfig
from chains.evm.errors import RpcErrorKind
from chains.evm.rpc import EvmRpc, RpcError
from chains.evm.txsign import DynamicFeeTx, sign_dynamic_fee_tx
from proofs.hashing import keccak256
from relayer.ecdsa_key import EcdsaKey
from relayer.errors import PermanentChainError, TransientChainError
from relayer.nonces import NonceCounter
from relayer.plugin import BroadcastResult, Delivery, DeliveryOutcome

__all__ = ["EvmSubmitter", "SignedBatch"]

_GWEI = 10**9
_BATCH_SIGNATURE = "deliverBatch((bytes,bytes32,bytes[],uint64)[])"
_BATCH_SELECTOR = keccak256(_BATCH_SIGNATURE.encode())[:4]
_DELIVERED_SELECTOR = keccak256(b"delivered(bytes32)")[:4]
_DELIVERED_TOPIC = keccak256(b"Delivered(bytes32)")
_FAILED_TOPIC = keccak256(b"DeliveryFailed(bytes32,bytes)")
# A replacement must raise both fee fields by at least 10% (geth's default price bump); 12.5%
# leaves room for rounding and for nodes that ask for a little more.
_BUMP_NUM, _BUMP_DEN = 9, 8
# Simulated batches whose gas is kept until they are signed: a few rounds of max_in_flight.
_MEASURED_KEPT = 64
# Seconds a base-fee reading is used for new transactions.
_FEE_TTL = 1.0
# Node answers to eth_sendRawTransaction that the delivery worker acts on; others raise.
_BROADCAST_ANSWERS = {
    RpcErrorKind.ALREADY_KNOWN: BroadcastResult.ACCEPTED,
    RpcErrorKind.NONCE_TOO_LOW: BroadcastResult.NONCE_USED,
    RpcErrorKind.REPLACEMENT_UNDERPRICED: BroadcastResult.FEE_TOO_LOW,
    RpcErrorKind.UNDERPRICED: BroadcastResult.FEE_TOO_LOW,
}


class SignedBatch(msgspec.Struct, frozen=True, kw_only=True):
    """A signed deliverBatch transaction; stored whole in the ledger while it is in flight."""

    nonce: int
    raw: bytes
    tx_hash: bytes
    max_fee: int
    priority_fee: int
    gas: int
    calldata: bytes
    message_ids: tuple[bytes, ...]
    # Every hash signed at this nonce: after a fee bump either one may be the one that is mined.
    hashes: tuple[bytes, ...] = ()
    signed_at: float = 0.0

    def encode(self) -> bytes:
        return _pending_encoder.encode(self)

    @staticmethod
    def decode(raw: bytes) -> SignedBatch:
        return _pending_decoder.decode(raw)


_pending_encoder = msgspec.msgpack.Encoder()
_pending_decoder = msgspec.msgpack.Decoder(SignedBatch)


# The only argument of deliverBatch is dynamic, so the calldata head is one offset: to the word
# right after itself.
_ARGS_HEAD = (32).to_bytes(32, "big")
# Each tuple's head is four words and its message is the first thing in its tail.
_ITEM_HEAD_SIZE = 4 * 32
_ITEM_MESSAGE_OFFSET = _ITEM_HEAD_SIZE.to_bytes(32, "big")
_ZERO_WORD = bytes(32)


def _append_bytes(out: list[bytes], value: bytes) -> int:
    """Append ``bytes`` as the ABI lays it out (length word, data, zero padding to a word);
    return the number of bytes appended."""
    length = len(value)
    pad = -length % 32
    out.append(length.to_bytes(32, "big"))
    out.append(value)
    if pad:
        out.append(_ZERO_WORD[:pad])
    return 32 + length + pad


def _encode_item(delivery: Delivery, gas_word: bytes) -> bytes:
    """One (bytes message, bytes32 blockHash, bytes[] signatures, uint64 gasLimit) tuple; its
    offsets count from its own first byte, as the spec has it for any dynamic tuple."""
    block_hash = delivery.origin_block_hash
    # eth_abi would right-pad a short value; a block hash that is not 32 bytes is a bug upstream
    # and padding it would only move the failure on chain, where it costs gas.
    if len(block_hash) != 32:
        raise ValueError(f"origin block hash must be 32 bytes, got {len(block_hash)}")
    tail: list[bytes] = []
    message_size = _append_bytes(tail, delivery.message)
    signatures = delivery.signatures
    tail.append(len(signatures).to_bytes(32, "big"))
    # Signature offsets count from the word after the array's length word.
    offset = 32 * len(signatures)
    sig_heads: list[bytes] = []
    sig_tails: list[bytes] = []
    for signature in signatures:
        sig_heads.append(offset.to_bytes(32, "big"))
        offset += _append_bytes(sig_tails, signature)
    signatures_offset = (_ITEM_HEAD_SIZE + message_size).to_bytes(32, "big")
    return b"".join(
        (
            _ITEM_MESSAGE_OFFSET,
            block_hash,
            signatures_offset,
            gas_word,
            *tail,
            *sig_heads,
            *sig_tails,
        )
    )


def encode_batch(deliveries: Sequence[Delivery], gas_limit: int) -> bytes:
    """Calldata of ``deliverBatch((bytes,bytes32,bytes[],uint64)[])``.

    Encoded by hand rather than with eth_abi's general encoder, which took about 7% of the
    daemon's CPU in a burst; the tests hold the two byte-for-byte equal."""
    # bool is an int to Python but not a uint to the ABI; eth_abi refuses it too.
    if isinstance(gas_limit, bool) or not isinstance(gas_limit, int):
        raise TypeError(f"gas limit must be an int, got {type(gas_limit).__name__}")
    if not 0 <= gas_limit < 2**64:
        raise ValueError(f"gas limit {gas_limit} does not fit in uint64")
    gas_word = gas_limit.to_bytes(32, "big")
    items = [_encode_item(d, gas_word) for d in deliveries]
    # Item offsets count from the word after the array's length word.
    offset = 32 * len(items)
    heads: list[bytes] = []
    for item in items:
        heads.append(offset.to_bytes(32, "big"))
        offset += len(item)
    return b"".join((_BATCH_SELECTOR, _ARGS_HEAD, len(items).to_bytes(32, "big"), *heads, *items))


class EvmSubmitter:
    def __init__(
        self,
        *,
        chain_name: str,
        config: EvmChainConfig,
        rpc: EvmRpc,
        key: EcdsaKey,
        log: Any = None,
    ) -> None:
        self.chain = chain_name
        self.config = config
        self.rpc = rpc
        self.endpoint = rpc.endpoint
        self.unit = "wei"
        self.key = key
        self.sender = key.checksum_address
        self.signer_address = key.address
        self.gateway = config.gateway
        self._gateway_bytes = bytes.fromhex(config.gateway[2:])
        self.log = (log or structlog.get_logger()).bind(chain=chain_name)
        self._nonces = NonceCounter()
        self._fee_cache: tuple[float, tuple[int, int]] | None = None
        # eth_simulateV1 gives the batch's flags and its gas in one execution, where eth_call
        # and eth_createAccessList take two; nodes without it get those two.
        self._simulate_v1 = True
        # Gas used by each simulated calldata not signed yet (batches are checked together).
        self._measured: dict[bytes, int] = {}

    async def start(self) -> None:
        chain_id = await self.rpc.chain_id()
        if chain_id != self.config.chain_id:
            raise PermanentChainError(
                f"chain {self.chain}: endpoint {self.rpc.endpoint} serves chain id {chain_id}, "
                f"the config says {self.config.chain_id}; refusing to sign for the wrong chain"
            )

    async def close(self) -> None:
        await self.rpc.close()

    # --- nonces --------------------------------------------------------------------------------

    async def resync_nonce(self, at_least: int = 0) -> int:
        """Take the node's pending nonce (after a gap, an outside transaction, a restart)."""
        pending = await self.rpc.nonce(self.sender, "pending")
        return self._nonces.resynced(pending, at_least)

    async def account_nonce(self) -> int:
        """The node's pending nonce for our account, leaving the local count alone
        (``relayer.plugin.ReadsAccountNonce``)."""
        return int(await self.rpc.nonce(self.sender, "pending"))

    async def _take_nonce(self) -> int:
        return await self._nonces.take(self.resync_nonce)

    def release_nonce(self, nonce: int) -> None:
        """A nonce taken but never sent: hand it out again (only the latest one can be)."""
        self._nonces.release(nonce)

    # --- reads ---------------------------------------------------------------------------------

    async def balance(self) -> int:
        """The signer's balance in wei."""
        return await self.rpc.balance(self.sender)

    async def delivered_flags(self, message_ids: Sequence[bytes]) -> list[bool]:
        calls = [
            (
                "eth_call",
                [{"to": self.gateway, "data": "0x" + (_DELIVERED_SELECTOR + mid).hex()}, "latest"],
            )
            for mid in message_ids
        ]
        out: list[bool] = []
        for start in range(0, len(calls), 100):
            results = await self.rpc.batch(calls[start : start + 100])
            for value in results:
                if not isinstance(value, str) or len(value) != 66:
                    raise TransientChainError(f"delivered() answered {value!r}")
                out.append(int(value, 16) == 1)
        return out

    async def simulate(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Run the batch with eth_call: which items the recipient would accept under the cap."""
        data = encode_batch(deliveries, self.config.recipient_gas_limit)
        result: bytes | None = None
        if self._simulate_v1:
            try:
                result, gas_used = await self.rpc.simulate_call(self.sender, self.gateway, data)
            except RpcError as exc:
                if exc.kind is not RpcErrorKind.OTHER:
                    raise
                self._simulate_v1 = False
                self.log.info("submit.no_simulate_v1", endpoint=self.endpoint, error=str(exc))
            else:
                self._measured[data] = gas_used
                while len(self._measured) > _MEASURED_KEPT:
                    del self._measured[next(iter(self._measured))]
        if result is None:
            result = await self.rpc.call(self.gateway, data, sender=self.sender)
        (flags,) = abi_decode(["bool[]"], result)
        if len(flags) != len(deliveries):
            raise PermanentChainError("deliverBatch simulation returned a wrong number of flags")
        return [bool(f) for f in flags]

    # --- transactions --------------------------------------------------------------------------

    def _fees_fresh(self) -> bool:
        return self._fee_cache is not None and time.monotonic() - self._fee_cache[0] < _FEE_TTL

    def _cached_fees(self) -> tuple[int, int]:
        assert self._fee_cache is not None
        return self._fee_cache[1]

    async def _fees(self) -> tuple[int, int]:
        # One read of the base fee serves the batches signed within a second: the cap of twice
        # the base fee absorbs the rise a block or two can bring (12.5% each at most).
        if self._fees_fresh():
            return self._cached_fees()
        now = time.monotonic()
        fees = await self._read_fees()
        self._fee_cache = (now, fees)
        return fees

    async def _read_fees(self) -> tuple[int, int]:
        latest = await self.rpc.block("latest")
        if latest is None or "baseFeePerGas" not in latest:
            raise TransientChainError("latest block has no base fee")
        base = int(latest["baseFeePerGas"], 16)
        cap = int(self.config.max_fee_gwei * _GWEI)
        priority = min(int(self.config.priority_fee_gwei * _GWEI), cap)
        max_fee = min(cap, 2 * base + priority)
        if max_fee < base:
            raise TransientChainError(
                f"base fee {base / _GWEI:.2f} gwei is above the configured cap "
                f"{self.config.max_fee_gwei} gwei; waiting for it to fall"
            )
        return max_fee, priority

    async def _gas(self, data: bytes) -> int:
        """Gas for a deliverBatch: what one run used, plus headroom for refunds, plus the
        reserve the Gateway demands before each recipient call (its gas cap * 64/63 + 5,000:
        the check that stops a caller from starving a recipient)."""
        measured = self._measured.pop(data, None)
        if measured is not None:
            return self._gas_from(measured)
        try:
            used = await self.rpc.gas_used(self.sender, self.gateway, data)
        except RpcError as exc:
            if exc.kind is not RpcErrorKind.OTHER:
                raise
            # A node without eth_createAccessList: let it bisect.
            return await self.rpc.estimate_gas(self.sender, self.gateway, data) * 6 // 5
        return self._gas_from(used)

    def _gas_from(self, used: int) -> int:
        reserve = self.config.recipient_gas_limit * 64 // 63 + 10_000
        return used * 5 // 4 + reserve

    async def prepare(self, deliveries: Sequence[Delivery]) -> SignedBatch:
        """Sign one deliverBatch transaction at the next nonce (nothing is sent)."""
        data = encode_batch(deliveries, self.config.recipient_gas_limit)
        measured = self._measured.get(data)
        if measured is not None and self._fees_fresh():
            # Both known (simulated just now, fees read within the second): no await, so a
            # burst's batches are signed back to back instead of each giving the event loop
            # away (to the collector, the watcher, the broadcasts) on the way.
            gas, (max_fee, priority) = self._gas_from(measured), self._cached_fees()
            del self._measured[data]
        else:
            gas, (max_fee, priority) = await asyncio.gather(self._gas(data), self._fees())
        nonce = await self._take_nonce()
        try:
            return self._sign(
                nonce=nonce,
                calldata=data,
                gas=gas,
                max_fee=max_fee,
                priority=priority,
                message_ids=tuple(d.message_id for d in deliveries),
                previous=(),
            )
        except BaseException:
            self.release_nonce(nonce)  # nothing was signed: the next batch takes it
            raise

    def _sign(
        self,
        *,
        nonce: int,
        calldata: bytes,
        gas: int,
        max_fee: int,
        priority: int,
        message_ids: tuple[bytes, ...],
        previous: tuple[bytes, ...],
    ) -> SignedBatch:
        signed = sign_dynamic_fee_tx(
            DynamicFeeTx(
                chain_id=self.config.chain_id,
                nonce=nonce,
                max_priority_fee=priority,
                max_fee=max_fee,
                gas=gas,
                to=self._gateway_bytes,
                value=0,
                data=calldata,
            ),
            self.key,
        )
        tx_hash = bytes(signed.hash)
        return SignedBatch(
            nonce=nonce,
            raw=signed.raw,
            tx_hash=tx_hash,
            max_fee=max_fee,
            priority_fee=priority,
            gas=gas,
            calldata=calldata,
            message_ids=message_ids,
            hashes=(*previous, tx_hash),
            signed_at=time.time(),
        )

    def bump(self, batch: SignedBatch) -> SignedBatch | None:
        """The same transaction at the same nonce with fees raised 12.5%, or None at the cap."""
        cap = int(self.config.max_fee_gwei * _GWEI)
        priority = max(
            math.ceil(batch.priority_fee * _BUMP_NUM / _BUMP_DEN), batch.priority_fee + 1
        )
        max_fee = min(cap, max(math.ceil(batch.max_fee * _BUMP_NUM / _BUMP_DEN), priority))
        priority = min(priority, max_fee)
        # Nodes accept a replacement only if both fee fields rose by at least 10%.
        if max_fee * 10 < batch.max_fee * 11 or priority * 10 < batch.priority_fee * 11:
            return None
        return self._sign(
            nonce=batch.nonce,
            calldata=batch.calldata,
            gas=batch.gas,
            max_fee=max_fee,
            priority=priority,
            message_ids=batch.message_ids,
            previous=batch.hashes or (batch.tx_hash,),
        )

    async def broadcast(self, batch: SignedBatch) -> BroadcastResult:
        """Send; ACCEPTED when the node took it (or already had it), else what the caller
        must act on (NONCE_USED: mined or replaced; FEE_TOO_LOW: the bump follows)."""
        try:
            await self.rpc.send_raw(batch.raw)
        except RpcError as exc:
            answer = _BROADCAST_ANSWERS.get(exc.kind)
            if answer is None:
                raise
            return answer
        return BroadcastResult.ACCEPTED

    async def confirmations(self, tx_hash: bytes) -> int | None:
        """Blocks on top of (and including) the one holding ``tx_hash``; None when the chain no
        longer holds it (a reorg dropped it)."""
        receipt = await self.rpc.receipt(tx_hash)
        if receipt is None or not receipt.get("blockNumber"):
            return None
        head = await self.rpc.block_number()
        return head - int(receipt["blockNumber"], 16) + 1

    async def outcome(self, batch: SignedBatch) -> list[DeliveryOutcome] | None:
        """Per-message outcomes once one of the batch's transactions is mined, else None."""
        for tx_hash in reversed(batch.hashes or (batch.tx_hash,)):
            receipt = await self.rpc.receipt(tx_hash)
            if receipt is not None and receipt.get("blockNumber"):
                return self._outcomes(batch, tx_hash, receipt)
        return None

    def _outcomes(
        self, batch: SignedBatch, tx_hash: bytes, receipt: dict[str, Any]
    ) -> list[DeliveryOutcome]:
        fee = _fee_paid(receipt)
        if int(receipt.get("status", "0x0"), 16) != 1:
            return [
                DeliveryOutcome(
                    mid, delivered=False, tx_hash=tx_hash, error="transaction reverted", fee=fee
                )
                for mid in batch.message_ids
            ]
        delivered: set[bytes] = set()
        failed: dict[bytes, str] = {}
        gateway = self.gateway.lower()
        for entry in receipt.get("logs") or []:
            if str(entry.get("address", "")).lower() != gateway:
                continue
            topics = [bytes.fromhex(t[2:]) for t in entry.get("topics") or []]
            if len(topics) != 2:
                continue
            if topics[0] == _DELIVERED_TOPIC:
                delivered.add(topics[1])
            elif topics[0] == _FAILED_TOPIC:
                (reason,) = abi_decode(["bytes"], bytes.fromhex(entry["data"][2:]))
                failed[topics[1]] = "recipient failed: 0x" + bytes(reason).hex()
        return [
            DeliveryOutcome(
                mid,
                delivered=mid in delivered,
                tx_hash=tx_hash,
                # Neither event: the Gateway skipped it as already delivered (by another
                # relayer or an earlier transaction of ours); the core confirms with delivered().
                error=None if mid in delivered else failed.get(mid, "skipped: already delivered"),
                fee=fee,
            )
            for mid in batch.message_ids
        ]


def _fee_paid(receipt: dict[str, Any]) -> int | None:
    """Wei the transaction cost its sender: gas used times the price it paid (a receipt of a
    node that leaves either out says nothing, rather than something wrong)."""
    try:
        return int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
    except (KeyError, TypeError, ValueError):
        return None
