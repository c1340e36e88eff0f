"""Delivers attested messages to a Substrate chain: one signed extrinsic from the relayer's
account per delivery, ``Utility.batch_all`` of ``System.remark_with_event(delivery remark)``
(a lone ``remark_with_event`` for a single message).

No runtime pallet receives these messages, so nothing on chain refuses a replay: "delivered"
means a finalized ``System.Remarked`` event of a delivery remark from this relayer's account
(the account consumers trust: anyone can write a remark), and the
only replay protection is this submitter's index of such events (``delivered_flags``), built
from the finalized blocks it has scanned. Deliveries are idempotent per message id only as far
back as that index reaches.

With several endpoints (``rpc = [...]``) every call goes to the preferred healthy one and, when
it fails (a refused connection, a timeout, a node serving another chain), to the next
(``chains.endpoints``): reads and broadcasts alike. Sending the same signed extrinsic through a
second endpoint is safe: it has the same hash and nonce, so the pools take it once and the
chain includes it at most once. An answer (a pool refusal) is not failed over: another node of
the same chain would say the same.

The core drives the steps and commits each to the ledger before the next side effect:
``prepare`` signs (nothing leaves the process), the core records the signed extrinsic,
``broadcast`` sends it, ``outcome`` looks for it in finalized blocks. An extrinsic is immortal
and tied to its nonce, so sending the recorded bytes again after a crash either finds it in
the pool, finds its nonce spent, or includes it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import structlog

from chains.endpoints import EndpointPool, EndpointStatus, urls_of
from chains.substrate.compatibility import IncompatibleNodeError, check_node
from chains.substrate.config import SubstrateChainConfig
from chains.substrate.connection import NodeConnection
from chains.substrate.evidence import RemarkCalls, decode_remark_extrinsic
from chains.substrate.extrinsic import (
    ExtraField,
    SigningContext,
    batch_all_call,
    remark_call,
    signed_extrinsic,
)
from chains.substrate.keys import Sr25519Keypair
from chains.substrate.remark import Delivery as DeliveryRemark
from chains.substrate.remark import RemarkError, decode_remark, encode_delivery, is_ours
from chains.substrate.rpc import PoolRefusal, RpcError, SubstrateRpc
from proofs.errors import MalformedEncodingError
from proofs.hashing import blake2_256
from proofs.substrate.scale import ScaleReader
from relayer.errors import PermanentChainError, TransientChainError
from relayer.keys import redact_url
from relayer.message import Message, MessageFormatError
from relayer.nonces import NonceCounter
from relayer.plugin import BroadcastResult, Delivery, DeliveryOutcome
from relayer.retry import retrying_transient

__all__ = ["SCAN_WINDOW", "SignedDelivery", "SubstrateSubmitter"]

T = TypeVar("T")

#: Finalized blocks scanned back from the head for delivery remarks the first time the index
#: is needed (or back to block 1 on a shorter chain); from then on every new finalized block
#: is scanned. A message delivered before that window (by anyone) is not known delivered: if
#: its ledger entry is lost and it is attested again, it is delivered twice. With no runtime
#: pallet there is no on-chain replay protection; this window is all there is. 4096 blocks is
#: about 7 hours at 6 s a block and a few seconds of reads on a local node.
SCAN_WINDOW = 4096
# Blocks fetched at once while scanning: enough to hide round trips, few enough not to flood
# a public endpoint's rate limit.
_SCAN_CONCURRENCY = 16
# A replacement needs a higher priority than the extrinsic it replaces, and priority grows
# with the tip; +25% (at least +1) gets through in one or two bumps without overshooting.
_BUMP_NUM, _BUMP_DEN = 5, 4
_CONNECT_TIMEOUT_S = 30.0
# Reads tried in place before a failure reaches the delivery worker (about 0.1 + 0.2 s apart).
_IN_PLACE_ATTEMPTS = 3
_SIGNED_V4 = 0x84
_ADDRESS_ID = 0x00
_ACCOUNT_LEN = 32
_BROADCAST_ANSWERS = {
    PoolRefusal.ALREADY_IMPORTED: BroadcastResult.ACCEPTED,
    # The pool bans the hash of an extrinsic it has just included (30 minutes by default): a
    # resend after a restart must not read as an outage. outcome() settles it either way.
    PoolRefusal.BANNED: BroadcastResult.ACCEPTED,
    PoolRefusal.NONCE_USED: BroadcastResult.NONCE_USED,
    PoolRefusal.PRIORITY_TOO_LOW: BroadcastResult.FEE_TOO_LOW,
}


class SignedDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A signed delivery extrinsic; stored whole in the ledger while it is in flight."""

    nonce: int
    #: the extrinsic as submitted (with its length prefix); ``tx_hash`` is its blake2-256
    extrinsic: bytes
    tx_hash: bytes
    message_ids: tuple[bytes, ...]
    #: the delivery remarks, in ``message_ids`` order: what a bump signs again
    remarks: tuple[bytes, ...]
    tip: int
    #: every hash signed at this nonce: after a bump either one may be the one included
    hashes: tuple[bytes, ...] = ()
    signed_at: float = 0.0
    #: the finalized head when the first of ``hashes`` was signed: none lands at or below it
    signed_after: int = 0

    def encode(self) -> bytes:
        return _pending_encoder.encode(self)

    @staticmethod
    def decode(raw: bytes) -> SignedDelivery:
        return _pending_decoder.decode(raw)


