"""relayer.store.ledger: transitions, idempotent observation, reorgs, schedules, crash safety.

The tests that take ``ledger`` or ``ledger_target`` run on both engines, SQLite and Postgres (a
throwaway cluster, tests/integration/postgres.py); those about the SQLite file itself (WAL,
migrations of released SQLite versions, a killed process) on SQLite only."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from relayer.errors import StoreError
from relayer.store import (
    ALLOWED_TRANSITIONS,
    REOBSERVABLE,
    Cursor,
    Ledger,
    ObservedRow,
    SignedTx,
    State,
    SubmittedTx,
)
from relayer.store.schema import MIGRATIONS, SCHEMA_VERSION

# The fixtures ledger_target, postgres_url, postgres_cluster.
pytest_plugins = ["tests.integration.postgres"]

REPO = Path(__file__).resolve().parents[3]
SIG = b"\x01" * 65
SIG2 = b"\x02" * 65


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(ledger_target: str, clock: FakeClock) -> Iterator[Ledger]:
    with Ledger.open(ledger_target, clock=clock) as led:
        yield led


def scalar_rows(led: Ledger, query: str) -> list[tuple[object, ...]]:
    """``query`` (the SQL both engines speak) run on the ledger's own connection."""
    with led._read() as conn:
        return [tuple(r) for r in conn.execute(query).fetchall()]


def mid(n: int | str) -> bytes:
    return hashlib.sha256(f"message {n}".encode()).digest()


def bhash(n: int | str) -> bytes:
    return hashlib.sha256(f"block {n}".encode()).digest()


def row(
    n: int,
    *,
    origin: str = "chain-a",
    destination: str = "chain-b",
    nonce: int | None = None,
    block: int = 10,
    block_hash: bytes | None = None,
) -> ObservedRow:
    return ObservedRow(
        id=mid(n),
        origin_chain=origin,
        destination_chain=destination,
        route=f"{origin}->{destination}",
        nonce=n if nonce is None else nonce,
        message=b"msg-%d" % n,
        block_number=block,
        block_hash=bhash(block) if block_hash is None else block_hash,
        evidence=b"evidence-%d" % block,
    )


def observe(led: Ledger, n: int, **kw: object) -> bytes:
    r = row(n, **kw)  # type: ignore[arg-type]
    assert led.record_observed(
        id=r.id,
        origin_chain=r.origin_chain,
        destination_chain=r.destination_chain,
        route=r.route,
        nonce=r.nonce,
        message=r.message,
        block_number=r.block_number,
        block_hash=r.block_hash,
        evidence=r.evidence,
    )
    return r.id


# How to bring a fresh OBSERVED message to each state along allowed transitions.
PATH_TO: dict[State, list[State]] = {
    State.OBSERVED: [],
    State.VERIFIED: [State.VERIFIED],
    State.ATTESTED: [State.VERIFIED, State.ATTESTED],
    State.SUBMITTED: [State.VERIFIED, State.ATTESTED, State.SUBMITTED],
    State.DELIVERED: [State.VERIFIED, State.ATTESTED, State.DELIVERED],
    State.REJECTED: [State.REJECTED],
    State.FAILED: [State.VERIFIED, State.ATTESTED, State.FAILED],
    State.ORPHANED: [State.VERIFIED, State.ORPHANED],
}


def bring_to(led: Ledger, message_id: bytes, state: State) -> None:
    for step in PATH_TO[state]:
        signatures = (SIG, SIG2) if step is State.ATTESTED else None
        led.transition(message_id, step, signatures=signatures)


