"""relayer.delivery with several workers on one ledger: leases kept and lost, a stopped worker's
transactions taken over, each worker recovering only what its own key signed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from relayer.delivery import DeliveryWorker
from relayer.plugin import BroadcastResult, DeliveryOutcome
from relayer.store import Ledger, State
from tests.unit.relayer.test_delivery_recovery import (
    SETTINGS,
    FakePending,
    FakeSubmitter,
    QuietLog,
    attested,
    tx,
)
from tests.unit.relayer.test_ledger import FakeClock

# The fixtures postgres_url, postgres_cluster.
pytest_plugins = ["tests.integration.postgres"]

OURS = b"\x0a" * 20
THEIRS = b"\x0b" * 20
LEASE = 30.0


class Log(QuietLog):
    def error(self, event: str, **_: object) -> None:
        self.events.append(event)

    def debug(self, event: str, **_: object) -> None:
        self.events.append(event)


class Destination(FakeSubmitter):
    """A destination where nothing is mined unless ``mined`` says, and ``delivered`` says
    which messages the gateway holds as delivered."""

    def __init__(self, delivered: frozenset[bytes] = frozenset()) -> None:
        super().__init__()
        self.delivered = delivered
        self.mined: set[bytes] = set()

    async def delivered_flags(self, ids: Sequence[bytes]) -> list[bool]:
        return [i in self.delivered for i in ids]

    async def outcome(self, pending: FakePending) -> list[DeliveryOutcome] | None:
        if pending.tx_hash not in self.mined:
            return None
        return [
            DeliveryOutcome(message_id=i, delivered=True, tx_hash=pending.tx_hash)
            for i in pending.message_ids
        ]

    async def broadcast(self, pending: FakePending) -> BroadcastResult:
        self.broadcasts.append(pending.tx_hash)
        return BroadcastResult.ACCEPTED


def worker(led: Ledger, submitter: Destination, log: Log | None = None) -> DeliveryWorker:
    return DeliveryWorker(
        chain="chain-b",
        submitter=submitter,  # type: ignore[arg-type]
        ledger=led,
        log=log or Log(),
        settings=SETTINGS,
        lease=LEASE,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def shared(postgres_url: str, clock: FakeClock) -> Iterator[tuple[Ledger, Ledger]]:
    """Two workers' connections to one Postgres ledger, on one clock."""
    a, b = Ledger.open(postgres_url, clock=clock), Ledger.open(postgres_url, clock=clock)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def submitted_by_a_worker_that_stopped(
    led: Ledger, clock: FakeClock, ids: list[bytes], nonce: int = 0
) -> FakePending:
    """``ids`` in a transaction signed by THEIRS, whose worker's lease then ran out."""
    led.claim(State.ATTESTED, owner="gone", lease=LEASE, destination_chain="chain-b")
    pending = FakePending(nonce=nonce, tx_hash=tx(f"theirs {nonce}"), message_ids=tuple(ids))
    led.mark_submitted(
        ids,
        tx_hash=pending.tx_hash,
        tx_nonce=nonce,
        raw_tx=pending.encode(),
        owner="gone",
        signer=THEIRS,
    )
    clock.advance(LEASE + 1)
    return pending


async def test_a_stopped_workers_unmined_transaction_is_sent_once_then_its_messages_requeued(
    shared: tuple[Ledger, Ledger], clock: FakeClock
) -> None:
    led, _ = shared
    ids = attested(led, range(3))
    theirs = submitted_by_a_worker_that_stopped(led, clock, ids)
    destination = Destination()
    w = worker(led, destination)
    w.submit_timeout = 0.05

    await w._take_over()
    await w._take_over()  # a second pass does not take (or send) it again
    assert destination.broadcasts == [theirs.tx_hash]
    assert set(w.taken_over[theirs.tx_hash].ids) == set(ids)
    await w._check_taken_over()
    assert led.states(ids) == dict.fromkeys(ids, State.SUBMITTED)  # not timed out yet

    await asyncio.sleep(0.1)
    await w._check_taken_over()
    assert w.taken_over == {}
    records = [led.get(i) for i in ids]
    assert [r.state for r in records if r] == [State.ATTESTED] * 3
    assert all(r.attempts == 1 and r.next_attempt_at <= clock() for r in records if r)
    # Free for whichever worker claims first, and sent with that worker's own key.
    assert all(led.lease(i) is None for i in ids)  # type: ignore[attr-defined]
    assert destination.broadcasts == [theirs.tx_hash]


async def test_a_stopped_workers_messages_found_delivered_are_settled_without_a_send(
    shared: tuple[Ledger, Ledger], clock: FakeClock
) -> None:
    led, _ = shared
    ids = attested(led, range(3))
    submitted_by_a_worker_that_stopped(led, clock, ids)
    destination = Destination(delivered=frozenset(ids[:2]))
    w = worker(led, destination)

    await w._take_over()
    assert led.states(ids[:2]) == dict.fromkeys(ids[:2], State.DELIVERED)
    destination.mined.add(tx("theirs 0"))  # the resent transaction is mined
    await w._check_taken_over()
    assert led.states(ids) == dict.fromkeys(ids, State.DELIVERED)