_pending_encoder = msgspec.msgpack.Encoder()
_pending_decoder = msgspec.msgpack.Decoder(SignedDelivery)


@dataclass(frozen=True, slots=True)
class _Included:
    """Where one of our extrinsics landed, and which remarks it made the runtime emit."""

    number: int
    block_hash: bytes
    #: blake2-256 of each remark a ``System.Remarked`` event of this extrinsic, from us, names
    remarked: frozenset[bytes]
    #: ``TransactionFeePaid``'s ``actual_fee`` (tip included) of this extrinsic, paid by us;
    #: None on a runtime without the transaction payment pallet
    fee: int | None = None


def _signer_of(extrinsic: bytes) -> bytes | None:
    """The account that signed a v4 extrinsic with a ``MultiAddress::Id``; None otherwise."""
    try:
        reader = ScaleReader(extrinsic)
        reader.compact("extrinsic length")
        if reader.u8("version") != _SIGNED_V4 or reader.u8("address") != _ADDRESS_ID:
            return None
        return reader.fixed(_ACCOUNT_LEN, "signer")
    except MalformedEncodingError:
        return None


def _fails_over(exc: Exception) -> bool:
    """Whether ``exc`` is the endpoint being unwell (try another) rather than an answer: a
    transport failure or timeout, or a node that is not the configured chain."""
    if isinstance(exc, RpcError):
        return False  # the endpoint answered: another node of the chain would say the same
    return isinstance(exc, TransientChainError | IncompatibleNodeError)


class _Node:
    """One endpoint of the chain with its own connection (checked on every connect)."""

    def __init__(
        self, url: str, *, chain: str, on_connect: Callable[[SubstrateRpc], Awaitable[None]]
    ) -> None:
        self.endpoint = redact_url(url)
        self.connection = NodeConnection(
            url, chain=chain, timeout=_CONNECT_TIMEOUT_S, on_connect=on_connect
        )

    async def call(self, operation: Callable[[SubstrateRpc], Awaitable[T]]) -> T:
        """``operation`` on a connected client; a transport failure drops the client, so that
        the next call connects again (a dropped websocket does not come back by itself)."""
        rpc = await self.connection.client()
        try:
            return await operation(rpc)
        except RpcError:
            raise  # the endpoint answered: the connection is fine
        except TransientChainError:
            await self.connection.drop(rpc)
            raise


def _delivery_remark(delivery: Delivery) -> bytes:
    """The delivery remark of one message; ValueError when the bytes are not the message the
    id names (nothing a retry fixes)."""
    message = Message.decode(delivery.message)
    if message.id != delivery.message_id:
        raise ValueError(
            f"message bytes hash to 0x{message.id.hex()}, not to their id "
            f"0x{delivery.message_id.hex()}"
        )
    return encode_delivery(message)