ALLOWED = sorted((a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets)
REFUSED = sorted((a, b) for a in State for b in State if b not in ALLOWED_TRANSITIONS[a])


# --- transitions ---------------------------------------------------------------------------------


def test_allowed_transitions_are_exactly_the_designed_ones() -> None:
    assert set(ALLOWED) == {
        (State.OBSERVED, State.VERIFIED),
        (State.OBSERVED, State.REJECTED),
        (State.OBSERVED, State.ORPHANED),
        (State.VERIFIED, State.ATTESTED),
        (State.VERIFIED, State.REJECTED),
        (State.VERIFIED, State.ORPHANED),
        (State.ATTESTED, State.SUBMITTED),
        (State.ATTESTED, State.DELIVERED),
        (State.ATTESTED, State.FAILED),
        (State.ATTESTED, State.ORPHANED),
        (State.SUBMITTED, State.DELIVERED),
        (State.SUBMITTED, State.ATTESTED),
        (State.SUBMITTED, State.FAILED),
        (State.FAILED, State.ATTESTED),
        (State.FAILED, State.ORPHANED),
        (State.DELIVERED, State.ATTESTED),
    }


def test_state_values_are_the_stored_spellings() -> None:
    assert [s.value for s in State] == [
        "observed",
        "verified",
        "attested",
        "submitted",
        "delivered",
        "rejected",
        "failed",
        "orphaned",
    ]


@pytest.mark.parametrize(("source", "target"), ALLOWED, ids=str)
def test_every_allowed_transition_commits_with_its_history_row(
    ledger: Ledger, clock: FakeClock, source: State, target: State
) -> None:
    message_id = observe(ledger, 1)
    bring_to(ledger, message_id, source)
    clock.advance(5)

    record = ledger.transition(message_id, target, expect=source, detail="why")

    assert record.state is target
    assert record.updated_at == clock.now
    assert ledger.get(message_id) == record
    last = ledger.history(message_id)[-1]
    assert (last.from_state, last.to_state, last.detail, last.at) == (
        source,
        target,
        "why",
        clock.now,
    )


@pytest.mark.parametrize(("source", "target"), REFUSED, ids=str)
def test_refused_transition_names_both_states_and_the_message_and_changes_nothing(
    ledger: Ledger, source: State, target: State
) -> None:
    message_id = observe(ledger, 1)
    bring_to(ledger, message_id, source)
    before = ledger.get(message_id)
    history = ledger.history(message_id)

    with pytest.raises(StoreError) as refused:
        ledger.transition(message_id, target)

    text = str(refused.value)
    assert source.value in text
    assert target.value in text
    assert message_id.hex() in text
    assert ledger.get(message_id) == before
    assert ledger.history(message_id) == history


def test_transition_is_refused_when_the_state_is_not_the_expected_one(ledger: Ledger) -> None:
    message_id = observe(ledger, 1)
    with pytest.raises(StoreError, match="expected attested"):
        ledger.transition(message_id, State.VERIFIED, expect=State.ATTESTED)
    with pytest.raises(StoreError, match="expected"):
        ledger.transition(message_id, State.VERIFIED, expect=[State.VERIFIED, State.ATTESTED])
    assert ledger.transition(message_id, State.VERIFIED, expect={State.OBSERVED}).state is (
        State.VERIFIED
    )


def test_transition_of_an_unknown_message_is_refused(ledger: Ledger) -> None:
    with pytest.raises(StoreError, match="not in the ledger"):
        ledger.transition(mid("nope"), State.VERIFIED)


def test_transition_writes_the_fields_it_is_given(ledger: Ledger, clock: FakeClock) -> None:
    message_id = observe(ledger, 1)
    ledger.transition(message_id, State.VERIFIED)
    attested = ledger.transition(message_id, State.ATTESTED, signatures=[SIG, SIG2])
    assert attested.signatures == (SIG, SIG2)

    submitted = ledger.transition(
        message_id,
        State.SUBMITTED,
        tx_hash=b"\xaa" * 32,
        tx_nonce=0,
        next_attempt_at=clock.now + 30,
    )
    assert (submitted.tx_hash, submitted.tx_nonce) == (b"\xaa" * 32, 0)
    assert submitted.next_attempt_at == clock.now + 30
    assert submitted.signatures == (SIG, SIG2), "fields not given are kept"

    ledger.schedule_retry(message_id, error="receipt timeout", delay=10)
    dropped = ledger.transition(
        message_id, State.ATTESTED, error="tx dropped", clear_tx=True, reset_attempts=True
    )
    assert (dropped.tx_hash, dropped.tx_nonce) == (None, None)
    assert dropped.last_error == "tx dropped"
    assert dropped.attempts == 0
    assert ledger.history(message_id)[-1].error == "tx dropped"


def test_a_message_entering_a_new_state_is_due_at_once(ledger: Ledger, clock: FakeClock) -> None:
    message_id = observe(ledger, 1)
    ledger.schedule_retry(message_id, error="rpc down", delay=60)
    assert ledger.due(State.OBSERVED) == []
    ledger.transition(message_id, State.VERIFIED)
    assert [r.id for r in ledger.due(State.VERIFIED)] == [message_id]


def test_signatures_that_are_not_65_bytes_are_refused(ledger: Ledger) -> None:
    message_id = observe(ledger, 1)
    ledger.transition(message_id, State.VERIFIED)
    with pytest.raises(StoreError, match="64 bytes"):
        ledger.transition(message_id, State.ATTESTED, signatures=[b"\x00" * 64])
    assert ledger.get(message_id).state is State.VERIFIED  # type: ignore[union-attr]


def test_transition_many_is_all_or_nothing(ledger: Ledger) -> None:
    ids = [observe(ledger, n) for n in range(3)]
    ledger.transition(ids[2], State.REJECTED)

    with pytest.raises(StoreError, match=ids[2].hex()):
        ledger.transition_many(ids, State.VERIFIED, expect=State.OBSERVED)
    assert [ledger.get(i).state for i in ids[:2]] == [State.OBSERVED] * 2  # type: ignore[union-attr]
    with pytest.raises(StoreError, match="not in the ledger"):
        ledger.transition_many([ids[0], mid("nope")], State.VERIFIED, expect=None)
    assert ledger.get(ids[0]).state is State.OBSERVED  # type: ignore[union-attr]

    assert ledger.transition_many(ids[:2], State.VERIFIED, expect=State.OBSERVED, detail="ok") == 2
    for i in ids[:2]:
        assert ledger.history(i)[-1].detail == "ok"


def test_mark_submitted_puts_a_batch_in_one_transaction_and_records_replacements(
    ledger: Ledger, clock: FakeClock
) -> None:
    ids = [observe(ledger, n) for n in range(3)]
    for message_id in ids:
        bring_to(ledger, message_id, State.ATTESTED)
    clock.advance(1)
    assert ledger.mark_submitted(ids[:2], tx_hash=b"\x01" * 32, tx_nonce=7, raw_tx=b"raw1") == 2
    record = ledger.get(ids[0])
    assert record is not None
    assert (record.state, record.tx_hash, record.tx_nonce) == (State.SUBMITTED, b"\x01" * 32, 7)
    assert ledger.pending_txs("chain-b") == [
        SignedTx(nonce=7, tx_hash=b"\x01" * 32, raw_tx=b"raw1")
    ]
    assert ledger.history(ids[0])[-1].detail == f"submitted in tx 0x{'01' * 32} (nonce 7)"

    # A fee bump replaces the transaction of messages that stay submitted.
    ledger.mark_submitted(ids[:2], tx_hash=b"\x02" * 32, tx_nonce=7, raw_tx=b"raw2")
    last = ledger.history(ids[1])[-1]
    assert (last.from_state, last.to_state) == (State.SUBMITTED, State.SUBMITTED)
    assert last.detail == f"replaced by tx 0x{'02' * 32} (nonce 7)"
    assert ledger.get(ids[1]).tx_hash == b"\x02" * 32  # type: ignore[union-attr]
    assert ledger.pending_txs("chain-b") == [
        SignedTx(nonce=7, tx_hash=b"\x02" * 32, raw_tx=b"raw2")
    ]

    # All or nothing: one message in the wrong state refuses the whole batch.
    ledger.transition(ids[2], State.FAILED)
    with pytest.raises(StoreError, match="only attested or submitted"):
        ledger.mark_submitted(ids, tx_hash=b"\x03" * 32, tx_nonce=8, raw_tx=b"raw3")
    assert ledger.get(ids[0]).tx_nonce == 7  # type: ignore[union-attr]
    assert [t.tx_hash for t in ledger.pending_txs("chain-b")] == [b"\x02" * 32]


# --- signed transactions -------------------------------------------------------------------------


def tx(n: int | str) -> bytes:
    return hashlib.sha256(f"tx {n}".encode()).digest()


def attested(led: Ledger, numbers: range, **kw: object) -> list[bytes]:
    ids = [observe(led, n, **kw) for n in numbers]
    for message_id in ids:
        bring_to(led, message_id, State.ATTESTED)
    return ids


def pending_rows(led: Ledger) -> list[tuple[object, ...]]:
    return scalar_rows(
        led,
        "SELECT destination_chain, tx_hash, tx_nonce FROM pending_txs"
        f" ORDER BY {led._dialect.insertion_order}",
    )


def test_a_signed_transaction_is_stored_once_however_many_messages_it_carries(
    tmp_path: Path,
) -> None:
    raw = random.Random(7).randbytes(30_000)
    path = tmp_path / "ledger.db"
    with Ledger.open(path) as led:
        ids = attested(led, range(100))
        conn = led._conn
        assert conn is not None
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = path.stat().st_size + path.with_name("ledger.db-wal").stat().st_size

        assert led.mark_submitted(ids, tx_hash=tx(1), tx_nonce=0, raw_tx=raw) == 100

        grown = path.stat().st_size + path.with_name("ledger.db-wal").stat().st_size - before
        assert conn.execute("SELECT count(*), sum(length(raw_tx)) FROM pending_txs").fetchone() == (
            1,
            len(raw),
        )
        assert conn.execute(
            "SELECT count(*) FROM messages WHERE raw_tx IS NOT NULL"
        ).fetchone() == (0,)
        # 100 copies would add 3 MB; one copy and the pages the batch's updates touch (WAL frames
        # of message, history and index pages: ~170 KB) stay far below.
        assert grown < 10 * len(raw), f"the batch grew the ledger by {grown} bytes"
        assert led.pending_txs("chain-b") == [SignedTx(nonce=0, tx_hash=tx(1), raw_tx=raw)]
        assert all(led.get(i).tx_hash == tx(1) for i in ids)  # type: ignore[union-attr]


def test_a_fee_bump_replaces_the_stored_transaction_of_its_nonce_only(ledger: Ledger) -> None:
    first = attested(ledger, range(3))
    second = attested(ledger, range(3, 5))
    ledger.mark_submitted(first, tx_hash=tx("7a"), tx_nonce=7, raw_tx=b"7a")
    ledger.mark_submitted(second, tx_hash=tx(8), tx_nonce=8, raw_tx=b"8")

    ledger.mark_submitted(first, tx_hash=tx("7b"), tx_nonce=7, raw_tx=b"7b")

    assert ledger.pending_txs("chain-b") == [
        SignedTx(nonce=7, tx_hash=tx("7b"), raw_tx=b"7b"),
        SignedTx(nonce=8, tx_hash=tx(8), raw_tx=b"8"),
    ]
    assert [h for _, h, _ in pending_rows(ledger)] == [tx(8), tx("7b")]
    # Recording the same transaction twice keeps one row of it.
    ledger.mark_submitted(first, tx_hash=tx("7b"), tx_nonce=7, raw_tx=b"7b")
    assert len(pending_rows(ledger)) == 2


def test_a_transaction_bumped_for_part_of_its_messages_is_kept_for_the_others(
    ledger: Ledger,
) -> None:
    ids = attested(ledger, range(3))
    ledger.mark_submitted(ids, tx_hash=tx("a"), tx_nonce=1, raw_tx=b"a")
    ledger.mark_submitted(ids[:1], tx_hash=tx("b"), tx_nonce=1, raw_tx=b"b")
    assert [t.tx_hash for t in ledger.pending_txs("chain-b")] == [tx("a"), tx("b")]
    ledger.mark_submitted(ids[1:], tx_hash=tx("b"), tx_nonce=1, raw_tx=b"b")
    assert ledger.pending_txs("chain-b") == [SignedTx(nonce=1, tx_hash=tx("b"), raw_tx=b"b")]


def test_submitted_transactions_are_recovered_after_a_reopen(ledger_target: str) -> None:
    path = ledger_target
    with Ledger.open(path) as led:
        ids = attested(led, range(6))
        elsewhere = attested(led, range(6, 8), destination="chain-c")
        led.mark_submitted(ids[:2], tx_hash=tx(3), tx_nonce=3, raw_tx=b"three")
        led.mark_submitted(ids[2:4], tx_hash=tx(4), tx_nonce=4, raw_tx=b"four")
        led.mark_submitted(ids[:2], tx_hash=tx("3b"), tx_nonce=3, raw_tx=b"three, bumped")
        led.mark_submitted(ids[4:], tx_hash=tx(2), tx_nonce=2, raw_tx=b"two")
        led.transition_many(ids[4:], State.DELIVERED, expect=State.SUBMITTED)
        led.mark_submitted(elsewhere, tx_hash=tx(9), tx_nonce=9, raw_tx=b"nine")

    with Ledger.open(path) as led:
        assert led.pending_txs("chain-b") == [
            SignedTx(nonce=3, tx_hash=tx("3b"), raw_tx=b"three, bumped"),
            SignedTx(nonce=4, tx_hash=tx(4), raw_tx=b"four"),
        ]
        assert led.pending_txs("chain-c") == [SignedTx(nonce=9, tx_hash=tx(9), raw_tx=b"nine")]
        assert led.pending_txs("chain-z") == []


LEAVE_SUBMITTED: dict[str, Callable[[Ledger, bytes], object]] = {
    "delivered": lambda led, i: led.transition_many([i], State.DELIVERED, expect=State.SUBMITTED),
    "re-queued": lambda led, i: led.transition(i, State.ATTESTED, clear_tx=True),
    "retried": lambda led, i: led.schedule_retry(i, error="dropped", delay=5, to=State.ATTESTED),
    "failed": lambda led, i: led.transition(i, State.FAILED, error="reverted"),
    "delivered one by one": lambda led, i: led.transition(i, State.DELIVERED),
}


@pytest.mark.parametrize("leave", LEAVE_SUBMITTED.values(), ids=LEAVE_SUBMITTED.keys())
def test_a_transaction_is_forgotten_when_its_last_submitted_message_leaves(
    ledger: Ledger, leave: Callable[[Ledger, bytes], object]
) -> None:
    ids = attested(ledger, range(3))
    kept = attested(ledger, range(3, 4))
    ledger.mark_submitted(ids, tx_hash=tx(1), tx_nonce=1, raw_tx=b"one")
    ledger.mark_submitted(kept, tx_hash=tx(2), tx_nonce=2, raw_tx=b"two")
    for message_id in ids[:-1]:
        leave(ledger, message_id)
        assert [t.tx_hash for t in ledger.pending_txs("chain-b")] == [tx(1), tx(2)]
    leave(ledger, ids[-1])
    assert ledger.pending_txs("chain-b") == [SignedTx(nonce=2, tx_hash=tx(2), raw_tx=b"two")]
    assert [h for _, h, _ in pending_rows(ledger)] == [tx(2)]


def test_a_refused_move_keeps_the_transaction(ledger: Ledger) -> None:
    ids = attested(ledger, range(2))
    ledger.mark_submitted(ids, tx_hash=tx(1), tx_nonce=1, raw_tx=b"one")
    with pytest.raises(StoreError, match="not in the ledger"):
        ledger.transition_many([*ids, mid("nope")], State.DELIVERED, expect=State.SUBMITTED)
    assert len(pending_rows(ledger)) == 1


def test_mark_submitted_stores_the_transaction_with_its_messages_or_not_at_all(
    ledger: Ledger,
) -> None:
    ids = attested(ledger, range(2))
    ledger.transition(ids[1], State.FAILED)
    with pytest.raises(StoreError, match="only attested or submitted"):
        ledger.mark_submitted(ids, tx_hash=tx(1), tx_nonce=1, raw_tx=b"one")
    assert pending_rows(ledger) == []

    other = attested(ledger, range(5, 6), destination="chain-c")
    with pytest.raises(StoreError, match="one destination chain"):
        ledger.mark_submitted([ids[0], *other], tx_hash=tx(2), tx_nonce=2, raw_tx=b"two")
    assert pending_rows(ledger) == []
    assert ledger.get(ids[0]).state is State.ATTESTED  # type: ignore[union-attr]

    assert ledger.mark_submitted([], tx_hash=tx(3), tx_nonce=3, raw_tx=b"three") == 0
    assert pending_rows(ledger) == []


# --- observation and reorgs -----------------------------------------------------------------------


def test_record_observed_is_idempotent_by_id(ledger: Ledger, clock: FakeClock) -> None:
    message_id = observe(ledger, 1)
    first = ledger.get(message_id)
    clock.advance(3)
    r = row(1)
    again = ledger.record_observed(
        id=r.id,
        origin_chain=r.origin_chain,
        destination_chain=r.destination_chain,
        route=r.route,
        nonce=r.nonce,
        message=r.message,
        block_number=r.block_number,
        block_hash=r.block_hash,
        evidence=r.evidence,
    )
    assert again is False
    assert ledger.get(message_id) == first
    assert len(ledger.history(message_id)) == 1
    assert first is not None
    assert (first.state, first.attempts, first.created_at) == (State.OBSERVED, 0, 1_000.0)
    assert first.next_attempt_at == first.created_at


def test_message_ids_must_be_32_bytes(ledger: Ledger) -> None:
    bad = ObservedRow(**{**_fields(row(1)), "id": b"\x00" * 31})  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="31 bytes"):
        ledger.record_observed_many([bad])


