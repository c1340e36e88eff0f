"""Attestations over the bus, for attesters that do not share a directory with the relayer.

An attester with a bus stores each block's signatures in its own checkpoint directory first (its
durable record, what it answers requests from), then publishes one ``AttestationBatchNotice``
per block (``PublishingCheckpointStore``; a relayer still takes the single ``AttestationNotice``
of an attester of the previous release). The relayer verifies every notice as it arrives and keeps
what verifies in its own checkpoint directory (``AttestationCollector``), from which the core
reads quorums exactly as before. Notices are not kept by the broker (see ``relayer.bus.protocol``):
for blocks whose messages wait for a quorum too long, the relayer asks the attesters to publish
again (``AttestationRequester`` and ``PublishingCheckpointStore.answer_requests``).

Nothing on the bus is trusted. A notice counts only when its signer is a member of the origin's
committee and its signature recovers to that signer over the digest the destination's plugin
computes from the notice's own fields and this relayer's config (``AttestationCheck``): a forged
notice is refused on arrival, so it can neither take a real signature's place nor fill the
store. The core still recovers and counts every signature itself when it forms a quorum.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

from proofs.committee import eth_signed_message_hash, recover_signer
from proofs.errors import ProofError
from relayer.bus.errors import BusError
from relayer.bus.payloads import AttestationBatchNotice, AttestationNotice, AttestationRequest
from relayer.bus.protocol import Bus
from relayer.checkpoints import Attestation, DirectoryCheckpointStore
from relayer.config import Config
from relayer.errors import RelayerError, UnknownChainError
from relayer.plugin import ChainPlugin, load_plugin
from relayer.store import Ledger, State

__all__ = [
    "AttestationCheck",
    "AttestationCollector",
    "AttestationRefusedError",
    "AttestationRequester",
    "PublishingCheckpointStore",
    "blocks_short_of_quorum",
]

# Verified notices remembered to drop their replays without recovering them again.
_SEEN_KEPT = 200_000
# Refused notices remembered so that a replayed forgery is logged once, not each time.
_REFUSED_KEPT = 10_000
# Blocks an attester remembers answering (for the per-block answer interval).
_ANSWERED_KEPT = 10_000


class AttestationRefusedError(RelayerError):
    """An attestation notice that does not count; ``reason`` is a short stable word (a metric
    label): unknown_origin, no_committee, not_a_member, unknown_destination, bad_signature,
    wrong_signer."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class AttestationCheck:
    """Whether an attestation notice is what it claims, by this relayer's own config."""

    def __init__(self, config: Config, plugins: Mapping[str, ChainPlugin] | None = None) -> None:
        self._config = config
        self._plugins = (
            dict(plugins)
            if plugins is not None
            else {chain.name: load_plugin(chain.type) for chain in config.chains}
        )
        self._members: dict[int, frozenset[bytes]] = {}
        for chain in config.chains:
            if chain.committee is not None:
                self._members[chain.domain] = frozenset(
                    bytes.fromhex(address[2:]) for address in chain.committee.attesters
                )

    def chain_name(self, domain: int) -> str:
        """The configured chain of ``domain``, or the domain itself for an unknown one."""
        try:
            return self._config.chain_by_domain(domain).name
        except UnknownChainError:
            return f"domain {domain}"

    def check(self, notice: AttestationNotice) -> Attestation:
        """The notice as an ``Attestation`` if it counts; else ``AttestationRefusedError``."""
        try:
            origin = self._config.chain_by_domain(notice.origin_domain)
        except UnknownChainError:
            raise AttestationRefusedError(
                "unknown_origin", f"origin domain {notice.origin_domain} is not configured"
            ) from None
        members = self._members.get(notice.origin_domain)
        if members is None:
            raise AttestationRefusedError(
                "no_committee", f"{origin.name} has no committee (finality = confirmations)"
            )
        if notice.signer not in members:
            raise AttestationRefusedError(
                "not_a_member", f"0x{notice.signer.hex()} is not in {origin.name}'s committee"
            )
        try:
            destination = self._config.chain_by_domain(notice.destination_domain)
        except UnknownChainError:
            raise AttestationRefusedError(
                "unknown_destination",
                f"destination domain {notice.destination_domain} is not configured",
            ) from None
        digest = self._plugins[destination.name].attestation_digest(
            destination, origin.domain, notice.message_id, notice.origin_block_hash
        )
        try:
            signer = recover_signer(eth_signed_message_hash(digest), notice.signature)
        except ProofError as exc:
            raise AttestationRefusedError("bad_signature", str(exc)) from None
        if signer != notice.signer:
            # Either forged, or signed over another block, message or destination than claimed.
            raise AttestationRefusedError(
                "wrong_signer",
                f"the signature recovers to 0x{signer.hex()} over the claimed digest, not to the "
                f"claimed signer 0x{notice.signer.hex()}",
            )
        return notice.to_attestation()


