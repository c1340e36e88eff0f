"""Safety limits: per-route allowlists and rate limits, per-signer fee budgets, and the circuit
breaker that pauses a route.

One ``Safety`` per daemon, shared by the core (allowlists, the breaker on verification
failures) and the delivery workers (rate limits, fee budgets, the alarm on a transaction from
our key that we did not send). A paused route is a row of the ledger (``Ledger.pause_route``),
so that a pause survives restarts and a `relayer route resume` from another process takes
effect here within a second (``watch``): while it lasts, watchers keep observing and the core
keeps verifying (nothing is lost), and delivery claims none of the route's messages.

Rate limits are kept in memory, per process: N workers delivering to one chain from a shared
ledger send up to N times a route's rate (docs/operators.md says so). Fee windows are counted in
memory too, but each fee paid is also a row of the ledger (``Ledger.record_fee``) and a worker's
window starts from the last hour's rows of its key (``FeeWindow.restore``): a restarted worker,
or one that took the key over on another host, goes on from what the key spent.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from relayer.errors import StoreError
from relayer.message import Message, MessageFormatError
from relayer.store import from_loop

if TYPE_CHECKING:
    from relayer.config import Config
    from relayer.metrics import RelayerMetrics
    from relayer.store import Ledger, MessageRecord

__all__ = [
    "FeeWindow",
    "PauseView",
    "Safety",
    "TokenBucket",
    "resume_hint",
]

Clock = Callable[[], float]

#: seconds of fees a budget counts
FEE_WINDOW = 3600.0
# A failure more than this long after the previous one starts a new streak: the breaker is
# for a burst of lies, not for the odd glitch of an honest node over months.
_STREAK_MEMORY = 3600.0


def resume_hint(route: str) -> str:
    """What the operator runs to resume ``route`` (said in every pause's log line)."""
    return f"resume with: relayer route resume {route}"


class PauseView(Protocol):
    """A paused route as the ledger keeps it (``relayer.store.RoutePause``)."""

    @property
    def route(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def paused_at(self) -> float: ...
    @property
    def paused_by(self) -> str: ...


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` kept: a message takes one."""

    __slots__ = ("_clock", "_tokens", "_updated", "burst", "rate")

    def __init__(self, rate: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a rate above 0 and room for a token")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        return self._tokens

    def available(self) -> int:
        """Whole tokens now."""
        return math.floor(self._refill())

    def take(self, wanted: int) -> int:
        """Take up to ``wanted`` tokens; how many were taken."""
        granted = min(max(wanted, 0), self.available())
        self._tokens -= granted
        return granted

    def wait(self) -> float:
        """Seconds until a whole token is there (0: now)."""
        return max(0.0, (1.0 - self._refill()) / self.rate)


class FeeWindow:
    """Fees paid by one signer over the last ``window`` seconds, against a ``budget``.

    Times are ``clock``'s, the monotonic clock: a step of the wall clock (NTP, an operator)
    neither expires fees early nor keeps them for ever. The wall clock is read only to carry
    fees across a restart (``restore``), where the monotonic clock means nothing."""

    def __init__(
        self,
        budget: int,
        *,
        signer: str,
        unit: str,
        window: float = FEE_WINDOW,
        clock: Clock = time.monotonic,
    ) -> None:
        self.budget = budget
        self.signer = signer
        self.unit = unit
        self.window = window
        self._clock = clock
        self._paid: deque[tuple[float, int]] = deque()
        self._total = 0

    def restore(self, paid: Iterable[tuple[float, int]], *, now: float) -> None:
        """Count fees paid before this window was made (at a worker's start, before ``add``):
        ``paid`` as ``(paid_at, fee)`` on the wall clock (``Ledger.fees_since``), ``now`` that
        clock's time. Each is placed as long before this clock's now as it was paid before
        ``now``; one stamped after ``now`` (the previous holder's clock ran ahead) counts as
        paid now, so that it expires within the window rather than later."""
        offset = self._clock() - now
        restored = [(min(at, now) + offset, fee) for at, fee in paid if fee > 0]
        merged = sorted([*self._paid, *restored], key=lambda entry: entry[0])
        self._paid = deque(merged)
        self._total = sum(fee for _, fee in merged)
        self._expire()

    def _expire(self) -> None:
        horizon = self._clock() - self.window
        while self._paid and self._paid[0][0] <= horizon:
            self._total -= self._paid.popleft()[1]

    def add(self, fee: int) -> None:
        if fee > 0:
            self._paid.append((self._clock(), fee))
            self._total += fee

    def spent(self) -> int:
        """Fees paid in the window, as of now."""
        self._expire()
        return self._total

    def exhausted(self) -> bool:
        return self.spent() >= self.budget

    def room_in(self) -> float:
        """Seconds until spending falls below the budget again (0: it is below now)."""
        total = self.spent()
        if total < self.budget:
            return 0.0
        for at, fee in self._paid:
            total -= fee
            if total < self.budget:
                return max(0.0, at + self.window - self._clock())
        return 0.0  # unreachable: the window empties eventually


@dataclass(slots=True)
class _Streak:
    count: int = 0
    last: float = 0.0

    def hit(self, now: float) -> int:
        if now - self.last > _STREAK_MEMORY:
            self.count = 0
        self.count += 1
        self.last = now
        return self.count


class Safety:
    """The daemon's safety state; see the module's docstring. ``by`` names this process in
    the pauses it records."""

    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        *,
        metrics: RelayerMetrics,
        log: Any,
        by: str,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.metrics = metrics
        self.log = log
        self.by = by
        self._clock = clock
        self.routes = config.route_names
        self._chains = [chain.name for chain in config.chains]
        self._senders = {
            name: {bytes.fromhex(a[2:]) for a in settings.senders}
            for name, settings in config.routes.items()
        }
        self._recipients = {
            name: {bytes.fromhex(a[2:]) for a in settings.recipients}
            for name, settings in config.routes.items()
        }
        self._buckets = {
            name: TokenBucket(settings.rate_limit, settings.bucket_size, clock=clock)
            for name, settings in config.routes.items()
            if settings.rate_limit is not None
        }
        self._streaks: dict[str, _Streak] = {}
        self.paused: dict[str, PauseView] = {}
        # Being paused now (the ledger write in flight): not paused twice.
        self._pausing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- allowlists ----------------------------------------------------------------------------

    def refusal(self, route: str, message: Message) -> tuple[str, str] | None:
        """``(rule, reason)`` when ``route``'s allowlists refuse ``message``, else None."""
        senders = self._senders.get(route)
        if senders and message.sender not in senders:
            return "sender", (
                f"sender 0x{message.sender.hex()} is not on the senders allowlist of route "
                f"{route} ([routes.{route!r}] senders)"
            )
        recipients = self._recipients.get(route)
        if recipients and message.recipient not in recipients:
            return "recipient", (
                f"recipient 0x{message.recipient.hex()} is not on the recipients allowlist of "
                f"route {route} ([routes.{route!r}] recipients)"
            )
        return None

    def refused_records(
        self, records: Sequence[MessageRecord]
    ) -> list[tuple[MessageRecord, str, str]]:
        """``(record, rule, reason)`` of each of ``records`` its route's allowlists refuse:
        the delivery worker's check, for messages verified before an allowlist was added or
        tightened (the core refuses the ones it verifies under it)."""
        if not self._senders and not self._recipients:
            return []
        out = []
        for record in records:
            if not (self._senders.get(record.route) or self._recipients.get(record.route)):
                continue
            try:
                message = Message.decode(record.message)
            except MessageFormatError:
                continue  # verified, so it decodes; if not, delivery's own checks say so
            refusal = self.refusal(record.route, message)
            if refusal is not None:
                out.append((record, *refusal))
        return out

    # --- the breaker ---------------------------------------------------------------------------

    def verified(self, route: str) -> None:
        """A message of ``route`` verified: its failure streak and its origin's end."""
        self._streaks.pop(route, None)
        self._streaks.pop(_origin_key(route.partition("->")[0]), None)

    async def rejected(self, route: str, reason: str) -> None:
        """Evidence for a message of ``route`` failed verification."""
        if route not in self.routes:
            return  # an unconfigured destination: nothing would deliver it anyway
        limit = self.config.route(route).pause_after_rejections
        count = self._streaks.setdefault(route, _Streak()).hit(self._clock())
        if limit and count >= limit:
            self._streaks.pop(route, None)
            await self.pause(
                route,
                reason=f"{count} verification failures in a row; the last: {reason}",
                trip="rejections",
            )

    def read_failed(self, chain: str, reason: str) -> None:
        """An endpoint of ``chain`` answered what does not hash together (the watcher's
        "read" failures): the route of the message is unknown, so each route out of ``chain``
        counts it. For ``RelayerMetrics.add_proof_listener`` (called on the event loop)."""
        count = self._streaks.setdefault(_origin_key(chain), _Streak()).hit(self._clock())
        due = [
            route
            for route in self.routes
            if route.startswith(f"{chain}->")
            and (limit := self.config.route(route).pause_after_rejections)
            and count >= limit
            and route not in self.paused
            and route not in self._pausing
        ]
        if not due:
            return
        why = (
            f"{count} answers in a row from an endpoint of {chain} did not verify; the last: "
            f"{reason}"
        )
        for route in due:
            self._spawn(self.pause(route, reason=why, trip="read_failures"))

    async def foreign_transaction(self, chain: str, detail: str) -> None:
        """A transaction from our key on ``chain`` that this daemon did not send: every route
        into ``chain`` is paused (the key may be in other hands)."""
        for route in self.routes:
            if route.endswith(f"->{chain}") and route not in self.paused:
                await self.pause(route, reason=detail, trip="foreign_transaction")

    async def pause(self, route: str, *, reason: str, trip: str | None = None) -> bool:
        """Pause ``route`` in the ledger (a trip of the breaker when ``trip`` names why);
        whether it was paused now (False: it was already)."""
        self._pausing.add(route)
        try:
            done = await from_loop(
                self.ledger, self.ledger.pause_route, route, reason=reason, by=self.by
            )
        except StoreError as exc:
            # The ledger refused: nothing is paused, and the next failure tries again.
            self.log.error("route.pause_failed", route=route, reason=reason, error=str(exc))
            return False
        finally:
            self._pausing.discard(route)
        if done:
            if trip is not None:
                self.metrics.breaker_trips.labels(route, trip).inc()
            self.log.error(
                "route.paused", route=route, reason=reason, by=self.by, hint=resume_hint(route)
            )
        await self.refresh()
        return bool(done)

    # --- pauses --------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the paused routes from the ledger (a pause or resume of another process's is
        logged here once)."""
        try:
            found: dict[str, PauseView] = dict(
                await from_loop(self.ledger, self.ledger.paused_routes)
            )
        except StoreError as exc:
            self.log.warning("route.pauses_unreadable", error=str(exc))
            return
        for route, pause in found.items():
            if route not in self.paused and pause.paused_by != self.by:
                self.log.warning(
                    "route.paused",
                    route=route,
                    reason=pause.reason,
                    by=pause.paused_by,
                    hint=resume_hint(route),
                )
        for route in self.paused.keys() - found.keys():
            self.log.info("route.resumed", route=route)
        self.paused = found
        self.metrics.paused = found
        for route in {*self.routes, *found}:
            self.metrics.route_paused.labels(route).set(1 if route in found else 0)

    async def watch(self, interval: float = 1.0) -> None:
        """Re-read the paused routes every ``interval`` seconds, for ever."""
        while True:
            await self.refresh()
            await asyncio.sleep(interval)

    def skip_routes(self, destination: str) -> set[str]:
        """The routes into ``destination`` whose messages delivery must not claim now: the
        paused ones, and those whose rate limit has no token left."""
        skip = {route for route in self.paused if route.endswith(f"->{destination}")}
        skip.update(
            route
            for route, bucket in self._buckets.items()
            if route.endswith(f"->{destination}") and bucket.available() < 1
        )
        return skip

    def paused_into(self, destination: str) -> list[str]:
        return sorted(route for route in self.paused if route.endswith(f"->{destination}"))

    # --- rate limits ---------------------------------------------------------------------------

    def admit(
        self, records: Sequence[MessageRecord]
    ) -> tuple[list[MessageRecord], list[MessageRecord]]:
        """Split claimed ``records`` into those their routes' rate limits let through now
        (each takes a token) and those held back (counted in ``relayer_rate_limited``)."""
        if not self._buckets:
            return list(records), []
        wanted = Counter(record.route for record in records)
        granted = {
            route: (bucket.take(wanted[route]) if route in wanted else 0)
            for route, bucket in self._buckets.items()
        }
        admitted: list[MessageRecord] = []
        held: list[MessageRecord] = []
        for record in records:
            left = granted.get(record.route)
            if left is None:
                admitted.append(record)
            elif left > 0:
                granted[record.route] = left - 1
                admitted.append(record)
            else:
                held.append(record)
        for route, count in Counter(r.route for r in held).items():
            self.metrics.rate_limited.labels(route).inc(count)
        return admitted, held

    def next_token(self, destination: str) -> float | None:
        """Seconds until a route into ``destination`` whose rate limit has no token left has
        one again; None when no such route waits for one (a full bucket is no reason to wake
        before the poll interval)."""
        waits = [
            wait
            for route, bucket in self._buckets.items()
            if route.endswith(f"->{destination}")
            and route not in self.paused
            and (wait := bucket.wait()) > 0
        ]
        return min(waits) if waits else None

    # --- fee budgets ---------------------------------------------------------------------------

    def fee_window(self, chain: str, *, signer: str, unit: str) -> FeeWindow | None:
        """The fee window of the key ``signer`` delivering to ``chain`` (None: no budget),
        registered with the metrics (the spent gauge and /readyz). Empty: the worker fills it
        from the ledger when it starts (``DeliveryWorker.run``)."""
        budget = self.config.chain(chain).fee_budget_per_hour
        if budget is None:
            return None
        window = FeeWindow(budget, signer=signer, unit=unit, clock=self._clock)
        self.metrics.spending[chain] = window
        return window

    # --- helpers -------------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _origin_key(chain: str) -> str:
    # Streak keys: routes for verification failures, "chain->*" for an origin's read failures.
    return f"{chain}->*"