@pytest.mark.parametrize("state", sorted(REOBSERVABLE))
def test_message_reincluded_after_origin_reorg_is_reobserved_from_early_states(
    ledger: Ledger, state: State
) -> None:
    message_id = observe(ledger, 1, block=10)
    bring_to(ledger, message_id, state)
    ledger.schedule_retry(message_id, error="slow", delay=100)

    moved = ledger.record_observed_many([row(1, block=11, block_hash=bhash("11b"))])

    assert moved == 1
    record = ledger.get(message_id)
    assert record is not None
    assert (record.state, record.block_number, record.block_hash) == (
        State.OBSERVED,
        11,
        bhash("11b"),
    )
    assert ledger.evidence(message_id) == b"evidence-11"
    assert record.signatures == (), "signatures bound the old block hash"
    assert ledger.due(State.OBSERVED) == [record], "due again at once"
    last = ledger.history(message_id)[-1]
    assert (last.from_state, last.to_state) == (state, State.OBSERVED)
    assert last.detail is not None
    assert f"reobserved after reorg: 0x{bhash(10).hex()} -> 0x{bhash('11b').hex()}" in last.detail


@pytest.mark.parametrize("state", [State.SUBMITTED, State.DELIVERED, State.REJECTED])
def test_message_reincluded_after_origin_reorg_is_kept_once_submitted(
    ledger: Ledger, state: State
) -> None:
    message_id = observe(ledger, 1, block=10)
    bring_to(ledger, message_id, state)
    before = ledger.get(message_id)
    assert before is not None

    assert ledger.record_observed_many([row(1, block=11, block_hash=bhash("11b"))]) == 0

    after = ledger.get(message_id)
    assert after is not None
    assert (after.state, after.block_hash, after.signatures) == (
        state,
        bhash(10),
        before.signatures,
    )
    last = ledger.history(message_id)[-1]
    assert (last.from_state, last.to_state) == (state, state)
    assert last.detail is not None
    assert bhash("11b").hex() in last.detail
    assert "kept" in last.detail


def test_reobserve_is_refused_for_a_submitted_message(ledger: Ledger) -> None:
    message_id = observe(ledger, 1)
    bring_to(ledger, message_id, State.SUBMITTED)
    with pytest.raises(StoreError, match="submitted"):
        ledger.reobserve(message_id, block_number=12, block_hash=bhash(12), evidence=b"e")


def test_reobserve_replaces_block_and_evidence(ledger: Ledger) -> None:
    message_id = observe(ledger, 1)
    bring_to(ledger, message_id, State.FAILED)
    record = ledger.reobserve(
        message_id, block_number=12, block_hash=bhash(12), evidence=b"new", detail="operator"
    )
    assert (record.state, record.block_number) == (State.OBSERVED, 12)
    assert ledger.evidence(message_id) == b"new"
    assert ledger.history(message_id)[-1].detail == "operator"


def test_record_observed_many_counts_new_and_changed_rows_once(ledger: Ledger) -> None:
    observe(ledger, 1)
    rows: list[ObservedRow | dict[str, object]] = [
        row(1),  # known, same block: no change
        row(2),
        row(2),  # duplicate in the batch
        _fields(row(3, block=11)),  # a plain mapping works too
    ]
    assert ledger.record_observed_many(rows) == 2
    assert ledger.get(mid(3)) is not None
    assert len(ledger.history(mid(2))) == 1


def test_record_observed_many_refuses_unknown_fields(ledger: Ledger) -> None:
    with pytest.raises(StoreError, match="unknown fields"):
        ledger.record_observed_many([{"id": mid(1), "colour": "red"}])


def test_record_observed_many_is_atomic(ledger: Ledger) -> None:
    bad = ObservedRow(**{**_fields(row(3)), "id": b"short"})  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        ledger.record_observed_many([row(1), row(2), bad])
    assert ledger.get(mid(1)) is None
    assert ledger.counts() == {}


def _fields(r: ObservedRow) -> dict[str, object]:
    return {name: getattr(r, name) for name in ObservedRow.__slots__}


# --- due() and retry schedules --------------------------------------------------------------------


def test_due_orders_by_schedule_then_origin_chain_and_nonce(
    ledger: Ledger, clock: FakeClock
) -> None:
    ledger.record_observed_many(
        [
            row(1, origin="chain-b", destination="chain-a", nonce=1),
            row(2, origin="chain-a", nonce=7),
            row(3, origin="chain-a", nonce=5),
            row(4, origin="chain-a", nonce=6),
        ]
    )
    ledger.schedule_retry(mid(4), error="x", delay=0)  # same time as the others
    clock.advance(1)
    ledger.schedule_retry(mid(3), error="x", delay=0)  # later than the others
    clock.advance(1)
    assert [r.id for r in ledger.due(State.OBSERVED)] == [mid(4), mid(2), mid(1), mid(3)]


def test_due_only_returns_messages_whose_time_has_come(ledger: Ledger, clock: FakeClock) -> None:
    ids = [observe(ledger, n) for n in range(3)]
    ledger.schedule_retry(ids[0], error="rpc", delay=10)
    ledger.schedule_retry(ids[1], error="rpc", delay=20)
    assert [r.id for r in ledger.due(State.OBSERVED)] == [ids[2]]
    clock.advance(10)
    assert [r.id for r in ledger.due(State.OBSERVED)] == [ids[2], ids[0]]
    clock.advance(10)
    assert [r.id for r in ledger.due(State.OBSERVED)] == [ids[2], ids[0], ids[1]]


