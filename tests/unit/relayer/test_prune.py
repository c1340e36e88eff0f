"""Retention: ``Ledger.prune``, the attestation files it lets go, `relayer prune` and the
daemon's pass. Final messages (delivered, rejected, orphaned) older than the window go with
everything that is theirs alone; nothing else does, however old.

The tests that take ``ledger`` run on both engines, SQLite and Postgres; those that watch SQLite's
own statements and plans, and the CLI and daemon ones (their config names a file), on SQLite."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from relayer import daemon
from relayer.checkpoints import Attestation, CheckpointPruneReport, DirectoryCheckpointStore
from relayer.cli import main
from relayer.config import load_config
from relayer.errors import ConfigError
from relayer.store import Ledger, ObservedRow, PruneReport, State
from tests.unit.relayer.test_config import BASE

# The fixtures ledger_target, postgres_url, postgres_cluster.
pytest_plugins = ["tests.integration.postgres"]

DAY = 86_400.0
NOW = 1_000_000_000.0
WINDOW = 30 * DAY
SIG = b"\x01" * 65
DOMAIN_A = 1000  # chain-a's domain in BASE


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW - 40 * DAY)


@pytest.fixture
def ledger(ledger_target: str, clock: FakeClock) -> Iterator[Ledger]:
    with Ledger.open(ledger_target, clock=clock) as led:
        yield led


@pytest.fixture
def sqlite_ledger(tmp_path: Path, clock: FakeClock) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.db", clock=clock) as led:
        yield led


def mid(n: int | str) -> bytes:
    return hashlib.sha256(f"message {n}".encode()).digest()


def bhash(n: int | str) -> bytes:
    return hashlib.sha256(f"block {n}".encode()).digest()


def row(n: int, *, block: int | str = 10, block_evidence: bytes = b"") -> ObservedRow:
    return ObservedRow(
        id=mid(n),
        origin_chain="chain-a",
        destination_chain="chain-b",
        route="chain-a->chain-b",
        nonce=n,
        message=b"msg-%d" % n,
        block_number=10,
        block_hash=bhash(block),
        evidence=b"evidence-%d" % n,
        block_evidence=block_evidence,
    )


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


def put(led: Ledger, n: int, state: State, **kw: Any) -> bytes:
    """Message ``n`` observed and taken to ``state``, all at the ledger clock's time."""
    led.record_observed_many([row(n, **kw)])
    for step in PATH_TO[state]:
        if step is State.SUBMITTED:
            led.mark_submitted([mid(n)], tx_hash=b"\x07" * 32, tx_nonce=n, raw_tx=b"raw")
        else:
            led.transition(mid(n), step, signatures=(SIG,) if step is State.ATTESTED else None)
    return mid(n)


def rows_of(led: Ledger, table: str, message_id: bytes) -> int:
    column = "id" if table == "messages" else "message_id"
    query = f"SELECT count(*) FROM {table} WHERE {column} = ?"
    with led._read() as conn:
        return int(conn.execute(query, (message_id,)).fetchone()[0])


def count(led: Ledger, table: str) -> int:
    with led._read() as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# --- the ledger ---------------------------------------------------------------------------------


def test_only_final_messages_older_than_the_window_are_pruned(
    ledger: Ledger, clock: FakeClock
) -> None:
    old = {state: put(ledger, i, state) for i, state in enumerate(State)}
    clock.now = NOW - 5 * DAY
    young = {state: put(ledger, 100 + i, state) for i, state in enumerate(State)}
    clock.now = NOW

    report = ledger.prune(NOW - WINDOW)

    gone = {old[State.DELIVERED], old[State.REJECTED], old[State.ORPHANED]}
    assert report.messages == 3
    assert report.complete
    for message_id in [*old.values(), *young.values()]:
        assert (ledger.get(message_id) is None) == (message_id in gone)
    assert ledger.prune(NOW - WINDOW) == PruneReport(), "a second pass finds nothing"


