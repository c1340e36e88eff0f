"""The Postgres ledger's own behaviour: work leases between workers, schema migrations, engine
selection. (The state machine itself runs against both engines in tests/unit/relayer/
test_ledger.py and test_prune.py.)"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from chains.localnode import free_port
from relayer.errors import StoreError
from relayer.store import (
    LeaseLostError,
    Ledger,
    LedgerUnavailableError,
    SignerTakenError,
    State,
    SubmittedTx,
)
from relayer.store.pg_schema import MIGRATIONS, SCHEMA_VERSION, migrate
from relayer.store.postgres import PostgresLedger, new_owner
from tests.unit.relayer.test_ledger import SIG, FakeClock, bhash, mid, row

# The fixtures postgres_url, postgres_cluster.
pytest_plugins = ["tests.integration.postgres"]
REPO = Path(__file__).resolve().parents[2]
LEASE = 30.0


def verified(led: Ledger, count: int) -> list[bytes]:
    """``count`` messages, VERIFIED and due."""
    led.record_observed_many([row(n) for n in range(count)], [None] * count)
    return [mid(n) for n in range(count)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def workers(postgres_url: str, clock: FakeClock) -> Iterator[tuple[PostgresLedger, ...]]:
    """Two workers' ledgers on one database, each with its own pool (as two processes)."""
    opened = [Ledger.open(postgres_url, clock=clock) for _ in range(2)]
    try:
        assert all(isinstance(led, PostgresLedger) for led in opened)
        yield tuple(led for led in opened if isinstance(led, PostgresLedger))
    finally:
        for led in opened:
            led.close()


# --- claims and leases ---------------------------------------------------------------------------


def test_two_workers_claiming_at_once_never_get_the_same_message(
    workers: tuple[PostgresLedger, PostgresLedger],
) -> None:
    ids = verified(workers[0], 300)
    start = threading.Barrier(2)
    taken: dict[str, list[bytes]] = {}
    errors: list[BaseException] = []

    def work(led: PostgresLedger, owner: str) -> None:
        mine: list[bytes] = taken.setdefault(owner, [])
        try:
            start.wait()
            while batch := led.claim(State.VERIFIED, owner=owner, lease=LEASE, limit=7):
                mine.extend(r.id for r in batch)
                # The step's work, done: the transition ends the lease and the state.
                led.mark_attested([(r.id, [SIG], None) for r in batch])
        except BaseException as exc:  # noqa: BLE001 -- reported to the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(led, f"worker-{n}")) for n, led in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    first, second = taken["worker-0"], taken["worker-1"]
    assert not set(first) & set(second)
    assert len(first) + len(second) == len(ids)
    assert set(first) | set(second) == set(ids)
    assert first and second, "both workers took a share"
    assert workers[0].counts() == {("chain-a->chain-b", State.ATTESTED): 300}


def test_two_processes_moving_the_same_messages_at_once_move_each_once(
    workers: tuple[PostgresLedger, PostgresLedger],
) -> None:
    ids = verified(workers[0], 60)
    start = threading.Barrier(2)
    moved: list[bytes] = []
    errors: list[BaseException] = []

    def work(led: PostgresLedger) -> None:
        try:
            start.wait()
            for message_id in ids:
                try:
                    led.mark_attested([(message_id, [SIG], None)])
                except StoreError as exc:
                    assert "expected verified" in str(exc)
                else:
                    moved.append(message_id)
        except BaseException as exc:  # noqa: BLE001 -- reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(led,)) for led in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # Each read-check-write is atomic across processes, as SQLite's BEGIN IMMEDIATE makes it.
    assert sorted(moved) == sorted(ids)
    for message_id in ids:
        steps = [(h.from_state, h.to_state) for h in workers[0].history(message_id)]
        assert steps.count((State.VERIFIED, State.ATTESTED)) == 1


def test_a_claimed_message_is_not_given_to_another_worker_until_its_lease_runs_out(
    workers: tuple[PostgresLedger, PostgresLedger], clock: FakeClock
) -> None:
    a, b = workers
    ids = verified(a, 5)
    assert [r.id for r in a.claim(State.VERIFIED, owner="a", lease=LEASE)] == ids
    assert b.claim(State.VERIFIED, owner="b", lease=LEASE) == []
    # The holder is given its own messages again, as ``due`` would.
    assert len(a.claim(State.VERIFIED, owner="a", lease=LEASE)) == 5

    clock.advance(LEASE + 1)  # a died: nobody renews
    taken = b.claim(State.VERIFIED, owner="b", lease=LEASE)
    assert [r.id for r in taken] == ids
    lease = b.lease(ids[0])
    assert lease is not None
    assert (lease.owner, lease.until) == ("b", clock.now + LEASE)
    # a, back from the dead, finds it lost them.
    assert a.renew(ids, owner="a", lease=LEASE) == set()
    assert a.claim(State.VERIFIED, owner="a", lease=LEASE) == []


