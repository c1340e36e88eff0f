"""Delivers attested messages to a fake chain: one signed delivery transaction per batch, from
the relayer's account, carrying each message with its id.

The node executes a delivery message by message and refuses an id it delivered before (its
receipt says which), so a transaction sent twice, or racing another relayer's, delivers
nothing twice. Nonces are the account's: ``prepare`` takes the next one, ``bump`` signs the
same messages at the same nonce with a higher fee, and every hash signed at a nonce is kept so
that ``outcome`` finds whichever one was included.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import structlog

from relayer.errors import PermanentChainError
from relayer.message import Message, MessageFormatError
from relayer.nonces import NonceCounter
from relayer.plugin import BroadcastResult, Delivery, DeliveryOutcome
from tests.conformance.fake.blocks import TxKind, encode_deliveries
from tests.conformance.fake.client import NodeClient, NodeRefusalError
from tests.conformance.fake.config import FakeChainConfig
from tests.conformance.fake.keys import FakeSigner

__all__ = ["FakeSubmitter", "SignedDelivery"]

# A replacement must offer more than the transaction it replaces; +25% (at least +1).
_BUMP_NUM, _BUMP_DEN = 5, 4
# The node's refusals the delivery worker acts on; any other refusal is permanent.
_BROADCAST_ANSWERS = {
    "already_known": BroadcastResult.ACCEPTED,
    "nonce_used": BroadcastResult.NONCE_USED,
    "fee_too_low": BroadcastResult.FEE_TOO_LOW,
}


class SignedDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """A signed delivery transaction; stored whole in the ledger while it is in flight."""

    nonce: int
    tx: bytes
    tx_hash: bytes
    message_ids: tuple[bytes, ...]
    #: the messages, in ``message_ids`` order: what a bump signs again
    messages: tuple[bytes, ...]
    fee: int
    #: every hash signed at this nonce: after a bump either one may be the one included
    hashes: tuple[bytes, ...] = ()
    signed_at: float = 0.0

    def encode(self) -> bytes:
        return _pending_encoder.encode(self)

    @staticmethod
    def decode(raw: bytes) -> SignedDelivery:
        return _pending_decoder.decode(raw)


_pending_encoder = msgspec.msgpack.Encoder()
_pending_decoder = msgspec.msgpack.Decoder(SignedDelivery)


def _checked(delivery: Delivery) -> None:
    """ValueError when the bytes are not the message the id names (nothing a retry fixes)."""
    message = Message.decode(delivery.message)
    if message.id != delivery.message_id:
        raise ValueError(
            f"message bytes hash to 0x{message.id.hex()}, not to their id "
            f"0x{delivery.message_id.hex()}"
        )


class FakeSubmitter:
    def __init__(
        self,
        *,
        chain_name: str,
        domain: int,
        config: FakeChainConfig,
        signer: FakeSigner,
        log: Any = None,
    ) -> None:
        self.chain = chain_name
        self.domain = domain
        self.config = config
        self.signer = signer
        self.signer_address = signer.address
        self.client = NodeClient(config.rpc, chain=chain_name, timeout=config.request_timeout)
        self.endpoint = self.client.endpoint
        self.unit = "unit"
        self.log = (log or structlog.get_logger()).bind(chain=chain_name)
        self._nonces = NonceCounter()

    async def start(self) -> None:
        info = await self.client.must("GET", "/info")
        if info["network"] != self.config.network or info["domain"] != self.domain:
            raise PermanentChainError(
                f"chain `{self.chain}`: endpoint {self.endpoint} serves network "
                f"{info['network']!r} (domain {info['domain']}), the config says "
                f"{self.config.network!r} (domain {self.domain}); refusing to sign for the "
                "wrong chain: point rpc at the right node"
            )

    async def close(self) -> None:
        await self.client.close()

    # --- nonces --------------------------------------------------------------------------------

    async def resync_nonce(self, at_least: int = 0) -> int:
        """The node's pending nonce (mined, and pooled without a gap) for our account."""
        answer = await self.client.must("GET", f"/account/0x{self.signer.address.hex()}")
        return self._nonces.resynced(int(answer["nonce"]), at_least)

    async def _take_nonce(self) -> int:
        return await self._nonces.take(self.resync_nonce)

    def release_nonce(self, nonce: int) -> None:
        self._nonces.release(nonce)

    async def balance(self) -> int:
        """The fake chain has no fees: every account holds 0."""
        return 0

    # --- checks --------------------------------------------------------------------------------

    async def delivered_flags(self, message_ids: Sequence[bytes]) -> list[bool]:
        answer = await self.client.must(
            "POST", "/delivered", {"ids": ["0x" + mid.hex() for mid in message_ids]}
        )
        counts = answer["counts"]
        if len(counts) != len(message_ids):
            raise ValueError(f"{len(counts)} flags for {len(message_ids)} ids")
        return [int(count) > 0 for count in counts]

    async def simulate(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """True for each delivery the node would execute now (not delivered yet, addressed
        here, hashing to its id)."""
        answer = await self.client.must(
            "POST",
            "/simulate",
            {
                "deliveries": [
                    {"id": "0x" + d.message_id.hex(), "message": "0x" + d.message.hex()}
                    for d in deliveries
                ]
            },
        )
        errors = answer["errors"]
        if len(errors) != len(deliveries):
            raise ValueError(f"{len(errors)} verdicts for {len(deliveries)} deliveries")
        for delivery, error in zip(deliveries, errors, strict=True):
            if error is not None:
                self.log.info(
                    "submit.would_fail",
                    message_id="0x" + delivery.message_id.hex(),
                    error=str(error),
                )
        return [error is None for error in errors]

    # --- transactions --------------------------------------------------------------------------

    async def prepare(self, deliveries: Sequence[Delivery]) -> SignedDelivery:
        try:
            for delivery in deliveries:
                _checked(delivery)
        except (MessageFormatError, ValueError) as exc:
            raise PermanentChainError(f"chain `{self.chain}`: cannot deliver: {exc}") from exc
        nonce = await self._take_nonce()
        try:
            return self._sign(
                nonce=nonce,
                message_ids=tuple(d.message_id for d in deliveries),
                messages=tuple(d.message for d in deliveries),
                fee=self.config.fee,
                previous=(),
            )
        except BaseException:
            self.release_nonce(nonce)  # nothing was signed: the next batch takes it
            raise

    def bump(self, pending: SignedDelivery) -> SignedDelivery | None:
        fee = max(math.ceil(pending.fee * _BUMP_NUM / _BUMP_DEN), pending.fee + 1)
        if fee > self.config.max_fee:
            return None
        return self._sign(
            nonce=pending.nonce,
            message_ids=pending.message_ids,
            messages=pending.messages,
            fee=fee,
            previous=pending.hashes or (pending.tx_hash,),
        )

    def _sign(
        self,
        *,
        nonce: int,
        message_ids: tuple[bytes, ...],
        messages: tuple[bytes, ...],
        fee: int,
        previous: tuple[bytes, ...],
    ) -> SignedDelivery:
        payload = encode_deliveries(list(zip(message_ids, messages, strict=True)))
        tx = self.signer.sign(TxKind.DELIVERY, nonce, fee, payload)
        tx_hash = tx.hash
        return SignedDelivery(
            nonce=nonce,
            tx=tx.encode(),
            tx_hash=tx_hash,
            message_ids=message_ids,
            messages=messages,
            fee=fee,
            hashes=(*previous, tx_hash),
            signed_at=time.time(),
        )

    async def broadcast(self, pending: SignedDelivery) -> BroadcastResult:
        """ACCEPTED when the pool took it or has it, NONCE_USED when its nonce is spent (by
        this very transaction, included, or another), FEE_TOO_LOW when another transaction
        holds the nonce with a fee as high. Any other refusal is a ``PermanentChainError``
        (``NodeRefusalError``); a failing endpoint a ``TransientChainError``."""
        try:
            await self.client.must("POST", "/tx", {"tx": "0x" + pending.tx.hex()})
        except NodeRefusalError as exc:
            answer = _BROADCAST_ANSWERS.get(exc.code)
            if answer is None:
                raise
            return answer
        return BroadcastResult.ACCEPTED

    def decode_pending(self, raw: bytes) -> SignedDelivery:
        return SignedDelivery.decode(raw)

    # --- inclusion -----------------------------------------------------------------------------

    async def _receipt(self, tx_hash: bytes) -> dict[str, Any] | None:
        answer = await self.client.get(f"/tx/0x{tx_hash.hex()}")
        if answer is None or answer["status"] != "included":
            return None
        return answer

    async def outcome(self, pending: SignedDelivery) -> list[DeliveryOutcome] | None:
        for tx_hash in reversed(pending.hashes or (pending.tx_hash,)):
            receipt = await self._receipt(tx_hash)
            if receipt is None:
                continue
            errors = receipt["errors"]
            if len(errors) != len(pending.message_ids):
                raise ValueError(
                    f"a receipt of {len(errors)} results for {len(pending.message_ids)} messages"
                )
            return [
                DeliveryOutcome(
                    message_id,
                    delivered=error is None,
                    tx_hash=tx_hash,
                    # A replay is refused here: the core asks delivered_flags before it
                    # retries, and settles the message as delivered by someone else.
                    error=None if error is None else f"block #{receipt['block']}: {error}",
                )
                for message_id, error in zip(pending.message_ids, errors, strict=True)
            ]
        return None

    async def confirmations(self, tx_hash: bytes) -> int | None:
        receipt = await self._receipt(tx_hash)
        if receipt is None:
            return None
        head = await self.client.must("GET", "/head")
        return int(head["number"]) - int(receipt["block"]) + 1
