"""A delivery worker on a shared ledger and an anvil destination, as the scale-out tests run it:
in process (``delivery_worker``), or as a process of its own that a test can kill with SIGKILL
(``python -m tests.integration.scaleout URL RPC GATEWAY KEY_INDEX LEASE SUBMIT_TIMEOUT``).

Also the messages those tests deliver: attested in the ledger with real committee signatures
(the devnet's attesters, anvil accounts #5-#7, threshold 2) over made-up origin blocks, so that
the destination's Gateway accepts them without an origin chain."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Sequence
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct

from chains.evm.anvil import DEV_KEYS
from chains.evm.config import EvmChainConfig
from chains.evm.devnet import ATTESTERS
from chains.evm.rpc import EvmRpc
from chains.evm.submitter import EvmSubmitter, SignedBatch
from proofs.committee import attestation_digest
from proofs.hashing import keccak256
from relayer.delivery import DeliveryWorker
from relayer.ecdsa_key import EcdsaKey
from relayer.plugin import DeliverySettings
from relayer.store import Ledger, ObservedRow, State

CHAIN = "chain-b"
ORIGIN_DOMAIN = 1000
DESTINATION_DOMAIN = 2000
CHAIN_ID = 31338
SETTINGS = DeliverySettings(batch_size=20, max_in_flight=4, submit_timeout=5.0, reorg_depth=1)
_COMMITTEE = sorted(
    (Account.from_key(DEV_KEYS[i]) for i in ATTESTERS), key=lambda a: int(a.address, 16)
)


class _Submitter(EvmSubmitter):
    """As the evm plugin's (``decode_pending`` is the plugin's part)."""

    def decode_pending(self, raw: bytes) -> SignedBatch:
        return SignedBatch.decode(raw)


class EventLog:
    """A structlog stand-in that keeps the event names (shared by a worker's bound copies)."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def bind(self, **_: Any) -> EventLog:
        return self

    def _note(self, event: str, *_: Any, **__: Any) -> None:
        self.events.append(event)

    debug = info = warning = error = _note


def attest_messages(
    ledger: Ledger, *, gateway: str, recipient: str, first: int, count: int
) -> list[bytes]:
    """``count`` messages (origin nonces ``first``...) for chain-b's TestRecipient, ATTESTED
    with a quorum of the committee's signatures; returns their ids."""
    gateway_bytes = bytes.fromhex(gateway[2:])
    recipient_word = bytes.fromhex(recipient[2:]).rjust(32, b"\x00")
    rows, signed = [], []
    for nonce in range(first, first + count):
        message = (
            bytes([3])
            + nonce.to_bytes(4, "big")
            + ORIGIN_DOMAIN.to_bytes(4, "big")
            + bytes(32)
            + DESTINATION_DOMAIN.to_bytes(4, "big")
            + recipient_word
            + f"scale-out {nonce}".encode()
        )
        message_id = keccak256(message)
        block_hash = hashlib.sha256(b"origin block %d" % (nonce // 50)).digest()
        digest = attestation_digest(CHAIN_ID, gateway_bytes, ORIGIN_DOMAIN, message_id, block_hash)
        signatures = tuple(
            bytes(a.sign_message(encode_defunct(primitive=digest)).signature)
            for a in _COMMITTEE[:2]
        )
        rows.append(
            ObservedRow(
                id=message_id,
                origin_chain="chain-a",
                destination_chain=CHAIN,
                route=f"chain-a->{CHAIN}",
                nonce=nonce,
                message=message,
                block_number=nonce // 50,
                block_hash=block_hash,
                evidence=b"",
            )
        )
        signed.append((message_id, signatures, None))
    ledger.record_observed_many(rows, [None] * len(rows))
    ledger.mark_attested(signed)
    return [message_id for message_id, _, _ in signed]


def delivery_worker(
    ledger: Ledger,
    *,
    rpc: str,
    gateway: str,
    key_index: int,
    lease: float,
    settings: DeliverySettings = SETTINGS,
    log: Any = None,
) -> DeliveryWorker:
    """A worker delivering to chain-b with anvil account ``key_index``'s key."""
    config = EvmChainConfig.model_validate(
        {"chain_id": CHAIN_ID, "rpc": rpc, "gateway": gateway, "submit_timeout": 5.0}
    )
    submitter = _Submitter(
        chain_name=CHAIN,
        config=config,
        rpc=EvmRpc(config.rpc),
        key=EcdsaKey(bytes.fromhex(DEV_KEYS[key_index][2:]), f"anvil account #{key_index}"),
        log=log,
    )
    return DeliveryWorker(
        chain=CHAIN,
        submitter=submitter,  # type: ignore[arg-type]  # takes its own PendingTx type
        ledger=ledger,
        log=log or EventLog(),
        settings=settings,
        poll_interval=0.1,
        lease=lease,
    )


async def _main(args: Sequence[str]) -> None:
    url, rpc, gateway, key_index, lease = args
    with Ledger.open(url) as ledger:
        worker = delivery_worker(
            ledger, rpc=rpc, gateway=gateway, key_index=int(key_index), lease=float(lease)
        )
        await worker.run()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:]))


__all__ = ["CHAIN", "SETTINGS", "EventLog", "State", "attest_messages", "delivery_worker"]