def test_a_lease_renewed_while_work_is_in_flight_is_kept(
    workers: tuple[PostgresLedger, PostgresLedger], clock: FakeClock
) -> None:
    a, b = workers
    ids = verified(a, 3)
    a.claim(State.VERIFIED, owner="a", lease=LEASE)
    for _ in range(3):
        clock.advance(LEASE - 5)
        assert a.renew([*ids, b"\x00" * 32], owner="a", lease=LEASE) == set(ids)
        assert b.claim(State.VERIFIED, owner="b", lease=LEASE) == []
    clock.advance(LEASE)
    assert b.renew(ids, owner="b", lease=LEASE) == set(), "renew never takes a lease"
    assert len(b.claim(State.VERIFIED, owner="b", lease=LEASE)) == 3


def test_a_transition_ends_the_lease_and_a_submission_keeps_it(
    workers: tuple[PostgresLedger, PostgresLedger], clock: FakeClock
) -> None:
    a, b = workers
    ids = verified(a, 4)
    a.claim(State.VERIFIED, owner="a", lease=LEASE)
    a.mark_attested([(i, [SIG], None) for i in ids])
    assert all(a.lease(i) is None for i in ids)
    # The next step is anyone's.
    assert [r.id for r in b.claim(State.ATTESTED, owner="b", lease=LEASE)] == ids

    # Into a transaction, and into its fee-bumped replacement: still b's, it watches the tx.
    b.mark_submitted(ids, tx_hash=b"\x01" * 32, tx_nonce=1, raw_tx=b"one")
    b.mark_submitted(ids, tx_hash=b"\x02" * 32, tx_nonce=1, raw_tx=b"two")
    assert {b.lease(i).owner for i in ids} == {"b"}  # type: ignore[union-attr]
    # Out of it: delivered, or back to attested with a retry counted, the lease ends.
    b.transition_many(ids[:2], State.DELIVERED, expect=State.SUBMITTED)
    b.schedule_retry(ids[2], error="dropped", delay=0, to=State.ATTESTED)
    b.transition(ids[3], State.ATTESTED, clear_tx=True)
    assert all(b.lease(i) is None for i in ids)
    assert [r.id for r in a.claim(State.ATTESTED, owner="a", lease=LEASE)] == ids[2:]


def test_a_worker_whose_lease_ran_out_cannot_record_its_transaction(
    workers: tuple[PostgresLedger, PostgresLedger], clock: FakeClock
) -> None:
    a, b = workers
    ids = verified(a, 3)
    a.mark_attested([(i, [SIG], None) for i in ids])
    a.claim(State.ATTESTED, owner="a", lease=LEASE)
    clock.advance(LEASE + 1)  # a stalls (signing, a slow endpoint) past its lease
    assert len(b.claim(State.ATTESTED, owner="b", lease=LEASE)) == 3

    with pytest.raises(LeaseLostError, match=r"no longer leased to `a` \(held by `b` now\)"):
        a.mark_submitted(ids, tx_hash=b"\x01" * 32, tx_nonce=1, raw_tx=b"a's", owner="a")
    assert a.pending_txs("chain-b") == []
    assert {r.state for r in a.in_state(State.ATTESTED)} == {State.ATTESTED}
    assert len(a.in_state(State.ATTESTED)) == 3

    b.mark_submitted_many(
        [SubmittedTx(ids=tuple(ids), tx_hash=b"\x02" * 32, tx_nonce=1, raw_tx=b"b's")], owner="b"
    )
    assert [t.raw_tx for t in b.pending_txs("chain-b")] == [b"b's"]
    # A message nobody holds cannot be recorded by a worker that says it holds it either.
    b.transition(ids[0], State.ATTESTED, clear_tx=True)
    with pytest.raises(LeaseLostError, match="held by nobody"):
        b.mark_submitted(ids[:1], tx_hash=b"\x03" * 32, tx_nonce=2, raw_tx=b"3", owner="b")