def _key(notice: AttestationNotice) -> bytes:
    # 16 bytes rather than the six fields: a quarter of the memory for _SEEN_KEPT keys.
    return hashlib.blake2b(
        b"".join(
            (
                notice.origin_domain.to_bytes(4, "big"),
                notice.origin_block_hash,
                notice.signer,
                notice.message_id,
                notice.destination_domain.to_bytes(4, "big"),
                notice.signature,
            )
        ),
        digest_size=16,
    ).digest()


def _remember(kept: dict[bytes, None], key: bytes, limit: int) -> None:
    kept[key] = None
    while len(kept) > limit:
        del kept[next(iter(kept))]


class AttestationCollector:
    """The relayer's side: every attestation notice of ``origins``, checked, merged into
    ``store`` (the directory the core reads quorums from) in batches of ``flush_interval``
    seconds; ``on_stored`` is called after a batch that added something (wake the core).

    Every relayer instance subscribes without a group: each needs every signature. A notice
    counts as seen (its replays dropped) only once it is in the store: a batch that cannot be
    written is kept and tried again at the next flush. ``stats`` counts notices by outcome
    (stored, duplicate, and each refusal reason)."""

    def __init__(
        self,
        bus: Bus,
        store: DirectoryCheckpointStore,
        check: AttestationCheck,
        log: Any,
        *,
        origins: Collection[int] | None = None,
        on_stored: Callable[[], None] | None = None,
        flush_interval: float = 0.05,
    ) -> None:
        self._bus = bus
        self._store = store
        self._check = check
        self._log = log
        self._origins = origins
        self._on_stored = on_stored
        self._flush_interval = flush_interval
        self._seen: dict[bytes, None] = {}
        self._refused: dict[bytes, None] = {}
        # Checked, not yet stored: by block file, and the keys of what is in them.
        self._pending: dict[tuple[int, bytes, bytes], list[Attestation]] = {}
        self._queued: dict[bytes, None] = {}
        self._flushing = asyncio.Lock()
        self._subscribed = asyncio.Event()
        self.stats: Counter[str] = Counter()
        # When (time.monotonic) the last notice was taken: a requester asks for nothing while
        # notices still arrive, since the worker is then behind rather than short of them.
        self.last_taken = float("-inf")

    @property
    def unstored(self) -> int:
        """Notices checked and not yet in the store."""
        return len(self._queued)

    async def wait_subscribed(self, timeout: float | None = None) -> None:
        """Return once notices published from now on reach the collector."""
        async with asyncio.timeout(timeout):
            await self._subscribed.wait()

    async def run(self) -> None:
        """Collect until cancelled (or the bus closes); what was checked is stored before it
        returns, if the store can be written."""
        async with (
            self._bus.subscribe(AttestationNotice, origins=self._origins) as notices,
            self._bus.subscribe(AttestationBatchNotice, origins=self._origins) as batches,
        ):
            await notices.wait_subscribed()
            await batches.wait_subscribed()
            self._subscribed.set()
            flusher = asyncio.create_task(self._flush_periodically(), name="attestations:flush")
            singles = asyncio.create_task(self._take_singles(notices), name="attestations:single")
            try:
                # Batches here; the single notices of attesters of the previous release beside.
                async for batch in batches:
                    await self.take_batch(batch)
                await singles
            finally:
                singles.cancel()
                await asyncio.gather(singles, return_exceptions=True)
                # A flush in progress finishes first (flush shields its write), so the last
                # one below never races it for the same file.
                flusher.cancel()
                await asyncio.gather(flusher, return_exceptions=True)
                await self.flush()

    async def _take_singles(self, notices: AsyncIterator[AttestationNotice]) -> None:
        async for notice in notices:
            self.take(notice)

    def take(self, notice: AttestationNotice) -> None:
        """Check one notice and queue it for the next flush (public for tests and tools)."""
        self.last_taken = time.monotonic()
        key = _key(notice)
        if key in self._seen or key in self._queued:
            self.stats["duplicate"] += 1
            return
        try:
            outcome: Attestation | AttestationRefusedError = self._check.check(notice)
        except AttestationRefusedError as exc:
            outcome = exc
        self._settle_check(key, notice, outcome)

    async def take_batch(self, batch: AttestationBatchNotice) -> None:
        """Check every entry of a batch, as ``take`` checks a single notice (a forged entry is
        refused and counted, the others still count), and queue what counts. The signature
        recoveries, about 0.2 ms each, run in one worker thread, off the event loop."""
        self.last_taken = time.monotonic()
        fresh: dict[bytes, AttestationNotice] = {}
        for notice in batch.notices():
            key = _key(notice)
            if key in self._seen or key in self._queued or key in fresh:
                self.stats["duplicate"] += 1
            else:
                fresh[key] = notice
        if not fresh:
            return
        outcomes = await asyncio.to_thread(self._check_all, list(fresh.values()))
        self.last_taken = time.monotonic()
        for (key, notice), outcome in zip(fresh.items(), outcomes, strict=True):
            if key in self._seen or key in self._queued:  # a single notice took it meanwhile
                self.stats["duplicate"] += 1
            else:
                self._settle_check(key, notice, outcome)

    def _check_all(
        self, notices: Sequence[AttestationNotice]
    ) -> list[Attestation | AttestationRefusedError]:
        outcomes: list[Attestation | AttestationRefusedError] = []
        for notice in notices:
            try:
                outcomes.append(self._check.check(notice))
            except AttestationRefusedError as exc:
                outcomes.append(exc)
        return outcomes

    def _settle_check(
        self,
        key: bytes,
        notice: AttestationNotice,
        outcome: Attestation | AttestationRefusedError,
    ) -> None:
        if isinstance(outcome, AttestationRefusedError):
            exc = outcome
            self.stats[exc.reason] += 1
            if key not in self._refused:
                _remember(self._refused, key, _REFUSED_KEPT)
                self._log.warning(
                    "bus.attestation_refused",
                    reason=exc.reason,
                    detail=exc.detail,
                    chain=self._check.chain_name(notice.origin_domain),
                    message_id="0x" + notice.message_id.hex(),
                    signer="0x" + notice.signer.hex(),
                )
            return
        self._queued[key] = None
        group = (notice.origin_domain, notice.origin_block_hash, notice.signer)
        self._pending.setdefault(group, []).append(outcome)

    async def flush(self) -> int:
        """Write what was queued; returns how many entries were new to the store. A write
        that fails is logged and its batch kept for the next flush. Cancelling it waits for a
        write in progress (a thread cannot be stopped halfway)."""
        async with self._flushing:
            if not self._pending:
                return 0
            batch, queued = self._pending, self._queued
            self._pending, self._queued = {}, {}
            write = asyncio.ensure_future(asyncio.to_thread(self._merge, batch))
            try:
                added = await asyncio.shield(write)
            except asyncio.CancelledError:
                await asyncio.wait([write])
                self._settle(write, batch, queued)
                raise
            except (OSError, ValueError):
                self._settle(write, batch, queued)
                return 0
            self._settle(write, batch, queued)
            return added

    def _settle(
        self,
        write: asyncio.Future[int],
        batch: dict[tuple[int, bytes, bytes], list[Attestation]],
        queued: dict[bytes, None],
    ) -> None:
        error = write.exception() if not write.cancelled() else None
        if write.cancelled() or error is not None:
            # Back in the queue, in front of what arrived meanwhile.
            for group, attestations in self._pending.items():
                batch.setdefault(group, []).extend(attestations)
            self._pending, self._queued = batch, {**queued, **self._queued}
            self._log.warning(
                "bus.attestations_unstored",
                error=f"{type(error).__name__}: {error}" if error else "cancelled",
                detail="kept in memory and written at the next flush",
            )
            return
        added = write.result()
        for key in queued:
            _remember(self._seen, key, _SEEN_KEPT)
        self.stats["stored"] += added
        if added and self._on_stored is not None:
            self._on_stored()

    def _merge(self, batch: Mapping[tuple[int, bytes, bytes], Sequence[Attestation]]) -> int:
        return sum(
            self._store.merge_block(domain, block_hash, signer, attestations)
            for (domain, block_hash, signer), attestations in batch.items()
        )

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            await self.flush()


