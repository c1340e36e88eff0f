"""relayer.delivery: several batches checked at once, sent in nonce order; only failing items
are asked whether they were delivered already; the core's wake-up replaces the poll."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from relayer.delivery import DeliveryWorker
from relayer.errors import PermanentChainError, TransientChainError
from relayer.plugin import BroadcastResult, Delivery, DeliveryOutcome
from relayer.store import Ledger, State
from tests.unit.relayer.test_delivery_recovery import (
    SETTINGS,
    FakePending,
    QuietLog,
    attested,
    mid,
)


class LoudLog(QuietLog):
    def error(self, event: str, **_: Any) -> None:
        self.events.append(event)


class BatchSubmitter:
    """Simulations take a while (so overlapping ones show), everything else is instant."""

    endpoint = "http://fake"
    signer_address = b"\x0a" * 20

    def __init__(
        self,
        *,
        failing: frozenset[bytes] = frozenset(),
        delivered: frozenset[bytes] = frozenset(),
        broken: frozenset[bytes] = frozenset(),
    ) -> None:
        self.failing, self.delivered, self.broken = failing, delivered, broken
        self.running = 0
        self.most_at_once = 0
        self.asked_delivered: list[bytes] = []
        self.sent: list[FakePending] = []
        self.arrived: list[int] = []
        self.nonce = 0

    async def simulate(self, deliveries: Sequence[Delivery]) -> list[bool]:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(0.05)
        finally:
            self.running -= 1
        if any(d.message_id in self.broken for d in deliveries):
            raise PermanentChainError("execution reverted: InsufficientSignatures")
        return [
            d.message_id not in self.failing and d.message_id not in self.delivered
            for d in deliveries
        ]

    async def delivered_flags(self, ids: Sequence[bytes]) -> list[bool]:
        self.asked_delivered += ids
        return [i in self.delivered for i in ids]

    async def prepare(self, deliveries: Sequence[Delivery]) -> FakePending:
        pending = FakePending(
            nonce=self.nonce,
            tx_hash=self.nonce.to_bytes(32, "big"),
            message_ids=tuple(d.message_id for d in deliveries),
        )
        self.nonce += 1
        return pending

    async def broadcast(self, pending: FakePending) -> BroadcastResult:
        self.sent.append(pending)
        return BroadcastResult.ACCEPTED


def worker(led: Ledger, submitter: BatchSubmitter, **kw: Any) -> DeliveryWorker:
    return DeliveryWorker(
        chain="chain-b",
        submitter=submitter,  # type: ignore[arg-type]
        ledger=led,
        log=LoudLog(),
        settings=replace(SETTINGS, batch_size=10),
        **kw,
    )


async def submit(w: DeliveryWorker, led: Ledger) -> None:
    """One round of the submit loop, broadcasts (sent in the background) included."""
    try:
        await w._submit_batches(batches(led))
    finally:
        await w._drain()


def batches(led: Ledger, size: int = 10) -> list[list[Any]]:
    records = led.due(State.ATTESTED, destination_chain="chain-b", limit=1000)
    return [records[i : i + size] for i in range(0, len(records), size)]


async def test_batches_are_checked_together_and_sent_in_nonce_order(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.db") as led:
        ids = attested(led, range(30))
        submitter = BatchSubmitter()
        await submit(worker(led, submitter), led)
        assert submitter.most_at_once == 3
        assert [p.nonce for p in submitter.sent] == [0, 1, 2]
        assert [m for p in submitter.sent for m in p.message_ids] == ids
        # Every item simulated fine: nobody asked the chain what it delivered already.
        assert submitter.asked_delivered == []
        assert set(led.states(ids).values()) == {State.SUBMITTED}


async def test_only_items_failing_simulation_are_asked_whether_they_were_delivered(
    tmp_path: Path,
) -> None:
    with Ledger.open(tmp_path / "ledger.db") as led:
        ids = attested(led, range(10))
        submitter = BatchSubmitter(failing=frozenset({ids[3]}), delivered=frozenset({ids[7]}))
        await submit(worker(led, submitter), led)
        assert submitter.asked_delivered == [ids[3], ids[7]]
        states = led.states(ids)
        assert states[ids[7]] is State.DELIVERED
        failing = led.get(ids[3])
        assert failing is not None and failing.state is State.ATTESTED
        assert failing.attempts == 1 and "simulation" in (failing.last_error or "")
        (sent,) = submitter.sent
        assert set(sent.message_ids) == set(ids) - {ids[3], ids[7]}


async def test_a_batch_refused_for_good_is_set_aside_while_the_others_go_out(
    tmp_path: Path,
) -> None:
    with Ledger.open(tmp_path / "ledger.db") as led:
        ids = attested(led, range(30))
        # Its single-item re-simulation fails too: the whole batch is retried later.
        submitter = BatchSubmitter(broken=frozenset(ids[10:20]))
        await submit(worker(led, submitter), led)
        assert [p.message_ids for p in submitter.sent] == [tuple(ids[:10]), tuple(ids[20:])]
        for message_id in ids[10:20]:
            record = led.get(message_id)
            assert record is not None and record.state is State.ATTESTED
            assert record.attempts == 1


async def test_a_transient_failure_of_one_check_is_raised_after_the_rest_went_out(
    tmp_path: Path,
) -> None:
    class Flaky(BatchSubmitter):
        async def simulate(self, deliveries: Sequence[Delivery]) -> list[bool]:
            if deliveries[0].message_id == mid(0):
                raise TransientChainError("node busy")
            return await super().simulate(deliveries)

    with Ledger.open(tmp_path / "ledger.db") as led:
        ids = attested(led, range(20))
        submitter = Flaky()
        with pytest.raises(TransientChainError):
            await submit(worker(led, submitter), led)
        assert [p.message_ids for p in submitter.sent] == [tuple(ids[10:])]
        assert set(led.states(ids[:10]).values()) == {State.ATTESTED}


async def test_the_core_wakes_an_idle_worker_at_once(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.db") as led:
        wake = asyncio.Event()
        idle = worker(led, BatchSubmitter(), wake=wake, poll_interval=30.0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        loop.call_later(0.05, wake.set)
        await idle._idle()
        assert loop.time() - started < 5
        assert not wake.is_set()


async def test_broadcasts_do_not_hold_up_the_next_batch_and_failures_stay_unsent(
    tmp_path: Path,
) -> None:
    class SlowNode(BatchSubmitter):
        async def broadcast(self, pending: FakePending) -> BroadcastResult:
            self.arrived.append(pending.nonce)
            await asyncio.sleep(0.3)
            if pending.nonce == 1:
                raise TransientChainError("connection reset")
            return await super().broadcast(pending)

    with Ledger.open(tmp_path / "ledger.db") as led:
        attested(led, range(30))
        submitter = SlowNode()
        w = worker(led, submitter)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await w._submit_batches(batches(led))
        # Three broadcasts of 0.3 s each did not run one after the other before returning.
        assert loop.time() - started < 0.6
        assert sorted(w.in_flight) == [0, 1, 2]
        await w._drain()
        assert [p.nonce for p in submitter.sent] == [0, 2]
        # One at a time, in nonce order: a node never sees a later nonce first.
        assert submitter.arrived == [0, 1, 2]
        # The confirm loop sends nonce 1 again once the endpoint answers.
        assert w.unsent == {1}
        assert "submit.broadcast_failed" in w.log.events


def test_an_unmined_transaction_is_sent_again_soon_then_ever_less_often() -> None:
    from relayer.delivery import _RESEND_AFTER_MAX, _resend_after  # noqa: PLC0415

    waits = [_resend_after(n) for n in range(10)]
    assert waits[:4] == [1.5, 3.0, 6.0, 12.0]
    assert waits == sorted(waits)
    assert max(waits) == _resend_after(10_000) == _RESEND_AFTER_MAX


class ReorgingSubmitter(BatchSubmitter):
    """While the batches are simulated, an origin reorg sends one message back to OBSERVED."""

    def __init__(self, led: Ledger, moved: bytes, batches: int = 2) -> None:
        super().__init__()
        self.led, self.moved = led, moved
        self.released: list[int] = []
        # The simulations of one pass end together, so that their batches are signed as one
        # group (on a loaded machine one could otherwise end a loop turn before the other,
        # and its batch rightly go out alone).
        self._batches, self._arrived = batches, 0
        self._together = asyncio.Event()

    async def simulate(self, deliveries: Sequence[Delivery]) -> list[bool]:
        flags = await super().simulate(deliveries)
        self._arrived += 1
        if self._arrived % self._batches == 0:
            self._together.set()
        await self._together.wait()
        if self.led.states([self.moved])[self.moved] is State.ATTESTED:
            self.led.reobserve(self.moved, block_number=11, block_hash=b"\x0b" * 32, evidence=b"e")
        if self._arrived % self._batches == 0:
            self._together = asyncio.Event()  # the next pass waits for its own batches
        return flags

    def release_nonce(self, nonce: int) -> None:
        self.released.append(nonce)
        if self.nonce == nonce + 1:
            self.nonce = nonce


async def test_a_message_that_left_attested_meanwhile_costs_no_nonce_and_no_crash(
    tmp_path: Path,
) -> None:
    with Ledger.open(tmp_path / "ledger.db") as led:
        ids = attested(led, range(20))
        submitter = ReorgingSubmitter(led, ids[13])
        w = worker(led, submitter)
        await submit(w, led)
        assert submitter.sent == [], "nothing unrecorded is ever sent"
        assert submitter.released == [1, 0], "given back newest first"
        assert w.log.events == ["submit.record_refused"]  # type: ignore[attr-defined]
        assert set(led.states(ids).values()) == {State.ATTESTED, State.OBSERVED}
        # The next pass sends the messages still attested, from the same nonce.
        await submit(w, led)
        assert [p.nonce for p in submitter.sent] == [0, 1]
        assert sorted(m for p in submitter.sent for m in p.message_ids) == sorted(
            i for i in ids if i != ids[13]
        )


class FailingReplacement(BatchSubmitter):
    """Nothing is ever mined; the replacement of a stuck transaction cannot be sent."""

    def __init__(self) -> None:
        super().__init__()
        self.bumped: list[int] = []

    async def outcome(self, pending: FakePending) -> None:
        return None

    async def resync_nonce(self, at_least: int = 0) -> int:
        return max(at_least, 0)

    def bump(self, pending: FakePending) -> FakePending:
        self.bumped.append(pending.nonce)
        return FakePending(
            nonce=pending.nonce,
            tx_hash=b"\xbb" * 32,
            message_ids=pending.message_ids,
            signed_at=time.time(),
        )

    async def broadcast(self, pending: FakePending) -> BroadcastResult:
        if pending.tx_hash == b"\xbb" * 32:
            raise TransientChainError("connection reset while replacing")
        return await super().broadcast(pending)


async def test_a_replacement_that_cannot_be_sent_does_not_end_the_worker(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.db") as led:
        attested(led, range(5))
        submitter = FailingReplacement()
        w = worker(led, submitter, poll_interval=0.02)
        w.submit_timeout = 0.0  # every transaction is stuck at once
        await submit(w, led)
        confirm = asyncio.ensure_future(w._confirm_loop())
        try:
            await asyncio.sleep(0.3)
            assert not confirm.done(), "the confirm loop must survive a failed replacement"
        finally:
            confirm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await confirm
        assert submitter.bumped
        assert "submit.replace_failed" in w.log.events  # type: ignore[attr-defined]
        # The replacement is recorded: it goes to the node again once the endpoint answers.
        assert w.in_flight[0].tx_hash == b"\xbb" * 32
        assert 0 in w.unsent


async def test_settling_when_the_endpoint_cannot_say_what_was_delivered_requeues(
    tmp_path: Path,
) -> None:
    class Unreachable(BatchSubmitter):
        async def delivered_flags(self, ids: Sequence[bytes]) -> list[bool]:
            raise TransientChainError("connection refused")

    with Ledger.open(tmp_path / "ledger.db") as led:
        ids = attested(led, range(3))
        submitter = Unreachable()
        w = worker(led, submitter)
        await submit(w, led)
        pending = w.in_flight.pop(0)
        outcomes = [
            DeliveryOutcome(mid, delivered=False, tx_hash=b"\x01" * 32, error="skipped")
            for mid in pending.message_ids
        ]
        await w._settle(pending, outcomes)  # must not raise
        assert set(led.states(ids).values()) == {State.ATTESTED}
        assert "submit.settle_unknown" in w.log.events  # type: ignore[attr-defined]
