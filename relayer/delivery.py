"""Delivery to one destination chain: batches, pipelined transactions, confirmation, retries.

Order of effects per batch, each committed before the next so that a crash at any point
resumes without loss or double delivery:

1. skip ids the destination already delivered (another relayer, or us before a crash);
2. simulate the batch; set aside messages whose recipient would fail (retried on a schedule);
3. sign (``failpoint after_sign``), record the signed transaction as SUBMITTED
   (``after_record``), broadcast it (``after_send``);
4. read receipts until mined; bump fees at the same nonce when it is stuck.

After a restart, the signed transactions of SUBMITTED messages (kept once each, in the ledger's
``pending_txs``) are broadcast again: the node says it has it already or that its nonce is
used, or includes it; the destination refuses replays.

Several workers may deliver to one chain from one shared (Postgres) ledger. Each signs with a
key of its own (so no nonce is ever coordinated between them, and one worker's stuck nonce
blocks no other), and refuses to start while another worker holds its key
(``Ledger.hold_signer``). Work is claimed, not read: a worker leases the attested messages it
takes (``Ledger.claim``), keeps the leases of what it has in flight (``Ledger.renew``, every
third of a lease), and records a transaction only while it still holds them. A worker that
dies stops renewing; once its leases run out another worker takes its submitted messages over
(``_take_over``): settled from the destination if delivered, else the dead worker's signed
transaction goes out once more and, if not mined within ``submit_timeout``, the messages go
back to the queue for a transaction of the live worker's own. The destination refuses
replays: at worst a transaction reverts, and nothing is delivered twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from relayer.errors import ChainError, StoreError
from relayer.failpoints import failpoint
from relayer.health import HEALTH
from relayer.metrics import RelayerMetrics
from relayer.plugin import (
    BroadcastResult,
    Delivery,
    DeliveryOutcome,
    DeliverySettings,
    PendingTx,
    ReadsAccountNonce,
    Submitter,
)
from relayer.retry import backoff_delay
from relayer.safety import FeeWindow, Safety
from relayer.store import (
    LeaseLostError,
    Ledger,
    MessageRecord,
    SignerHold,
    State,
    SubmittedTx,
    from_loop,
    new_owner,
)

__all__ = ["DeliveryWorker"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Seconds a worker's claim on a message lasts unless renewed (every third of it, while the
#: message is in flight): how long a dead worker's messages wait before another takes them over.
DEFAULT_LEASE = 30.0

# Seconds without a receipt after which an in-flight transaction is sent to the node again,
# doubling with each resend up to the cap: anvil drops a transaction that did not fit its block
# (ten 7M-gas batches against 30M blocks), and a later nonce then waits behind it; resending
# soon brought bench/e2e.py from 71 to 113 delivered msgs/s, and the doubling keeps a slow
# chain's endpoint from being asked every second and a half.
_RESEND_AFTER = 1.5
_RESEND_AFTER_MAX = 30.0

# Seconds between reads of our key's nonce on the chain, for a transaction we did not send.
_OWN_KEY_CHECK = 2.0
# Longest sleep while the fee budget is spent: the window is looked at again after it.
_BUDGET_RECHECK = 5.0


@dataclass(frozen=True, slots=True)
class _TakenOver:
    """Another worker's transaction (it stopped), watched until mined or ``until``."""

    pending: PendingTx
    ids: tuple[bytes, ...]
    until: float  # monotonic
    signer: bytes | None  # the key that signed it (None: stored before the ledger kept it)