class AttestationRequester:
    """The relayer's side: asks the attesters to publish again the blocks whose messages wait
    for a quorum longer than ``after`` seconds: at once, again ``every`` seconds later, then
    after twice as long each time, up to ``longest``. ``waiting`` returns the ``(origin
    domain, block hash)`` pairs of messages verified at or before the time it is given (a
    ledger query, run in a worker thread). While ``busy`` returns true (the worker is still
    taking notices, so behind rather than short of them) it asks for nothing."""

    def __init__(
        self,
        bus: Bus,
        waiting: Callable[[float], Collection[tuple[int, bytes]]],
        log: Any,
        *,
        busy: Callable[[], bool] = lambda: False,
        after: float = 10.0,
        every: float = 10.0,
        longest: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._bus = bus
        self._waiting = waiting
        self._log = log
        self._after = after
        self._every = every
        self._longest = longest
        self._clock = clock
        self._busy = busy
        # block -> (when asked last, the wait before asking again)
        self._asked: dict[tuple[int, bytes], tuple[float, float]] = {}
        self.requests = 0

    async def run(self) -> None:
        while True:
            await self.ask_once()
            await asyncio.sleep(min(self._after, self._every) / 2)

    async def ask_once(self) -> int:
        """One pass: publish the requests that are due; returns how many were published (0,
        without asking, while ``busy``)."""
        if self._busy():
            return 0
        now = self._clock()
        blocks = await asyncio.to_thread(self._waiting, now - self._after)
        # Blocks no longer waiting are forgotten: if one waits again, it is asked at once.
        self._asked = {block: self._asked[block] for block in blocks if block in self._asked}
        sent = 0
        for block in sorted(blocks):
            last, wait = self._asked.get(block, (float("-inf"), 0.0))
            if now - last < wait:
                continue
            domain, block_hash = block
            request = AttestationRequest(origin_domain=domain, block_hash=block_hash)
            try:
                await self._bus.publish(request)
            except BusError as exc:
                self._log.warning("bus.attestation_request_failed", error=str(exc))
                break  # the broker is away or refuses: the next pass asks again
            self._asked[block] = (now, self._every if wait == 0 else min(wait * 2, self._longest))
            sent += 1
        if sent:
            self.requests += sent
            self._log.info("bus.attestations_requested", blocks=sent)
        return sent


def blocks_short_of_quorum(
    ledger: Ledger, config: Config
) -> Callable[[float], set[tuple[int, bytes]]]:
    """``AttestationRequester``'s ``waiting`` for a ledger: the origin blocks of the messages
    still VERIFIED (short of a quorum) since before the time it is given."""

    def waiting(verified_before: float) -> set[tuple[int, bytes]]:
        return {
            (config.chain(record.origin_chain).domain, record.block_hash)
            for record in ledger.in_state(State.VERIFIED)
            if record.updated_at <= verified_before
        }

    return waiting


class PublishingCheckpointStore:
    """An attester's ``CheckpointStore`` when a bus is configured: ``put_block`` writes the
    local directory store (durable; what requests are answered from), then publishes the
    block's attestations, one ``AttestationBatchNotice`` per block and signer, and waits up to
    ``timeout`` seconds for the broker to take them. A broker that is away or refuses is
    logged, not raised: the attester's cursor moves on, and the relayer asks again for what
    it lacks.

    ``put_block`` blocks on the event loop ``loop`` that owns ``bus``: call it from a worker
    thread (the attester does, ``asyncio.to_thread``).

    Requests are not authenticated (anyone who may publish on the broker can send one; give
    the request topic a broker ACL): an attester answers a block at most once per
    ``answer_interval`` seconds, and at most ``answers_per_interval`` blocks in all per
    interval, so a flood of requests costs it bounded work."""

    def __init__(
        self,
        local: DirectoryCheckpointStore,
        bus: Bus,
        loop: asyncio.AbstractEventLoop,
        log: Any,
        *,
        timeout: float = 10.0,
        answer_interval: float = 5.0,
        answers_per_interval: int = 200,
    ) -> None:
        self.local = local
        self._bus = bus
        self._loop = loop
        self._log = log
        self._timeout = timeout
        self._answer_interval = answer_interval
        self._answers_per_interval = answers_per_interval
        # block -> when it was last answered, least recently answered first
        self._answered: dict[tuple[int, bytes], float] = {}
        self._window: tuple[float, int] = (float("-inf"), 0)  # start, answers in it
        self._answering = asyncio.Event()
        self.answered = 0

    def put_block(
        self,
        origin_domain: int,
        block_hash: bytes,
        signer: bytes,
        attestations: Sequence[Attestation],
    ) -> None:
        self.local.put_block(origin_domain, block_hash, signer, attestations)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError(
                "PublishingCheckpointStore.put_block waits for the bus: call it from a worker "
                "thread (asyncio.to_thread), not on the event loop"
            )
        try:
            future = asyncio.run_coroutine_threadsafe(self._publish(attestations), self._loop)
        except RuntimeError as exc:  # the loop is closed: the attester is stopping
            self._unpublished(origin_domain, block_hash, len(attestations), exc)
            return
        try:
            future.result(self._timeout)
        except (BusError, TimeoutError, concurrent.futures.CancelledError) as exc:
            future.cancel()
            self._unpublished(origin_domain, block_hash, len(attestations), exc)

    def _unpublished(
        self, origin_domain: int, block_hash: bytes, messages: int, error: BaseException
    ) -> None:
        self._log.warning(
            "bus.attestations_unpublished",
            chain=f"domain {origin_domain}",
            block="0x" + block_hash.hex(),
            messages=messages,
            error=f"{type(error).__name__}: {error}",
            detail="kept in the local store; relayers ask again for blocks they lack",
        )

    def get_block(self, origin_domain: int, block_hash: bytes) -> list[Attestation]:
        return self.local.get_block(origin_domain, block_hash)

    async def _publish(self, attestations: Sequence[Attestation]) -> None:
        await _publish_all(self._bus.publish, attestations)

    async def wait_answering(self, timeout: float | None = None) -> None:
        """Return once ``answer_requests`` receives the requests published from now on."""
        async with asyncio.timeout(timeout):
            await self._answering.wait()

    def _may_answer(self, block: tuple[int, bytes], now: float) -> bool:
        if now - self._answered.get(block, float("-inf")) < self._answer_interval:
            return False
        start, count = self._window
        if now - start >= self._answer_interval:
            start, count = now, 0
        if count >= self._answers_per_interval:
            return False
        self._window = (start, count + 1)
        self._answered.pop(block, None)  # re-inserted last: the least recent go first
        self._answered[block] = now
        while len(self._answered) > _ANSWERED_KEPT:
            del self._answered[next(iter(self._answered))]
        return True

    async def answer_requests(self, signer: bytes, origins: Collection[int]) -> None:
        """Publish again, on request, what ``signer`` stored for a block of ``origins``.
        Runs until cancelled or the bus closes."""
        async with self._bus.subscribe(AttestationRequest, origins=origins) as requests:
            await requests.wait_subscribed()
            self._answering.set()
            async for request in requests:
                block = (request.origin_domain, request.block_hash)
                if not self._may_answer(block, time.monotonic()):
                    continue
                stored = await asyncio.to_thread(self.local.get_block, *block)
                mine = [att for att in stored if att.signer == signer]
                if not mine:
                    continue
                try:
                    await _publish_all(self._bus.publish, mine)
                except BusError as exc:
                    self._unpublished(request.origin_domain, request.block_hash, len(mine), exc)
                    continue
                self.answered += 1
                self._log.info(
                    "bus.attestations_republished",
                    chain=f"domain {request.origin_domain}",
                    block="0x" + request.block_hash.hex(),
                    messages=len(mine),
                )


async def _publish_all(
    publish: Callable[[AttestationBatchNotice], Awaitable[None]],
    attestations: Sequence[Attestation],
) -> None:
    """Publish the attestations as batches (one per block and signer, split past
    ``MAX_BATCH_ENTRIES``), concurrently (each QoS 1 publish waits for its acknowledgement);
    raises the first failure (``BusError``) once all are done. One payload per block rather
    than one per message: a worker took 3 x 10,000 single notices, each parsed and checked on
    its event loop, for 10,000 messages."""
    outcomes = await asyncio.gather(
        *(publish(batch) for batch in AttestationBatchNotice.from_attestations(attestations)),
        return_exceptions=True,
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
