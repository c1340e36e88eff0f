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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

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
    Submitter,
)
from relayer.retry import backoff_delay
from relayer.store import Ledger, MessageRecord, State, SubmittedTx

__all__ = ["DeliveryWorker"]

# Seconds without a receipt after which an in-flight transaction is sent to the node again,
# doubling with each resend up to the cap: anvil drops a transaction that did not fit its block
# (ten 7M-gas batches against 30M blocks), and a later nonce then waits behind it; resending
# soon brought bench/e2e.py from 71 to 113 delivered msgs/s, and the doubling keeps a slow
# chain's endpoint from being asked every second and a half.
_RESEND_AFTER = 1.5
_RESEND_AFTER_MAX = 30.0


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
    ) -> None:
        self.chain = chain
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

    async def run(self) -> None:
        try:
            await self._until_up(self.submitter.start)
            await self._until_up(self._recover)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._submit_loop(), name=f"submit:{self.chain}")
                group.create_task(self._confirm_loop(), name=f"confirm:{self.chain}")
        finally:
            if self._broadcaster is not None:
                self._broadcaster.cancel()
            await self.submitter.close()

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
        # One transaction per nonce, the newest (listed last) winning: a fee-bumped replacement
        # names every hash signed at its nonce, so its receipt check finds whichever is mined.
        by_nonce: dict[int, PendingTx] = {
            tx.nonce: self.submitter.decode_pending(tx.raw_tx)
            for tx in self.ledger.pending_txs(self.chain)
        }
        top = max(by_nonce, default=-1)
        await self.submitter.resync_nonce(at_least=top + 1)
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
            records = self.ledger.due(
                State.ATTESTED, destination_chain=self.chain, limit=self.batch_size * free
            )
            if not records:
                await self._idle()
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
                    self._retry_all(records, str(exc))
                    continue
                await self._outage(exc)
                continue
            except (KeyError, TypeError, ValueError) as exc:
                # A malformed endpoint answer: an outage by another name, never a crash.
                await self._outage(ChainError(f"garbage answer from the endpoint: {exc!r}"))
                continue
            self._recovered()

    async def _idle(self) -> None:
        """Until the core attests something (``wake``) or the poll interval passed."""
        if self.wake is None:
            await asyncio.sleep(self.poll_interval)
            return
        try:
            async with asyncio.timeout(self.poll_interval):
                await self.wake.wait()
        except TimeoutError:
            pass
        self.wake.clear()

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
                        self._retry_all(batch, str(exc))
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
                self.ledger.transition_many(
                    already,
                    State.DELIVERED,
                    expect=State.ATTESTED,
                    detail="found delivered on chain",
                )
            for record, done in zip(failing, flags, strict=True):
                if not done:
                    self._retry(
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
                signed.append(await self.submitter.prepare(deliveries))
            except BaseException as exc:  # noqa: BLE001  (re-raised below, after the record)
                # Those signed already hold their nonces: record and send them regardless, or
                # the next transaction would wait behind a nonce gap.
                failure = exc
                break
        if signed:
            failpoint("after_sign")
            try:
                self.ledger.mark_submitted_many(
                    [
                        SubmittedTx(
                            ids=pending.message_ids,
                            tx_hash=pending.tx_hash,
                            tx_nonce=pending.nonce,
                            raw_tx=pending.encode(),
                        )
                        for pending in signed
                    ]
                )
            except StoreError as exc:
                # A message left ATTESTED while its batch was checked and signed (an origin
                # reorg observed it again): none of these transactions is recorded, so none is
                # sent. Their nonces are given back, newest first (they are the latest taken);
                # the messages still attested come round in the next pass, in new transactions.
                self.log.error(
                    "submit.record_refused",
                    nonces=[pending.nonce for pending in signed],
                    error=str(exc),
                )
                for pending in reversed(signed):
                    self.submitter.release_nonce(pending.nonce)
                signed = []
            else:
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

    def _retry(self, record: MessageRecord, error: str) -> None:
        if record.attempts + 1 >= self.max_attempts:
            self.ledger.transition(record.id, State.FAILED, error=error)
            self._retries_failed.inc()
            self.log.error(
                "submit.failed",
                message_id="0x" + record.id.hex(),
                error=error,
                attempts=record.attempts + 1,
            )
            return
        delay = backoff_delay(record.attempts + 1, base=2.0, cap=300.0)
        self.ledger.schedule_retry(record.id, error=error, delay=delay)
        self._retries_scheduled.inc()
        self.log.warning(
            "retry.scheduled",
            message_id="0x" + record.id.hex(),
            attempt=record.attempts + 1,
            delay_s=round(delay, 1),
            error=error,
        )

    def _retry_all(self, records: Sequence[MessageRecord], error: str) -> None:
        for record in records:
            current = self.ledger.get(record.id)
            if current is not None and current.state is State.ATTESTED:
                self._retry(current, error)

    # --- confirmation --------------------------------------------------------------------------

    async def _confirm_loop(self) -> None:
        while True:
            if time.monotonic() - self._watch_checked > 1.0 and self.watching:
                self._watch_checked = time.monotonic()
                try:
                    await self._check_deliveries()
                except ChainError as exc:
                    if not exc.retryable:
                        raise
                    await self._outage(exc)
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
            ids = [
                mid
                for mid in pending.message_ids
                if (record := self.ledger.get(mid)) is not None
                and record.state is State.SUBMITTED
                and record.tx_nonce == nonce
            ]
            if ids:
                self.ledger.transition_many(
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
        self.ledger.mark_submitted(
            list(bumped.message_ids),
            tx_hash=bumped.tx_hash,
            tx_nonce=bumped.nonce,
            raw_tx=bumped.encode(),
        )
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
            self.ledger.transition_many(
                dropped,
                State.ATTESTED,
                expect=State.DELIVERED,
                detail=f"delivery in tx 0x{tx_hash.hex()} dropped by a destination reorg",
            )

    async def _settle(self, pending: PendingTx, outcomes: list[DeliveryOutcome]) -> None:
        if pending.signed_at > 0:  # 0: signed by a version that did not say when
            self._confirmation_latency.observe(max(0.0, time.time() - pending.signed_at))
        fee = next((o.fee for o in outcomes if o.fee is not None), None)
        if fee:
            self._fee_paid.labels(self.chain, self.submitter.unit).inc(fee)
        delivered = [o.message_id for o in outcomes if o.delivered]
        mined = next((o.tx_hash for o in outcomes if o.tx_hash), None)
        if delivered and mined is not None:
            self.watching[mined] = tuple(delivered)
        if delivered:
            # In a worker thread: the sqlite work (and its fsync) releases the GIL, so the
            # next batches are simulated and signed meanwhile rather than after it.
            await asyncio.to_thread(
                self.ledger.transition_many,
                delivered,
                State.DELIVERED,
                expect=State.SUBMITTED,
                detail=f"tx 0x{pending.tx_hash.hex()}",
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
            if done:
                self.ledger.transition(
                    outcome.message_id,
                    State.DELIVERED,
                    expect=State.SUBMITTED,
                    detail="delivered by an earlier transaction",
                )
                continue
            record = self.ledger.transition(
                outcome.message_id,
                State.ATTESTED,
                expect=State.SUBMITTED,
                error=outcome.error,
            )
            self._retry(record, outcome.error or "not delivered")


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