def test_due_filters_by_state_and_chains_and_limits(ledger: Ledger) -> None:
    ledger.record_observed_many(
        [
            row(1, origin="chain-a", destination="chain-b"),
            row(2, origin="chain-b", destination="chain-a"),
            row(3, origin="chain-c", destination="chain-b"),
            row(4, origin="chain-a", destination="chain-b"),
        ]
    )
    ledger.transition(mid(4), State.VERIFIED)
    assert {r.id for r in ledger.due(State.OBSERVED, destination_chain="chain-b")} == {
        mid(1),
        mid(3),
    }
    assert [r.id for r in ledger.due(State.OBSERVED, origin_chain="chain-b")] == [mid(2)]
    assert [
        r.id
        for r in ledger.due(State.OBSERVED, origin_chain="chain-a", destination_chain="chain-b")
    ] == [mid(1)]
    assert [r.id for r in ledger.due(State.VERIFIED)] == [mid(4)]
    assert len(ledger.due(State.OBSERVED, limit=2)) == 2
    assert ledger.due(State.DELIVERED) == []


def test_in_state_lists_every_message_in_a_state_due_or_not(
    ledger: Ledger, clock: FakeClock
) -> None:
    ledger.record_observed_many([row(1), row(2), row(3, origin="chain-b", destination="chain-a")])
    ledger.schedule_retry(mid(1), error="later", delay=600)
    assert [r.id for r in ledger.in_state(State.OBSERVED)] == [mid(2), mid(3), mid(1)]
    assert [r.id for r in ledger.in_state(State.OBSERVED, destination_chain="chain-a")] == [mid(3)]
    assert [r.id for r in ledger.in_state(State.OBSERVED, origin_chain="chain-a")] == [
        mid(2),
        mid(1),
    ]
    assert ledger.in_state(State.SUBMITTED) == []


def test_schedule_retry_counts_attempts_and_pushes_the_next_attempt(
    ledger: Ledger, clock: FakeClock
) -> None:
    message_id = observe(ledger, 1)
    bring_to(ledger, message_id, State.ATTESTED)
    first = ledger.schedule_retry(message_id, error="rate limited", delay=2)
    clock.advance(1)
    second = ledger.schedule_retry(message_id, error="timeout", delay=4.5)
    assert (first.attempts, second.attempts) == (1, 2)
    assert second.last_error == "timeout"
    assert second.next_attempt_at == clock.now + 4.5
    assert second.state is State.ATTESTED
    last = ledger.history(message_id)[-1]
    assert (last.from_state, last.to_state) == (State.ATTESTED, State.ATTESTED)
    assert (last.detail, last.error) == ("retry 2 in 4.5s", "timeout")


def test_schedule_retry_moves_the_state_only_along_allowed_transitions(ledger: Ledger) -> None:
    message_id = observe(ledger, 1)
    bring_to(ledger, message_id, State.SUBMITTED)
    record = ledger.schedule_retry(
        message_id, error="tx dropped", delay=5, to=State.ATTESTED, expect=State.SUBMITTED
    )
    assert (record.state, record.attempts) == (State.ATTESTED, 1)
    with pytest.raises(StoreError, match="attested -> verified"):
        ledger.schedule_retry(message_id, error="x", delay=1, to=State.VERIFIED)
    with pytest.raises(StoreError, match="expected submitted"):
        ledger.schedule_retry(message_id, error="x", delay=1, expect=State.SUBMITTED)
    with pytest.raises(StoreError, match="negative"):
        ledger.schedule_retry(message_id, error="x", delay=-1)
    assert ledger.get(message_id).attempts == 1  # type: ignore[union-attr]


def test_a_restart_keeps_the_backoff_schedule(ledger_target: str, clock: FakeClock) -> None:
    path = ledger_target
    with Ledger.open(path, clock=clock) as led:
        message_id = observe(led, 1)
        bring_to(led, message_id, State.ATTESTED)
        led.schedule_retry(message_id, error="rpc down", delay=120)
        led.schedule_retry(message_id, error="rpc down", delay=240)

    clock.advance(60)
    with Ledger.open(path, clock=clock) as led:
        assert led.due(State.ATTESTED) == []
        record = led.get(message_id)
        assert record is not None
        assert (record.attempts, record.last_error, record.next_attempt_at) == (
            2,
            "rpc down",
            1_000.0 + 240,
        )
        clock.advance(180)
        assert [r.id for r in led.due(State.ATTESTED)] == [message_id]


# --- operator views -------------------------------------------------------------------------------


def test_history_explains_a_message_from_observation_to_delivery(
    ledger: Ledger, clock: FakeClock
) -> None:
    message_id = observe(ledger, 1)
    for state in (State.VERIFIED, State.ATTESTED, State.SUBMITTED):
        clock.advance(1)
        ledger.transition(message_id, state)
    clock.advance(1)
    ledger.schedule_retry(message_id, error="replacement transaction underpriced", delay=3)
    clock.advance(3)
    ledger.transition(message_id, State.DELIVERED, detail="tx 0xaa")

    history = ledger.history(message_id)
    assert [(h.from_state, h.to_state) for h in history] == [
        (None, State.OBSERVED),
        (State.OBSERVED, State.VERIFIED),
        (State.VERIFIED, State.ATTESTED),
        (State.ATTESTED, State.SUBMITTED),
        (State.SUBMITTED, State.SUBMITTED),
        (State.SUBMITTED, State.DELIVERED),
    ]
    assert [h.at for h in history] == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0, 1007.0]
    assert history[0].detail == f"observed in block 10 (0x{bhash(10).hex()})"
    assert history[4].error == "replacement transaction underpriced"
    assert history[-1].detail == "tx 0xaa"
    assert ledger.history(mid("nope")) == []


def test_find_resolves_a_short_id_the_way_an_operator_types_it(ledger: Ledger) -> None:
    ids = [observe(ledger, n) for n in range(20)]
    target = ids[7]
    assert [r.id for r in ledger.find(target.hex()[:10])] == [target]
    assert [r.id for r in ledger.find("0x" + target.hex()[:9].upper())] == [target]
    assert [r.id for r in ledger.find(target.hex())] == [target]
    assert {r.id for r in ledger.find(target.hex()[:1])} == {
        i for i in ids if i.hex()[0] == target.hex()[0]
    }
    assert ledger.find("0" * 64) == []
    for bad in ("", "0x", "xyz", "1" * 65):
        with pytest.raises(StoreError, match="not a hex message id"):
            ledger.find(bad)


def test_counts_are_per_route_and_state(ledger: Ledger) -> None:
    ledger.record_observed_many(
        [
            row(1),
            row(2),
            row(3),
            row(4, origin="chain-b", destination="chain-a"),
        ]
    )
    ledger.transition(mid(1), State.VERIFIED)
    ledger.transition(mid(2), State.REJECTED)
    assert ledger.counts() == {
        ("chain-a->chain-b", State.OBSERVED): 1,
        ("chain-a->chain-b", State.VERIFIED): 1,
        ("chain-a->chain-b", State.REJECTED): 1,
        ("chain-b->chain-a", State.OBSERVED): 1,
    }


def test_clear_failed_resets_the_budget_by_route_or_by_id(ledger: Ledger, clock: FakeClock) -> None:
    ledger.record_observed_many(
        [row(1), row(2), row(3), row(4, origin="chain-b", destination="chain-a")]
    )
    for n in (1, 2, 4):
        bring_to(ledger, mid(n), State.ATTESTED)
        ledger.schedule_retry(mid(n), error="reverted", delay=999, to=State.FAILED)
    bring_to(ledger, mid(3), State.ATTESTED)

    clock.advance(5)
    assert ledger.clear_failed(ids=[mid(1), mid(3), mid("nope")]) == 1
    record = ledger.get(mid(1))
    assert record is not None
    assert (record.state, record.attempts, record.next_attempt_at) == (
        State.ATTESTED,
        0,
        clock.now,
    )
    assert ledger.history(mid(1))[-1].detail == "cleared by operator"

    assert ledger.clear_failed(route="chain-b->chain-a") == 1
    assert ledger.get(mid(2)).state is State.FAILED  # type: ignore[union-attr]
    assert ledger.clear_failed() == 1
    assert ledger.clear_failed() == 0
    assert {r.id for r in ledger.due(State.ATTESTED)} == {mid(1), mid(2), mid(3), mid(4)}


# --- cursors, block hashes, advance ---------------------------------------------------------------


def test_cursors_are_kept_per_chain_and_owner(ledger_target: str) -> None:
    path = ledger_target
    with Ledger.open(path) as led:
        assert led.get_cursor("chain-a", "relayer") is None
        led.set_cursor("chain-a", "relayer", 10, bhash(10))
        led.set_cursor("chain-a", "attester:alice", 7, bhash(7))
        led.set_cursor("chain-a", "relayer", 11, bhash(11))
    with Ledger.open(path) as led:
        assert led.get_cursor("chain-a", "relayer") == Cursor(11, bhash(11))
        assert led.get_cursor("chain-a", "attester:alice") == Cursor(7, bhash(7))
        assert led.get_cursor("chain-b", "relayer") is None