def test_a_message_that_is_not_final_is_kept_however_old(ledger: Ledger, clock: FakeClock) -> None:
    kept = [
        put(ledger, i, state)
        for i, state in enumerate(State)
        if state not in (State.DELIVERED, State.REJECTED, State.ORPHANED)
    ]
    clock.now = NOW + 1000 * DAY
    assert ledger.prune(clock.now).messages == 0
    assert all(ledger.get(message_id) is not None for message_id in kept)


def test_the_window_counts_from_when_the_message_became_final(
    ledger: Ledger, clock: FakeClock
) -> None:
    # Observed long ago, delivered lately: kept.
    message_id = put(ledger, 1, State.ATTESTED)
    clock.now = NOW - DAY
    ledger.transition(message_id, State.DELIVERED)
    assert ledger.prune(NOW - WINDOW).messages == 0
    assert ledger.get(message_id) is not None


def test_history_and_evidence_go_with_their_message(ledger: Ledger, clock: FakeClock) -> None:
    gone = put(ledger, 1, State.DELIVERED, block=1)
    clock.now = NOW
    kept = put(ledger, 2, State.DELIVERED, block=2)
    assert rows_of(ledger, "history", gone) == 4
    report = ledger.prune(NOW - WINDOW)
    assert (report.messages, report.history, report.evidence) == (1, 4, 1)
    for table in ("messages", "history", "evidence"):
        assert rows_of(ledger, table, gone) == 0, table
        assert rows_of(ledger, table, kept) > 0, table
    assert ledger.evidence(kept) == b"evidence-2"
    assert [entry.to_state for entry in ledger.history(kept)][-1] is State.DELIVERED


def test_block_evidence_shared_with_a_kept_message_stays_and_an_orphan_goes(
    ledger: Ledger, clock: FakeClock
) -> None:
    shared, alone = b"body of block 1" * 100, b"body of block 2" * 100
    old_of_shared = put(ledger, 1, State.DELIVERED, block=1, block_evidence=shared)
    old_alone = put(ledger, 2, State.DELIVERED, block=2, block_evidence=alone)
    clock.now = NOW
    young_of_shared = put(ledger, 3, State.DELIVERED, block=1, block_evidence=shared)
    assert count(ledger, "block_evidence") == 2

    report = ledger.prune(NOW - WINDOW)

    assert (report.messages, report.block_evidence) == (2, 1)
    assert ledger.get(old_of_shared) is None and ledger.get(old_alone) is None
    assert ledger.block_evidence(young_of_shared) == shared
    assert count(ledger, "block_evidence") == 1


def test_block_evidence_of_a_block_whose_messages_all_go_goes_once(
    ledger: Ledger, clock: FakeClock
) -> None:
    body = b"one block, many messages" * 100
    for n in range(1, 8):
        put(ledger, n, State.DELIVERED, block=1, block_evidence=body)
    clock.now = NOW
    # Batches of 3: the block's evidence stays while a later batch's messages still use it.
    report = ledger.prune(NOW - WINDOW, batch=3)
    assert (report.messages, report.block_evidence, report.batches) == (7, 1, 3)
    assert count(ledger, "block_evidence") == 0


def test_a_reobservation_lets_go_of_the_block_evidence_it_replaced(ledger: Ledger) -> None:
    put(ledger, 1, State.VERIFIED, block=1, block_evidence=b"B1")
    put(ledger, 2, State.VERIFIED, block=1, block_evidence=b"B1")
    ledger.reobserve(
        mid(1), block_number=11, block_hash=bhash(11), evidence=b"e", block_evidence=b"B11"
    )
    assert count(ledger, "block_evidence") == 2, "message 2 still needs B1"
    ledger.reobserve(
        mid(2), block_number=11, block_hash=bhash(11), evidence=b"e", block_evidence=b"B11"
    )
    assert count(ledger, "block_evidence") == 1
    assert ledger.block_evidence(mid(2)) == b"B11"