def test_a_released_message_is_taken_at_once_and_only_the_owner_can_release(
    workers: tuple[PostgresLedger, PostgresLedger],
) -> None:
    a, b = workers
    ids = verified(a, 4)
    a.claim(State.VERIFIED, owner="a", lease=LEASE)
    b.release(ids, owner="b")  # not b's: nothing happens
    assert b.claim(State.VERIFIED, owner="b", lease=LEASE) == []
    a.release(ids[:2], owner="a")
    assert [r.id for r in b.claim(State.VERIFIED, owner="b", lease=LEASE)] == ids[:2]


def test_claims_filter_by_chain_and_limit_and_keep_the_due_order(
    workers: tuple[PostgresLedger, PostgresLedger], clock: FakeClock
) -> None:
    a, _ = workers
    ids = verified(a, 6)
    a.postpone(ids[:2], delay=10, state=State.VERIFIED)
    assert a.claim(State.VERIFIED, owner="a", lease=LEASE, destination_chain="chain-z") == []
    assert [r.id for r in a.claim(State.VERIFIED, owner="a", lease=LEASE, limit=3)] == ids[2:5]
    clock.advance(11)
    got = a.claim(State.VERIFIED, owner="a", lease=LEASE, origin_chain="chain-a")
    assert [r.id for r in got] == [r.id for r in a.due(State.VERIFIED)] == [*ids[2:], *ids[:2]]
    with pytest.raises(StoreError, match="more than 0 seconds"):
        a.claim(State.VERIFIED, owner="a", lease=0)


# A worker process that claims every due message for a short lease, says so, and hangs.
_DYING_WORKER = textwrap.dedent(
    """
    import sys, time
    from relayer.store import Ledger, State
    led = Ledger.open(sys.argv[1])
    got = led.claim(State.VERIFIED, owner="doomed", lease=float(sys.argv[2]))
    print(len(got), flush=True)
    time.sleep(600)
    """
)


