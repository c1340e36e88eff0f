"""The reconciler: finds what the event stream missed by re-reading final blocks, and heals it.

A watcher can miss a message and never know: an endpoint that answered a log query with
nothing, a subscription cut while the cursor moved on. Independently of the stream, every
``reconcile_interval`` seconds the reconciler re-reads the last ``reconcile_window`` blocks up
to the watcher's cursor (never above what is final) and compares what it finds with the
ledger and with the destinations. Where the origin plugin offers a cheap listing
(``relayer.plugin.ListsMessages``), a pass with no gap costs a listing, one ledger
query and the destinations' answers; only the blocks holding messages the ledger lacks are
read with their evidence, through the plugin's own reader. Otherwise every block of the
window is read that way. Then:

- a message the ledger does not know, and the destination has not delivered, is handed to the
  same sink the watcher feeds (``Core.accept``), which verifies its evidence before recording
  anything: the reconciler only ever finds, the normal verified path decides;
- a FAILED message the destination already delivered (another relayer was faster) is moved to
  DELIVERED through the ledger's state machine;
- a DELIVERED message the destination does not know is logged loudly and counted, not
  re-queued: a destination's answer can be incomplete (a family may index only its own recent
  deliveries) and a destination without replay protection would then deliver twice.

``relayer clear --route a->b --from-block N`` runs one pass on demand (``reconcile_route``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from relayer.checkpoints import DirectoryCheckpointStore
from relayer.config import ChainConfig, Config
from relayer.core import Core
from relayer.errors import ConfigError, StoreError, UnknownChainError
from relayer.follower import LedgerLightClient
from relayer.keys import KeyUnavailableError
from relayer.message import Message, MessageFormatError
from relayer.metrics import RelayerMetrics
from relayer.plugin import (
    ChainReader,
    ListsMessages,
    MessageLister,
    Observation,
    ObservationSink,
    Submitter,
    load_plugin,
)
from relayer.retry import describe_error
from relayer.store import Ledger, State

__all__ = [
    "OWNER",
    "ReconcileReport",
    "Reconciler",
    "origin_lister",
    "origin_reader",
    "parse_route",
    "reconcile_route",
    "reconcile_settings",
]

#: whose cursor bounds the re-scan: the daemon's watchers
OWNER = "relayer"
# The reconciler keeps a light client of its own (a chain with light-client finality): sharing
# the watcher's saved state would have two writers race over it.
_LIGHT_CLIENT_OWNER = "reconciler"
# A DELIVERED message younger than this is not compared with its destination: the destination's
# endpoint may not have the block of its delivery yet.
_SETTLE_AFTER = 120.0
# Seconds a periodic pass may take before it is abandoned (and tried again next interval).
_PASS_TIMEOUT = 600.0
# Ids named in one log line at most.
_IDS_LOGGED = 20

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What one pass over blocks ``first_block..last_block`` of ``chain`` found and did."""

    chain: str
    first_block: int
    last_block: int
    #: messages of the range (of the route, for an on-demand pass)
    found: int = 0
    #: messages the ledger lacked, handed to verification and recorded as verified
    healed: int = 0
    #: messages the ledger lacked whose evidence the core refused (logged as proof.rejected)
    rejected: int = 0
    #: messages the ledger lacked that the destination had delivered already (not recorded)
    skipped_delivered: int = 0
    #: FAILED messages the destination had delivered: now DELIVERED
    marked_delivered: int = 0
    #: DELIVERED messages the destination does not know (logged, not re-queued)
    delivery_missing: int = 0
    #: destinations not asked (no delivering key on this host)
    unchecked: tuple[str, ...] = ()

    @property
    def scanned(self) -> bool:
        """Whether the pass read any block (false: nothing final below the cursor yet)."""
        return self.first_block <= self.last_block


def reconcile_settings(config: Config, chain: ChainConfig) -> tuple[float, int]:
    """``(interval, window)`` for ``chain`` as an origin: its own, else ``[relayer]``'s."""
    interval = chain.reconcile_interval
    window = chain.reconcile_window
    return (
        config.relayer.reconcile_interval if interval is None else interval,
        config.relayer.reconcile_window if window is None else window,
    )


def parse_route(config: Config, route: str) -> tuple[ChainConfig, ChainConfig]:
    """``chain-a->chain-b`` as its configured origin and destination. Raises ``ConfigError``
    for a malformed route, ``UnknownChainError`` for a chain that is not configured."""
    origin, sep, destination = route.partition("->")
    if not sep or not origin or not destination or "->" in destination:
        raise ConfigError(f"route {route!r} is not written origin->destination (chain-a->chain-b)")
    return config.chain(origin.strip()), config.chain(destination.strip())