def test_block_hashes_are_remembered_forgotten_and_pruned(ledger: Ledger) -> None:
    ledger.remember_blocks("chain-a", "relayer", [(n, bhash(n)) for n in range(1, 11)])
    ledger.remember_blocks("chain-a", "attester:alice", [(5, bhash("other"))])
    assert ledger.block_hash("chain-a", "relayer", 5) == bhash(5)
    assert ledger.block_hash("chain-a", "attester:alice", 5) == bhash("other")

    ledger.remember_blocks("chain-a", "relayer", [(10, bhash("10b"))])
    assert ledger.block_hash("chain-a", "relayer", 10) == bhash("10b")

    assert ledger.remembered_blocks("chain-a", "relayer", below=4) == [
        (1, bhash(1)),
        (2, bhash(2)),
        (3, bhash(3)),
    ]
    assert len(ledger.remembered_blocks("chain-a", "relayer")) == 10
    assert ledger.remembered_blocks("chain-b", "relayer") == []

    assert ledger.forget_blocks_from("chain-a", "relayer", 8) == 3
    assert ledger.block_hash("chain-a", "relayer", 8) is None
    assert ledger.block_hash("chain-a", "relayer", 7) == bhash(7)

    assert ledger.prune_blocks("chain-a", "relayer", below=4) == 3
    assert ledger.block_hash("chain-a", "relayer", 3) is None
    assert ledger.block_hash("chain-a", "relayer", 4) == bhash(4)
    assert ledger.block_hash("chain-a", "attester:alice", 5) == bhash("other")


def test_rewind_moves_cursor_and_forgets_reorged_blocks_together(ledger: Ledger) -> None:
    ledger.advance("chain-a", "relayer", [(n, bhash(n)) for n in range(1, 11)])
    ledger.rewind("chain-a", "relayer", 6, bhash(6))
    assert ledger.get_cursor("chain-a", "relayer") == Cursor(6, bhash(6))
    assert ledger.block_hash("chain-a", "relayer", 6) == bhash(6)
    assert ledger.block_hash("chain-a", "relayer", 7) is None


def test_advance_records_observations_blocks_and_cursor_together(ledger: Ledger) -> None:
    blocks = [(11, bhash(11)), (12, bhash(12))]
    changed = ledger.advance(
        "chain-a", "relayer", blocks, [row(1, block=11), row(2, block=12), row(3, block=12)]
    )
    assert changed == 3
    assert ledger.get_cursor("chain-a", "relayer") == Cursor(12, bhash(12))
    assert ledger.block_hash("chain-a", "relayer", 11) == bhash(11)
    assert {r.id for r in ledger.due(State.OBSERVED)} == {mid(1), mid(2), mid(3)}
    # Replaying the same blocks after a crash changes nothing but is harmless.
    assert ledger.advance("chain-a", "relayer", blocks, [row(1, block=11)]) == 0


def test_advance_moves_no_cursor_when_an_observation_cannot_be_recorded(ledger: Ledger) -> None:
    ledger.advance("chain-a", "relayer", [(10, bhash(10))])
    bad = ObservedRow(**{**_fields(row(2)), "id": b"short"})  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        ledger.advance("chain-a", "relayer", [(11, bhash(11))], [row(1, block=11), bad])
    assert ledger.get_cursor("chain-a", "relayer") == Cursor(10, bhash(10))
    assert ledger.block_hash("chain-a", "relayer", 11) is None
    assert ledger.get(mid(1)) is None
    with pytest.raises(StoreError, match="at least one block"):
        ledger.advance("chain-a", "relayer", [])


# --- nonces ---------------------------------------------------------------------------------------


def test_nonces_are_kept_per_chain_and_address(ledger_target: str) -> None:
    path = ledger_target
    alice, bob = b"\x0a" * 20, b"\x0b" * 20
    with Ledger.open(path) as led:
        assert led.get_nonce("chain-b", alice) is None
        led.set_nonce("chain-b", alice, 0)
        led.set_nonce("chain-b", alice, 5)
        led.set_nonce("chain-a", alice, 1)
        with pytest.raises(StoreError, match="negative"):
            led.set_nonce("chain-b", bob, -1)
    with Ledger.open(path) as led:
        assert led.get_nonce("chain-b", alice) == 5
        assert led.get_nonce("chain-a", alice) == 1
        assert led.get_nonce("chain-b", bob) is None


# --- the file itself ------------------------------------------------------------------------------


def test_open_creates_directories_schema_and_durable_settings(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "ledger.db"
    with Ledger.open(path) as led:
        observe(led, 1)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    with Ledger.open(path) as led:
        own = led._conn  # per-connection settings are only visible on it
        assert own is not None
        assert own.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert own.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert own.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert led.get(mid(1)) is not None


def test_a_v1_ledger_migrates_its_signed_transactions_to_one_row_each(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:  # V1 exactly as a released relayer created it
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")

    def v1_row(n: int, state: str, tx_hash: bytes, nonce: int, raw: bytes, dest: str) -> None:
        conn.execute(
            "INSERT INTO messages (id, origin_chain, destination_chain, route, nonce, message,"
            " block_number, block_hash, evidence, state, next_attempt_at, signatures, tx_hash,"
            " tx_nonce, raw_tx, created_at, updated_at)"
            " VALUES (?, 'chain-a', ?, ?, ?, x'00', 10, ?, x'', ?, 0, ?, ?, ?, ?, ?, ?)",
            (mid(n), dest, f"chain-a->{dest}", n, bhash(10), state, SIG, tx_hash, nonce, raw, n, n),
        )

    for n in range(3):  # one batch at nonce 5, fee-bumped: V1 rewrote every row of it
        v1_row(n, "submitted", tx("5b"), 5, b"five, bumped", "chain-b")
    for n in range(3, 5):
        v1_row(n, "submitted", tx(6), 6, b"six", "chain-b")
    v1_row(5, "delivered", tx(4), 4, b"four", "chain-b")  # V1 never cleared a delivered raw_tx
    v1_row(6, "submitted", tx(9), 9, b"nine", "chain-c")
    conn.close()

    with Ledger.open(path) as led:
        own = led._conn
        assert own is not None
        assert own.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert own.execute("SELECT count(*) FROM messages WHERE raw_tx IS NOT NULL").fetchone() == (
            0,
        )
        assert led.pending_txs("chain-b") == [
            SignedTx(nonce=5, tx_hash=tx("5b"), raw_tx=b"five, bumped"),
            SignedTx(nonce=6, tx_hash=tx(6), raw_tx=b"six"),
        ]
        assert led.pending_txs("chain-c") == [SignedTx(nonce=9, tx_hash=tx(9), raw_tx=b"nine")]
        assert len(pending_rows(led)) == 3, "only transactions a restart may broadcast again"
        delivered = led.get(mid(5))
        assert delivered is not None
        assert (delivered.state, delivered.tx_hash, delivered.tx_nonce) == (
            State.DELIVERED,
            tx(4),
            4,
        )
        # The migrated ledger goes on as a new one: delivery forgets the transaction.
        led.transition_many([mid(n) for n in range(3)], State.DELIVERED, expect=State.SUBMITTED)
        assert [t.nonce for t in led.pending_txs("chain-b")] == [6]


def test_a_ledger_from_a_newer_relayer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Ledger.open(path)


def test_in_memory_ledger_works_for_tests() -> None:
    with Ledger.open(":memory:") as led:
        observe(led, 1)
        assert led.counts() == {("chain-a->chain-b", State.OBSERVED): 1}


def test_a_closed_ledger_refuses_work(ledger_target: str) -> None:
    led = Ledger.open(ledger_target)
    led.close()
    led.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        led.get(mid(1))


def test_one_ledger_is_safe_to_share_between_threads(ledger: Ledger) -> None:
    errors: list[BaseException] = []

    def work(base: int) -> None:
        try:
            for n in range(base, base + 40):
                observe(ledger, n)
                ledger.transition(mid(n), State.VERIFIED)
                ledger.due(State.OBSERVED)
        except BaseException as exc:  # noqa: BLE001 -- reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ledger.counts() == {("chain-a->chain-b", State.VERIFIED): 160}


# --- crash safety ---------------------------------------------------------------------------------

# The child drives messages through every kind of operation as fast as it can and prints a line
# only after each operation committed; it is SIGKILLed at a random line. Everything it printed must
# be in the ledger, and at most one more committed step per message than it printed (the kill can
# fall between COMMIT and print).
_CHILD = textwrap.dedent(
    """
    import hashlib, random, sys
    from relayer.store import Ledger, ObservedRow, State

    path, run = sys.argv[1], int(sys.argv[2])
    rng = random.Random(run)
    led = Ledger.open(path)
    out = sys.stdout

    def say(message_id, state):
        out.write(f"{message_id.hex()} {state}\\n")
        out.flush()

    cursor = led.get_cursor("chain-a", "relayer")
    block = cursor.block_number if cursor else 0
    n = 0
    while True:
        block += 1
        rows = []
        for _ in range(rng.randint(1, 4)):
            n += 1
            rows.append(ObservedRow(
                id=hashlib.sha256(f"{run}:{n}".encode()).digest(),
                origin_chain="chain-a", destination_chain="chain-b", route="chain-a->chain-b",
                nonce=n, message=b"m" * 200, block_number=block,
                block_hash=hashlib.sha256(b"%d" % block).digest(), evidence=b"e" * 500,
            ))
        led.advance("chain-a", "relayer", [(block, rows[0].block_hash)], rows)
        out.write(f"cursor {block}\\n")
        for r in rows:
            say(r.id, "observed")
        for r in rows:
            if rng.random() < 0.1:
                led.transition(r.id, State.REJECTED, expect=State.OBSERVED)
                say(r.id, "rejected")
                continue
            led.transition(r.id, State.VERIFIED, expect=State.OBSERVED)
            say(r.id, "verified")
            led.transition(r.id, State.ATTESTED, signatures=[b"s" * 65] * 3)
            say(r.id, "attested")
            if rng.random() < 0.2:
                led.record_observed_many([ObservedRow(**{
                    name: getattr(r, name) for name in ObservedRow.__slots__
                } | {"block_hash": b"\\x01" * 32})])
                say(r.id, "observed")
                continue
            led.mark_submitted([r.id], tx_hash=b"t" * 32, tx_nonce=n, raw_tx=b"r" * 120)
            say(r.id, "submitted")
            if rng.random() < 0.2:
                led.mark_submitted([r.id], tx_hash=b"u" * 32, tx_nonce=n, raw_tx=b"r" * 120)
                say(r.id, "submitted")
            if rng.random() < 0.3:
                led.schedule_retry(r.id, error="dropped", delay=1, to=State.ATTESTED)
                say(r.id, "attested")
                led.schedule_retry(r.id, error="underpriced", delay=2)
                say(r.id, "attested")
                led.transition(r.id, State.FAILED)
                say(r.id, "failed")
                led.clear_failed(ids=[r.id])
                say(r.id, "attested")
                led.transition(r.id, State.SUBMITTED)
                say(r.id, "submitted")
            led.transition(r.id, State.DELIVERED, expect=State.SUBMITTED)
            say(r.id, "delivered")
    """
)


def _run_until_killed(path: Path, run: int, after_lines: int, then: float) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    stderr_path = path.parent / f"child-{run}.stderr"
    path.parent.mkdir(parents=True, exist_ok=True)
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), str(run)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=REPO,
            env=env,
            text=True,
        )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while len(lines) < after_lines:
            line = proc.stdout.readline()
            if not line:
                proc.wait()
                pytest.fail(f"crash-test child exited on its own: {stderr_path.read_text()}")
            lines.append(line)
        # Killing right after a line arrives would always hit the child just after a print, at
        # the start of an operation; a random pause moves the kill to any instant of the work.
        time.sleep(then)
        proc.send_signal(signal.SIGKILL)
        # Read through the same buffered reader: what readline() already buffered is in it.
        rest = proc.stdout.read()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    # Lines the child flushed before it died are still in the pipe; a torn last line is not.
    lines.extend(rest.splitlines(keepends=True))
    return [line.rstrip("\n") for line in lines if line.endswith("\n")]


