"""relayer.delivery with relayer.safety: a route's rate limit paces what is claimed (nothing is
lost), a paused route is not claimed, a spent fee budget stops new transactions, and a
transaction from our key that the worker did not sign pauses the routes into its chain."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import pytest

from relayer.delivery import DeliveryWorker
from relayer.errors import StoreError
from relayer.metrics import RelayerMetrics
from relayer.safety import FeeWindow, Safety
from relayer.store import Ledger, State
from tests.unit.relayer.test_delivery_batches import BatchSubmitter
from tests.unit.relayer.test_delivery_recovery import SETTINGS, attested
from tests.unit.relayer.test_safety import ROUTE, Clock, _config

OURS = BatchSubmitter.signer_address


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def bind(self, **_: Any) -> Log:
        return self

    def _add(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    info = warning = error = debug = _add

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for name, fields in self.events if name == event]


class NonceSubmitter(BatchSubmitter):
    """Also reads the account's nonce as the chain counts it (``ReadsAccountNonce``)."""

    unit = "wei"

    def __init__(self) -> None:
        super().__init__()
        self.on_chain = 0
        self.resynced: list[int] = []

    async def account_nonce(self) -> int:
        return self.on_chain

    async def resync_nonce(self, at_least: int = 0) -> int:
        self.resynced.append(at_least)
        self.nonce = max(self.on_chain, at_least)
        return self.nonce