def test_a_killed_workers_messages_are_taken_over_when_its_leases_run_out(
    postgres_url: str,
) -> None:
    lease = 1.0
    with Ledger.open(postgres_url) as led:
        ids = verified(led, 20)
        child = subprocess.Popen(
            [sys.executable, "-c", _DYING_WORKER, postgres_url, str(lease)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "20"
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
            killed_at = time.time()
            owner = new_owner()
            taken = led.claim(State.VERIFIED, owner=owner, lease=LEASE)
            assert taken == [], "the dead worker's leases still hold"
            deadline = killed_at + lease + 10
            while not taken and time.time() < deadline:
                time.sleep(0.05)  # waiting for a lease to run out is waiting for the clock
                taken = led.claim(State.VERIFIED, owner=owner, lease=LEASE)
            assert [r.id for r in taken] == ids
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=10)
            if child.stdout is not None:
                child.stdout.close()


def test_sqlite_grants_every_claim_to_its_one_process(tmp_path: Path, clock: FakeClock) -> None:
    with Ledger.open(tmp_path / "ledger.db", clock=clock) as led:
        ids = verified(led, 3)
        assert led.claim(State.VERIFIED, owner="a", lease=LEASE) == led.due(State.VERIFIED)
        assert [r.id for r in led.claim(State.VERIFIED, owner="b", lease=LEASE)] == ids
        assert led.renew(ids, owner="a", lease=LEASE) == set(ids)
        led.release(ids, owner="a")
        led.mark_attested([(i, [SIG], None) for i in ids])
        tx = SubmittedTx(ids=tuple(ids), tx_hash=b"\x01" * 32, tx_nonce=1, raw_tx=b"r")
        assert led.mark_submitted_many([tx], owner="anyone") == 3
        with pytest.raises(StoreError, match="more than 0 seconds"):
            led.claim(State.VERIFIED, owner="a", lease=-1)


# --- schema and engine selection -----------------------------------------------------------------


def schema_version(url: str) -> int:
    with psycopg.connect(url) as conn:
        found = conn.execute("SELECT version FROM ledger_schema").fetchone()
    assert found is not None
    return int(found[0])


def test_migrations_run_from_empty_and_again_change_nothing(postgres_url: str) -> None:
    with Ledger.open(postgres_url) as led:
        verified(led, 2)
    assert schema_version(postgres_url) == SCHEMA_VERSION
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert migrate(conn, where="test") == SCHEMA_VERSION
        tables = {
            name
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
    assert tables == {
        "messages",
        "history",
        "cursors",
        "blocks",
        "nonces",
        "pending_txs",
        "evidence",
        "block_evidence",
        "light_clients",
        "route_pauses",
        "fees_paid",
        "ledger_schema",
    }
    with Ledger.open(postgres_url) as led:
        assert led.counts() == {("chain-a->chain-b", State.VERIFIED): 2}


def test_processes_starting_together_on_an_empty_database_migrate_it_once(
    postgres_url: str,
) -> None:
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            start.wait()
            Ledger.open(postgres_url).close()
        except BaseException as exc:  # noqa: BLE001 -- reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert schema_version(postgres_url) == SCHEMA_VERSION


def test_a_ledger_from_a_newer_relayer_is_refused(postgres_url: str) -> None:
    Ledger.open(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("UPDATE ledger_schema SET version = 99")
    with pytest.raises(StoreError, match=r"schema version 99 .* upgrade the relayer"):
        Ledger.open(postgres_url)


def test_an_unreachable_database_is_reported_without_its_password() -> None:
    url = f"postgresql://relayer:s3cret-pw@127.0.0.1:{free_port()}/ledger"
    with pytest.raises(LedgerUnavailableError) as caught:
        Ledger.open(url, busy_timeout=1)
    assert caught.value.retryable
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert f"postgresql://{url.split('@', 1)[1]}" in message
    assert "check that Postgres runs there" in message


def test_open_selects_the_engine_from_the_target(postgres_url: str, tmp_path: Path) -> None:
    with Ledger.open(postgres_url) as led:
        assert isinstance(led, PostgresLedger)
        assert led.shared
        # Where it is, for operators' messages: without the user (nor a password).
        host, database = postgres_url.split("@", 1)[1].split("/")
        assert led.path == f"postgresql://{host}/{database}"
    with Ledger.open(tmp_path / "ledger.db") as led:
        assert not isinstance(led, PostgresLedger)
        assert not led.shared


def test_a_closed_postgres_ledger_refuses_work(postgres_url: str) -> None:
    led = Ledger.open(postgres_url)
    led.close()
    led.close()
    with pytest.raises(StoreError, match="closed"):
        led.get(mid(1))


# --- the harness ---------------------------------------------------------------------------------


def test_missing_postgres_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Loaded as a plugin (pytest_plugins): imported here, not at the top, where importing it
    # first would keep pytest from rewriting its asserts.
    harness = importlib.import_module("tests.integration.postgres")
    monkeypatch.setattr(harness, "_DEBIAN_ROOT", tmp_path / "no-postgres-here")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="postgresql not found"):
        harness.start_postgres()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="run scripts/services"):
        harness.start_postgres()


# --- signers -------------------------------------------------------------------------------------

SIGNER = b"\xaa" * 20


def test_a_second_worker_with_the_same_key_on_a_chain_is_refused_until_the_first_stops(
    workers: tuple[PostgresLedger, ...],
) -> None:
    a, b = workers
    held = a.hold_signer("chain-b", SIGNER, owner="delivery:chain-b@host-a:11:0001")
    with pytest.raises(SignerTakenError) as refused:
        b.hold_signer("chain-b", SIGNER, owner="delivery:chain-b@host-b:22:0002")
    message = str(refused.value)
    assert f"signer 0x{SIGNER.hex()} already delivers to chain-b" in message
    assert "delivery:chain-b@host-a:11:0001" in message  # who holds it
    assert "give each worker its own key" in message
    assert not refused.value.retryable
    # Another key on the chain, or the key on another chain: no conflict.
    others = [
        b.hold_signer("chain-b", b"\xbb" * 20, owner="x"),
        b.hold_signer("chain-c", SIGNER, owner="x"),
    ]
    held.release()
    held.release()  # idempotent
    b.hold_signer("chain-b", SIGNER, owner="delivery:chain-b@host-b:22:0002").release()
    for hold in others:
        hold.release()


def test_a_killed_holders_key_is_free_again(postgres_url: str) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from relayer.store import Ledger
        led = Ledger.open({postgres_url!r})
        hold = led.hold_signer("chain-b", {SIGNER!r}, owner="doomed")
        print("held", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        with Ledger.open(postgres_url) as led, pytest.raises(SignerTakenError, match="doomed"):
            led.hold_signer("chain-b", SIGNER, owner="next")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        with Ledger.open(postgres_url) as led:
            deadline = time.monotonic() + 10
            while True:  # the server notices the dead session's socket close at once, or soon
                try:
                    led.hold_signer("chain-b", SIGNER, owner="next").release()
                    break
                except SignerTakenError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_restarted_worker_adopts_the_submitted_messages_of_its_key(
    workers: tuple[PostgresLedger, ...], clock: FakeClock
) -> None:
    a, b = workers
    ids = verified(a, 3)
    a.mark_attested([(i, [SIG], None) for i in ids])
    dead, restarted = new_owner("dead"), new_owner("restarted")
    assert {r.id for r in a.claim(State.ATTESTED, owner=dead, lease=LEASE)} == set(ids)
    a.mark_submitted(ids[:2], tx_hash=b"t" * 32, tx_nonce=0, raw_tx=b"r", owner=dead)
    # Still leased to the dead worker: nobody's claim takes them for LEASE seconds ...
    assert b.claim(State.SUBMITTED, owner=restarted, lease=LEASE) == []
    # ... but the worker that holds the key again takes back what is still submitted.
    assert b.adopt(ids, owner=restarted, lease=LEASE) == set(ids[:2])
    assert {b.lease(i).owner for i in ids[:2]} == {restarted}  # type: ignore[union-attr]
    assert b.renew(ids[:2], owner=restarted, lease=LEASE) == set(ids[:2])
    assert a.renew(ids[:2], owner=dead, lease=LEASE) == set()
    with pytest.raises(LeaseLostError):
        a.mark_submitted(ids[:2], tx_hash=b"u" * 32, tx_nonce=0, raw_tx=b"r", owner=dead)


def test_a_v1_ledger_gains_the_signer_column_with_its_rows_unknown(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "CREATE TABLE ledger_schema (only_row BOOLEAN PRIMARY KEY DEFAULT TRUE"
            " CHECK (only_row), version INTEGER NOT NULL)"
        )
        for statement in MIGRATIONS[0]:  # V1 exactly as released
            conn.execute(statement)
        conn.execute("INSERT INTO ledger_schema (version) VALUES (1)")
        conn.execute(
            "INSERT INTO pending_txs (destination_chain, tx_hash, tx_nonce, raw_tx,"
            " created_at) VALUES ('chain-b', %s, 4, %s, 0)",
            (b"t" * 32, b"raw"),
        )
    with Ledger.open(postgres_url):
        pass
    assert schema_version(postgres_url) == SCHEMA_VERSION
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT tx_nonce, signer FROM pending_txs").fetchall() == [(4, None)]


# --- orphaned messages (SQLite's own are in tests/unit/relayer/test_ledger_orphans.py) ------------

REORG = "a reorg beyond finality on chain-a replaced the blocks above 9"


def test_orphaning_an_attested_message_ends_its_claim(
    workers: tuple[PostgresLedger, PostgresLedger],
) -> None:
    a, b = workers
    ids = verified(a, 4)  # all in block 10
    a.mark_attested([(i, [SIG], None) for i in ids])
    assert len(a.claim(State.ATTESTED, owner="a", lease=LEASE)) == 4
    a.mark_submitted(ids[:1], tx_hash=b"\x01" * 32, tx_nonce=1, raw_tx=b"one", owner="a")

    # Another process (the watcher) finds the reorg while worker a is signing the rest.
    assert b.orphan_above("chain-a", 9, reason=REORG) == ids[1:]

    assert all(a.lease(i) is None for i in ids[1:])
    with pytest.raises(LeaseLostError, match="held by nobody"):
        a.mark_submitted(ids[1:], tx_hash=b"\x02" * 32, tx_nonce=2, raw_tx=b"two", owner="a")
    assert a.pending_txs("chain-b")[0].tx_hash == b"\x01" * 32
    # The one in a transaction keeps its state and its submitter.
    lease = a.lease(ids[0])
    assert lease is not None and lease.owner == "a"
    assert a.states(ids) == {ids[0]: State.SUBMITTED} | {i: State.ORPHANED for i in ids[1:]}
    assert b.claim(State.ATTESTED, owner="b", lease=LEASE) == []


def test_a_watcher_orphaning_while_workers_claim_leaves_each_message_in_one_place(
    workers: tuple[PostgresLedger, PostgresLedger],
) -> None:
    a, b = workers
    count = 200
    a.record_observed_many([row(n, block=10 + n % 2) for n in range(count)], [None] * count)
    ids = [mid(n) for n in range(count)]
    start = threading.Barrier(2)
    claimed: list[bytes] = []
    orphaned: list[bytes] = []
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            start.wait()
            while batch := a.claim(State.VERIFIED, owner="a", lease=LEASE, limit=5):
                try:
                    a.mark_attested([(r.id, [SIG], None) for r in batch])
                except StoreError as exc:  # orphaned meanwhile
                    assert "expected verified" in str(exc)
                    a.release([r.id for r in batch], owner="a")
                    continue
                claimed.extend(r.id for r in batch)
        except BaseException as exc:  # noqa: BLE001 -- reported to the main thread
            errors.append(exc)

    def orphan() -> None:
        try:
            start.wait()
            time.sleep(0.02)
            orphaned.extend(b.orphan_above("chain-a", 10, reason=REORG))
        except BaseException as exc:  # noqa: BLE001 -- reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=claim), threading.Thread(target=orphan)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    states = a.states(ids)
    above = {mid(n) for n in range(count) if n % 2}
    # Above the fork everything is orphaned, attested before the reorg was found or not; below
    # it everything was claimed and attested, once.
    assert set(orphaned) == above
    assert {i for i, s in states.items() if s is State.ORPHANED} == above
    assert {i for i, s in states.items() if s is State.ATTESTED} == set(ids) - above
    assert set(ids) - above <= set(claimed)
    assert len(claimed) == len(set(claimed))
    for message_id in ids:
        steps = [h.to_state for h in a.history(message_id)]
        assert steps.count(State.ATTESTED) <= 1
        assert steps[-1] is states[message_id]


def test_a_v2_ledger_admits_orphaned_messages_and_keeps_everything(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "CREATE TABLE ledger_schema (only_row BOOLEAN PRIMARY KEY DEFAULT TRUE"
            " CHECK (only_row), version INTEGER NOT NULL)"
        )
        for statement in (s for migration in MIGRATIONS[:2] for s in migration):
            conn.execute(statement)  # V1 and V2 exactly as released
        conn.execute("INSERT INTO ledger_schema (version) VALUES (2)")
        for n, state in enumerate(["verified", "delivered", "rejected", "attested"]):
            conn.execute(
                "INSERT INTO messages (id, origin_chain, destination_chain, route, nonce,"
                " message, block_number, block_hash, state, next_attempt_at, created_at,"
                " updated_at, lease_owner, lease_until) VALUES (%s, 'chain-a', 'chain-b',"
                " 'chain-a->chain-b', %s, %s, 12, %s, %s, 0, 0, 5, %s, %s)",
                (
                    mid(n),
                    n,
                    b"m",
                    bhash(12),
                    state,
                    "w" if state == "attested" else None,
                    9e9 if state == "attested" else None,
                ),
            )
            conn.execute(
                "INSERT INTO history (message_id, at, from_state, to_state)"
                " VALUES (%s, 0, NULL, 'observed')",
                (mid(n),),
            )
            conn.execute(
                "INSERT INTO evidence (message_id, evidence) VALUES (%s, %s)", (mid(n), b"ev")
            )

    with Ledger.open(postgres_url, clock=FakeClock()) as led:
        assert schema_version(postgres_url) == SCHEMA_VERSION >= 3
        assert {m: len(led.history(m)) for m in map(mid, range(4))} == dict.fromkeys(
            map(mid, range(4)), 1
        )
        assert all(led.evidence(m) == b"ev" for m in map(mid, range(4)))
        assert led.orphan_above("chain-a", 11, reason=REORG) == [mid(0), mid(3)]
        assert led.lease(mid(3)) is None, "the claim went with the step"
        assert led.prune(2_000.0).messages == 4, "delivered, rejected and orphaned are final"
        assert led.pause_route("chain-a->chain-b", reason="r", by="b")

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        (check,) = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'messages'::regclass AND conname = 'messages_state_check'"
        ).fetchone() or ("",)
        assert "'orphaned'" in check
        (index,) = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'messages_final_by_age'"
        ).fetchone() or ("",)
        assert "'delivered'" in index and "'rejected'" in index and "'orphaned'" in index
        with pytest.raises(psycopg.errors.CheckViolation, match="messages_state_check"):
            conn.execute(
                "INSERT INTO messages (id, origin_chain, destination_chain, route, nonce,"
                " message, block_number, block_hash, state, next_attempt_at, created_at,"
                " updated_at) VALUES (%s, 'a', 'b', 'a->b', 1, '', 1, '', 'lost', 0, 0, 0)",
                (mid(9),),
            )