def _allowed_step(source: State | None, target: State) -> bool:
    if source is None:
        return target is State.OBSERVED
    if source is target:  # a retry scheduled in place, or a reorg noted on a kept message
        return True
    if target is State.OBSERVED:
        return source in REOBSERVABLE
    return target in ALLOWED_TRANSITIONS[source]


def test_a_process_killed_at_any_instant_leaves_a_consistent_ledger(tmp_path: Path) -> None:
    path = tmp_path / "crash" / "ledger.db"
    rng = random.Random(1234)
    printed: dict[str, list[State]] = {}
    last_cursor = 0
    started = time.monotonic()
    for run in range(8):
        for line in _run_until_killed(
            path, run, after_lines=rng.randint(1, 1000), then=rng.uniform(0, 0.03)
        ):
            key, value = line.split()
            if key == "cursor":
                last_cursor = int(value)
            else:
                printed.setdefault(key, []).append(State(value))

        with Ledger.open(path) as led:
            conn = led._conn
            assert conn is not None
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
            cursor = led.get_cursor("chain-a", "relayer")
            assert cursor is not None
            assert last_cursor <= cursor.block_number <= last_cursor + 1
            in_ledger = {r[0] for r in conn.execute("SELECT id FROM messages")}
            for key, states in printed.items():
                record = led.get(bytes.fromhex(key))
                assert record is not None, f"message {key} was committed and then lost"
                history = led.history(record.id)
                steps = [h.to_state for h in history]
                assert steps[: len(states)] == states, f"{key}: history differs from commits"
                assert len(steps) <= len(states) + 1, f"{key}: more steps than were attempted"
                assert steps[-1] is record.state, f"{key}: history does not end in its state"
                # Every write stamps the row and its history entry with the same time: a
                # change committed without its history row would show here.
                assert record.updated_at == history[-1].at, f"{key}: change without history"
                for before, after in zip([None, *steps], history, strict=False):
                    assert after.from_state is before
                    assert _allowed_step(before, after.to_state)
            # A message not printed yet was at most observed in the killed transaction.
            for message_id in in_ledger - {bytes.fromhex(k) for k in printed}:
                assert len(led.history(message_id)) <= 2
    assert len(printed) > 0
    print(
        f"\ncrash test: 8 kills, {len(printed)} messages checked in "
        f"{time.monotonic() - started:.2f}s"
    )


# --- timing (printed, not asserted) ---------------------------------------------------------------