class DeliveryWorker:
    def __init__(
        self,
        *,
        chain: str,
        submitter: Submitter,
        ledger: Ledger,
        log: Any,
        settings: DeliverySettings,
        max_attempts: int = 8,
        poll_interval: float = 0.2,
        wake: asyncio.Event | None = None,
        metrics: RelayerMetrics | None = None,
        lease: float = DEFAULT_LEASE,
        safety: Safety | None = None,
        fees: FeeWindow | None = None,
    ) -> None:
        self.chain = chain
        # Paused routes and rate limits (what is claimed), and the alarm on our key; ``fees``:
        # this key's spending against the chain's fee_budget_per_hour (None: no budget).
        self.safety = safety
        self._fees = fees
        self._over_budget_since: float | None = None
        # One above the highest nonce this worker signed (or found on chain at its start):
        # the chain counting more transactions from our key than that is an alarm.
        self._signed_upto: int | None = None
        self._key_checked = 0.0
        metrics = metrics or RelayerMetrics()
        # Bound once: a labelled child is a dictionary lookup per use otherwise.
        self._submission_latency = metrics.submission_latency.labels(chain)
        self._confirmation_latency = metrics.confirmation_latency.labels(chain)
        self._retries_scheduled = metrics.retries.labels(chain, "scheduled")
        self._retries_failed = metrics.retries.labels(chain, "failed")
        self._fee_bumps = metrics.retries.labels(chain, "fee_bump")
        self._fee_paid = metrics.fee_paid
        self.submitter = submitter
        self.ledger = ledger
        self.log = log.bind(chain=chain)
        self.batch_size = settings.batch_size
        self.max_in_flight = settings.max_in_flight
        self.max_attempts = max_attempts
        self.submit_timeout = settings.submit_timeout
        self.poll_interval = poll_interval
        # Set by the core when it attested messages: the loop picks them up at once instead of
        # at its next poll.
        self.wake = wake
        self.in_flight: dict[int, PendingTx] = {}
        # Delivering transactions watched until ``reorg_depth`` blocks bury them: a reorg of
        # the destination can drop a delivery, and then the message must go out again.
        self.reorg_depth = settings.reorg_depth
        self.watching: dict[bytes, tuple[bytes, ...]] = {}
        self._watch_checked = 0.0
        # Recorded and in flight, but the broadcast itself failed (endpoint down): sent again
        # as soon as the endpoint answers, rather than after the replacement timeout.
        self.unsent: set[int] = set()
        self._outbox: asyncio.Queue[PendingTx] = asyncio.Queue()
        self._broadcaster: asyncio.Task[None] | None = None
        # By nonce: when its transaction last went to the node, and how many resends that made.
        self._sent: dict[int, tuple[float, int]] = {}
        self._outage_attempt = 0
        # Work leases (``Ledger.claim``): trivially held on SQLite, where one process owns the
        # ledger; on a shared one, what keeps two workers off the same message.
        self.lease = lease
        self.owner = new_owner(f"delivery:{chain}")
        self._shared = ledger.shared
        # Attested messages claimed by the current submit pass and not recorded yet.
        self._claimed: set[bytes] = set()
        # Being recorded as submitted by this worker, not in ``in_flight`` yet: a takeover
        # pass running meanwhile must not mistake them for a dead worker's.
        self._recording: set[bytes] = set()
        # In flight in a transaction of ours, but the lease ran out and another worker may
        # settle them: this worker does not.
        self._lost: set[bytes] = set()
        self._renewed_at = time.monotonic()
        self._takeover_checked = 0.0
        self.taken_over: dict[bytes, _TakenOver] = {}
        self._hold: SignerHold | None = None

    async def _db(self, call: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """A ledger call, off the loop on a shared ledger (``relayer.store.from_loop``)."""
        return await from_loop(self.ledger, call, *args, **kwargs)

    async def run(self) -> None:
        try:
            # First: a second worker with this key must stop before it takes a nonce.
            self._hold = await self._db(
                self.ledger.hold_signer,
                self.chain,
                self.submitter.signer_address,
                owner=self.owner,
            )
            if self._fees is not None:
                # Before anything is sent: what this key paid in the last hour, before a restart
                # or on another host, counts against the budget from the first transaction.
                await self._restore_fees(self._fees)
            await self._until_up(self.submitter.start)
            await self._until_up(self._recover)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._submit_loop(), name=f"submit:{self.chain}")
                group.create_task(self._confirm_loop(), name=f"confirm:{self.chain}")
        finally:
            if self._broadcaster is not None:
                self._broadcaster.cancel()
            self._release_claims()
            if self._hold is not None:
                self._hold.release()
                self._hold = None
            await self.submitter.close()

    async def _restore_fees(self, fees: FeeWindow) -> None:
        now = time.time()
        paid = await self._db(
            self.ledger.fees_since, self.chain, self.submitter.signer_address, now - fees.window
        )
        fees.restore(paid, now=now)
        if paid:
            self.log.info(
                "fee_budget.restored",
                signer=fees.signer,
                spent=fees.spent(),
                budget=fees.budget,
                unit=fees.unit,
                transactions=len(paid),
            )

    async def _record_fee(self, signer: bytes, fee: int, tx_hash: bytes) -> bool:
        """Record in the ledger that ``signer`` paid ``fee`` for ``tx_hash``; whether it is
        new (False: recorded before, by a settle that a crash made this process replay). Should
        the ledger refuse, the fee is taken as new: counting it in memory at least keeps this
        process within the budget, and the settle that follows meets the same ledger."""
        try:
            # In a worker thread whatever the engine, as the settle's own commit: on SQLite the
            # fsync releases the GIL, and the next batches are signed meanwhile. Stamped with
            # the wall clock, which is what the restore reads across a restart.
            return await asyncio.to_thread(
                self.ledger.record_fee, self.chain, signer, fee, tx_hash=tx_hash, at=time.time()
            )
        except StoreError as exc:
            self.log.warning("fee.record_failed", tx="0x" + tx_hash.hex(), fee=fee, error=str(exc))
            return True

    def _release_claims(self) -> None:
        """At shutdown: give up the leases of work not sent (claimed attested messages, and
        other workers' transactions being watched), so that another worker need not wait for
        them to run out. Those of our own transactions in flight are kept: this worker's key
        may come back and resume them (``_recover``), and otherwise they run out."""
        ids = self._claimed | {mid for t in self.taken_over.values() for mid in t.ids}
        self._claimed = set()
        if not self._shared or not ids:
            return
        try:
            # Directly, not in a thread: this runs while the task is being cancelled.
            self.ledger.release(ids, owner=self.owner)
        except StoreError as exc:
            self.log.warning("lease.release_failed", messages=len(ids), error=str(exc))

    # --- outage handling -----------------------------------------------------------------------

    async def _until_up(self, step: Any) -> None:
        while True:
            try:
                await step()
            except ChainError as exc:
                if not exc.retryable:
                    raise
                await self._outage(exc)
                continue
            self._recovered()
            return

    async def _outage(self, exc: Exception) -> None:
        self._outage_attempt += 1
        HEALTH.failed(self.log, self.chain, self.submitter.endpoint, exc)
        await asyncio.sleep(backoff_delay(self._outage_attempt, base=0.5, cap=10.0))

    def _recovered(self) -> None:
        HEALTH.succeeded(self.log, self.chain, self.submitter.endpoint)
        self._outage_attempt = 0

    # --- recovery ------------------------------------------------------------------------------

    async def _recover(self) -> None:
        # Only this key's transactions: another worker's nonces are not ours to resume or to
        # count from. A transaction stored without a signer (before the ledger kept them) was
        # the chain's only worker's: ours on SQLite, and on a shared ledger nobody's, left to
        # the takeover like every other transaction whose worker is gone.
        own = self.submitter.signer_address
        stored = await self._db(self.ledger.pending_txs, self.chain)
        mine = [tx for tx in stored if tx.signer == own or (tx.signer is None and not self._shared)]
        # One transaction per nonce, the newest (listed last) winning: a fee-bumped replacement
        # names every hash signed at its nonce, so its receipt check finds whichever is mined.
        by_nonce: dict[int, PendingTx] = {
            tx.nonce: self.submitter.decode_pending(tx.raw_tx) for tx in mine
        }
        if self._shared and by_nonce:
            # Their leases are an earlier worker's with this key, and no such worker lives (we
            # hold the key's lock): take them back before they run out.
            await self._db(
                self.ledger.adopt,
                [mid for pending in by_nonce.values() for mid in pending.message_ids],
                owner=self.owner,
                lease=self.lease,
            )
        foreign = {tx.tx_hash for tx in stored} - {tx.tx_hash for tx in mine}
        if foreign and not self._shared:
            # Signed by another key of this chain's (the operator changed keys): not ours to
            # resume, so handled as a stopped worker's transactions.
            records = await self._db(
                self.ledger.in_state, State.SUBMITTED, destination_chain=self.chain
            )
            await self._adopt([r for r in records if r.tx_hash in foreign])
        top = max(by_nonce, default=-1)
        self._signed_upto = await self.submitter.resync_nonce(at_least=top + 1)
        for nonce in sorted(by_nonce):
            pending = by_nonce[nonce]
            self.in_flight[nonce] = pending
            try:
                kind = await self.submitter.broadcast(pending)
            except ChainError as exc:
                if exc.retryable:
                    raise
                # Whatever the node thinks of it now, its receipt (or its absence past the
                # replacement timeout) settles these messages in the confirm loop.
                self.log.warning(
                    "submit.resume_refused",
                    nonce=nonce,
                    tx="0x" + pending.tx_hash.hex(),
                    error=str(exc),
                )
                continue
            self.log.info(
                "submit.resumed", nonce=nonce, tx="0x" + pending.tx_hash.hex(), answer=kind.value
            )

    # --- submission ----------------------------------------------------------------------------

    async def _submit_loop(self) -> None:
        while True:
            free = self.max_in_flight - len(self.in_flight)
            if free <= 0:
                await asyncio.sleep(self.poll_interval / 2)
                continue
            if self._fees is not None and await self._budget_spent(self._fees):
                continue
            # Paused routes, and rate-limited ones without a token, are not claimed at all:
            # their messages wait in the ledger, and other routes' are not held up by them.
            skip = self.safety.skip_routes(self.chain) if self.safety is not None else set()
            records = await self._db(
                self._claim_attested,
                # Shared: one transaction's worth per pass (the loop comes straight back for
                # more), so that the other workers get their share of a large backlog.
                limit=self.batch_size * (1 if self.ledger.shared else free),
                skip=skip,
            )
            if self.safety is not None and records:
                records = await self._refuse(records, self.safety)
                records, held = self.safety.admit(records)
                if held and self._shared:
                    # Due, untouched and unleased: the next pass with tokens claims them.
                    await self._db(self.ledger.release, [r.id for r in held], owner=self.owner)
            self._claimed = {r.id for r in records}
            if not records:
                await self._idle(self._next_token())
                continue
            try:
                await self._submit_batches(
                    [
                        records[start : start + self.batch_size]
                        for start in range(0, len(records), self.batch_size)
                    ]
                )
            except ChainError as exc:
                if not exc.retryable:
                    await self._retry_all(records, str(exc))
                    continue
                await self._outage(exc)
                continue
            except (KeyError, TypeError, ValueError) as exc:
                # A malformed endpoint answer: an outage by another name, never a crash.
                await self._outage(ChainError(f"garbage answer from the endpoint: {exc!r}"))
                continue
            self._recovered()

    async def _refuse(
        self, records: Sequence[MessageRecord], safety: Safety
    ) -> list[MessageRecord]:
        """``records`` without those their route's allowlists refuse, which go to FAILED
        naming the allowlist (verified before it was tightened: `relayer clear` re-queues
        them once it lets them through)."""
        refused = safety.refused_records(records)
        for record, rule, reason in refused:
            try:
                await self._db(
                    self.ledger.transition,
                    record.id,
                    State.FAILED,
                    expect=State.ATTESTED,
                    error=reason,
                )
            except StoreError as exc:
                self.log.info(
                    "submit.settled_elsewhere", message_id="0x" + record.id.hex(), error=str(exc)
                )
                continue
            safety.metrics.policy_refused.labels(record.route, rule).inc()
            self.log.warning(
                "message.refused",
                route=record.route,
                message_id="0x" + record.id.hex(),
                rule=rule,
                reason=reason,
            )
        gone = {record.id for record, _, _ in refused}
        return [record for record in records if record.id not in gone]

    def _claim_attested(self, *, limit: int, skip: set[str]) -> list[MessageRecord]:
        return self.ledger.claim(
            State.ATTESTED,
            owner=self.owner,
            lease=self.lease,
            destination_chain=self.chain,
            limit=limit,
            skip_routes=skip,
        )

    def _next_token(self) -> float | None:
        if self.safety is None:
            return None
        return self.safety.next_token(self.chain)

    async def _idle(self, at_most: float | None = None) -> None:
        """Until the core attests something (``wake``) or the poll interval passed (or
        ``at_most`` seconds, when a rate limit has a token sooner)."""
        wait = self.poll_interval if at_most is None else min(self.poll_interval, at_most)
        if self.wake is None:
            await asyncio.sleep(wait)
            return
        try:
            async with asyncio.timeout(wait):
                await self.wake.wait()
        except TimeoutError:
            pass
        self.wake.clear()

    async def _budget_spent(self, fees: FeeWindow) -> bool:
        """Whether the fee budget is spent (then after a pause, the first time logged): no
        new transaction goes out while it is. Those in flight still confirm, and are fee-bumped
        when stuck: their messages are committed to them, the bump replaces rather than adds a
        transaction, and its fee is counted when it is mined."""
        if not fees.exhausted():
            if self._over_budget_since is not None:
                self._over_budget_since = None
                self.log.info("fee_budget.recovered", spent=fees.spent(), budget=fees.budget)
            return False
        room_in = fees.room_in()
        if self._over_budget_since is None:
            self._over_budget_since = time.monotonic()
            self.log.error(
                "fee_budget.exhausted",
                signer=fees.signer,
                spent=fees.spent(),
                budget=fees.budget,
                unit=fees.unit,
                resumes_in_s=round(room_in),
                resumes_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + room_in)),
                hint=f'no new delivery until then; to pay more, raise chains[name="{self.chain}"]'
                ".fee_budget_per_hour and restart",
            )
        await asyncio.sleep(min(max(room_in, 0.05), _BUDGET_RECHECK))
        return True

    async def _submit_batches(self, batches: Sequence[Sequence[MessageRecord]]) -> None:
        """Check every batch at once (simulations are reads, independent of each other), and
        sign, record and send them in order as their checks complete, so that nonces stay in
        order and the first transaction leaves before the last simulation ends. Batches whose
        checks are done by then go together: signed back to back, recorded in one ledger
        commit. A batch whose check failed for good is set aside; the first transient failure
        is raised after the others went out."""
        checks = [asyncio.ensure_future(self._check(batch)) for batch in batches]
        failure: BaseException | None = None
        ready: list[list[Delivery]] = []
        due = {r.id: max(r.updated_at, r.next_attempt_at) for batch in batches for r in batch}
        try:
            for batch, check in zip(batches, checks, strict=True):
                if ready and not check.done():
                    await self._send(ready, due)
                    ready = []
                try:
                    deliveries = await check
                except ChainError as exc:
                    if exc.retryable:
                        failure = failure or exc
                    else:
                        await self._retry_all(batch, str(exc))
                    continue
                except (KeyError, TypeError, ValueError) as exc:
                    failure = failure or exc
                    continue
                if deliveries:
                    ready.append(deliveries)
            if ready:
                await self._send(ready, due)
        finally:
            for check in checks:
                check.cancel()
        if failure is not None:
            raise failure

    async def _check(self, records: Sequence[MessageRecord]) -> list[Delivery]:
        """The deliveries of ``records`` worth sending. Items that fail in simulation are
        either delivered already (by another relayer, or by us before a crash: settled) or
        have a recipient that fails (set aside for a retry); only those few are asked about."""
        deliveries = [
            Delivery(
                message_id=r.id,
                message=r.message,
                origin_block_hash=r.block_hash,
                signatures=r.signatures,
            )
            for r in records
        ]
        ok = await self._simulate(deliveries)
        failing = [r for r, good in zip(records, ok, strict=True) if not good]
        if failing:
            flags = await self.submitter.delivered_flags([r.id for r in failing])
            already = [r.id for r, done in zip(failing, flags, strict=True) if done]
            if already:
                await self._db(
                    self.ledger.transition_many,
                    already,
                    State.DELIVERED,
                    expect=State.ATTESTED,
                    detail="found delivered on chain",
                )
            for record, done in zip(failing, flags, strict=True):
                if not done:
                    await self._retry(
                        record,
                        "recipient call fails in simulation (reverts or exceeds its gas cap)",
                    )
        return [d for d, good in zip(deliveries, ok, strict=True) if good]

    async def _send(
        self, groups: Sequence[Sequence[Delivery]], due: dict[bytes, float] | None = None
    ) -> None:
        """Sign one transaction per group at consecutive nonces, record them all in one ledger
        transaction, then queue them for broadcast in nonce order. ``due``: when each message
        became due (wall clock), for the submission latency."""
        signed: list[PendingTx] = []
        failure: BaseException | None = None
        for deliveries in groups:
            try:
                pending = await self.submitter.prepare(deliveries)
            except BaseException as exc:  # noqa: BLE001  (re-raised below, after the record)
                # Those signed already hold their nonces: record and send them regardless, or
                # the next transaction would wait behind a nonce gap.
                failure = exc
                break
            signed.append(pending)
            # Before it can reach the chain: the alarm's check must never count it foreign.
            if self._signed_upto is not None:
                self._signed_upto = max(self._signed_upto, pending.nonce + 1)
        if signed:
            failpoint("after_sign")
            recording = {mid for pending in signed for mid in pending.message_ids}
            self._recording |= recording
            try:
                await self._db(
                    self.ledger.mark_submitted_many,
                    [
                        SubmittedTx(
                            ids=pending.message_ids,
                            tx_hash=pending.tx_hash,
                            tx_nonce=pending.nonce,
                            raw_tx=pending.encode(),
                            signer=self.submitter.signer_address,
                        )
                        for pending in signed
                    ],
                    owner=self.owner,
                )
            except StoreError as exc:
                self._recording -= recording
                # A message left ATTESTED while its batch was checked and signed (an origin
                # reorg observed it again), or this worker's lease on one ran out (it stalled
                # and another worker may hold it now: LeaseLostError): none of these
                # transactions is recorded, so none is sent. Their nonces are given back,
                # newest first (they are the latest taken); the messages still attested come
                # round in the next pass (claimed again), in new transactions.
                self.log.error(
                    "lease.lost" if isinstance(exc, LeaseLostError) else "submit.record_refused",
                    nonces=[pending.nonce for pending in signed],
                    error=str(exc),
                )
                for pending in reversed(signed):
                    self.submitter.release_nonce(pending.nonce)
                signed = []
            else:
                self._claimed -= recording
                failpoint("after_record")
                if due:
                    recorded = time.time()
                    observe = self._submission_latency.observe
                    for pending in signed:
                        for mid in pending.message_ids:
                            since = due.get(mid)
                            if since is not None:
                                observe(max(0.0, recorded - since))
        for pending in signed:
            self.in_flight[pending.nonce] = pending
            self._recording.difference_update(pending.message_ids)
            self.log.info(
                "submit.started",
                nonce=pending.nonce,
                tx="0x" + pending.tx_hash.hex(),
                messages=len(pending.message_ids),
            )
            self.unsent.add(pending.nonce)
            # Sent in the background, so that the next batch is signed and recorded meanwhile,
            # but one at a time and in nonce order: a node that sees a later nonce first parks
            # it as "queued" (anvil then left one stuck until its fee bump, 30 s later).
            self._outbox.put_nowait(pending)
        if signed and (self._broadcaster is None or self._broadcaster.done()):
            self._broadcaster = asyncio.create_task(self._broadcast_loop())
        if failure is not None:
            raise failure

    async def _broadcast_loop(self) -> None:
        while True:
            pending = await self._outbox.get()
            try:
                await self._broadcast(pending)
            finally:
                self._outbox.task_done()

    async def _drain(self) -> None:
        """Until every recorded transaction went to the node once (tests)."""
        await self._outbox.join()

    async def _broadcast(self, pending: PendingTx) -> None:
        self._sent[pending.nonce] = (time.monotonic(), 0)  # a new transaction starts over
        try:
            kind = await self.submitter.broadcast(pending)
        except (ChainError, KeyError, TypeError, ValueError) as exc:
            # Still in ``unsent``: the confirm loop sends it again once the endpoint answers.
            self.log.warning(
                "submit.broadcast_failed",
                nonce=pending.nonce,
                tx="0x" + pending.tx_hash.hex(),
                error=str(exc),
            )
            return
        self.unsent.discard(pending.nonce)
        failpoint("after_send")
        if kind is BroadcastResult.NONCE_USED:
            # An outside transaction took the nonce (or ours was mined already): the confirm
            # loop settles these ids from receipts/delivered(); new batches use a fresh nonce,
            # above every one of ours still in flight.
            await self.submitter.resync_nonce(at_least=max(self.in_flight, default=-1) + 1)

    async def _simulate(self, deliveries: list[Delivery]) -> list[bool]:
        try:
            return await self.submitter.simulate(deliveries)
        except ChainError as exc:
            if exc.retryable:
                raise
            if len(deliveries) == 1:
                return [False]
        # The whole batch reverts (e.g. one message's signatures no longer match the attester
        # set): find the culprits one by one rather than stalling everyone behind them.
        return [(await self._simulate([d]))[0] for d in deliveries]

    async def _retry(self, record: MessageRecord, error: str) -> None:
        if record.attempts + 1 >= self.max_attempts:
            await self._db(self.ledger.transition, record.id, State.FAILED, error=error)
            self._retries_failed.inc()
            self.log.error(
                "submit.failed",
                message_id="0x" + record.id.hex(),
                error=error,
                attempts=record.attempts + 1,
            )
            return
        delay = backoff_delay(record.attempts + 1, base=2.0, cap=300.0)
        await self._db(self.ledger.schedule_retry, record.id, error=error, delay=delay)
        self._retries_scheduled.inc()
        self.log.warning(
            "retry.scheduled",
            message_id="0x" + record.id.hex(),
            attempt=record.attempts + 1,
            delay_s=round(delay, 1),
            error=error,
        )

    async def _retry_all(self, records: Sequence[MessageRecord], error: str) -> None:
        for record in records:
            current = await self._db(self.ledger.get, record.id)
            if current is not None and current.state is State.ATTESTED:
                await self._retry(current, error)

    # --- confirmation --------------------------------------------------------------------------

    async def _confirm_loop(self) -> None:
        while True:
            await self._housekeeping()
            if not self.in_flight:
                await asyncio.sleep(self.poll_interval / 2)
                continue
            for nonce in sorted(self.in_flight):
                pending = self.in_flight[nonce]
                try:
                    if nonce in self.unsent:
                        await self._send_again(pending)
                    outcomes = await self.submitter.outcome(pending)
                except (KeyError, TypeError, ValueError) as exc:
                    await self._outage(ChainError(f"garbage answer from the endpoint: {exc!r}"))
                    break
                except ChainError as exc:
                    if not exc.retryable:
                        self.log.error(
                            "submit.confirm_failed",
                            nonce=nonce,
                            tx="0x" + pending.tx_hash.hex(),
                            error=str(exc),
                        )
                        continue
                    await self._outage(exc)
                    break
                self._recovered()
                if outcomes is not None:
                    del self.in_flight[nonce]
                    self.unsent.discard(nonce)
                    self._sent.pop(nonce, None)
                    await self._settle(pending, outcomes)
                elif time.time() - pending.signed_at > self.submit_timeout:
                    try:
                        await self._replace(pending)
                    except (ChainError, KeyError, TypeError, ValueError) as exc:
                        # The endpoint failed, or refused the replacement: what is in flight
                        # stays, and the next try comes after a pause (a refusal for good, say
                        # funds too low for the fee, must not be retried ten times a second).
                        # Never the worker's end.
                        self.log.warning(
                            "submit.replace_failed",
                            nonce=nonce,
                            tx="0x" + pending.tx_hash.hex(),
                            error=str(exc),
                        )
                        await self._outage(exc)
                        break
                elif _resend_due(self._sent.get(nonce)):
                    # Not mined yet: send the very same bytes again (the node answers "already
                    # known" if it has them). A node may drop a transaction that did not fit
                    # its block (anvil does) and would otherwise wait for the fee bump.
                    self._sent[nonce] = (time.monotonic(), self._sent.get(nonce, (0.0, 0))[1] + 1)
                    try:
                        await self.submitter.broadcast(pending)
                    except (ChainError, KeyError, TypeError, ValueError) as exc:
                        # Nothing lost: the receipt check, the next resend or the fee bump
                        # settles it.
                        self.log.debug("submit.resend_failed", nonce=nonce, error=str(exc))
            await asyncio.sleep(self.poll_interval / 2)

    async def _housekeeping(self) -> None:
        """Leases and takeovers (shared ledgers), and deliveries watched for reorgs."""
        if self._shared or self.taken_over:
            try:
                await self._keep_leases()
            except (ChainError, KeyError, TypeError, ValueError) as exc:
                # The takeover asks the destination: what failed is tried again next time.
                self.log.warning("submit.takeover_failed", error=str(exc))
                if isinstance(exc, ChainError) and exc.retryable:
                    await self._outage(exc)
        if self.safety is not None and time.monotonic() - self._key_checked > _OWN_KEY_CHECK:
            self._key_checked = time.monotonic()
            try:
                await self._check_own_key(self.safety)
            except (ChainError, KeyError, TypeError, ValueError) as exc:
                # Checked again at the next interval; the outage is the other loops' to report.
                self.log.debug("signer.check_failed", error=str(exc))
        if time.monotonic() - self._watch_checked > 1.0 and self.watching:
            self._watch_checked = time.monotonic()
            try:
                await self._check_deliveries()
            except ChainError as exc:
                if not exc.retryable:
                    raise
                await self._outage(exc)

    async def _check_own_key(self, safety: Safety) -> None:
        """Pause every route into this chain when the chain counts more transactions from our
        key than this worker signed: someone else holds the key (or runs a second relayer with
        it). What is in flight still confirms; nothing new goes out until a resume."""
        if self._signed_upto is None or not isinstance(self.submitter, ReadsAccountNonce):
            return
        on_chain = await self.submitter.account_nonce()
        expected = self._signed_upto
        if on_chain <= expected:
            return
        # Counted from now on: the same transactions raise the alarm once.
        self._signed_upto = on_chain
        await self.submitter.resync_nonce(at_least=max(self.in_flight, default=-1) + 1)
        signer = "0x" + self.submitter.signer_address.hex()
        detail = (
            f"our key {signer} on {self.chain} has {on_chain - expected} transaction(s) this "
            f"daemon did not send (nonces {expected} to {on_chain - 1}): is the key in use "
            "elsewhere, or stolen? Rotate it if so"
        )
        self.log.error(
            "signer.foreign_transaction",
            signer=signer,
            expected_nonce=expected,
            chain_nonce=on_chain,
            detail=detail,
        )
        await safety.foreign_transaction(self.chain, detail)

    async def _send_again(self, pending: PendingTx) -> None:
        """Send a recorded transaction whose broadcast failed. Refused for good (the node will
        not take these bytes), it is sent no more: a transaction already in the pool or mined
        at its nonce settles its messages, and the replacement timeout handles the rest."""
        try:
            await self.submitter.broadcast(pending)
        except ChainError as exc:
            if exc.retryable:
                raise
            self.log.warning(
                "submit.resend_refused",
                nonce=pending.nonce,
                tx="0x" + pending.tx_hash.hex(),
                error=str(exc),
            )
        self.unsent.discard(pending.nonce)

    async def _requeue_above_gap(self) -> None:
        """After a nonce gap (a reorg or a node that lost our transaction): every transaction
        above the account's nonce waits forever, so their messages go back to the queue and
        new transactions start at the gap. The Gateway refuses a second delivery, so a stuck
        transaction that executes after all costs gas, never a duplicate."""
        next_nonce = await self.submitter.resync_nonce()
        stuck = [n for n in self.in_flight if n >= next_nonce]
        for nonce in sorted(stuck):
            pending = self.in_flight.pop(nonce)
            self.unsent.discard(nonce)
            self._sent.pop(nonce, None)
            # Still in this transaction, and still ours. Where workers share the ledger, by
            # hash too: another worker's key has nonces of its own, this one among them.
            ids = [
                mid
                for mid in pending.message_ids
                if mid not in self._lost
                and (record := await self._db(self.ledger.get, mid)) is not None
                and record.state is State.SUBMITTED
                and record.tx_nonce == nonce
                and (record.tx_hash == pending.tx_hash or not self._shared)
            ]
            self._lost.difference_update(pending.message_ids)
            if ids:
                await self._settle_ids(
                    ids,
                    State.ATTESTED,
                    expect=State.SUBMITTED,
                    detail=f"nonce gap below {nonce}: re-queued",
                )
            self.log.warning("submit.requeued_after_gap", nonce=nonce, messages=len(ids))

    async def _replace(self, pending: PendingTx) -> None:
        if await self.submitter.resync_nonce(at_least=0) < pending.nonce:
            await self._requeue_above_gap()
            return
        # That read may have set the next nonce below ours still in flight (recorded, not yet
        # in the node's count): the next batch must not take one of them.
        await self.submitter.resync_nonce(at_least=max(self.in_flight, default=-1) + 1)
        bumped = self.submitter.bump(pending)
        if bumped is None:
            self.log.warning("submit.stuck_at_fee_cap", nonce=pending.nonce)
            return
        try:
            await self._db(
                self.ledger.mark_submitted,
                [mid for mid in bumped.message_ids if mid not in self._lost],
                tx_hash=bumped.tx_hash,
                tx_nonce=bumped.nonce,
                raw_tx=bumped.encode(),
                owner=self.owner,
                signer=self.submitter.signer_address,
            )
        except LeaseLostError as exc:
            # Another worker took these messages over: it watches (and may re-queue) them now.
            # The transaction already sent may still be mined; the replacement is not sent.
            self._forget(pending)
            self.log.warning("lease.lost", nonce=pending.nonce, error=str(exc))
            return
        self._fee_bumps.inc()
        self.in_flight[bumped.nonce] = bumped
        # A new transaction at this nonce: its resends start over from the first interval.
        self._sent[bumped.nonce] = (time.monotonic(), 0)
        try:
            kind = await self.submitter.broadcast(bumped)
        except ChainError:
            self.unsent.add(bumped.nonce)  # recorded, so sent again once the endpoint answers
            raise
        self.log.info(
            "submit.replaced", nonce=bumped.nonce, tx="0x" + bumped.tx_hash.hex(), answer=kind.value
        )

    async def _check_deliveries(self) -> None:
        for tx_hash, ids in list(self.watching.items()):
            depth = await self.submitter.confirmations(tx_hash)
            if depth is not None:
                if depth >= self.reorg_depth:
                    del self.watching[tx_hash]
                continue
            del self.watching[tx_hash]
            flags = await self.submitter.delivered_flags(ids)
            dropped = [mid for mid, done in zip(ids, flags, strict=True) if not done]
            if not dropped:
                continue  # re-included (or delivered by someone else) in the new chain
            self.log.error(
                "chain.reorg_dropped_delivery",
                tx="0x" + tx_hash.hex(),
                messages=len(dropped),
            )
            # The dropped transaction's nonce is free again: later ones wait on it.
            await self._requeue_above_gap()
            await self._settle_ids(
                dropped,
                State.ATTESTED,
                expect=State.DELIVERED,
                detail=f"delivery in tx 0x{tx_hash.hex()} dropped by a destination reorg",
            )

    async def _settle(self, pending: PendingTx, outcomes: list[DeliveryOutcome]) -> None:
        if pending.signed_at > 0:  # 0: signed by a version that did not say when
            self._confirmation_latency.observe(max(0.0, time.time() - pending.signed_at))
        fee = next((o.fee for o in outcomes if o.fee is not None), None)
        # Recorded before the messages settle, keyed by the transaction: a crash between the
        # two commits replays the settle after the restart, and the fee still counts once.
        if fee and await self._record_fee(
            self.submitter.signer_address,
            fee,
            next((o.tx_hash for o in outcomes if o.tx_hash), pending.tx_hash),
        ):
            self._fee_paid.labels(self.chain, self.submitter.unit).inc(fee)
            if self._fees is not None:
                self._fees.add(fee)
        if self._lost:
            # Leases that ran out: the worker that took these over settles them.
            outcomes = [o for o in outcomes if o.message_id not in self._lost]
            self._lost.difference_update(pending.message_ids)
        delivered = [o.message_id for o in outcomes if o.delivered]
        mined = next((o.tx_hash for o in outcomes if o.tx_hash), None)
        if delivered and mined is not None:
            self.watching[mined] = tuple(delivered)
        if delivered:
            # In a worker thread: the sqlite work (and its fsync) releases the GIL, so the
            # next batches are simulated and signed meanwhile rather than after it.
            await self._settle_ids(
                delivered,
                State.DELIVERED,
                expect=State.SUBMITTED,
                detail=f"tx 0x{pending.tx_hash.hex()}",
                thread=True,
            )
        self.log.info(
            "submit.complete",
            nonce=pending.nonce,
            tx="0x" + pending.tx_hash.hex(),
            delivered=len(delivered),
            messages=len(outcomes),
        )
        undelivered = [o for o in outcomes if not o.delivered]
        if not undelivered:
            return
        try:
            flags = await self.submitter.delivered_flags([o.message_id for o in undelivered])
        except (ChainError, KeyError, TypeError, ValueError) as exc:
            # Unknown for now: back to the queue, where the next check asks again before
            # anything is signed (and the destination refuses a replay). Never the worker's end.
            self.log.warning("submit.settle_unknown", nonce=pending.nonce, error=str(exc))
            flags = [False] * len(undelivered)
        for outcome, done in zip(undelivered, flags, strict=True):
            try:
                if done:
                    await self._db(
                        self.ledger.transition,
                        outcome.message_id,
                        State.DELIVERED,
                        expect=State.SUBMITTED,
                        detail="delivered by an earlier transaction",
                    )
                    continue
                record = await self._db(
                    self.ledger.transition,
                    outcome.message_id,
                    State.ATTESTED,
                    expect=State.SUBMITTED,
                    error=outcome.error,
                )
            except StoreError as exc:
                if not self._shared:
                    raise
                # Settled meanwhile by a worker that took it over.
                self.log.info(
                    "submit.settled_elsewhere",
                    message_id="0x" + outcome.message_id.hex(),
                    error=str(exc),
                )
                continue
            await self._retry(record, outcome.error or "not delivered")

    async def _settle_ids(
        self,
        ids: Sequence[bytes],
        to: State,
        *,
        expect: State,
        detail: str,
        thread: bool = False,
    ) -> None:
        """``transition_many``. On a shared ledger another worker may have settled some of
        them meanwhile (it took them over while this one stalled): then those are left alone
        and the rest moved one by one, rather than the worker failing."""
        run = asyncio.to_thread if thread else self._db
        try:
            await run(self.ledger.transition_many, ids, to, expect=expect, detail=detail)
        except StoreError:
            if not self._shared:
                raise
        else:
            return
        states = await self._db(self.ledger.states, ids)
        still = [mid for mid in ids if states.get(mid) is expect]
        for mid in still:
            try:
                await self._db(self.ledger.transition, mid, to, expect=expect, detail=detail)
            except StoreError as exc:
                self.log.info(
                    "submit.settled_elsewhere", message_id="0x" + mid.hex(), error=str(exc)
                )
        if len(still) < len(ids):
            self.log.info("submit.settled_elsewhere", messages=len(ids) - len(still))

    # --- leases and takeover (shared ledgers) --------------------------------------------------

    def _forget(self, pending: PendingTx) -> None:
        """Stop watching one of our transactions (its messages are another worker's now)."""
        self.in_flight.pop(pending.nonce, None)
        self.unsent.discard(pending.nonce)
        self._sent.pop(pending.nonce, None)
        self._lost.difference_update(pending.message_ids)

    async def _keep_leases(self) -> None:
        """Every third of a lease: renew what this worker holds, and take over what a stopped
        worker left (on SQLite, one process owns the ledger: there is neither; what it
        watches is another key's transactions found at start, ``_recover``)."""
        now = time.monotonic()
        if self._shared and now - self._renewed_at >= self.lease / 3:
            self._renewed_at = now
            await self._renew()
        if self._shared and now - self._takeover_checked >= self.lease / 3:
            self._takeover_checked = now
            await self._take_over()
        if self.taken_over:
            await self._check_taken_over()

    async def _renew(self) -> None:
        working = {mid for p in self.in_flight.values() for mid in p.message_ids} - self._lost
        working |= {mid for t in self.taken_over.values() for mid in t.ids}
        claimed = set(self._claimed)
        if not working and not claimed:
            return
        held = await self._db(
            self.ledger.renew, working | claimed, owner=self.owner, lease=self.lease
        )
        # (The submit loop may have claimed anew meanwhile: only what was asked about goes.)
        self._claimed -= claimed - held
        lost = working - held
        if not lost:
            return
        # This worker stalled past a lease (or the database dropped it): another worker may
        # hold these messages now, and settles them. Our transactions that carry only lost
        # messages are watched no more; their nonces stay taken (the transactions may still
        # be mined), and a gap they leave is found like any other (``_requeue_above_gap``).
        self.log.warning("lease.lost", messages=len(lost))
        self._lost |= lost
        for pending in list(self.in_flight.values()):
            if all(mid in self._lost for mid in pending.message_ids):
                self._forget(pending)
        for tx_hash, taken in list(self.taken_over.items()):
            if any(mid in lost for mid in taken.ids):
                del self.taken_over[tx_hash]

    async def _take_over(self) -> None:
        """Claim the submitted messages of this chain whose lease ran out (their worker
        stopped) and see them through (``_adopt``). Our own come back too (a claim returns
        what the owner holds, renewed): they are left to the confirm loop."""
        records = await self._db(
            self.ledger.claim,
            State.SUBMITTED,
            owner=self.owner,
            lease=self.lease,
            destination_chain=self.chain,
            # Our own in flight come back too (as many as this at most), oldest first: room
            # for as many again of a stopped worker's.
            limit=2 * self.batch_size * self.max_in_flight,
        )
        ours = {mid for p in self.in_flight.values() for mid in p.message_ids} - self._lost
        ours |= self._recording
        ours |= {mid for t in self.taken_over.values() for mid in t.ids}
        orphans = [r for r in records if r.id not in ours]
        if orphans:
            await self._adopt(orphans)

    async def _adopt(self, records: Sequence[MessageRecord]) -> None:
        """Another worker's submitted messages, now this worker's to settle: those the
        destination delivered are marked so; the rest wait for their transaction, which is
        signed and anyone may send, broadcast once more here, for ``submit_timeout``
        (``_check_taken_over``). Never signed again with our key: only re-queued."""
        flags = await self.submitter.delivered_flags([r.id for r in records])
        done = [r.id for r, flag in zip(records, flags, strict=True) if flag]
        if done:
            await self._settle_ids(
                done,
                State.DELIVERED,
                expect=State.SUBMITTED,
                detail="found delivered on chain by the worker that took it over",
            )
        waiting = [r for r, flag in zip(records, flags, strict=True) if not flag]
        by_tx: dict[bytes | None, list[bytes]] = {}
        for record in waiting:
            by_tx.setdefault(record.tx_hash, []).append(record.id)
        stored = {
            tx.tx_hash: tx
            for tx in await self._db(
                self.ledger.pending_txs,
                self.chain,
                tx_hashes=[h for h in by_tx if h is not None],
            )
        }
        for tx_hash, ids in by_tx.items():
            signed = None if tx_hash is None else stored.get(tx_hash)
            self.log.warning(
                "submit.taken_over",
                tx=None if tx_hash is None else "0x" + tx_hash.hex(),
                messages=len(ids),
            )
            if signed is None:
                await self._requeue_taken(ids, "taken over without a signed transaction to wait on")
                continue
            pending = self.submitter.decode_pending(signed.raw_tx)
            try:
                await self.submitter.broadcast(pending)
            except (ChainError, KeyError, TypeError, ValueError) as exc:
                # Mined already, replaced, or refused: its receipt, or the timeout, says.
                self.log.info(
                    "submit.resend_failed", tx="0x" + pending.tx_hash.hex(), error=str(exc)
                )
            self.taken_over[pending.tx_hash] = _TakenOver(
                pending=pending,
                ids=tuple(ids),
                until=time.monotonic() + self.submit_timeout,
                signer=signed.signer,
            )

    async def _check_taken_over(self) -> None:
        for tx_hash, taken in list(self.taken_over.items()):
            outcomes = await self.submitter.outcome(taken.pending)
            if outcomes is None and time.monotonic() < taken.until:
                continue
            del self.taken_over[tx_hash]
            fee = next((o.fee for o in outcomes or () if o.fee is not None), None)
            if fee and taken.signer is not None:
                # Paid by the stopped worker's key: recorded for whichever worker holds that
                # key next (its budget counts it), not counted against this worker's.
                mined = next((o.tx_hash for o in outcomes or () if o.tx_hash), tx_hash)
                if await self._record_fee(taken.signer, fee, mined):
                    self._fee_paid.labels(self.chain, self.submitter.unit).inc(fee)
                    if taken.signer == self.submitter.signer_address and self._fees is not None:
                        self._fees.add(fee)
            mine = set(taken.ids)
            delivered = [
                o.message_id for o in outcomes or () if o.delivered and o.message_id in mine
            ]
            rest = [mid for mid in taken.ids if mid not in set(delivered)]
            if rest:
                flags = await self.submitter.delivered_flags(rest)
                delivered += [mid for mid, flag in zip(rest, flags, strict=True) if flag]
                rest = [mid for mid, flag in zip(rest, flags, strict=True) if not flag]
            if delivered:
                await self._settle_ids(
                    delivered,
                    State.DELIVERED,
                    expect=State.SUBMITTED,
                    detail=f"tx 0x{tx_hash.hex()} (taken over)",
                )
            if rest:
                why = (
                    "not delivered by the transaction of a worker that stopped"
                    if outcomes is not None
                    else "the transaction of a worker that stopped was not mined within"
                    f" {self.submit_timeout:g} s"
                )
                await self._requeue_taken(rest, why)

    async def _requeue_taken(self, ids: Iterable[bytes], why: str) -> None:
        """Back to ATTESTED, due now, for a transaction of this worker's own (the lease ends
        with the move, so whichever worker claims first sends it)."""
        for mid in ids:
            try:
                await self._db(
                    self.ledger.schedule_retry,
                    mid,
                    error=why,
                    delay=0.0,
                    to=State.ATTESTED,
                    expect=State.SUBMITTED,
                )
            except StoreError as exc:
                self.log.info(
                    "submit.settled_elsewhere", message_id="0x" + mid.hex(), error=str(exc)
                )


def _resend_due(sent: tuple[float, int] | None) -> bool:
    """Whether a transaction last sent at ``sent`` (monotonic time, resends so far; None:
    not sent by this process yet) is due to go to the node again."""
    if sent is None:
        return True
    at, resends = sent
    return time.monotonic() - at > _resend_after(resends)


def _resend_after(resends: int) -> float:
    """Seconds without a receipt before the next resend of a transaction sent ``resends``
    times again already."""
    return min(_RESEND_AFTER * float(1 << min(resends, 16)), _RESEND_AFTER_MAX)