# --- route pauses between processes (both engines: tests/unit/relayer/test_route_pauses.py) -------


def test_a_route_paused_by_one_process_is_skipped_by_every_other(
    workers: tuple[PostgresLedger, PostgresLedger], clock: FakeClock
) -> None:
    a, b = workers
    a.record_observed_many(
        [row(0), row(1, destination="chain-d"), row(2), row(3, destination="chain-d")],
        [None] * 4,
    )
    assert a.pause_route("chain-a->chain-b", reason="breaker: 5 reverts", by="worker-a")
    assert not b.pause_route("chain-a->chain-b", reason="breaker: 6 reverts", by="worker-b")

    paused = b.paused_routes()
    assert paused["chain-a->chain-b"].paused_by == "worker-a"
    got = b.claim(State.VERIFIED, owner="b", lease=LEASE, skip_routes=paused.keys())
    assert [r.id for r in got] == [mid(1), mid(3)]
    # What b passed over it did not lease: anyone who does not skip the route may take it.
    assert b.lease(mid(0)) is None
    assert [r.id for r in a.claim(State.VERIFIED, owner="a", lease=LEASE)] == [mid(0), mid(2)]

    resumed = b.resume_route("chain-a->chain-b")
    assert resumed is not None and resumed.reason == "breaker: 5 reverts"
    assert a.paused_routes() == {}


