"""Several endpoints of one chain: failover for reads, and agreement of ``quorum`` of them on
what decides finality.

Every answer that matters is verified above this layer (headers hashed, receipts and storage
proven), so one lying endpoint can at worst withhold or show another fork. What verification
cannot settle is *which* block is at a height, and how far the chain has got: those reads go to
every endpoint, and only an answer ``quorum`` of them agree on is accepted (for a height, the
``quorum``-th highest: what ``quorum`` endpoints have reached). An endpoint that disagrees with
the agreed answer, lags behind it, or fails is marked unhealthy with its reason, logged once
(``endpoint.unhealthy``); it is tried again after a cooldown and logged once more when it
answers well again (``endpoint.recovered``).

Family-neutral: a chain family wraps its one-endpoint client in ``EndpointPool`` and says which
of its errors are an endpoint being unwell (worth trying another) rather than an answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import structlog
from pydantic import TypeAdapter, ValidationError

from relayer.errors import TransientChainError
from relayer.plugin import observe_endpoint_health
from relayer.retry import backoff_delay, describe_error

__all__ = [
    "EndpointPool",
    "EndpointStatus",
    "Endpoints",
    "EndpointsFailedError",
    "Member",
    "QuorumError",
    "as_config",
    "endpoints_parser",
    "urls_of",
]

# Seconds an endpoint that disagreed or lagged sits out before its answers may clear it again:
# long enough that one that keeps lying is not logged recovered and unhealthy in turn.
_COOLDOWN_S = 30.0
# Seconds (ceiling) between tries of an endpoint that keeps failing.
_BACKOFF_CAP_S = 30.0


class Endpoints(str):
    """A chain's endpoints as its config lists them, in order of preference.

    A ``str`` whose value is the first endpoint, so that code speaking to one endpoint (tools,
    an attester's default) keeps working; ``urls`` holds all of them."""

    urls: tuple[str, ...]

    def __new__(cls, urls: Sequence[str]) -> Endpoints:
        if not urls:
            raise ValueError("must name at least one endpoint")
        made = super().__new__(cls, urls[0])
        made.urls = tuple(urls)
        return made

    def __getnewargs__(self) -> tuple[tuple[str, ...]]:  # type: ignore[override]
        return (self.urls,)


def as_config(value: str) -> str | list[str]:
    """Endpoints as a config file writes them: one URL, or the list."""
    urls = urls_of(value)
    return urls[0] if len(urls) == 1 else list(urls)


def endpoints_parser(url_type: Any) -> Callable[[object], Endpoints]:
    """A config validator for ``rpc = "url"`` or ``rpc = ["url", ...]``, each URL checked as
    ``url_type`` (strictly, as every config value)."""
    adapter: TypeAdapter[str] = TypeAdapter(url_type)

    def parse(value: object) -> Endpoints:
        if isinstance(value, Endpoints):
            return value
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not items:
            raise ValueError("must be an endpoint URL or a non-empty list of them")
        urls: list[str] = []
        for item in items:
            if not isinstance(item, str):
                raise ValueError("must be an endpoint URL or a non-empty list of them")  # noqa: TRY004
            try:
                urls.append(adapter.validate_python(item, strict=True))
            except ValidationError as exc:
                # The first error's text only: never the URL itself (it may hold an API key).
                raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
        if len(set(urls)) != len(urls):
            raise ValueError("lists one endpoint twice (a quorum counts distinct endpoints)")
        return Endpoints(urls)

    return parse


def urls_of(value: str | Sequence[str]) -> tuple[str, ...]:
    """Every endpoint ``value`` names: an ``Endpoints``' list, a lone URL, or a sequence."""
    if isinstance(value, Endpoints):
        return value.urls
    if isinstance(value, str):
        return (value,)
    return tuple(value)


class Member(Protocol):
    """One endpoint's client: ``endpoint`` is its URL redacted for logs."""

    @property
    def endpoint(self) -> str: ...


M = TypeVar("M", bound=Member)
T = TypeVar("T")


class QuorumError(TransientChainError):
    """Fewer than ``quorum`` endpoints agree (or answered at all): nothing is accepted, and the
    read is tried again later."""


class EndpointsFailedError(TransientChainError):
    """Every endpoint of the chain was tried and failed (``EndpointPool.first`` with several):
    the chain is out of reach for now. The message names each endpoint and its failure."""


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    """One endpoint's health as the pool judges it (for metrics and readiness)."""

    endpoint: str  # redacted for logs
    healthy: bool
    #: why it is unhealthy (as logged with ``endpoint.unhealthy``); None while healthy
    reason: str | None
    #: failures in a row (0 while healthy)
    failures: int
    #: seconds until it is preferred again (its backoff or cooldown); 0 when it already may be
    retry_in: float


@dataclass(slots=True)
class _State:
    down_until: float = 0.0  # monotonic; 0 while healthy
    reason: str | None = None  # None while healthy
    failures: int = 0
    judged: bool = False  # its answer was judged (disagreed, lagged), not a failure


class EndpointPool(Generic[M]):
    """The endpoints of one chain, each with its health."""

    def __init__(
        self,
        members: Sequence[M],
        *,
        fails_over: Callable[[Exception], bool],
        chain: str = "",
        quorum: int = 1,
        max_lag: int = 16,
        log: Any = None,
    ) -> None:
        if not members:
            raise ValueError("an endpoint pool needs at least one endpoint")
        self.members = tuple(members)
        self._fails_over = fails_over
        self._state = {id(m): _State() for m in self.members}
        self.chain = chain
        self.quorum = 1
        self.max_lag = max_lag
        self._log = log or structlog.get_logger()
        self.require(quorum=quorum, max_lag=max_lag, chain=chain, log=log)

    def require(self, *, quorum: int, max_lag: int, chain: str, log: Any = None) -> None:
        """Ask ``quorum`` endpoints to agree on heights and block hashes from now on."""
        if not 1 <= quorum <= len(self.members):
            raise ValueError(
                f"chain `{chain}`: quorum = {quorum} needs between 1 and {len(self.members)} "
                f"(the number of endpoints)"
            )
        self.quorum, self.max_lag, self.chain = quorum, max_lag, chain
        if log is not None:
            self._log = log
        for member in self.members:  # the daemon's gauge shows every endpoint from the start
            self._report(member)

    def _report(self, member: M) -> None:
        """Tell the daemon's metrics (if any) how ``member`` stands."""
        if self.chain:
            reason = self._state[id(member)].reason
            observe_endpoint_health(
                self.chain, member.endpoint, judge=id(self), healthy=reason is None, reason=reason
            )

    # --- health ------------------------------------------------------------------------------

    def healthy(self, member: M) -> bool:
        return self._state[id(member)].reason is None

    def health(self) -> list[EndpointStatus]:
        """Every endpoint's health, in configured order."""
        now = time.monotonic()
        return [
            EndpointStatus(
                endpoint=member.endpoint,
                healthy=state.reason is None,
                reason=state.reason,
                failures=state.failures if state.reason is not None else 0,
                retry_in=max(0.0, state.down_until - now) if state.reason is not None else 0.0,
            )
            for member, state in ((m, self._state[id(m)]) for m in self.members)
        ]

    def unhealthy(self, member: M, reason: str, *, judged: bool = False) -> None:
        """Mark ``member`` unhealthy: logged when it becomes so, not again while it stays.
        ``judged``: its answer disagreed or lagged (a fixed cooldown, and only agreeing again
        clears it); else it failed (a growing backoff, and any answer clears it)."""
        state = self._state[id(member)]
        state.failures += 1
        state.judged = state.judged or judged
        cooldown = (
            _COOLDOWN_S if judged else backoff_delay(state.failures, base=1.0, cap=_BACKOFF_CAP_S)
        )
        state.down_until = max(state.down_until, time.monotonic() + cooldown)
        was_healthy = state.reason is None
        state.reason = reason
        if was_healthy:
            self._log.warning(
                "endpoint.unhealthy", chain=self.chain, endpoint=member.endpoint, reason=reason
            )
            self._report(member)

    def answered_well(self, member: M) -> None:
        """``member`` answered, and the answer agrees: it recovers once its cooldown is over."""
        state = self._state[id(member)]
        if state.reason is None:
            state.failures = 0
            return
        if time.monotonic() < state.down_until:
            return
        self._log.info(
            "endpoint.recovered", chain=self.chain, endpoint=member.endpoint, was=state.reason
        )
        state.reason, state.failures, state.down_until, state.judged = None, 0, 0.0, False
        self._report(member)

    def ordered(self) -> list[M]:
        """Healthy endpoints in configured order, with those whose failure backoff is over (one
        more try: success clears them); then those that disagreed or lagged, past their cooldown
        (only agreeing in a quorum read clears them); then the rest, soonest first: a last
        resort is still better than no answer."""
        now = time.monotonic()
        states = self._state

        def rank(member: M) -> tuple[int, float]:
            state = states[id(member)]
            if state.reason is None:
                return (0, 0.0)
            if state.down_until > now:
                return (2, state.down_until)
            return (0, 0.0) if self._is_failure(member) else (1, 0.0)

        return sorted(self.members, key=rank)

    # --- reads -------------------------------------------------------------------------------

    async def first(self, call: Callable[[M], Awaitable[T]], *, failover: bool = True) -> T:
        """``call`` on the preferred endpoint; on an endpoint failure, on the next one. When
        every endpoint tried failed: with one tried, its error; with several,
        ``EndpointsFailedError`` naming each (if any of their failures is worth retrying; if
        none is, the last one's error)."""
        candidates = self.ordered()
        if not failover:
            candidates = candidates[:1]
        failures: list[tuple[M, Exception]] = []
        for member in candidates:
            try:
                answer = await call(member)
            except Exception as exc:
                if not self._fails_over(exc):
                    raise  # an answer (a revert, a nonce taken): another endpoint says the same
                self.unhealthy(member, describe_error(exc))
                failures.append((member, exc))
                continue
            if self._is_failure(member) or self.healthy(member):
                # One that disagreed or lagged is cleared by agreeing, not by answering.
                self.answered_well(member)
            return answer
        last = failures[-1][1]
        if len(failures) == 1 or not any(getattr(exc, "retryable", False) for _, exc in failures):
            raise last
        # The endpoints first: a log line cuts a long error text, and which endpoints are out
        # is what the operator needs (each one's reason was logged with endpoint.unhealthy).
        prefix = f"chain `{self.chain}`: " if self.chain else ""
        names = ", ".join(m.endpoint for m, _ in failures)
        said = "; ".join(f"{m.endpoint}: {describe_error(exc)}" for m, exc in failures)
        raise EndpointsFailedError(
            f"{prefix}all {len(failures)} endpoints failed ({names}); check that they are up "
            f"and reachable, will retry. {said}"
        ) from last

    async def _ask_all(self, call: Callable[[M], Awaitable[T]]) -> list[tuple[M, T]]:
        """``call`` on every endpoint at once (but those still in a failure backoff); the
        answers of those that answered. Failures mark their endpoint unhealthy."""
        now = time.monotonic()
        asked = [
            m
            for m in self.members
            if not (self._is_failure(m) and self._state[id(m)].down_until > now)
        ]
        if len(asked) < self.quorum:
            asked = list(self.members)  # too few left: a last resort beats no answer
        results = await asyncio.gather(*(call(m) for m in asked), return_exceptions=True)
        answers: list[tuple[M, T]] = []
        for member, result in zip(asked, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception) or not self._fails_over(result):
                    raise result
                self.unhealthy(member, describe_error(result))
            else:
                answers.append((member, result))
        return answers

    def _is_failure(self, member: M) -> bool:
        # Sitting out a failure backoff (not a disagreement): asking it again now would only
        # cost a timeout.
        state = self._state[id(member)]
        return state.reason is not None and not state.judged

    async def agreed(
        self,
        call: Callable[[M], Awaitable[T | None]],
        *,
        key: Callable[[T], Hashable],
        what: str,
    ) -> T | None:
        """The answer ``quorum`` endpoints agree on (by ``key``), asked of all of them. None
        (the endpoint does not have it) is agreement only among endpoints that all say so;
        an endpoint that answers something else than the agreed answer is marked unhealthy.
        Raises ``QuorumError`` when no answer has ``quorum`` endpoints behind it."""
        answers = await self._ask_all(call)
        groups: dict[Hashable, list[tuple[M, T | None]]] = {}
        for member, answer in answers:
            groups.setdefault(None if answer is None else key(answer), []).append((member, answer))
        known = {k: g for k, g in groups.items() if k is not None}
        best = max(known, key=lambda k: len(known[k]), default=None)
        if best is None or len(known[best]) < self.quorum:
            if best is None and len(groups.get(None, ())) >= self.quorum:
                return None  # nobody has it (yet)
            raise QuorumError(
                f"chain `{self.chain}`: no {self.quorum} endpoints agree on {what} ("
                + _answers(answers, key)
                + "); waiting for them to agree"
            )
        tied = [k for k, g in known.items() if len(g) == len(known[best])]
        if len(tied) > 1:
            raise QuorumError(
                f"chain `{self.chain}`: endpoints split evenly on {what} ("
                + _answers(answers, key)
                + "); waiting for them to agree"
            )
        for k, group in known.items():
            for member, _ in group:
                if k == best:
                    self.answered_well(member)
                else:
                    self.unhealthy(
                        member,
                        f"answered {what} as {_short(k)}, where {len(known[best])} endpoints "
                        f"agree on {_short(best)}",
                        judged=True,
                    )
        return known[best][0][1]

    async def reached(self, call: Callable[[M], Awaitable[int]], *, what: str) -> int:
        """The height ``quorum`` endpoints have all reached (the ``quorum``-th highest of their
        answers), asked of all of them. An endpoint more than ``max_lag`` below it is marked
        unhealthy; one above it cannot be judged (the others may be catching up)."""
        answers = await self._ask_all(call)
        heights = sorted((h for _, h in answers), reverse=True)
        if len(heights) < self.quorum:
            raise QuorumError(
                f"chain `{self.chain}`: {len(heights)} endpoint(s) answered {what}, "
                f"{self.quorum} needed; waiting for more to answer"
            )
        agreed = heights[self.quorum - 1]
        for member, height in answers:
            if height < agreed - self.max_lag:
                self.unhealthy(
                    member,
                    f"answered {what} {height}, {agreed - height} behind what {self.quorum} "
                    f"endpoints have reached ({agreed}; max_lag = {self.max_lag})",
                    judged=True,
                )
            else:
                self.answered_well(member)
        return agreed


def _short(value: Hashable) -> str:
    text = str(value)
    return text if len(text) <= 20 else text[:18] + ".."


def _answers(answers: Sequence[tuple[Member, Any]], key: Callable[[Any], Hashable]) -> str:
    said = [f"{m.endpoint} -> {'none' if a is None else _short(key(a))}" for m, a in answers]
    return ", ".join(said) or "none answered"