class Reconciler:
    """Re-scans one origin chain's final blocks (see the module docstring)."""

    def __init__(
        self,
        *,
        config: Config,
        chain: ChainConfig,
        reader: ChainReader,
        ledger: Ledger,
        sink: ObservationSink,
        submitters: Mapping[str, Submitter],
        log: Any,
        metrics: RelayerMetrics | None = None,
        lister: MessageLister | None = None,
        owner: str = OWNER,
        settle_after: float = _SETTLE_AFTER,
    ) -> None:
        self.config = config
        self.chain = chain
        self.reader = reader
        self.lister = lister
        self.ledger = ledger
        self.sink = sink
        self.submitters = submitters
        self.log = log.bind(chain=chain.name)
        self.metrics = metrics
        self.owner = owner
        self.settle_after = settle_after

    async def run(self, *, interval: float, window: int) -> None:
        """A pass over the last ``window`` blocks up to the watcher's cursor every ``interval``
        seconds, the first one ``interval`` seconds from now (at start the watcher backfills
        from its cursor anyway). A failed pass is logged and tried again at the next interval:
        the reconciler is a safety net and must never end relaying. Closes the reader when
        cancelled."""
        failures = 0
        try:
            while True:
                await asyncio.sleep(interval)
                try:
                    async with asyncio.timeout(_PASS_TIMEOUT):
                        await self.reconcile_window(window)
                except Exception as exc:  # noqa: BLE001  (see the docstring)
                    failures += 1
                    # Said once per outage (the follower reports the endpoint's own).
                    (self.log.warning if failures == 1 else self.log.debug)(
                        "reconcile.failed",
                        error=describe_error(exc),
                        retry_in=interval,
                        attempt=failures,
                    )
                    continue
                if failures:
                    self.log.info("reconcile.recovered", failed_passes=failures)
                    failures = 0
        finally:
            await self.reader.close()

    async def reconcile_window(self, window: int) -> ReconcileReport | None:
        """One periodic pass; None when the watcher has no cursor yet (nothing handed over)."""
        cursor = self.ledger.get_cursor(self.chain.name, self.owner)
        if cursor is None:
            return None
        last = min(cursor.block_number, await self.reader.confirmed_head())
        first = max(self.reader.start_block, last - window + 1)
        return await self.reconcile(first, last)

    async def final_bound(self) -> int:
        """The highest block a pass may read: the watcher's cursor (the last block it handed
        over), or, without one, the chain's final head; never above what is final now."""
        head = await self.reader.confirmed_head()
        cursor = self.ledger.get_cursor(self.chain.name, self.owner)
        return head if cursor is None else min(cursor.block_number, head)

    async def reconcile(
        self, first: int, last: int, *, destination: str | None = None
    ) -> ReconcileReport:
        """Look at blocks ``first..last`` (final: see ``final_bound``) and heal what they show
        (only messages bound for ``destination``, when given). Raises what the reader, the
        lister and the submitters raise (``ChainError``, ``ProofError``, ``ValueError``...);
        the ledger is left consistent."""
        if self.lister is not None:
            # Listed unproven; only the blocks with messages the ledger lacks are read below.
            listed = await self._spans(first, last, self.lister.list_messages)
            proven: list[Observation] | None = None
        else:
            proven = await self._spans(first, last, self._read_span)
            listed = [(obs.block_number, obs.message) for obs in proven]
        wanted: list[tuple[int, bytes, str]] = []
        for number, raw in listed:
            try:
                message = Message.decode(raw)
                dest = self.config.chain_by_domain(message.destination).name
            except (MessageFormatError, UnknownChainError):
                continue  # the core refuses it when it is handed over; nothing to heal
            if destination is None or dest == destination:
                wanted.append((number, message.id, dest))
        states = self.ledger.states(mid for _, mid, _ in wanted)
        # Ask each destination about the ids the ledger lacks, the FAILED ones, and the
        # DELIVERED ones. ATTESTED and SUBMITTED are the delivery worker's: it compares them
        # with the destination itself before each submission, and must not be raced.
        ask: dict[str, list[bytes]] = {}
        for _, mid, dest in wanted:
            if states.get(mid) in (None, State.FAILED, State.DELIVERED):
                ask.setdefault(dest, []).append(mid)
        delivered, unchecked = await self._delivered(ask)
        missed = {mid: number for number, mid, _ in wanted if mid not in states}
        skipped = sum(1 for mid in missed if delivered.get(mid))
        gaps = {mid: number for mid, number in missed.items() if not delivered.get(mid)}
        handed = await self._proven(gaps, proven)
        heal: list[Observation] = []
        if handed:
            # The watcher's own sink: the core verifies the evidence and records the verdict.
            await self.sink(handed)
            ids = [Message.decode(obs.message).id for obs in handed]
            now = self.ledger.states(ids)
            heal = [
                obs
                for obs, mid in zip(handed, ids, strict=True)
                if now.get(mid) not in (None, State.REJECTED)
            ]
        marked = self._mark_delivered(
            [mid for _, mid, _ in wanted if states.get(mid) is State.FAILED and delivered.get(mid)]
        )
        missing = self._delivery_missing(
            [
                mid
                for _, mid, _ in wanted
                if states.get(mid) is State.DELIVERED and delivered.get(mid) is False
            ]
        )
        report = ReconcileReport(
            chain=self.chain.name,
            first_block=first,
            last_block=last,
            found=len(wanted),
            healed=len(heal),
            rejected=len(handed) - len(heal),
            skipped_delivered=skipped,
            marked_delivered=marked,
            delivery_missing=missing,
            unchecked=tuple(sorted(unchecked)),
        )
        self._report(report, heal)
        return report

    async def _proven(
        self, gaps: Mapping[bytes, int], proven: Sequence[Observation] | None
    ) -> list[Observation]:
        """The observations, with evidence, of the ``gaps`` (id -> block): from the blocks
        already read, or else read now, block by block. A listed message its block turns out
        not to hold (the listing was wrong, or a reorg) is only logged."""
        if not gaps:
            return []
        if proven is None:
            proven = []
            for number in sorted(set(gaps.values())):
                proven.extend(await self._read_span(number, number))
        found = [obs for obs in proven if Message.decode(obs.message).id in gaps]
        absent = set(gaps) - {Message.decode(obs.message).id for obs in found}
        for mid in absent:
            self.log.warning(
                "reconcile.unproven",
                message_id="0x" + mid.hex(),
                block=gaps[mid],
                detail="listed by the endpoint, but not in the block as read with its evidence",
            )
        return found

    async def _spans(
        self, first: int, last: int, read: Callable[[int, int], Awaitable[Sequence[_T]]]
    ) -> list[_T]:
        found: list[_T] = []
        span = max(1, self.reader.max_span)
        for start in range(first, last + 1, span):
            found.extend(await read(start, min(last, start + span - 1)))
        return found

    async def _read_span(self, start: int, end: int) -> Sequence[Observation]:
        # No ``after``: these blocks are read afresh, never from what was prepared ahead.
        return (await self.reader.read(start, end, after=b"")).observations

    async def _delivered(
        self, ask: Mapping[str, Sequence[bytes]]
    ) -> tuple[dict[bytes, bool], set[str]]:
        """The destinations' word on each asked id; the destinations that could not be asked."""
        out: dict[bytes, bool] = {}
        unchecked: set[str] = set()
        for dest, ids in ask.items():
            submitter = self.submitters.get(dest)
            if submitter is None:
                unchecked.add(dest)
                continue
            flags = await submitter.delivered_flags(ids)
            out.update(zip(ids, flags, strict=True))
        return out, unchecked

    def _mark_delivered(self, ids: Sequence[bytes]) -> int:
        moved = 0
        for mid in ids:
            detail = "reconciler: the destination had delivered it already"
            try:
                # FAILED -> DELIVERED is not a transition of its own: through ATTESTED, with no
                # await in between, so the delivery worker never sees it ATTESTED.
                self.ledger.transition(mid, State.ATTESTED, expect=State.FAILED, detail=detail)
                record = self.ledger.transition(
                    mid, State.DELIVERED, expect=State.ATTESTED, detail=detail
                )
            except StoreError as exc:  # moved meanwhile (`relayer clear`): its new owner's now
                self.log.debug(
                    "reconcile.skipped", message_id="0x" + mid.hex(), reason=describe_error(exc)
                )
                continue
            moved += 1
            self.log.info(
                "reconcile.marked_delivered", route=record.route, message_id="0x" + mid.hex()
            )
        return moved

    def _delivery_missing(self, ids: Sequence[bytes]) -> int:
        settled = time.time() - self.settle_after
        count = 0
        for mid in ids:
            record = self.ledger.get(mid)
            if record is None or record.state is not State.DELIVERED or record.updated_at > settled:
                continue
            count += 1
            self.log.error(
                "reconcile.delivery_missing",
                route=record.route,
                message_id="0x" + mid.hex(),
                tx="0x" + record.tx_hash.hex() if record.tx_hash else None,
                hint=(
                    "the ledger says delivered but the destination does not know the id: check "
                    "the destination endpoint and `relayer explain` this message; it is not "
                    "re-queued automatically"
                ),
            )
        return count

    def _report(self, report: ReconcileReport, healed: Sequence[Observation]) -> None:
        if self.metrics is not None:
            self.metrics.reconcile_found(self.chain.name, "healed", report.healed)
            self.metrics.reconcile_found(
                self.chain.name, "marked_delivered", report.marked_delivered
            )
            self.metrics.reconcile_found(
                self.chain.name, "delivery_missing", report.delivery_missing
            )
        by_route: dict[str, list[Observation]] = {}
        for obs in healed:
            dest = self.config.chain_by_domain(Message.decode(obs.message).destination).name
            by_route.setdefault(f"{self.chain.name}->{dest}", []).append(obs)
        for route, observations in by_route.items():
            # A gap the stream left: worth a warning, since something upstream lost it.
            self.log.warning(
                "reconcile.healed",
                route=route,
                messages=len(observations),
                blocks=sorted({o.block_number for o in observations}),
                message_ids=[
                    "0x" + Message.decode(o.message).id.hex() for o in observations[:_IDS_LOGGED]
                ],
                first_block=report.first_block,
                last_block=report.last_block,
            )
        if report.unchecked:
            self.log.debug("reconcile.unchecked", destinations=list(report.unchecked))
        self.log.debug(
            "reconcile.passed",
            first_block=report.first_block,
            last_block=report.last_block,
            found=report.found,
            healed=report.healed,
            rejected=report.rejected,
            skipped_delivered=report.skipped_delivered,
            marked_delivered=report.marked_delivered,
            delivery_missing=report.delivery_missing,
        )


