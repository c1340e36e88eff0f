"""What ``/readyz`` answers: whether this relayer is doing its job, and if not, what is wrong.

Three checks, each configured and each naming the chain or route it failed for:

- a chain's head has not advanced for ``stall_after_blocks`` times its ``block_time`` (the node
  stopped, or its answers stopped reaching us);
- the balance of the key that delivers to a chain is below its ``min_balance``;
- a route's oldest undelivered message waits longer than ``[relayer] backlog_slo``;
- a route is paused (``relayer route list`` says why; ``relayer.safety``);
- a delivering key spent its ``fee_budget_per_hour``.

The state here is fed by the daemon's tasks (heads by the followers, balances by the balance
watchers) and read by the HTTP handler; ``problems`` itself is a pure function of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Backlog",
    "Balances",
    "ChainHeads",
    "ChainLimits",
    "EndpointVerdicts",
    "Paused",
    "Problem",
    "Spending",
    "problems",
]

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Problem:
    """One failed check: ``check`` is "head", "balance", "endpoints", "fee_budget", "backlog"
    or "paused"; ``subject`` the chain or route it failed for; ``reason`` a sentence for the
    operator."""

    check: str
    subject: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"check": self.check, "subject": self.subject, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Backlog:
    """A route's undelivered messages (observed to submitted) and when the oldest was first
    observed (wall-clock seconds; None without any)."""

    size: int
    oldest_at: float | None


class ChainHeads:
    """The newest head seen per chain, and when it last advanced (monotonic seconds). A chain
    not seen yet counts from the daemon's start: a node that never answers is stalled too."""

    def __init__(self, chains: Sequence[str], *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        started = clock()
        self._heads: dict[str, tuple[int | None, float]] = {c: (None, started) for c in chains}

    def seen(self, chain: str, number: int) -> bool:
        """Record a head; whether it advanced."""
        head, _ = self._heads.get(chain, (None, 0.0))
        if head is not None and number <= head:
            return False
        self._heads[chain] = (number, self._clock())
        return True

    def head(self, chain: str) -> int | None:
        return self._heads.get(chain, (None, 0.0))[0]

    def still_for(self, chain: str) -> float:
        """Seconds since ``chain``'s head last advanced (or since the start, before any)."""
        _, since = self._heads.get(chain, (None, self._clock()))
        return self._clock() - since


class Balances:
    """The last balance read of each chain's delivering key, in the chain's smallest unit."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, int, str]] = {}

    def seen(self, chain: str, account: str, balance: int, unit: str) -> None:
        self._known[chain] = (account, balance, unit)

    def get(self, chain: str) -> tuple[str, int, str] | None:
        """(account, balance, unit), or None before the first read."""
        return self._known.get(chain)


class EndpointVerdicts:
    """Each chain endpoint's health as the plugins' endpoint pools judge it. An endpoint is
    unhealthy while any pool (a chain's reader, its submitter) has it marked so."""

    def __init__(self) -> None:
        # (chain, endpoint) -> {pool: why it marked the endpoint unhealthy}
        self._marks: dict[tuple[str, str], dict[int, str]] = {}

    def judged(
        self, chain: str, endpoint: str, *, judge: int, healthy: bool, reason: str | None
    ) -> bool:
        """Record a pool's verdict; whether the endpoint counts as healthy now."""
        marks = self._marks.setdefault((chain, endpoint), {})
        if healthy:
            marks.pop(judge, None)
        else:
            marks[judge] = reason or "marked unhealthy"
        return not marks

    def endpoints(self) -> list[tuple[str, str, str | None]]:
        """``(chain, endpoint, reason)`` of every endpoint seen, reason None when healthy."""
        return [
            (chain, endpoint, next(iter(marks.values()), None))
            for (chain, endpoint), marks in sorted(self._marks.items())
        ]

    def all_down(self) -> dict[str, list[tuple[str, str]]]:
        """The chains none of whose endpoints is healthy: ``(endpoint, reason)`` of each."""
        by_chain: dict[str, list[tuple[str, str | None]]] = {}
        for chain, endpoint, reason in self.endpoints():
            by_chain.setdefault(chain, []).append((endpoint, reason))
        return {
            chain: [(endpoint, reason) for endpoint, reason in found if reason is not None]
            for chain, found in by_chain.items()
            if all(reason is not None for _, reason in found)
        }


class Spending(Protocol):
    """A delivering key's fees over the last hour against its budget
    (``relayer.safety.FeeWindow``)."""

    budget: int
    signer: str
    unit: str

    def spent(self) -> int: ...

    def room_in(self) -> float:
        """Seconds until spending falls below the budget (0: it is below now)."""
        ...


class Paused(Protocol):
    """A paused route (``relayer.store.RoutePause``)."""

    @property
    def reason(self) -> str: ...
    @property
    def paused_by(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ChainLimits:
    """One chain's readiness settings, as the config gives them."""

    block_time: float | None
    stall_after_blocks: int
    min_balance: int | None


def problems(
    *,
    heads: ChainHeads,
    balances: Balances,
    limits: Mapping[str, ChainLimits],
    backlog: Mapping[str, Backlog],
    backlog_slo: float,
    now: float,
    spending: Mapping[str, Spending] | None = None,
    paused: Mapping[str, Paused] | None = None,
    endpoints: EndpointVerdicts | None = None,
) -> list[Problem]:
    """Every failed check, chains first (in ``limits`` order), then fee budgets, then routes
    by name (backlogs, then pauses). ``now`` is wall-clock time, for the backlog's ages."""
    found: list[Problem] = []
    for chain, limit in limits.items():
        if limit.block_time is not None:
            allowed = limit.block_time * limit.stall_after_blocks
            still = heads.still_for(chain)
            if still > allowed:
                head = heads.head(chain)
                what = f"head {head}" if head is not None else "no head seen yet; the head"
                found.append(
                    Problem(
                        "head",
                        chain,
                        f"{what} has not advanced for {still:.0f} s, more than "
                        f"{limit.stall_after_blocks} x block_time ({limit.block_time:g} s): "
                        "is the node up, synced and reachable?",
                    )
                )
        if limit.min_balance is not None:
            known = balances.get(chain)
            if known is not None and known[1] < limit.min_balance:
                account, balance, unit = known
                found.append(
                    Problem(
                        "balance",
                        chain,
                        f"signer {account} holds {balance} {unit}, below min_balance "
                        f"({limit.min_balance} {unit}): fund it, or deliveries will stop",
                    )
                )
    down = endpoints.all_down() if endpoints is not None else {}
    for chain, why in sorted(down.items()):
        found.append(
            Problem(
                "endpoints",
                chain,
                f"every endpoint of {chain} is unhealthy: "
                + "; ".join(f"{endpoint} ({reason})" for endpoint, reason in why)
                + ": check that they are up, synced and reachable, or add one to rpc",
            )
        )
    for chain, window in (spending or {}).items():
        spent = window.spent()
        if spent >= window.budget:
            found.append(
                Problem(
                    "fee_budget",
                    chain,
                    f"signer {window.signer} paid {spent} {window.unit} in fees in the last "
                    f"hour, its fee_budget_per_hour ({window.budget} {window.unit}): no new "
                    f"delivery before {window.room_in():.0f} s from now, unless "
                    f'chains[name="{chain}"].fee_budget_per_hour is raised',
                )
            )
    if backlog_slo > 0:
        for route, entry in sorted(backlog.items()):
            if entry.oldest_at is None:
                continue
            age = now - entry.oldest_at
            if age > backlog_slo:
                found.append(
                    Problem(
                        "backlog",
                        route,
                        f"the oldest of {entry.size} undelivered messages was observed "
                        f"{age:.0f} s ago, more than backlog_slo ({backlog_slo:g} s): "
                        "`relayer status` and `relayer explain` say where they wait",
                    )
                )
    for route, pause in sorted((paused or {}).items()):
        found.append(
            Problem(
                "paused",
                route,
                f"paused by {pause.paused_by}: {pause.reason}; after fixing the cause, "
                f"relayer route resume {route}",
            )
        )
    return found
