"""Fees paid, kept in the ledger (``Ledger.record_fee`` / ``fees_since``): what a delivering key's
hourly budget counts across restarts and across the processes that share a Postgres ledger.

Every test runs on both engines, SQLite and Postgres (a throwaway cluster,
tests/integration/postgres.py); the migration of a Postgres ledger from before the table is in
tests/integration/test_ledger_postgres.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from relayer.errors import StoreError
from relayer.store import FEE_KEEP, Ledger
from relayer.store.schema import MIGRATIONS, SCHEMA_VERSION
from tests.unit.relayer.test_delivery_recovery import tx
from tests.unit.relayer.test_ledger import FakeClock

# The fixtures ledger_target, postgres_url, postgres_cluster.
pytest_plugins = ["tests.integration.postgres"]

OURS, THEIRS = b"\x0a" * 20, b"\x0b" * 20
# Fees in wei pass 2**64 (an L1 transaction at a fee spike), and a uint256 is the bound.
HUGE = 2**64 + 12_345
UINT256_MAX = 2**256 - 1


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(ledger_target: str, clock: FakeClock) -> Iterator[Ledger]:
    with Ledger.open(ledger_target, clock=clock) as led:
        yield led


def test_fees_are_read_back_exactly_oldest_first(ledger: Ledger, clock: FakeClock) -> None:
    assert ledger.record_fee("chain-b", OURS, HUGE, tx_hash=tx(1))
    clock.advance(10)
    assert ledger.record_fee("chain-b", OURS, UINT256_MAX, tx_hash=tx(2))
    assert ledger.record_fee("chain-b", OURS, 7, tx_hash=tx(0), at=900.0)
    assert ledger.fees_since("chain-b", OURS, 0.0) == [
        (900.0, 7),
        (1_000.0, HUGE),
        (1_010.0, UINT256_MAX),
    ]
    # After ``since``, not at it: what a window of an hour ending now still counts.
    assert ledger.fees_since("chain-b", OURS, 1_000.0) == [(1_010.0, UINT256_MAX)]
    assert ledger.fees_since("chain-b", OURS, 1_010.0) == []


def test_a_keys_fees_are_its_own_on_its_own_chain(ledger: Ledger) -> None:
    ledger.record_fee("chain-b", OURS, 1, tx_hash=tx(1))
    ledger.record_fee("chain-b", THEIRS, 2, tx_hash=tx(2))
    ledger.record_fee("chain-c", OURS, 3, tx_hash=tx(3))
    assert ledger.fees_since("chain-b", OURS, 0.0) == [(1_000.0, 1)]
    assert ledger.fees_since("chain-b", THEIRS, 0.0) == [(1_000.0, 2)]
    assert ledger.fees_since("chain-c", OURS, 0.0) == [(1_000.0, 3)]
    assert ledger.fees_since("chain-c", THEIRS, 0.0) == []


def test_a_transactions_fee_counts_once_however_often_its_settle_is_replayed(
    ledger: Ledger, clock: FakeClock
) -> None:
    assert ledger.record_fee("chain-b", OURS, 70, tx_hash=tx(1))
    clock.advance(5)
    assert not ledger.record_fee("chain-b", OURS, 70, tx_hash=tx(1)), "recorded already"
    assert ledger.fees_since("chain-b", OURS, 0.0) == [(1_000.0, 70)], "the first time kept"
    # The same hash on another chain is another transaction.
    assert ledger.record_fee("chain-c", OURS, 70, tx_hash=tx(1))


def test_fees_older_than_a_day_go_when_the_next_is_recorded(
    ledger: Ledger, clock: FakeClock
) -> None:
    ledger.record_fee("chain-b", OURS, 1, tx_hash=tx(1))
    ledger.record_fee("chain-c", THEIRS, 2, tx_hash=tx(2))
    clock.advance(FEE_KEEP)
    ledger.record_fee("chain-b", OURS, 3, tx_hash=tx(3))
    assert len(ledger.fees_since("chain-b", OURS, 0.0)) == 2, "a day old: kept"
    clock.advance(1)
    ledger.record_fee("chain-d", THEIRS, 4, tx_hash=tx(4))
    # Every key's and chain's, not only the recording one's.
    assert ledger.fees_since("chain-b", OURS, 0.0) == [(1_000.0 + FEE_KEEP, 3)]
    assert ledger.fees_since("chain-c", THEIRS, 0.0) == []


@pytest.mark.parametrize("fee", [0, -5])
def test_a_fee_of_nothing_is_refused(ledger: Ledger, fee: int) -> None:
    with pytest.raises(StoreError, match="a fee paid is above 0"):
        ledger.record_fee("chain-b", OURS, fee, tx_hash=tx(1))
    assert ledger.fees_since("chain-b", OURS, 0.0) == []


def test_fees_outlive_the_process(ledger_target: str, clock: FakeClock) -> None:
    with Ledger.open(ledger_target, clock=clock) as led:
        led.record_fee("chain-b", OURS, HUGE, tx_hash=tx(1))
    with Ledger.open(ledger_target, clock=clock) as led:
        assert led.fees_since("chain-b", OURS, 0.0) == [(1_000.0, HUGE)]


# --- SQLite's schema -----------------------------------------------------------------------------


def test_sqlite_keeps_a_fee_as_digits_and_refuses_anything_else(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.db") as led:
        led.record_fee("chain-b", OURS, HUGE, tx_hash=tx(1))
        conn = led._conn
        assert conn is not None
        assert conn.execute("SELECT typeof(fee), fee FROM fees_paid").fetchall() == [
            ("text", str(HUGE))
        ]
        for bad in ("12a", "-1", "0", "01", "1.5", "", 1.5):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
                conn.execute(
                    "INSERT INTO fees_paid (chain, tx_hash, signer, paid_at, fee)"
                    " VALUES ('chain-b', ?, ?, 0, ?)",
                    (tx(9), OURS, bad),
                )


def test_a_v7_ledger_gains_the_fees_table_and_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in (m for migration in MIGRATIONS[:7] for m in migration):
        conn.execute(statement)  # V7 exactly as released
    conn.execute("PRAGMA user_version = 7")
    conn.execute(
        "INSERT INTO route_pauses (route, reason, paused_at, paused_by)"
        " VALUES ('chain-a->chain-b', 'r', 1, 'b')"
    )
    conn.close()
    with Ledger.open(path, clock=FakeClock()) as led:
        own = led._conn
        assert own is not None
        assert own.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
        assert led.paused_routes()["chain-a->chain-b"].reason == "r"
        assert led.fees_since("chain-b", OURS, 0.0) == []
        assert led.record_fee("chain-b", OURS, 5, tx_hash=tx(1))
        indexes = {
            name
            for (name,) in own.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'fees_paid'"
                " AND sql IS NOT NULL"
            )
        }
        assert indexes == {"fees_paid_by_signer", "fees_paid_by_age"}
