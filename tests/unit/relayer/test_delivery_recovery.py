"""relayer.delivery: what a restarted delivery worker broadcasts again from the ledger."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from relayer.delivery import DeliveryWorker
from relayer.errors import PermanentChainError
from relayer.plugin import BroadcastResult, DeliverySettings
from relayer.store import Ledger, ObservedRow, State

SETTINGS = DeliverySettings(batch_size=40, max_in_flight=4, submit_timeout=30.0, reorg_depth=12)


class FakePending(msgspec.Struct, frozen=True, kw_only=True):
    nonce: int
    tx_hash: bytes
    message_ids: tuple[bytes, ...]
    signed_at: float = 0.0

    def encode(self) -> bytes:
        return msgspec.msgpack.encode(self)


@dataclass
class FakeSubmitter:
    """Only what ``DeliveryWorker._recover`` touches."""

    endpoint: str = "http://fake"
    refuse: frozenset[bytes] = frozenset()
    signer_address: bytes = b"\x0a" * 20

    def __post_init__(self) -> None:
        self.broadcasts: list[bytes] = []
        self.resynced_at_least: list[int] = []

    def decode_pending(self, raw: bytes) -> FakePending:
        return msgspec.msgpack.decode(raw, type=FakePending)

    async def resync_nonce(self, at_least: int = 0) -> int:
        self.resynced_at_least.append(at_least)
        return at_least

    async def broadcast(self, pending: FakePending) -> BroadcastResult:
        self.broadcasts.append(pending.tx_hash)
        if pending.tx_hash in self.refuse:
            raise PermanentChainError("nonce too low")
        return BroadcastResult.ACCEPTED


class QuietLog:
    def __init__(self) -> None:
        self.events: list[str] = []

    def bind(self, **_: Any) -> QuietLog:
        return self

    def info(self, event: str, **_: Any) -> None:
        self.events.append(event)

    def warning(self, event: str, **_: Any) -> None:
        self.events.append(event)


def mid(n: int) -> bytes:
    return hashlib.sha256(f"message {n}".encode()).digest()


def tx(n: int | str) -> bytes:
    return hashlib.sha256(f"tx {n}".encode()).digest()


def attested(led: Ledger, numbers: range, destination: str = "chain-b") -> list[bytes]:
    led.record_observed_many(
        [
            ObservedRow(
                id=mid(n),
                origin_chain="chain-a",
                destination_chain=destination,
                route=f"chain-a->{destination}",
                nonce=n,
                message=b"m",
                block_number=1,
                block_hash=b"\x01" * 32,
                evidence=b"",
            )
            for n in numbers
        ]
    )
    ids = [mid(n) for n in numbers]
    led.transition_many(ids, State.VERIFIED, expect=State.OBSERVED)
    led.transition_many(ids, State.ATTESTED, expect=State.VERIFIED)
    return ids


def submit(led: Ledger, ids: list[bytes], nonce: int, tx_hash: bytes) -> FakePending:
    pending = FakePending(nonce=nonce, tx_hash=tx_hash, message_ids=tuple(ids))
    led.mark_submitted(ids, tx_hash=tx_hash, tx_nonce=nonce, raw_tx=pending.encode())
    return pending


async def test_a_restart_broadcasts_the_newest_transaction_of_each_submitted_nonce(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as led:
        ids = attested(led, range(7))
        submit(led, ids[:2], 3, tx(3))
        submit(led, ids[2:4], 4, tx(4))
        bumped = submit(led, ids[:2], 3, tx("3b"))
        submit(led, ids[4:6], 2, tx(2))
        led.transition_many(ids[4:6], State.DELIVERED, expect=State.SUBMITTED)
        submit(led, ids[6:], 5, tx(5))
        led.transition(ids[6], State.ATTESTED, clear_tx=True)  # re-queued after a nonce gap
        submit(led, attested(led, range(7, 8), destination="chain-c"), 9, tx(9))

    submitter = FakeSubmitter(refuse=frozenset({tx(4)}))
    with Ledger.open(path) as led:
        worker = DeliveryWorker(
            chain="chain-b",
            submitter=submitter,  # type: ignore[arg-type]
            ledger=led,
            log=QuietLog(),
            settings=SETTINGS,
        )
        await worker._recover()

    assert submitter.broadcasts == [tx("3b"), tx(4)]
    assert submitter.resynced_at_least == [5]
    # Refused or not, each stays in flight: its receipt (or its absence) settles its messages.
    in_flight: dict[int, object] = dict(worker.in_flight)
    assert in_flight == {
        3: bumped,
        4: FakePending(nonce=4, tx_hash=tx(4), message_ids=(ids[2], ids[3])),
    }