def test_prunable_counts_what_prune_then_deletes_and_changes_nothing(
    ledger: Ledger, clock: FakeClock
) -> None:
    body = b"shared" * 100
    for n in range(5):
        put(ledger, n, State.DELIVERED, block=1, block_evidence=body)
    put(ledger, 5, State.REJECTED, block=2, block_evidence=b"lonely")
    put(ledger, 6, State.FAILED, block=3, block_evidence=b"failed's")
    clock.now = NOW
    put(ledger, 7, State.DELIVERED, block=4, block_evidence=b"young")

    predicted = ledger.prunable(NOW - WINDOW, batch=4)
    assert count(ledger, "messages") == 8
    done = ledger.prune(NOW - WINDOW, batch=4)
    assert predicted == done
    assert (done.messages, done.block_evidence, done.batches) == (6, 2, 2)


class WatchedConnection(sqlite3.Connection):
    """The ledger's connection, watched: at the start of each write transaction (the one before
    it has committed), how many messages another connection sees. A trace callback would do,
    but SQLite expands every bound id of a 500-id DELETE into its text for each row the
    foreign keys' cascades visit: seconds."""

    watcher: sqlite3.Connection
    left_at_each_begin: list[int]

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.startswith("BEGIN IMMEDIATE"):
            (left,) = self.watcher.execute("SELECT count(*) FROM messages").fetchone()
            self.left_at_each_begin.append(left)
        return super().execute(sql, *args)


def test_pruning_ten_thousand_messages_takes_short_transactions_of_one_batch_each(
    sqlite_ledger: Ledger, clock: FakeClock, tmp_path: Path
) -> None:
    ledger = sqlite_ledger
    ids = [mid(n) for n in range(10_000)]
    ledger.record_observed_many([row(n) for n in range(10_000)], verdicts=[None] * 10_000)
    ledger.transition_many(ids, State.ATTESTED, expect=State.VERIFIED)
    ledger.transition_many(ids, State.DELIVERED, expect=State.ATTESTED)
    clock.now = NOW
    conn = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None, factory=WatchedConnection)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.watcher = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    conn.left_at_each_begin = []
    watched = Ledger(conn, path=str(tmp_path / "ledger.db"), clock=clock)
    try:
        report = watched.prune(NOW - WINDOW, batch=500)
    finally:
        conn.watcher.close()
        watched.close()

    assert (report.messages, report.batches, report.complete) == (10_000, 20, True)
    # 500 fewer at each start: every batch committed on its own, the last one found none left
    assert conn.left_at_each_begin == list(range(10_000, -1, -500))
    assert count(ledger, "messages") == count(ledger, "history") == count(ledger, "evidence") == 0


def test_max_batches_stops_early_and_says_so(ledger: Ledger, clock: FakeClock) -> None:
    for n in range(5):
        put(ledger, n, State.REJECTED)
    clock.now = NOW
    first = ledger.prune(NOW - WINDOW, batch=2, max_batches=2)
    assert (first.messages, first.batches, first.complete) == (4, 2, False)
    rest = ledger.prune(NOW - WINDOW, batch=2, max_batches=2)
    assert (rest.messages, rest.complete) == (1, True)
    total = first + rest
    assert (total.messages, total.batches, total.complete) == (5, 3, True)


class RecordingConnection(sqlite3.Connection):
    statements: list[str]

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.statements.append(sql)
        return super().execute(sql, *args)


def test_pruning_reads_indexes_and_never_a_whole_table(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "ledger.db"
    Ledger.open(path).close()  # the schema
    conn = sqlite3.connect(path, isolation_level=None, factory=RecordingConnection)
    conn.statements = []
    conn.execute("PRAGMA foreign_keys = ON")
    with Ledger(conn, path=str(path), clock=clock) as led:
        put(led, 1, State.DELIVERED, block=1, block_evidence=b"B1")
        clock.now = NOW
        put(led, 2, State.DELIVERED, block=1, block_evidence=b"B1")
        conn.statements.clear()
        led.prunable(NOW - WINDOW)
        led.prune(NOW - WINDOW)
        led.blocks_kept("chain-a", [bhash(1), bhash(2)], older_than=NOW - WINDOW)
        queries = {sql for sql in conn.statements if sql.split()[0] in ("SELECT", "DELETE", "WITH")}
        assert len(queries) >= 8
        for sql in queries:
            plan = [
                str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, (0,) * sql.count("?"))
            ]
            scans = [step for step in plan if step.startswith("SCAN ")]
            assert all(step.split()[1] in ("gone", "freed", "CONSTANT") for step in scans), (
                sql,
                plan,
            )