class SubstrateSubmitter:
    def __init__(
        self,
        *,
        chain_name: str,
        config: SubstrateChainConfig,
        signer: Sr25519Keypair,
        log: Any = None,
        scan_window: int = SCAN_WINDOW,
    ) -> None:
        self.chain = chain_name
        self.config = config
        self.signer = signer
        self.signer_address = signer.address
        urls = urls_of(config.rpc)
        self.endpoint = redact_url(urls[0]) + (f" (+{len(urls) - 1} more)" if len(urls) > 1 else "")
        self.unit = "planck"
        self.log = (log or structlog.get_logger()).bind(chain=chain_name)
        self._scan_window = scan_window
        # What the decoder expects, from the config (checked against the node at connect).
        self._layout = tuple(ExtraField(name) for name in config.signed_extra)
        self._calls = RemarkCalls(config.remark_with_event_call, config.batch_all_call)
        # Quorum is the reader's business (what is final); a submitter needs one endpoint that
        # takes its extrinsics and answers its reads, so any healthy one will do.
        self._nodes = EndpointPool(
            [_Node(url, chain=chain_name, on_connect=self._check) for url in urls],
            fails_over=_fails_over,
            chain=chain_name,
            log=self.log,
        )
        # The runtime's signing facts as of the latest connect or prepare: ``bump`` signs
        # without I/O, so it signs with these.
        self._context: SigningContext | None = None
        self._nonces = NonceCounter()
        self._scanning = asyncio.Lock()
        # Inclusive range of finalized block numbers indexed so far; None before the first scan.
        self._scanned: tuple[int, int] | None = None
        # Message id -> block of its first delivery remark with a Remarked event, from our own
        # account (the one consumers trust; README "Substrate chains").
        self._delivered: dict[bytes, int] = {}
        # Our extrinsics (signed by ``signer``) found in scanned blocks, by hash. Kept for the
        # life of the process: about 150 bytes per delivery extrinsic.
        self._ours: dict[bytes, _Included] = {}

    # --- the connection ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (to the first endpoint that answers) and check it serves the configured
        chain and runtime."""
        await self._nodes.first(lambda node: node.connection.client())

    async def close(self) -> None:
        for node in self._nodes.members:
            await node.connection.close()

    def endpoint_health(self) -> list[EndpointStatus]:
        """Each configured endpoint's health, as this submitter has found it."""
        return self._nodes.health()

    async def _check(self, rpc: SubstrateRpc) -> None:
        _, self._context = await check_node(
            rpc, chain=self.chain, endpoint=rpc.endpoint, config=self.config
        )

    async def _call(
        self, operation: Callable[[SubstrateRpc], Awaitable[T]], *, in_place: bool = True
    ) -> T:
        """``operation`` on the preferred endpoint's connection, on the next endpoint when that
        one fails. A transport failure drops the client; reads (``in_place``) are then tried
        again on a new connection a few times within about a second (a dropped websocket, a
        node restarting), so that only a real outage reaches the delivery worker, whose retry
        schedule and logs take it from there. A broadcast goes through the endpoints once: the
        worker decides what a failed send means."""
        if not in_place:
            return await self._call_once(operation)
        async for attempt in retrying_transient(
            attempts=_IN_PLACE_ATTEMPTS, max_delay=1.0, initial=0.1, log=self.log, level="debug"
        ):
            with attempt:
                return await self._call_once(operation)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _call_once(self, operation: Callable[[SubstrateRpc], Awaitable[T]]) -> T:
        return await self._nodes.first(lambda node: node.call(operation))

    # --- nonces --------------------------------------------------------------------------------

    async def resync_nonce(self, at_least: int = 0) -> int:
        """Take the node's next nonce for our account (it counts extrinsics in its pool)."""
        nonce = await self._call(lambda rpc: rpc.account_nonce(self.signer.address))
        return self._nonces.resynced(nonce, at_least)

    async def account_nonce(self) -> int:
        """The node's next nonce for our account (its pool counted), leaving the local count
        alone (``relayer.plugin.ReadsAccountNonce``)."""
        return int(await self._call(lambda rpc: rpc.account_nonce(self.signer.address)))

    async def _take_nonce(self) -> int:
        return await self._nonces.take(self.resync_nonce)

    def release_nonce(self, nonce: int) -> None:
        """A nonce taken but never sent: hand it out again (only the latest one can be)."""
        self._nonces.release(nonce)

    async def balance(self) -> int:
        """The signer's free balance, in the chain's smallest unit."""
        return await self._call(lambda rpc: rpc.free_balance(self.signer.address))

    # --- the delivered index -------------------------------------------------------------------

    async def delivered_flags(self, message_ids: Sequence[bytes]) -> list[bool]:
        """Which ids a finalized delivery remark from this relayer's account carried, as far
        back as the index reaches (``SCAN_WINDOW``)."""
        await self._call(self._scan)
        return [mid in self._delivered for mid in message_ids]

    async def _finalized(self, rpc: SubstrateRpc) -> int:
        header = await rpc.header(await rpc.finalized_head())
        if header is None:
            raise TransientChainError(
                f"chain `{self.chain}`: {rpc.endpoint} has no header for its own finalized head"
            )
        return header.number

    async def _scan(self, rpc: SubstrateRpc) -> int:
        """Index every finalized block not indexed yet; the finalized head's number."""
        async with self._scanning:
            head = await self._finalized(rpc)
            if self._scanned is None:
                floor = max(1, head - self._scan_window + 1)
                started = time.monotonic()
                self._scanned = (floor, floor - 1)
                await self._index_forward(rpc, head)
                self.log.info(
                    "submit.index_built",
                    blocks=head - floor + 1,
                    delivered=len(self._delivered),
                    seconds=round(time.monotonic() - started, 2),
                )
            else:
                await self._index_forward(rpc, head)
            return head

    async def _index_forward(self, rpc: SubstrateRpc, head: int) -> None:
        assert self._scanned is not None
        floor, top = self._scanned
        for start in range(top + 1, head + 1, _SCAN_CONCURRENCY):
            end = min(start + _SCAN_CONCURRENCY - 1, head)
            await self._index(rpc, start, end)
            # Progress is kept chunk by chunk: an endpoint failing half way costs one chunk.
            self._scanned = (floor, end)

    async def _backfill(self, rpc: SubstrateRpc, start: int) -> None:
        """Index ``start`` up to the current floor (a pending extrinsic older than the window,
        after a restart): its inclusion lies there."""
        async with self._scanning:
            assert self._scanned is not None
            floor, top = self._scanned
            start = max(1, start)
            if start >= floor:
                return
            for first in range(start, floor, _SCAN_CONCURRENCY):
                await self._index(rpc, first, min(first + _SCAN_CONCURRENCY - 1, floor - 1))
            self._scanned = (start, top)

    async def _index(self, rpc: SubstrateRpc, start: int, end: int) -> None:
        await asyncio.gather(*(self._index_block(rpc, n) for n in range(start, end + 1)))

    async def _index_block(self, rpc: SubstrateRpc, number: int) -> None:
        block_hash = await rpc.block_hash(number)
        block = None if block_hash is None else await rpc.block(block_hash)
        if block_hash is None or block is None:
            raise TransientChainError(
                f"chain `{self.chain}`: {rpc.endpoint} has no block #{number} below its "
                "finalized head; will retry"
            )
        ours: dict[int, bytes] = {}
        # extrinsic index -> (its signer, [(remark hash, message id)]) of delivery remarks
        deliveries: dict[int, tuple[bytes, list[tuple[bytes, bytes]]]] = {}
        for index, extrinsic in enumerate(block.extrinsics):
            signer = _signer_of(extrinsic)
            if signer is None:
                continue
            if signer != self.signer.address:
                # Only this relayer's account delivers: a delivery remark anyone can write
                # would otherwise mark a message delivered (and keep us from delivering it) for
                # the price of one remark, while consumers trust our account's remarks only.
                continue
            ours[index] = blake2_256(extrinsic)
            try:
                decoded = decode_remark_extrinsic(extrinsic, self._layout, self._calls)
            except MalformedEncodingError:
                continue
            found = []
            for remark in decoded.remarks:
                if not is_ours(remark):
                    continue
                try:
                    content = decode_remark(remark)
                except RemarkError:
                    continue  # someone's broken or newer remark: not a delivery we can count
                if isinstance(content, DeliveryRemark):
                    found.append((blake2_256(remark), content.message_id))
            if found:
                deliveries[index] = (decoded.signer, found)
        if not ours and not deliveries:
            return
        # A remark counts only if the runtime emitted its event: a failed batch_all is in the
        # body too, with its fee paid and every remark in it undone.
        events = await rpc.extrinsic_events(block_hash)
        emitted: dict[tuple[int, bytes], set[bytes]] = {}
        for event in events.remarked:
            emitted.setdefault((event.extrinsic_index, event.sender), set()).add(event.remark_hash)
        fees = {
            paid.extrinsic_index: paid.actual_fee
            for paid in events.fees_paid
            if paid.who == self.signer.address
        }
        for index, (signer, found) in deliveries.items():
            made = emitted.get((index, signer), set())
            for remark_hash, message_id in found:
                if remark_hash in made:
                    self._delivered.setdefault(message_id, number)
        for index, extrinsic_hash in ours.items():
            self._ours[extrinsic_hash] = _Included(
                number=number,
                block_hash=block_hash,
                remarked=frozenset(emitted.get((index, self.signer.address), ())),
                fee=fees.get(index),
            )

    # --- transactions --------------------------------------------------------------------------

    async def simulate(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """True for each delivery not delivered yet (as far as the index reaches) whose message
        decodes. The extrinsic, signed but not sent, goes through ``payment_queryInfo`` so that
        one the runtime cannot decode is refused here, not after it is recorded (its fee, on
        chopsticks wrong anyway, is not used)."""
        flags = await self.delivered_flags([d.message_id for d in deliveries])
        remarks: list[bytes] = []
        ok: list[bool] = []
        for delivery, done in zip(deliveries, flags, strict=True):
            if done:
                ok.append(False)
                continue
            try:
                remarks.append(_delivery_remark(delivery))
            except (MessageFormatError, ValueError) as exc:
                self.log.warning(
                    "submit.undeliverable",
                    message_id="0x" + delivery.message_id.hex(),
                    error=str(exc),
                )
                ok.append(False)
                continue
            ok.append(True)
        if remarks:

            async def query(rpc: SubstrateRpc) -> None:
                context = (await rpc.runtime()).signing
                extrinsic = self._extrinsic(context, self._nonces.next or 0, remarks, 0)
                await rpc.fee_estimate(extrinsic)

            await self._call(query)
        return ok

    async def prepare(self, deliveries: Sequence[Delivery]) -> SignedDelivery:
        """Sign one delivery extrinsic at the next nonce (nothing is sent)."""
        try:
            remarks = tuple(_delivery_remark(d) for d in deliveries)
        except (MessageFormatError, ValueError) as exc:
            raise PermanentChainError(f"chain `{self.chain}`: cannot deliver: {exc}") from exc

        async def facts(rpc: SubstrateRpc) -> tuple[SigningContext, int]:
            return (await rpc.runtime()).signing, await self._finalized(rpc)

        context, head = await self._call(facts)
        self._context = context
        nonce = await self._take_nonce()
        try:
            return self._sign(
                context,
                nonce=nonce,
                remarks=remarks,
                message_ids=tuple(d.message_id for d in deliveries),
                tip=self.config.tip,
                previous=(),
                signed_after=head,
            )
        except BaseException:
            self.release_nonce(nonce)  # nothing was signed: the next batch takes it
            raise

    def bump(self, pending: SignedDelivery) -> SignedDelivery | None:
        """The same remarks at the same nonce with the tip raised 25% (at least by 1); None
        when that would pass ``max_tip``."""
        if self._context is None:
            raise TransientChainError(
                f"chain `{self.chain}`: not connected to {self.endpoint} yet; cannot re-sign"
            )
        tip = max(math.ceil(pending.tip * _BUMP_NUM / _BUMP_DEN), pending.tip + 1)
        if tip > self.config.max_tip:
            return None
        return self._sign(
            self._context,
            nonce=pending.nonce,
            remarks=pending.remarks,
            message_ids=pending.message_ids,
            tip=tip,
            previous=pending.hashes or (pending.tx_hash,),
            signed_after=pending.signed_after,
        )

    def _extrinsic(
        self, context: SigningContext, nonce: int, remarks: Sequence[bytes], tip: int
    ) -> bytes:
        calls = [remark_call(context, remark) for remark in remarks]
        if len(calls) == 1:
            call = calls[0]
        elif context.batch_all is None:
            raise PermanentChainError(
                f"chain `{self.chain}`: the runtime has no Utility.batch_all, so a delivery "
                "carries one message: set batch_size = 1"
            )
        else:
            call = batch_all_call(context, calls)
        return signed_extrinsic(self.signer, call, nonce, context, tip)

    def _sign(
        self,
        context: SigningContext,
        *,
        nonce: int,
        remarks: tuple[bytes, ...],
        message_ids: tuple[bytes, ...],
        tip: int,
        previous: tuple[bytes, ...],
        signed_after: int,
    ) -> SignedDelivery:
        extrinsic = self._extrinsic(context, nonce, remarks, tip)
        tx_hash = blake2_256(extrinsic)
        return SignedDelivery(
            nonce=nonce,
            extrinsic=extrinsic,
            tx_hash=tx_hash,
            message_ids=message_ids,
            remarks=remarks,
            tip=tip,
            hashes=(*previous, tx_hash),
            signed_at=time.time(),
            signed_after=signed_after,
        )

    async def broadcast(self, pending: SignedDelivery) -> BroadcastResult:
        """Send; ACCEPTED when the pool took it (or has it already), NONCE_USED when its nonce
        is spent (by this very extrinsic, included, or by another), FEE_TOO_LOW when another
        extrinsic holds the nonce with a higher priority. Any other invalidity raises
        ``PermanentChainError``; a pool that cannot judge it now, or a transport failure,
        ``TransientChainError``."""
        try:
            await self._call(lambda rpc: rpc.submit(pending.extrinsic), in_place=False)
        except RpcError as exc:
            answer = _BROADCAST_ANSWERS.get(exc.refusal) if exc.refusal else None
            if answer is None:
                raise
            return answer
        return BroadcastResult.ACCEPTED

    def decode_pending(self, raw: bytes) -> SignedDelivery:
        return SignedDelivery.decode(raw)

    # --- inclusion -----------------------------------------------------------------------------

    async def outcome(self, pending: SignedDelivery) -> list[DeliveryOutcome] | None:
        """Per-message outcomes once one of the extrinsics signed at the nonce is in a
        finalized block, else None. The first carries the extrinsic's fee (its
        ``TransactionFeePaid`` event, tip included; None on a runtime that emits none)."""
        await self._call(self._scan)
        assert self._scanned is not None
        if pending.signed_after + 1 < self._scanned[0]:
            await self._call(lambda rpc: self._backfill(rpc, pending.signed_after + 1))
        for tx_hash in reversed(pending.hashes or (pending.tx_hash,)):
            included = self._ours.get(tx_hash)
            if included is None:
                continue
            outcomes = []
            for position, (message_id, remark) in enumerate(
                zip(pending.message_ids, pending.remarks, strict=True)
            ):
                delivered = blake2_256(remark) in included.remarked
                outcomes.append(
                    DeliveryOutcome(
                        message_id,
                        delivered=delivered,
                        tx_hash=tx_hash,
                        # No event: the extrinsic failed (batch_all undoes every remark);
                        # the core asks delivered_flags before it retries.
                        error=None
                        if delivered
                        else f"extrinsic in block #{included.number} emitted no Remarked "
                        "event for this message (it failed on chain)",
                        # Once per extrinsic, as the core counts it (a failed one paid too).
                        fee=included.fee if position == 0 else None,
                    )
                )
            return outcomes
        return None

    async def confirmations(self, tx_hash: bytes) -> int | None:
        """Finalized blocks on top of (and including) the one holding ``tx_hash``; None when
        the chain at that height no longer holds that block."""
        head = await self._call(self._scan)
        included = self._ours.get(tx_hash)
        if included is None:
            return None
        now = await self._call(lambda rpc: rpc.block_hash(included.number))
        if now != included.block_hash:
            del self._ours[tx_hash]
            return None
        return head - included.number + 1