async def test_messages_leased_to_a_live_worker_are_not_taken_over(
    shared: tuple[Ledger, Ledger], clock: FakeClock
) -> None:
    a, b = shared
    ids = attested(a, range(2))
    a.claim(State.ATTESTED, owner="alive", lease=LEASE)
    a.mark_submitted(ids, tx_hash=tx(1), tx_nonce=1, raw_tx=b"x", owner="alive", signer=THEIRS)
    clock.advance(LEASE / 2)
    destination = Destination()
    w = worker(b, destination)
    await w._take_over()
    assert w.taken_over == {}
    assert destination.broadcasts == []


async def test_a_worker_whose_lease_ran_out_stops_watching_and_settling_those_messages(
    shared: tuple[Ledger, Ledger], clock: FakeClock
) -> None:
    a, b = shared
    ids = attested(a, range(4))
    destination = Destination()
    log = Log()
    slow = worker(a, destination, log)
    [claimed] = [await slow._db(a.claim, State.ATTESTED, owner=slow.owner, lease=LEASE)]
    assert len(claimed) == 4
    ours = FakePending(nonce=5, tx_hash=tx("ours"), message_ids=tuple(ids[:2]))
    kept = FakePending(nonce=6, tx_hash=tx("kept"), message_ids=tuple(ids[2:]))
    for pending in (ours, kept):
        a.mark_submitted(
            pending.message_ids,
            tx_hash=pending.tx_hash,
            tx_nonce=pending.nonce,
            raw_tx=pending.encode(),
            owner=slow.owner,
            signer=OURS,
        )
        slow.in_flight[pending.nonce] = pending  # type: ignore[assignment]
    # The worker stalls past the leases of all but one message (renewed just before), and
    # another worker takes those over.
    clock.advance(LEASE / 2)
    assert a.renew([ids[2]], owner=slow.owner, lease=LEASE) == {ids[2]}
    clock.advance(LEASE / 2 + 1)
    taker = worker(b, destination)
    await taker._take_over()
    assert set(taker.taken_over) == {ours.tx_hash, kept.tx_hash}

    await slow._renew()
    assert "lease.lost" in log.events
    # A transaction of lost messages only is watched no more; one still carrying a held
    # message is, but settles only that one: the taker settles the rest.
    assert set(slow.in_flight) == {kept.nonce}
    destination.mined.add(kept.tx_hash)
    await slow._settle(kept, (await destination.outcome(kept)) or [])  # type: ignore[arg-type]
    assert a.states(ids[2:]) == {ids[2]: State.DELIVERED, ids[3]: State.SUBMITTED}
    await taker._check_taken_over()
    assert a.states(ids[2:]) == {ids[2]: State.DELIVERED, ids[3]: State.DELIVERED}


async def test_a_restart_resumes_only_its_own_keys_transactions(tmp_path: Path) -> None:
    """On SQLite (one worker per chain): its key's and unknown-signer transactions are
    resumed; another key's (the operator changed keys) are watched as a stopped worker's."""
    with Ledger.open(tmp_path / "ledger.db") as led:
        ids = attested(led, range(6))
        for n, signer, message_ids in (
            (3, OURS, ids[:2]),
            (4, None, ids[2:4]),
            (9, THEIRS, ids[4:]),
        ):
            pending = FakePending(nonce=n, tx_hash=tx(n), message_ids=tuple(message_ids))
            led.mark_submitted(
                message_ids, tx_hash=tx(n), tx_nonce=n, raw_tx=pending.encode(), signer=signer
            )
        destination = Destination()
        w = worker(led, destination)
        await w._recover()

    assert set(w.in_flight) == {3, 4}
    assert destination.resynced_at_least == [5]  # not 10: nonce 9 is another key's
    assert set(w.taken_over) == {tx(9)}
    assert sorted(destination.broadcasts) == sorted([tx(9), tx(3), tx(4)])


class Stalled(Destination):
    """A destination whose simulations never answer (the worker is stopped meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.simulating = asyncio.Event()

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def simulate(self, deliveries: Sequence[object]) -> list[bool]:
        self.simulating.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_stopped_worker_gives_back_its_unsent_claims_and_its_key(
    shared: tuple[Ledger, Ledger],
) -> None:
    a, b = shared
    ids = attested(a, range(3))
    destination = Stalled()
    w = worker(a, destination)
    task = asyncio.create_task(w.run())
    await asyncio.wait_for(destination.simulating.wait(), timeout=10)
    assert {a.lease(i).owner for i in ids} == {w.owner}  # type: ignore[attr-defined]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Another worker need not wait for the leases to run out, and may use the key at once.
    assert all(a.lease(i) is None for i in ids)  # type: ignore[attr-defined]
    assert len(b.claim(State.ATTESTED, owner="next", lease=LEASE)) == 3
    b.hold_signer("chain-b", OURS, owner="next").release()