def test_timing_of_batch_observation_and_the_due_query(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.db") as led:
        rows = [row(n, nonce=n, block=n // 50) for n in range(1_000)]
        started = time.perf_counter()
        for i in range(0, len(rows), 50):
            led.record_observed_many(rows[i : i + 50])
        batched = time.perf_counter() - started

        more = [row(n, nonce=n, block=n // 1000) for n in range(1_000, 10_000)]
        started = time.perf_counter()
        for i in range(0, len(more), 1_000):
            led.record_observed_many(more[i : i + 1_000])
        bulk = time.perf_counter() - started
        for n in range(0, 300, 3):  # some scheduled in the future, some due
            led.schedule_retry(mid(n), error="x", delay=n % 7)

        started = time.perf_counter()
        due = led.due(State.OBSERVED)
        by_destination = led.due(State.OBSERVED, destination_chain="chain-b")
        query = time.perf_counter() - started
        assert len(due) == len(by_destination) == 500

        started = time.perf_counter()
        led.transition(mid(5_000), State.VERIFIED)
        one = time.perf_counter() - started
    print(
        f"\nledger timing: 1,000 record_observed_many in 20 batches {batched * 1000:.1f} ms; "
        f"9,000 more in 9 batches {bulk * 1000:.1f} ms; two due() over 10,000 rows "
        f"{query * 1000:.1f} ms; one transition (fsync) {one * 1000:.2f} ms"
    )


def test_states_answers_for_many_ids_at_once_and_leaves_out_unknown_ones(ledger: Ledger) -> None:
    ids = [mid(n) for n in range(1, 1201)]
    ledger.record_observed_many([row(n) for n in range(1, 1201)])
    ledger.transition_many(ids[:700], State.VERIFIED, expect=State.OBSERVED)
    states = ledger.states([*ids, mid("absent"), ids[0]])
    assert len(states) == 1200
    assert mid("absent") not in states
    assert {states[i] for i in ids[:700]} == {State.VERIFIED}
    assert {states[i] for i in ids[700:]} == {State.OBSERVED}
    assert ledger.states([]) == {}


# --- evidence, verdicts on intake, several transactions at once, checkpoints ---------------------


def test_a_v2_ledger_moves_its_evidence_to_a_table_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in (*MIGRATIONS[0], *MIGRATIONS[1]):  # V2 exactly as a released relayer made it
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    for n, state in ((1, "verified"), (2, "submitted")):
        conn.execute(
            "INSERT INTO messages (id, origin_chain, destination_chain, route, nonce, message,"
            " block_number, block_hash, evidence, state, next_attempt_at, created_at, updated_at)"
            " VALUES (?, 'chain-a', 'chain-b', 'chain-a->chain-b', ?, x'00', 10, ?, ?, ?, 0, 0, 0)",
            (mid(n), n, bhash(10), b"proof of %d" % n, state),
        )
    conn.close()

    with Ledger.open(path) as led:
        own = led._conn
        assert own is not None
        assert own.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert led.evidence(mid(1)) == b"proof of 1"
        assert led.evidence(mid(2)) == b"proof of 2"
        assert led.evidence(mid(3)) is None
        assert own.execute("SELECT count(*) FROM messages WHERE evidence != x''").fetchone() == (0,)
        record = led.get(mid(1))
        assert record is not None and record.state is State.VERIFIED


def test_evidence_is_kept_once_and_replaced_by_a_reobservation(ledger: Ledger) -> None:
    message_id = observe(ledger, 1)
    bring_to(ledger, message_id, State.ATTESTED)
    assert ledger.evidence(message_id) == b"evidence-10"
    ledger.record_observed_many([row(1, block=11)])
    assert ledger.evidence(message_id) == b"evidence-11"
    assert scalar_rows(ledger, "SELECT count(*) FROM evidence") == [(1,)]


def test_a_blocks_shared_evidence_is_stored_once_for_all_its_messages(ledger: Ledger) -> None:
    body = b"the whole block body " * 5000
    other = b"another block's body " * 5000
    rows = [dataclasses.replace(row(n), block_evidence=body) for n in range(1, 101)] + [
        dataclasses.replace(row(200), block_evidence=other),
        row(300),
    ]
    assert ledger.record_observed_many(rows) == 102
    assert scalar_rows(ledger, "SELECT count(*) FROM block_evidence") == [(2,)]
    assert ledger.block_evidence(mid(1)) == body
    assert ledger.block_evidence(mid(100)) == body
    assert ledger.block_evidence(mid(200)) == other
    assert ledger.block_evidence(mid(300)) == b"", "a message without block evidence"
    assert ledger.block_evidence(mid("absent")) is None
    assert ledger.evidence(mid(1)) == b"evidence-10"
    # the same bytes arriving again (another batch of the same block) add nothing
    ledger.record_observed_many([dataclasses.replace(row(150), block_evidence=body)])
    assert scalar_rows(ledger, "SELECT count(*) FROM block_evidence") == [(2,)]


def test_a_reobservation_replaces_the_block_evidence_too(ledger: Ledger) -> None:
    message_id = observe(ledger, 1)
    ledger.record_observed_many([dataclasses.replace(row(1, block=11), block_evidence=b"B11")])
    assert (ledger.evidence(message_id), ledger.block_evidence(message_id)) == (
        b"evidence-11",
        b"B11",
    )
    ledger.reobserve(
        message_id, block_number=12, block_hash=bhash(12), evidence=b"e12", block_evidence=b"B12"
    )
    assert (ledger.evidence(message_id), ledger.block_evidence(message_id)) == (b"e12", b"B12")


def test_a_v3_ledger_gains_block_evidence_and_keeps_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in (*MIGRATIONS[0], *MIGRATIONS[1], *MIGRATIONS[2]):  # V3 as released
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 3")
    conn.execute(
        "INSERT INTO messages (id, origin_chain, destination_chain, route, nonce, message,"
        " block_number, block_hash, evidence, state, next_attempt_at, created_at, updated_at)"
        " VALUES (?, 'chain-a', 'chain-b', 'chain-a->chain-b', 1, x'00', 10, ?, x'', 'verified',"
        " 0, 0, 0)",
        (mid(1), bhash(10)),
    )
    conn.execute("INSERT INTO evidence (message_id, evidence) VALUES (?, x'0102')", (mid(1),))
    conn.close()
    with Ledger.open(path) as led:
        assert led.evidence(mid(1)) == b"\x01\x02"
        assert led.block_evidence(mid(1)) == b""
        led.record_observed_many([dataclasses.replace(row(2), block_evidence=b"B")])
        assert led.block_evidence(mid(2)) == b"B"


def test_intake_with_verdicts_records_verified_and_rejected_in_one_step(
    ledger: Ledger, clock: FakeClock
) -> None:
    good, bad = mid(1), mid(2)
    changed = ledger.record_observed_many([row(1), row(2)], [None, "receipt proof does not verify"])
    assert changed == 2
    assert ledger.states([good, bad]) == {good: State.VERIFIED, bad: State.REJECTED}
    assert [(h.from_state, h.to_state) for h in ledger.history(good)] == [
        (None, State.OBSERVED),
        (State.OBSERVED, State.VERIFIED),
    ]
    rejected = ledger.history(bad)
    assert [(h.from_state, h.to_state) for h in rejected] == [
        (None, State.OBSERVED),
        (State.OBSERVED, State.REJECTED),
    ]
    assert rejected[-1].error == "receipt proof does not verify"
    record = ledger.get(bad)
    assert record is not None and record.last_error == "receipt proof does not verify"
    assert all(h.at == clock.now for h in ledger.history(good) + rejected)


def test_a_rejected_observation_never_touches_a_known_message(ledger: Ledger) -> None:
    message_id = observe(ledger, 1)
    bring_to(ledger, message_id, State.ATTESTED)
    before = (ledger.get(message_id), ledger.history(message_id), ledger.evidence(message_id))
    forged = row(1, block=12)
    assert ledger.record_observed_many([forged], ["forged"]) == 0
    after = (ledger.get(message_id), ledger.history(message_id), ledger.evidence(message_id))
    assert after == before


def test_a_verified_row_moves_a_message_left_observed_by_a_crash(ledger: Ledger) -> None:
    # Recorded OBSERVED (as an older relayer did first), then the process died: the same block
    # seen again with a verdict moves it on, and only it.
    stuck = observe(ledger, 1)
    done = observe(ledger, 2)
    bring_to(ledger, done, State.ATTESTED)
    assert ledger.record_observed_many([row(1), row(2)], [None, None]) == 1
    assert ledger.states([stuck, done]) == {stuck: State.VERIFIED, done: State.ATTESTED}
    assert ledger.record_observed_many([row(1), row(2)], [None, None]) == 0


def test_a_reobserved_and_verified_message_goes_back_to_verified(ledger: Ledger) -> None:
    message_id = observe(ledger, 1)
    bring_to(ledger, message_id, State.ATTESTED)
    assert ledger.record_observed_many([row(1, block=11)], [None]) == 1
    record = ledger.get(message_id)
    assert record is not None
    assert (record.state, record.block_number, record.signatures) == (State.VERIFIED, 11, ())
    assert [h.to_state for h in ledger.history(message_id)][-2:] == [
        State.OBSERVED,
        State.VERIFIED,
    ]


def test_several_transactions_are_recorded_in_one_step_or_not_at_all(ledger: Ledger) -> None:
    ids = attested(ledger, range(4))
    recorded = ledger.mark_submitted_many(
        [
            SubmittedTx(ids=tuple(ids[:2]), tx_hash=tx(1), tx_nonce=1, raw_tx=b"one"),
            SubmittedTx(ids=tuple(ids[2:]), tx_hash=tx(2), tx_nonce=2, raw_tx=b"two"),
        ]
    )
    assert recorded == 4
    assert [(t.nonce, t.raw_tx) for t in ledger.pending_txs("chain-b")] == [
        (1, b"one"),
        (2, b"two"),
    ]
    for message_id, (nonce, hash_) in zip(ids, [(1, tx(1))] * 2 + [(2, tx(2))] * 2, strict=True):
        record = ledger.get(message_id)
        assert record is not None
        assert (record.state, record.tx_nonce, record.tx_hash) == (State.SUBMITTED, nonce, hash_)
        assert (
            ledger.history(message_id)[-1].detail
            == f"submitted in tx 0x{hash_.hex()} (nonce {nonce})"
        )

    more = attested(ledger, range(10, 12))
    delivered = observe(ledger, 20)
    bring_to(ledger, delivered, State.DELIVERED)
    with pytest.raises(StoreError, match="delivered"):
        ledger.mark_submitted_many(
            [
                SubmittedTx(ids=tuple(more), tx_hash=tx(3), tx_nonce=3, raw_tx=b"three"),
                SubmittedTx(ids=(delivered,), tx_hash=tx(4), tx_nonce=4, raw_tx=b"four"),
            ]
        )
    assert ledger.states(more) == dict.fromkeys(more, State.ATTESTED)
    assert [t.nonce for t in ledger.pending_txs("chain-b")] == [1, 2]


def test_the_checkpointer_keeps_the_wal_short_and_stops_with_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    led = Ledger.open(path)
    led.start_checkpointer(interval=0.01)
    own = led._conn
    assert own is not None
    assert own.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 10_000
    before = path.stat().st_size
    led.record_observed_many([row(n) for n in range(300)])
    # The rows are in the WAL; only a checkpoint copies them into the database file itself.
    deadline = time.monotonic() + 10
    while path.stat().st_size == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert path.stat().st_size > before, "no checkpoint ran"
    thread = led._checkpointer
    assert thread is not None and thread.is_alive()
    led.close()
    assert not thread.is_alive()
    with Ledger.open(path) as again:
        assert len(again.states([mid(n) for n in range(300)])) == 300


def test_postpone_makes_messages_due_later_and_changes_nothing_else(
    ledger: Ledger, clock: FakeClock
) -> None:
    waiting, other, moved = observe(ledger, 1), observe(ledger, 2), observe(ledger, 3)
    for message_id in (waiting, other, moved):
        bring_to(ledger, message_id, State.VERIFIED)
    ledger.transition(moved, State.ATTESTED, signatures=(SIG, SIG2))
    history = ledger.history(waiting)
    clock.advance(30)
    assert ledger.postpone([waiting, waiting, moved], delay=10, state=State.VERIFIED) == 1
    assert [r.id for r in ledger.due(State.VERIFIED)] == [other]
    clock.advance(10)
    assert {r.id for r in ledger.due(State.VERIFIED)} == {waiting, other}
    record = ledger.get(waiting)
    assert record is not None and (record.state, record.attempts) == (State.VERIFIED, 0)
    assert ledger.history(waiting) == history
    assert ledger.postpone([mid(99)], delay=1, state=State.VERIFIED) == 0
    with pytest.raises(StoreError, match="delays"):
        ledger.postpone([waiting], delay=-1, state=State.VERIFIED)


def test_postpone_leaves_a_message_that_changed_lately(ledger: Ledger, clock: FakeClock) -> None:
    message_id = observe(ledger, 1)
    bring_to(ledger, message_id, State.VERIFIED)
    clock.advance(29)
    assert ledger.postpone([message_id], delay=10, state=State.VERIFIED, unchanged_for=30) == 0
    clock.advance(1)
    assert ledger.postpone([message_id], delay=10, state=State.VERIFIED, unchanged_for=30) == 1


@pytest.mark.parametrize("forged_first", [True, False])
def test_a_forged_twin_in_the_same_batch_neither_rejects_nor_replaces_the_genuine_row(
    ledger: Ledger, forged_first: bool
) -> None:
    genuine = row(1)
    forged = dataclasses.replace(genuine, evidence=b"forged")
    pair = [(forged, "does not verify"), (genuine, None)]
    if not forged_first:
        pair.reverse()
    assert ledger.record_observed_many([r for r, _ in pair], [v for _, v in pair]) == 1
    record = ledger.get(genuine.id)
    assert record is not None and record.state is State.VERIFIED
    assert ledger.evidence(genuine.id) == genuine.evidence
    assert [h.to_state for h in ledger.history(genuine.id)] == [State.OBSERVED, State.VERIFIED]


def test_verdicts_must_match_the_rows(ledger: Ledger) -> None:
    with pytest.raises(StoreError, match="1 verdicts for 2"):
        ledger.record_observed_many([row(1), row(2)], [None])
    assert ledger.states([mid(1), mid(2)]) == {}


# --- light clients --------------------------------------------------------------------------


def test_a_light_client_state_is_kept_per_chain_and_replaced(
    ledger: Ledger, clock: FakeClock
) -> None:
    assert ledger.light_client("dot-a", "relayer") is None
    ledger.save_light_client("dot-a", "relayer", "grandpa", b"set 1")
    ledger.save_light_client("dot-a", "attester:a1", "grandpa", b"own set 1")
    ledger.save_light_client("chain-a", "relayer", "sync-committee", b"period 862")
    clock.now += 5
    ledger.save_light_client("dot-a", "relayer", "grandpa", b"set 2")
    saved = ledger.light_client("dot-a", "relayer")
    assert saved is not None
    assert (saved.mode, saved.state, saved.updated_at) == ("grandpa", b"set 2", clock.now)
    own = ledger.light_client("dot-a", "attester:a1")
    assert own is not None and own.state == b"own set 1", "each owner keeps its own client"
    assert [(r.chain, r.owner, r.state) for r in ledger.light_clients()] == [
        ("chain-a", "relayer", b"period 862"),
        ("dot-a", "attester:a1", b"own set 1"),
        ("dot-a", "relayer", b"set 2"),
    ]
    with pytest.raises(StoreError, match="empty light-client state"):
        ledger.save_light_client("dot-a", "relayer", "grandpa", b"")
    assert ledger.light_client("dot-a", "relayer") == saved


def test_the_finality_mode_is_recorded_with_the_message_and_kept_on_reobservation(
    ledger: Ledger,
) -> None:
    ledger.record_observed_many([dataclasses.replace(row(1), finality="grandpa")])
    record = ledger.get(mid(1))
    assert record is not None and record.finality == "grandpa"
    ledger.record_observed_many([dataclasses.replace(row(1, block=11), finality="committee")])
    record = ledger.get(mid(1))
    assert record is not None and (record.block_number, record.finality) == (11, "committee")
    ledger.reobserve(mid(1), block_number=12, block_hash=bhash(12), evidence=b"e")
    record = ledger.get(mid(1))
    assert record is not None and record.finality == "committee"


def _ledger_as_released(path: Path, version: int) -> sqlite3.Connection:
    """A SQLite ledger file at schema ``version``, as that release made it."""
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in (m for migration in MIGRATIONS[:version] for m in migration):
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


def test_a_v4_ledger_gains_the_retention_indexes_and_drops_orphaned_block_evidence(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    conn = _ledger_as_released(path, 4)
    conn.execute(
        "INSERT INTO messages (id, origin_chain, destination_chain, route, nonce, message,"
        " block_number, block_hash, evidence, state, next_attempt_at, created_at, updated_at)"
        " VALUES (?, 'chain-a', 'chain-b', 'chain-a->chain-b', 1, x'00', 10, ?, x'', 'delivered',"
        " 0, 0, 0)",
        (mid(1), bhash(10)),
    )
    conn.execute("INSERT INTO block_evidence (digest, evidence) VALUES (x'01', x'aa')")
    conn.execute("INSERT INTO block_evidence (digest, evidence) VALUES (x'02', x'bb')")  # orphan
    conn.execute(
        "INSERT INTO evidence (message_id, evidence, block_digest) VALUES (?, x'0102', x'01')",
        (mid(1),),
    )
    conn.close()
    with Ledger.open(path) as led:
        own = led._conn
        assert own is not None
        assert own.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {r[0] for r in own.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"messages_final_by_age", "messages_by_block", "evidence_by_block_digest"} <= indexes
        assert own.execute("SELECT digest FROM block_evidence").fetchall() == [(b"\x01",)]
        assert led.block_evidence(mid(1)) == b"\xaa"
        assert led.prune(1.0).messages == 1
        assert own.execute("SELECT count(*) FROM block_evidence").fetchone() == (0,)


def test_each_pending_transaction_keeps_the_account_that_signed_it(ledger: Ledger) -> None:
    ids = attested(ledger, range(6))
    ledger.mark_submitted(ids[:2], tx_hash=tx(0), tx_nonce=0, raw_tx=b"a0", signer=b"\xaa" * 20)
    ledger.mark_submitted_many(
        [
            SubmittedTx(
                ids=(ids[2],), tx_hash=tx(1), tx_nonce=0, raw_tx=b"b0", signer=b"\xbb" * 20
            ),
            SubmittedTx(
                ids=(ids[3],), tx_hash=tx(2), tx_nonce=1, raw_tx=b"b1", signer=b"\xbb" * 20
            ),
        ]
    )
    ledger.mark_submitted(ids[4:], tx_hash=tx(3), tx_nonce=7, raw_tx=b"unknown")
    # Two keys' nonce 0 side by side: each worker recovers its own.
    assert ledger.pending_txs("chain-b") == [
        SignedTx(nonce=0, tx_hash=tx(0), raw_tx=b"a0", signer=b"\xaa" * 20),
        SignedTx(nonce=0, tx_hash=tx(1), raw_tx=b"b0", signer=b"\xbb" * 20),
        SignedTx(nonce=1, tx_hash=tx(2), raw_tx=b"b1", signer=b"\xbb" * 20),
        SignedTx(nonce=7, tx_hash=tx(3), raw_tx=b"unknown", signer=None),
    ]
    assert ledger.pending_txs("chain-b", tx_hashes=[tx(2), tx(0), tx("absent")]) == [
        SignedTx(nonce=0, tx_hash=tx(0), raw_tx=b"a0", signer=b"\xaa" * 20),
        SignedTx(nonce=1, tx_hash=tx(2), raw_tx=b"b1", signer=b"\xbb" * 20),
    ]


def test_a_v5_ledger_keeps_its_pending_transactions_with_an_unknown_signer(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    conn = _ledger_as_released(path, 5)
    conn.execute(
        "INSERT INTO messages (id, origin_chain, destination_chain, route, nonce, message,"
        " block_number, block_hash, evidence, state, next_attempt_at, created_at, updated_at,"
        " tx_hash, tx_nonce) VALUES (?, 'chain-a', 'chain-b', 'chain-a->chain-b', 1, x'00', 10,"
        " ?, x'', 'submitted', 0, 0, 0, ?, 4)",
        (mid(1), bhash(10), tx(4)),
    )
    conn.execute(
        "INSERT INTO pending_txs (destination_chain, tx_hash, tx_nonce, raw_tx, created_at)"
        " VALUES ('chain-b', ?, 4, x'0404', 0)",
        (tx(4),),
    )
    conn.close()
    with Ledger.open(path) as led:
        own = led._conn
        assert own is not None
        assert own.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        # Signed by the chain's only worker of a V5 relayer: NULL, which that worker (the
        # only one a SQLite ledger has) takes as its own.
        assert led.pending_txs("chain-b") == [
            SignedTx(nonce=4, tx_hash=tx(4), raw_tx=b"\x04\x04", signer=None)
        ]


def test_a_single_process_ledger_holds_any_signer_at_once(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.db") as led:
        first = led.hold_signer("chain-b", b"\xaa" * 20, owner="one")
        second = led.hold_signer("chain-b", b"\xaa" * 20, owner="two")
        first.release()
        second.release()
        ids = attested(led, range(2))
        led.mark_submitted(ids[:1], tx_hash=tx(1), tx_nonce=1, raw_tx=b"1")
        assert led.adopt(ids, owner="w", lease=5) == {ids[0]}