class Setup:
    def __init__(self, tmp_path: Path, routes: str = "", **worker: Any) -> None:
        self.clock = Clock()
        self.config = _config(tmp_path, routes)
        self.ledger = Ledger.open(self.config.relayer.database)
        self.log = Log()
        self.safety = Safety(
            self.config,
            self.ledger,
            metrics=RelayerMetrics(),
            log=self.log,
            by="relayer@test",
            clock=self.clock,
        )
        self.submitter = NonceSubmitter()
        self.worker = DeliveryWorker(
            chain="chain-b",
            submitter=self.submitter,  # type: ignore[arg-type]
            ledger=self.ledger,
            log=self.log,
            settings=replace(SETTINGS, batch_size=10),
            poll_interval=0.02,
            safety=self.safety,
            **worker,
        )

    def sent(self) -> int:
        return sum(len(p.message_ids) for p in self.submitter.sent)

    @contextlib.asynccontextmanager
    async def submitting(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self.worker._submit_loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
def setups(tmp_path: Path) -> Iterator[Any]:
    made: list[Setup] = []

    def make(routes: str = "", **worker: Any) -> Setup:
        folder = tmp_path / str(len(made))
        folder.mkdir()
        setup = Setup(folder, routes, **worker)
        made.append(setup)
        return setup

    try:
        yield make
    finally:
        for setup in made:
            setup.ledger.close()


async def _until(check: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def test_a_rate_limit_paces_the_claims_and_loses_nothing(setups: Any) -> None:
    s = setups(f"\n[{ROUTE}]\nrate_limit = 1.0\nburst = 2\n")
    ids = attested(s.ledger, range(6))
    async with s.submitting():
        await _until(lambda: s.sent() == 2)
        await asyncio.sleep(0.2)
        assert s.sent() == 2, "the bucket is empty until the clock moves"
        s.clock.now += 1.0
        await _until(lambda: s.sent() == 3)
        s.clock.now += 10.0  # never more than the burst at once
        await _until(lambda: s.sent() == 5)
        await asyncio.sleep(0.2)
        assert s.sent() == 5
        s.clock.now += 1.0
        await _until(lambda: s.sent() == 6)
    sent = [mid for p in s.submitter.sent for mid in p.message_ids]
    assert sorted(sent) == sorted(ids), "each message once, in the end"
    assert all(state is State.SUBMITTED for state in s.ledger.states(ids).values())


async def test_a_paused_route_is_not_claimed_until_resumed(setups: Any) -> None:
    s = setups()
    attested(s.ledger, range(3))
    s.ledger.pause_route("chain-a->chain-b", reason="test", by="cli:test")
    await s.safety.refresh()
    async with s.submitting():
        await asyncio.sleep(0.2)
        assert s.sent() == 0
        s.ledger.resume_route("chain-a->chain-b")
        await s.safety.refresh()
        await _until(lambda: s.sent() == 3)


async def test_a_spent_fee_budget_stops_new_transactions_until_the_hour_has_room(
    setups: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("relayer.delivery._BUDGET_RECHECK", 0.02)
    clock = Clock()
    fees = FeeWindow(100, signer="0xabc", unit="wei", clock=clock)
    s = setups(fees=fees)
    fees.add(100)
    attested(s.ledger, range(3))
    async with s.submitting():
        await asyncio.sleep(0.2)
        assert s.sent() == 0
        (logged,) = s.log.named("fee_budget.exhausted")
        assert logged["resumes_in_s"] == 3600
        assert 'raise chains[name="chain-b"].fee_budget_per_hour' in logged["hint"]
        clock.now += 3600
        await _until(lambda: s.sent() == 3)
    assert len(s.log.named("fee_budget.recovered")) == 1


async def test_what_a_mined_transaction_cost_counts_against_the_budget(setups: Any) -> None:
    from relayer.plugin import DeliveryOutcome  # noqa: PLC0415
    from tests.unit.relayer.test_delivery_recovery import FakePending, mid  # noqa: PLC0415

    fees = FeeWindow(100, signer="0xabc", unit="wei")
    s = setups(fees=fees)
    ids = attested(s.ledger, range(1))
    pending = FakePending(nonce=0, tx_hash=b"\x01" * 32, message_ids=tuple(ids))
    s.ledger.mark_submitted(ids, tx_hash=pending.tx_hash, tx_nonce=0, raw_tx=pending.encode())
    outcome = DeliveryOutcome(message_id=mid(0), delivered=True, tx_hash=b"\x01" * 32, fee=70)
    await s.worker._settle(pending, [outcome])  # type: ignore[arg-type]
    assert fees.spent() == 70


class Restartable(NonceSubmitter):
    """What ``DeliveryWorker.run`` needs besides: start, close, and receipts (none mined)."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def decode_pending(self, raw: bytes) -> Any:
        from tests.unit.relayer.test_delivery_recovery import FakePending  # noqa: PLC0415

        return msgspec.msgpack.decode(raw, type=FakePending)

    async def prepare(self, deliveries: Any) -> Any:
        # Signed now: not due for a fee bump while the test runs.
        return msgspec.structs.replace(await super().prepare(deliveries), signed_at=time.time())

    async def outcome(self, pending: Any) -> None:
        return None


def _paid(s: Setup, fee: int, n: int) -> tuple[Any, list[Any]]:
    """A transaction of ``s``'s key carrying message ``n``, recorded as submitted, and the
    outcome of its receipt: mined, delivered, ``fee`` paid."""
    from relayer.plugin import DeliveryOutcome  # noqa: PLC0415
    from tests.unit.relayer.test_delivery_recovery import FakePending, mid  # noqa: PLC0415

    ids = attested(s.ledger, range(n, n + 1))
    pending = FakePending(nonce=n, tx_hash=bytes([n + 1]) * 32, message_ids=tuple(ids))
    s.ledger.mark_submitted(
        ids,
        tx_hash=pending.tx_hash,
        tx_nonce=n,
        raw_tx=pending.encode(),
        signer=s.submitter.signer_address,
    )
    return pending, [
        DeliveryOutcome(message_id=mid(n), delivered=True, tx_hash=pending.tx_hash, fee=fee)
    ]


async def test_a_worker_restarted_after_spending_its_budget_sends_nothing_until_the_hour_has_room(
    setups: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("relayer.delivery._BUDGET_RECHECK", 0.02)
    before = setups(fees=FeeWindow(100, signer="0xabc", unit="wei"))
    pending, outcomes = _paid(before, 100, 0)
    await before.worker._settle(pending, outcomes)
    assert before.worker._fees is not None and before.worker._fees.exhausted()
    before.ledger.close()  # the process ends (or crashes: every fee is committed as paid)

    # Started again on the same ledger, with the same key: a fresh window, a fresh clock.
    clock = Clock()
    fees = FeeWindow(100, signer="0xabc", unit="wei", clock=clock)
    log = Log()
    submitter = Restartable()
    with Ledger.open(before.config.relayer.database) as ledger:
        attested(ledger, range(1, 4))
        worker = DeliveryWorker(
            chain="chain-b",
            submitter=submitter,  # type: ignore[arg-type]
            ledger=ledger,
            log=log,
            settings=replace(SETTINGS, batch_size=10),
            poll_interval=0.02,
            fees=fees,
        )
        task = asyncio.create_task(worker.run())
        try:
            await _until(lambda: log.named("fee_budget.exhausted"))
            (restored,) = log.named("fee_budget.restored")
            assert (restored["spent"], restored["transactions"]) == (100, 1)
            await asyncio.sleep(0.2)
            assert submitter.sent == [], "the budget its predecessor spent is spent"
            (logged,) = log.named("fee_budget.exhausted")
            assert 3590 < logged["resumes_in_s"] <= 3600
            clock.now += 3600
            await _until(lambda: len({m for p in submitter.sent for m in p.message_ids}) == 3)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_settle_replayed_after_a_crash_counts_its_fee_once(setups: Any) -> None:
    before = setups(fees=FeeWindow(1000, signer="0xabc", unit="wei"))
    pending, outcomes = _paid(before, 70, 0)
    # The fee was committed, then the process died before the messages settled.
    assert await before.worker._record_fee(before.submitter.signer_address, 70, pending.tx_hash)
    assert before.ledger.get(outcomes[0].message_id).state is State.SUBMITTED  # type: ignore[union-attr]

    after = DeliveryWorker(
        chain="chain-b",
        submitter=before.submitter,  # type: ignore[arg-type]
        ledger=before.ledger,
        log=Log(),
        settings=SETTINGS,
        fees=(fees := FeeWindow(1000, signer="0xabc", unit="wei")),
    )
    await after._restore_fees(fees)
    assert fees.spent() == 70
    await after._settle(pending, outcomes)  # the receipt, read again after the restart
    assert fees.spent() == 70
    assert before.ledger.get(outcomes[0].message_id).state is State.DELIVERED  # type: ignore[union-attr]
    assert [fee for _, fee in before.ledger.fees_since("chain-b", OURS, 0.0)] == [70]


async def test_another_keys_spending_does_not_count_against_this_one(setups: Any) -> None:
    s = setups(fees=(fees := FeeWindow(100, signer="0xabc", unit="wei")))
    s.ledger.record_fee("chain-b", b"\x0b" * 20, 500, tx_hash=b"\x09" * 32)
    s.ledger.record_fee("chain-c", OURS, 500, tx_hash=b"\x09" * 32)
    await s.worker._restore_fees(fees)
    assert fees.spent() == 0


async def test_a_fee_the_ledger_refused_still_counts_in_memory(
    setups: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = setups(fees=(fees := FeeWindow(100, signer="0xabc", unit="wei")))
    pending, outcomes = _paid(s, 40, 0)

    def refuse(*_: Any, **__: Any) -> bool:
        raise StoreError("disk full")

    monkeypatch.setattr(s.ledger, "record_fee", refuse)
    await s.worker._settle(pending, outcomes)
    assert fees.spent() == 40
    (failed,) = s.log.named("fee.record_failed")
    assert failed["fee"] == 40 and "disk full" in failed["error"]


async def test_the_fee_of_a_stopped_workers_transaction_is_recorded_for_its_key(
    setups: Any,
) -> None:
    from relayer.delivery import _TakenOver  # noqa: PLC0415
    from relayer.plugin import DeliveryOutcome  # noqa: PLC0415
    from tests.unit.relayer.test_delivery_recovery import FakePending, mid  # noqa: PLC0415

    s = setups(fees=(fees := FeeWindow(100, signer="0xabc", unit="wei")))
    ids = attested(s.ledger, range(1))
    theirs = b"\x0b" * 20
    pending = FakePending(nonce=0, tx_hash=b"\x07" * 32, message_ids=tuple(ids))
    s.ledger.mark_submitted(
        ids, tx_hash=pending.tx_hash, tx_nonce=0, raw_tx=pending.encode(), signer=theirs
    )

    async def mined(_: Any) -> list[DeliveryOutcome]:
        return [DeliveryOutcome(message_id=mid(0), delivered=True, tx_hash=b"\x07" * 32, fee=30)]

    s.submitter.outcome = mined
    s.worker.taken_over[pending.tx_hash] = _TakenOver(
        pending=pending,  # type: ignore[arg-type]
        ids=tuple(ids),
        until=0.0,
        signer=theirs,
    )
    await s.worker._check_taken_over()
    assert s.ledger.get(mid(0)).state is State.DELIVERED  # type: ignore[union-attr]
    assert s.ledger.fees_since("chain-b", theirs, 0.0)[0][1] == 30, "for its next holder"
    assert fees.spent() == 0, "not this worker's key"


async def test_a_transaction_from_our_key_that_we_did_not_sign_pauses_routes_into_the_chain(
    setups: Any,
) -> None:
    s = setups()
    attested(s.ledger, range(3))
    await s.worker._recover()  # the baseline: the chain's count at the start (0)
    async with s.submitting():
        await _until(lambda: s.sent() == 3)
    signed = s.submitter.nonce
    s.submitter.on_chain = signed  # ours, all mined: no alarm
    await s.worker._check_own_key(s.safety)
    assert s.ledger.paused_routes() == {}
    s.submitter.on_chain = signed + 2  # two more than we ever signed
    await s.worker._check_own_key(s.safety)
    pause = s.ledger.paused_routes()["chain-a->chain-b"]
    assert f"2 transaction(s) this daemon did not send (nonces {signed} to {signed + 1})" in (
        pause.reason
    )
    (alarm,) = s.log.named("signer.foreign_transaction")
    assert (alarm["expected_nonce"], alarm["chain_nonce"]) == (signed, signed + 2)
    assert s.submitter.nonce == signed + 2, "the next transaction counts on from the chain"
    # The same transactions raise the alarm once.
    await s.worker._check_own_key(s.safety)
    assert len(s.log.named("signer.foreign_transaction")) == 1


async def test_messages_attested_before_an_allowlist_was_tightened_fail_naming_it(
    setups: Any,
) -> None:
    # attested() makes messages whose bytes are b"m" (no sender): a real one is needed here.
    from relayer.message import Message  # noqa: PLC0415
    from relayer.store import ObservedRow  # noqa: PLC0415

    s = setups(f'\n[{ROUTE}]\nsenders = ["0x{"11" * 20}"]\n')

    def row(n: int, sender: bytes) -> ObservedRow:
        message = Message(
            nonce=n, origin=1000, sender=sender, destination=2000, recipient=b"\x22" * 32, body=b""
        ).encode()
        return ObservedRow(
            id=Message.decode(message).id,
            origin_chain="chain-a",
            destination_chain="chain-b",
            route="chain-a->chain-b",
            nonce=n,
            message=message,
            block_number=1,
            block_hash=b"\x01" * 32,
            evidence=b"",
        )

    allowed, stranger = row(1, b"\x00" * 12 + b"\x11" * 20), row(2, b"\x33" * 32)
    s.ledger.record_observed_many([allowed, stranger])
    ids = [allowed.id, stranger.id]
    s.ledger.transition_many(ids, State.VERIFIED, expect=State.OBSERVED)
    s.ledger.transition_many(ids, State.ATTESTED, expect=State.VERIFIED)
    async with s.submitting():
        await _until(lambda: s.sent() == 1)
    assert [m for p in s.submitter.sent for m in p.message_ids] == [allowed.id]
    record = s.ledger.get(stranger.id)
    assert record is not None
    assert record.state is State.FAILED
    assert "is not on the senders allowlist of route chain-a->chain-b" in (record.last_error or "")
    assert s.log.named("message.refused")[0]["rule"] == "sender"