# --- fees paid, shared (both engines: tests/unit/relayer/test_ledger_fees.py) --------------------


def test_a_fee_one_process_recorded_is_what_the_next_holder_of_the_key_counts(
    workers: tuple[PostgresLedger, PostgresLedger], clock: FakeClock
) -> None:
    a, b = workers
    key = b"\x0a" * 20
    assert a.record_fee("chain-b", key, 2**70, tx_hash=b"\x01" * 32)
    clock.advance(30)
    # The worker that holds the key now (after a restart, or on another host) sees it, and a
    # settle it replays for the same transaction does not count it twice.
    assert not b.record_fee("chain-b", key, 2**70, tx_hash=b"\x01" * 32)
    assert b.record_fee("chain-b", key, 5, tx_hash=b"\x02" * 32)
    assert a.fees_since("chain-b", key, 0.0) == [(1_000.0, 2**70), (1_030.0, 5)]
    assert b.fees_since("chain-b", key, 1_000.0) == [(1_030.0, 5)]


def test_a_v3_ledger_gains_the_fees_table_and_keeps_everything(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "CREATE TABLE ledger_schema (only_row BOOLEAN PRIMARY KEY DEFAULT TRUE"
            " CHECK (only_row), version INTEGER NOT NULL)"
        )
        for statement in (s for migration in MIGRATIONS[:3] for s in migration):
            conn.execute(statement)  # V1 to V3 exactly as released
        conn.execute("INSERT INTO ledger_schema (version) VALUES (3)")
        conn.execute(
            "INSERT INTO route_pauses (route, reason, paused_at, paused_by)"
            " VALUES ('chain-a->chain-b', 'r', 1, 'b')"
        )

    with Ledger.open(postgres_url, clock=FakeClock()) as led:
        assert schema_version(postgres_url) == SCHEMA_VERSION == 4
        assert led.paused_routes()["chain-a->chain-b"].reason == "r"
        assert led.fees_since("chain-b", b"\x0a" * 20, 0.0) == []
        assert led.record_fee("chain-b", b"\x0a" * 20, 2**255, tx_hash=b"\x01" * 32)
        assert led.fees_since("chain-b", b"\x0a" * 20, 0.0) == [(1_000.0, 2**255)]

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        (kind,) = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'fees_paid'::regclass AND attname = 'fee'"
        ).fetchone() or ("",)
        assert kind == "numeric(78,0)", "exact, and room for any 256-bit amount"
        with pytest.raises(psycopg.errors.CheckViolation, match="fees_paid_fee_check"):
            conn.execute(
                "INSERT INTO fees_paid (chain, tx_hash, signer, paid_at, fee)"
                " VALUES ('chain-b', '\\x02', '\\x0a', 0, 0)"
            )
        indexes = {
            name
            for (name,) in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'fees_paid'"
            )
        }
        assert {"fees_paid_by_signer", "fees_paid_by_age"} <= indexes
