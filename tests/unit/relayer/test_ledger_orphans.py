"""Orphaned messages: a reorg deeper than finality made their origin block non-canonical and the
canonical chain does not hold them (``Ledger.orphan_above``); what `relayer explain`, metrics and
retention make of them; the SQLite V7 migration that admits the state.

The tests that take ``ledger`` run on both engines, SQLite and Postgres (a throwaway cluster,
tests/integration/postgres.py); those about the SQLite file and its migrations on SQLite only."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from relayer.cli import main
from relayer.errors import StoreError
from relayer.explain import explanation, resolve, why
from relayer.metrics import LedgerSnapshot, RelayerMetrics
from relayer.store import REOBSERVABLE, Ledger, State
from relayer.store.schema import MIGRATIONS, SCHEMA_VERSION
from tests.unit.relayer.test_config import BASE
from tests.unit.relayer.test_ledger import (
    SIG,
    FakeClock,
    _ledger_as_released,
    bhash,
    bring_to,
    mid,
    observe,
    row,
    tx,
)

# The fixtures ledger_target, postgres_url, postgres_cluster.
pytest_plugins = ["tests.integration.postgres"]

REASON = "a reorg beyond finality on chain-a replaced the blocks above 10"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(ledger_target: str, clock: FakeClock) -> Iterator[Ledger]:
    with Ledger.open(ledger_target, clock=clock) as led:
        yield led


def _state(led: Ledger, message_id: bytes) -> State:
    record = led.get(message_id)
    assert record is not None
    return record.state


# --- orphan_above --------------------------------------------------------------------------------


def test_orphaned_is_a_stored_state_that_only_a_reobservation_leaves() -> None:
    assert State.ORPHANED.value == "orphaned"
    assert State.ORPHANED in REOBSERVABLE


@pytest.mark.parametrize(
    "state", [State.OBSERVED, State.VERIFIED, State.ATTESTED, State.FAILED], ids=str
)
def test_a_message_above_the_fork_with_nothing_on_the_destination_is_orphaned(
    ledger: Ledger, clock: FakeClock, state: State
) -> None:
    message_id = observe(ledger, 1, block=12)
    bring_to(ledger, message_id, state)
    clock.advance(7)

    assert ledger.orphan_above("chain-a", 10, reason=REASON) == [message_id]

    record = ledger.get(message_id)
    assert record is not None
    assert (record.state, record.updated_at) == (State.ORPHANED, clock.now)
    # The block it was recorded from stays, for `explain`: it is what went away.
    assert (record.block_number, record.block_hash) == (12, bhash(12))
    expected = f"origin block 12 (0x{bhash(12).hex()}) is no longer canonical: {REASON}"
    assert record.last_error == expected
    last = ledger.history(message_id)[-1]
    assert (last.from_state, last.to_state, last.detail, last.at) == (
        state,
        State.ORPHANED,
        expected,
        clock.now,
    )
    assert ledger.due(state) == []


@pytest.mark.parametrize(
    "state", [State.SUBMITTED, State.DELIVERED, State.REJECTED, State.ORPHANED], ids=str
)
def test_a_message_in_a_transaction_delivered_rejected_or_orphaned_is_left_alone(
    ledger: Ledger, state: State
) -> None:
    message_id = observe(ledger, 1, block=12)
    bring_to(ledger, message_id, state)
    before, history = ledger.get(message_id), ledger.history(message_id)

    assert ledger.orphan_above("chain-a", 10, reason=REASON) == []

    assert ledger.get(message_id) == before
    assert ledger.history(message_id) == history


def test_only_the_chain_and_only_the_blocks_above_the_fork_are_orphaned(ledger: Ledger) -> None:
    at_fork = observe(ledger, 1, block=10)
    below = observe(ledger, 2, block=9)
    other_chain = observe(ledger, 3, block=12, origin="chain-c")
    above = [observe(ledger, 4, block=13), observe(ledger, 5, block=11), observe(ledger, 6)]
    ledger.transition(above[2], State.VERIFIED)  # block 10: the fork itself stays

    moved = ledger.orphan_above("chain-a", 10, reason=REASON)

    assert moved == [above[1], above[0]], "by block"
    assert {m: _state(ledger, m) for m in [at_fork, below, other_chain, above[2]]} == {
        at_fork: State.OBSERVED,
        below: State.OBSERVED,
        other_chain: State.OBSERVED,
        above[2]: State.VERIFIED,
    }


def test_orphaning_twice_for_one_reorg_moves_nothing_the_second_time(
    ledger: Ledger, clock: FakeClock
) -> None:
    ids = [observe(ledger, n, block=11 + n) for n in range(3)]
    assert ledger.orphan_above("chain-a", 10, reason=REASON) == ids
    history = [ledger.history(m) for m in ids]
    clock.advance(5)

    # A crash between the orphaning and the cursor's rewind: the next pass finds the reorg again.
    assert ledger.orphan_above("chain-a", 10, reason=REASON) == []
    assert [ledger.history(m) for m in ids] == history
    assert ledger.counts() == {("chain-a->chain-b", State.ORPHANED): 3}


def test_orphaning_is_one_transaction(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [observe(ledger, n, block=11) for n in range(3)]
    history = [ledger.history(m) for m in ids]

    def fail(*_: object) -> None:
        raise StoreError("disk full")  # after the states were written, before the commit

    monkeypatch.setattr(ledger, "_histories", fail)
    with pytest.raises(StoreError, match="disk full"):
        ledger.orphan_above("chain-a", 10, reason=REASON)
    monkeypatch.undo()

    assert {_state(ledger, m) for m in ids} == {State.OBSERVED}
    assert [ledger.history(m) for m in ids] == history


def test_orphaning_reads_the_unfinished_messages_not_the_chains_history(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.db") as led:
        conn = led._conn
        assert conn is not None
        seen: list[str] = []
        conn.set_trace_callback(seen.append)  # the statements with their values in place
        led.orphan_above("chain-a", 10, reason=REASON)
        conn.set_trace_callback(None)
        (query,) = [sql for sql in seen if sql.startswith("SELECT")]
        plan = [str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + query)]
        assert any("USING INDEX messages_due (state=?)" in step for step in plan), plan
        assert not any(step.startswith("SCAN") for step in plan), plan


# --- re-observation ------------------------------------------------------------------------------


def test_an_orphaned_message_included_again_elsewhere_is_observed_anew(
    ledger: Ledger, clock: FakeClock
) -> None:
    message_id = observe(ledger, 1, block=12)
    bring_to(ledger, message_id, State.ATTESTED)
    ledger.orphan_above("chain-a", 10, reason=REASON)
    clock.advance(3)

    # The rescan after the rewind finds it in block 13 of the canonical chain, verified.
    assert ledger.record_observed_many([row(1, block=13, block_hash=bhash("13b"))], [None]) == 1

    record = ledger.get(message_id)
    assert record is not None
    assert (record.state, record.block_number, record.block_hash) == (
        State.VERIFIED,
        13,
        bhash("13b"),
    )
    assert record.last_error is None, "what orphaned it no longer holds"
    assert record.signatures == ()
    steps = [(h.from_state, h.to_state) for h in ledger.history(message_id)][-3:]
    assert steps == [
        (State.ATTESTED, State.ORPHANED),
        (State.ORPHANED, State.OBSERVED),
        (State.OBSERVED, State.VERIFIED),
    ]
    detail = ledger.history(message_id)[-2].detail
    assert detail is not None
    assert f"0x{bhash(12).hex()} -> 0x{bhash('13b').hex()}" in detail
    assert "canonical chain holds it again" in detail


def test_an_orphaned_message_in_its_very_block_again_is_observed_anew(ledger: Ledger) -> None:
    # The chain reorged away from block 12 and then back to it.
    message_id = observe(ledger, 1, block=12)
    ledger.transition(message_id, State.VERIFIED)
    ledger.orphan_above("chain-a", 10, reason=REASON)

    assert ledger.advance("chain-a", "relayer", [(12, bhash(12))], [row(1, block=12)]) == 1

    assert _state(ledger, message_id) is State.OBSERVED
    # ... while a message seen again in the block it is recorded from is, as ever, no news.
    assert ledger.advance("chain-a", "relayer", [(12, bhash(12))], [row(1, block=12)]) == 0


def test_reobserve_takes_an_orphaned_message_back(ledger: Ledger) -> None:
    message_id = observe(ledger, 1, block=12)
    ledger.orphan_above("chain-a", 10, reason=REASON)
    record = ledger.reobserve(message_id, block_number=14, block_hash=bhash(14), evidence=b"e")
    assert (record.state, record.block_number, record.last_error) == (State.OBSERVED, 14, None)


# --- what operators see --------------------------------------------------------------------------


def test_explain_says_an_orphaned_message_is_gone_and_why(ledger: Ledger) -> None:
    message_id = observe(ledger, 1, block=12)
    ledger.orphan_above("chain-a", 10, reason=REASON)

    record, history = resolve(ledger, message_id.hex()[:12])
    shown = explanation(record, history)

    assert shown["state"] == "orphaned"
    assert shown["origin_block"] == {"number": 12, "hash": "0x" + bhash(12).hex()}
    assert "no longer canonical" in shown["last_error"]
    assert REASON in shown["last_error"]
    assert shown["history"][-1]["to"] == "orphaned"
    assert REASON in shown["history"][-1]["detail"]
    assert shown["why"] == why(State.ORPHANED)
    assert "reorg deeper than the origin chain's finality" in shown["why"]
    assert "never be submitted" in shown["why"]


def test_relayer_explain_prints_the_orphaned_state_and_the_reason(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[relayer]\ndatabase = "ledger.db"\n' + BASE)
    with Ledger.open(tmp_path / "ledger.db") as led:
        message_id = observe(led, 1, block=12)
        bring_to(led, message_id, State.ATTESTED)
        led.orphan_above("chain-a", 10, reason=REASON)

    result = CliRunner().invoke(main, ["explain", "-c", str(config), message_id.hex()[:16]])

    assert result.exit_code == 0, result.output
    assert "state      orphaned" in result.output
    assert f"origin block 12 (0x{bhash(12).hex()}) is no longer canonical" in result.output
    assert REASON in result.output
    assert "attested -> orphaned" in result.output
    assert f"why: {why(State.ORPHANED)}" in result.output


def test_orphaned_messages_are_counted_per_route_and_exported(ledger: Ledger) -> None:
    for n in range(2):
        observe(ledger, n, block=12)
    observe(ledger, 5, block=9)
    ledger.orphan_above("chain-a", 10, reason=REASON)

    assert ledger.counts() == {
        ("chain-a->chain-b", State.ORPHANED): 2,
        ("chain-a->chain-b", State.OBSERVED): 1,
    }
    text = RelayerMetrics().exposition(LedgerSnapshot.read(ledger)).decode()
    assert 'relayer_messages{route="chain-a->chain-b",state="orphaned"} 2.0' in text
    # Not owed any more: out of the backlog.
    assert 'relayer_backlog_messages{route="chain-a->chain-b"} 1.0' in text


def test_retention_prunes_an_orphaned_message_as_a_final_one(
    ledger: Ledger, clock: FakeClock
) -> None:
    old = observe(ledger, 1, block=12)
    ledger.orphan_above("chain-a", 10, reason=REASON)
    clock.advance(100)
    young = observe(ledger, 2, block=13)
    ledger.orphan_above("chain-a", 10, reason=REASON)
    clock.advance(100)

    assert ledger.prunable(clock.now - 150).messages == 1
    assert ledger.blocks_kept("chain-a", [bhash(12), bhash(13)], older_than=clock.now - 150) == {
        bhash(13)
    }
    report = ledger.prune(clock.now - 150)

    assert (report.messages, report.history, report.evidence) == (1, 2, 1)
    assert ledger.get(old) is None
    assert ledger.get(young) is not None


# --- the SQLite schema: V6 -> V7 -----------------------------------------------------------------


def _indexes(conn: sqlite3.Connection) -> dict[str, str]:
    return {
        name: sql
        for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
    }


def _v6_ledger(path: Path) -> None:
    """A V6 ledger as the release made it, with a message in every state, a history of each,
    evidence (block evidence shared by two), a pending transaction."""
    conn = _ledger_as_released(path, 6)
    states = ["observed", "verified", "attested", "submitted", "delivered", "rejected", "failed"]
    for n, state in enumerate(states):
        conn.execute(
            "INSERT INTO messages (id, origin_chain, destination_chain, route, nonce, message,"
            " block_number, block_hash, evidence, state, attempts, last_error, next_attempt_at,"
            " signatures, tx_hash, tx_nonce, created_at, updated_at, finality)"
            " VALUES (?, 'chain-a', 'chain-b', 'chain-a->chain-b', ?, ?, ?, ?, x'', ?, ?, ?, ?,"
            " ?, ?, ?, ?, ?, 'committee')",
            (
                mid(n),
                n,
                b"msg-%d" % n,
                10 + n,
                bhash(10 + n),
                state,
                n,
                f"error {n}" if n % 2 else None,
                100.0 + n,
                SIG if state in ("attested", "submitted", "delivered", "failed") else b"",
                tx(n) if state == "submitted" else None,
                n if state == "submitted" else None,
                50.0 + n,
                60.0 + n,
            ),
        )
        for step, (before, after) in enumerate([(None, "observed"), ("observed", state)]):
            conn.execute(
                "INSERT INTO history (message_id, at, from_state, to_state, detail, error)"
                " VALUES (?, ?, ?, ?, ?, NULL)",
                (mid(n), 50.0 + n + step, before, after, f"step {step} of {n}"),
            )
        conn.execute(
            "INSERT INTO block_evidence (digest, evidence) VALUES (?, ?)"
            " ON CONFLICT (digest) DO NOTHING",
            (bytes([n // 2]) * 32, b"body %d" % (n // 2)),
        )
        conn.execute(
            "INSERT INTO evidence (message_id, evidence, block_digest) VALUES (?, ?, ?)",
            (mid(n), b"evidence-%d" % n, bytes([n // 2]) * 32),
        )
    conn.execute(
        "INSERT INTO pending_txs (destination_chain, tx_hash, tx_nonce, raw_tx, created_at,"
        " signer) VALUES ('chain-b', ?, 3, x'0303', 0, NULL)",
        (tx(3),),
    )
    conn.close()


def _snapshot(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            "messages": conn.execute(
                "SELECT id, origin_chain, destination_chain, route, nonce, message, block_number,"
                " block_hash, evidence, state, attempts, last_error, next_attempt_at, signatures,"
                " tx_hash, tx_nonce, raw_tx, created_at, updated_at, finality FROM messages"
                " ORDER BY id"
            ).fetchall(),
            "history": conn.execute("SELECT * FROM history ORDER BY seq").fetchall(),
            "evidence": conn.execute("SELECT * FROM evidence ORDER BY message_id").fetchall(),
            "block_evidence": conn.execute("SELECT * FROM block_evidence ORDER BY 1").fetchall(),
            "pending_txs": conn.execute("SELECT * FROM pending_txs").fetchall(),
        }
    finally:
        conn.close()


def test_a_v6_ledger_keeps_every_message_its_history_and_evidence_through_v7(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    _v6_ledger(path)
    before = _snapshot(path)
    conn = sqlite3.connect(path)
    v6_indexes = _indexes(conn)
    conn.close()
    assert len(before["messages"]) == 7 and len(before["history"]) == 14

    with Ledger.open(path) as led:
        own = led._conn
        assert own is not None
        assert own.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 7
        # The migration turned foreign keys off for its rebuild, and back on after it.
        assert own.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert own.execute("PRAGMA foreign_key_check").fetchall() == []
        assert own.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        # The tables of later migrations (V8's fees_paid) bring indexes of their own.
        v7_indexes = {k: v for k, v in _indexes(own).items() if not k.startswith("fees_paid_")}

    assert _snapshot(path) == before
    # Every index as it was, but for retention's, which now counts orphaned as final.
    assert set(v7_indexes) == set(v6_indexes)
    assert {k: v for k, v in v7_indexes.items() if k != "messages_final_by_age"} == {
        k: v for k, v in v6_indexes.items() if k != "messages_final_by_age"
    }
    assert "'delivered', 'rejected', 'orphaned'" in v7_indexes["messages_final_by_age"]

    with Ledger.open(path) as led:
        # The cascades still hold: the history and evidence reference the rebuilt table.
        assert led.prune(1_000.0).messages == 2  # the delivered and the rejected one
        assert led.history(mid(4)) == [] and led.evidence(mid(4)) is None
        assert len(led.history(mid(0))) == 2
        # The new state goes in, and the old ones go on as ever.
        assert led.orphan_above("chain-a", 10, reason=REASON) == [mid(1), mid(2), mid(6)]
        led.transition(mid(0), State.VERIFIED)
        assert [t.tx_hash for t in led.pending_txs("chain-b")] == [tx(3)]
        assert led.paused_routes() == {}


def test_the_rebuilt_messages_table_refuses_a_state_it_does_not_know(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.db") as led:
        observe(led, 1)
        with pytest.raises(StoreError, match="CHECK constraint failed"), led._write() as conn:
            conn.execute("UPDATE messages SET state = 'lost'")
        assert _state(led, mid(1)) is State.OBSERVED


def test_a_rebuild_that_would_break_a_foreign_key_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    _v6_ledger(path)
    conn = sqlite3.connect(path, isolation_level=None)  # foreign keys off, as by default
    conn.execute(
        "INSERT INTO history (message_id, at, to_state) VALUES (?, 0, 'observed')", (mid("x"),)
    )
    conn.close()
    before = _snapshot(path)

    with pytest.raises(StoreError, match="schema version 7 would leave 1 rows") as refused:
        Ledger.open(path)
    assert "table history" in str(refused.value)

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 6
        assert (
            "orphaned"
            not in conn.execute("SELECT sql FROM sqlite_master WHERE name = 'messages'").fetchone()[
                0
            ]
        )
    finally:
        conn.close()
    assert _snapshot(path) == before


def test_a_ledger_made_at_v7_and_one_migrated_to_it_have_one_schema(tmp_path: Path) -> None:
    made = tmp_path / "made.db"
    _ledger_as_released(made, len(MIGRATIONS)).close()
    migrated = tmp_path / "migrated.db"
    _v6_ledger(migrated)
    Ledger.open(migrated).close()

    def schema(path: Path) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(path)
        try:
            return conn.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
            ).fetchall()
        finally:
            conn.close()

    assert schema(made) == schema(migrated)