def origin_reader(ledger: Ledger, chain: ChainConfig, log: Any) -> ChainReader:
    """A reader of ``chain`` for the reconciler, with a light client of its own if any."""
    mode = chain.light_client_mode
    light = (
        None if mode is None else LedgerLightClient(ledger, chain.name, _LIGHT_CLIENT_OWNER, mode)
    )
    return load_plugin(chain.type).reader(chain, rpc_url=None, log=log, light_client=light)


def origin_lister(chain: ChainConfig, reader: ChainReader) -> MessageLister | None:
    """The origin plugin's cheap listing through ``reader``, if its family offers one."""
    plugin = load_plugin(chain.type)
    return plugin.message_lister(reader) if isinstance(plugin, ListsMessages) else None


def _submitter(config: Config, chain: ChainConfig, log: Any) -> Submitter | None:
    """A submitter for asking ``chain`` what it delivered; None without its key on this host."""
    plugin = load_plugin(chain.type)
    ref = plugin.submitter_key(chain)
    if ref is None:
        return None
    try:
        signer = plugin.load_signer(chain, ref, base_dir=config.base_dir)
    except KeyUnavailableError as exc:
        log.warning("reconcile.unchecked", chain=chain.name, reason=str(exc))
        return None
    return plugin.submitter(chain, signer=signer, log=log)