def test_blocks_kept_are_those_with_a_message_prune_keeps(ledger: Ledger, clock: FakeClock) -> None:
    put(ledger, 1, State.DELIVERED, block=1)  # old and final: block 1 kept by nothing
    put(ledger, 2, State.FAILED, block=2)  # old but not final: block 2 kept
    put(ledger, 3, State.DELIVERED, block=3)
    clock.now = NOW
    put(ledger, 4, State.DELIVERED, block=3)  # young: block 3 kept
    asked = [bhash(n) for n in (1, 2, 3, "unknown")]
    assert ledger.blocks_kept("chain-a", asked, older_than=NOW - WINDOW) == {bhash(2), bhash(3)}
    assert ledger.blocks_kept("chain-b", asked, older_than=NOW - WINDOW) == set()


# --- attestation files, the CLI, the daemon ---------------------------------------------------


def publish(root: Path, block: bytes, *, age: float, domain: int = DOMAIN_A) -> Path:
    store = DirectoryCheckpointStore(root)
    att = Attestation(
        signer=b"\x51" * 20,
        signature=SIG,
        origin_domain=domain,
        message_id=b"\x00" * 32,
        origin_block_hash=block,
        destination_domain=2000,
    )
    store.put_block(domain, block, att.signer, [att])
    folder = root / str(domain) / block.hex()
    when = time.time() - age
    for path in (*folder.iterdir(), folder):
        os.utime(path, (when, when))
    return folder


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[relayer]\ndatabase = "ledger.db"\ncheckpoints = "cp"\n' + BASE)
    return path


def seed(tmp_path: Path) -> dict[str, Path]:
    """A ledger and checkpoint directory as a daemon leaves them after weeks of work."""
    clock = FakeClock(time.time() - 40 * DAY)
    with Ledger.open(tmp_path / "ledger.db", clock=clock) as led:
        put(led, 1, State.DELIVERED, block="pruned")
        put(led, 2, State.VERIFIED, block="live")  # 40 days old, still waiting
        clock.now = time.time()
        put(led, 3, State.DELIVERED, block="young")
    root = tmp_path / "cp"
    return {
        "pruned": publish(root, bhash("pruned"), age=39 * DAY),
        "live": publish(root, bhash("live"), age=39 * DAY),
        "young": publish(root, bhash("young"), age=39 * DAY),  # its message is young
        "unknown old": publish(root, bhash("fork"), age=35 * DAY),
        "unknown new": publish(root, bhash("ahead"), age=DAY),
        "other domain": publish(root, bhash("elsewhere"), age=99 * DAY, domain=77),
    }


def counted(output: str, label: str) -> int:
    line = next(line for line in output.splitlines() if line.strip().startswith(label))
    return int(line.split()[-1])