async def reconcile_route(
    config: Config,
    ledger: Ledger,
    route: str,
    from_block: int,
    log: Any,
    *,
    metrics: RelayerMetrics | None = None,
) -> ReconcileReport:
    """``relayer clear --route a->b --from-block N``: one pass over the origin's blocks from
    ``from_block`` up to the daemon's cursor (or the final head, before the daemon ever ran),
    for the messages of ``route`` only. What it heals is verified and recorded in ``ledger``;
    a running daemon attests and delivers it. Raises ``ConfigError``/``UnknownChainError``
    for a route that is not configured, ``ChainError``/``ProofError`` for endpoints that fail
    or lie (nothing unverified is recorded either way)."""
    origin, destination = parse_route(config, route)
    if from_block < 0:
        raise ConfigError(f"--from-block must be a block number (0 or above), not {from_block}")
    log = log.bind(route=f"{origin.name}->{destination.name}")
    core = Core(
        config,
        ledger,
        DirectoryCheckpointStore(config.relayer.checkpoints),
        log,
        metrics=metrics,
    )
    reader = origin_reader(ledger, origin, log)
    submitter = _submitter(config, destination, log)
    try:
        if submitter is not None:
            await submitter.start()
        reconciler = Reconciler(
            config=config,
            chain=origin,
            reader=reader,
            ledger=ledger,
            sink=core.accept,
            submitters={} if submitter is None else {destination.name: submitter},
            lister=origin_lister(origin, reader),
            log=log,
            metrics=metrics,
        )
        last = await reconciler.final_bound()
        return await reconciler.reconcile(from_block, last, destination=destination.name)
    finally:
        if submitter is not None:
            await submitter.close()
        await reader.close()