def test_relayer_prune_dry_run_changes_nothing_and_prints_counts(
    tmp_path: Path, config_file: Path
) -> None:
    folders = seed(tmp_path)
    result = CliRunner().invoke(main, ["prune", "-c", str(config_file), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("would remove what became final before ")
    assert counted(result.output, "messages") == 1
    assert counted(result.output, "history rows") == 4
    assert counted(result.output, "attestation block directories") == 2
    assert all(folder.is_dir() for folder in folders.values())
    with Ledger.open(tmp_path / "ledger.db") as led:
        assert all(led.get(mid(n)) is not None for n in (1, 2, 3))
        assert len(led.history(mid(1))) == 4


def test_relayer_prune_removes_old_final_messages_and_the_files_nobody_needs(
    tmp_path: Path, config_file: Path
) -> None:
    folders = seed(tmp_path)
    result = CliRunner().invoke(main, ["prune", "-c", str(config_file)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("removed what became final before ")
    assert counted(result.output, "messages") == 1
    assert counted(result.output, "attestation block directories") == 2
    with Ledger.open(tmp_path / "ledger.db") as led:
        assert led.get(mid(1)) is None
        assert led.get(mid(2)) is not None and led.get(mid(3)) is not None
    gone = {"pruned", "unknown old"}
    for name, folder in folders.items():
        assert folder.is_dir() == (name not in gone), name


def test_relayer_prune_takes_the_window_from_the_command_line(
    tmp_path: Path, config_file: Path
) -> None:
    folders = seed(tmp_path)
    result = CliRunner().invoke(main, ["prune", "-c", str(config_file), "--older-than-days", "45"])
    assert result.exit_code == 0, result.output
    assert counted(result.output, "messages") == 0
    assert counted(result.output, "attestation block directories") == 0
    assert all(folder.is_dir() for folder in folders.values())


def test_relayer_prune_does_nothing_when_retention_is_off(
    tmp_path: Path, config_file: Path
) -> None:
    config_file.write_text(
        config_file.read_text().replace("[relayer]\n", "[relayer]\nretention_days = 0\n")
    )
    folders = seed(tmp_path)
    result = CliRunner().invoke(main, ["prune", "-c", str(config_file)])
    assert result.exit_code == 0, result.output
    assert "retention_days = 0" in result.output
    with Ledger.open(tmp_path / "ledger.db") as led:
        assert led.get(mid(1)) is not None
    assert all(folder.is_dir() for folder in folders.values())


class RecordingLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.seen = asyncio.Event()

    def info(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))
        self.seen.set()

    warning = info


async def test_the_daemon_prunes_at_start_and_logs_the_counts(
    tmp_path: Path, config_file: Path
) -> None:
    folders = seed(tmp_path)
    config = load_config(config_file)
    log = RecordingLog()
    with Ledger.open(config.relayer.database) as led:
        task = asyncio.create_task(
            daemon._prune_periodically(
                config, led, DirectoryCheckpointStore(config.relayer.checkpoints), log
            ),
            name="prune",
        )
        await asyncio.wait_for(log.seen.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert led.get(mid(1)) is None
    event, fields = log.events[0]
    assert event == "ledger.pruned"
    assert fields["messages"] == 1 and fields["checkpoint_blocks"] == 2
    assert not folders["pruned"].exists() and folders["live"].is_dir()


class SlowCheckpoints:
    """A checkpoint walk that lasts until it is told to stop."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stopped_by: threading.Event | None = None

    def prune(self, older_than: float, *, stop: threading.Event | None, **_: Any) -> Any:
        self.started.set()
        assert stop is not None and stop.wait(5), "the daemon never said stop"
        self.stopped_by = stop
        return CheckpointPruneReport()


async def test_a_daemon_stopping_mid_pass_tells_the_thread_and_waits_for_it(
    tmp_path: Path, config_file: Path
) -> None:
    config = load_config(config_file)
    log = RecordingLog()
    slow = SlowCheckpoints()
    with Ledger.open(config.relayer.database) as led:
        task = asyncio.create_task(daemon._prune_periodically(config, led, slow, log))  # type: ignore[arg-type]
        await asyncio.to_thread(slow.started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # By now the thread has returned: the ledger may be closed under nobody.
        assert slow.stopped_by is not None and slow.stopped_by.is_set()
    assert log.events == []


def test_retention_settings_default_to_thirty_days_hourly_and_refuse_a_negative_window(
    config_file: Path,
) -> None:
    config = load_config(config_file)
    assert (config.relayer.retention_days, config.relayer.prune_interval) == (30, 3600.0)
    config_file.write_text(
        config_file.read_text().replace("[relayer]\n", "[relayer]\nretention_days = -1\n")
    )
    with pytest.raises(ConfigError, match=r"relayer\.retention_days: "):
        load_config(config_file)
