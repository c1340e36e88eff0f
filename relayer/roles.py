"""The roles a ``relayer start`` process takes, and how watchers hand observations to workers.

- ``all`` (the default): one process does everything; observations go from the watchers to the
  core in process, as they always have.
- ``watcher``: follows the chains, verifies and records each observation in the shared ledger,
  then announces it on the bus (``ObservationAnnouncer``).
- ``worker``: gathers attestations and delivers. It also takes observations off the bus,
  re-verifies each with the origin plugin, and hands what verifies to the core, which records
  what the ledger lacks (``ObservationIntake``).

The ledger is the truth and workers poll it, so a notice that is lost only delays its message;
the bus is not trusted, so a notice that does not verify is dropped and counted, never recorded:
recording it as rejected would let anyone who can publish on the broker condemn a real message
id before its true observation arrives.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from relayer.bus.errors import BusError
from relayer.bus.payloads import ObservationNotice
from relayer.bus.protocol import Bus
from relayer.config import Config
from relayer.errors import EvidenceRejectedError, UnknownChainError
from relayer.message import Message, MessageFormatError
from relayer.plugin import ChainPlugin, Observation, load_plugin

__all__ = ["ObservationAnnouncer", "ObservationIntake", "Role"]

Accept = Callable[[Sequence[Observation]], Awaitable[None]]

# Message ids recently handed to the core, to drop a notice's replays without verifying again.
_ACCEPTED_KEPT = 100_000
# Notices taken off the bus per hand-over to the core (one ledger transaction).
_BATCH = 256


class Role(StrEnum):
    """``relayer start --role``."""

    ALL = "all"
    WATCHER = "watcher"
    WORKER = "worker"

    @property
    def watches(self) -> bool:
        return self is not Role.WORKER

    @property
    def works(self) -> bool:
        return self is not Role.WATCHER


class ObservationAnnouncer:
    """The watcher's side: after the core recorded a batch of observations, announce each on
    the bus. A broker that is away is logged once per outage and otherwise ignored: the
    observations are in the ledger, where workers also look."""

    def __init__(self, bus: Bus, config: Config, log: Any) -> None:
        self._bus = bus
        self._config = config
        self._log = log
        self._failing = False
        self.announced = 0

    def sink(self, accept: Accept) -> Accept:
        """A watcher's sink: ``accept`` (the core: verify, record), then announce."""

        async def record_then_announce(observations: Sequence[Observation]) -> None:
            await accept(observations)
            await self.announce(observations)

        return record_then_announce

    async def announce(self, observations: Sequence[Observation]) -> None:
        for observation in observations:
            try:
                message_id = Message.decode(observation.message).id
            except MessageFormatError:
                continue  # the core logged it, and recorded nothing a worker could use
            notice = ObservationNotice.from_observation(
                observation,
                origin_domain=self._config.chain(observation.origin_chain).domain,
                message_id=message_id,
            )
            try:
                await self._bus.publish(notice)
            except BusError as exc:
                if not self._failing:
                    self._failing = True
                    self._log.warning(
                        "bus.announce_failed",
                        chain=observation.origin_chain,
                        error=str(exc),
                        detail="recorded in the ledger; workers find it when they poll",
                    )
                continue
            if self._failing:
                self._failing = False
                self._log.info("bus.announce_recovered", chain=observation.origin_chain)
            self.announced += 1


class ObservationIntake:
    """The worker's side: observations off the bus, each checked against this process's own
    config and re-verified by its origin plugin, handed to ``accept`` (the core) in batches.
    A notice that fails is dropped with a ``bus.observation_refused`` line (once per reason
    and chain until that changes) and counted in ``stats`` by reason: unknown_origin,
    wrong_chain, garbage, wrong_id, forged; replays of what was handed over count as
    duplicate, and those ``known`` says the ledger holds already as recorded. Workers share the
    load as members of one shared subscription ``group``."""

    def __init__(
        self,
        bus: Bus,
        config: Config,
        accept: Accept,
        log: Any,
        *,
        group: str | None = "workers",
        plugins: Mapping[str, ChainPlugin] | None = None,
        known: Callable[[Sequence[bytes]], Awaitable[set[bytes]]] | None = None,
    ) -> None:
        self._bus = bus
        self._config = config
        self._accept = accept
        self._log = log
        self._group = group
        self._plugins = (
            dict(plugins)
            if plugins is not None
            else {chain.name: load_plugin(chain.type) for chain in config.chains}
        )
        self._known = known
        self._accepted: dict[bytes, None] = {}
        self._last_refusal: tuple[str, str] | None = None
        self._subscribed = asyncio.Event()
        self.stats: Counter[str] = Counter()

    async def wait_subscribed(self, timeout: float | None = None) -> None:
        """Return once notices published from now on reach this intake."""
        async with asyncio.timeout(timeout):
            await self._subscribed.wait()

    async def run(self) -> None:
        """Take notices until cancelled or the bus closes."""
        origins = [chain.domain for chain in self._config.chains]
        async with self._bus.subscribe(
            ObservationNotice, origins=origins, group=self._group
        ) as notices:
            await notices.wait_subscribed()
            self._subscribed.set()
            async for first in notices:
                batch = [first]
                # What already waits goes in the same batch: one ledger transaction for it.
                while notices.backlog and len(batch) < _BATCH:
                    batch.append(await anext(notices))
                await self.take(batch)

    async def take(self, notices: Sequence[ObservationNotice]) -> int:
        """Check ``notices`` and hand what verifies to the core; returns how many were handed
        over (public for tests and tools)."""
        valid: dict[bytes, Observation] = {}
        # What the shared ledger holds already (the watcher records before it announces) needs
        # no second verification: the ledger is the truth, the notice only a wake-up.
        recorded = (
            await self._known([n.message_id for n in notices]) if self._known else set[bytes]()
        )
        for notice in notices:
            if notice.message_id in recorded:
                self.stats["recorded"] += 1
                continue
            if notice.message_id in self._accepted or notice.message_id in valid:
                self.stats["duplicate"] += 1
                continue
            try:
                valid[notice.message_id] = self._check(notice)
            except _RefusedError as refusal:
                self._refuse(notice, refusal.reason, refusal.detail)
        if valid:
            await self._accept(list(valid.values()))
            for message_id in valid:
                self._accepted[message_id] = None
            while len(self._accepted) > _ACCEPTED_KEPT:
                del self._accepted[next(iter(self._accepted))]
            self.stats["accepted"] += len(valid)
        return len(valid)

    def _check(self, notice: ObservationNotice) -> Observation:
        try:
            origin = self._config.chain_by_domain(notice.origin_domain)
        except UnknownChainError:
            raise _RefusedError("unknown_origin", "no configured chain has this domain") from None
        if origin.name != notice.origin_chain:
            raise _RefusedError(
                "wrong_chain",
                f"names chain {notice.origin_chain!r}, but domain {origin.domain} is {origin.name}",
            )
        try:
            message_id = Message.decode(notice.message).id
        except MessageFormatError as exc:
            raise _RefusedError("garbage", f"the message does not decode: {exc}") from None
        if message_id != notice.message_id:
            raise _RefusedError("wrong_id", "the message hashes to another id")
        observation = notice.to_observation()
        try:
            self._plugins[origin.name].verify(origin, observation)
        except EvidenceRejectedError as exc:
            raise _RefusedError("forged", str(exc)) from None
        return observation

    def _refuse(self, notice: ObservationNotice, reason: str, detail: str) -> None:
        self.stats[reason] += 1
        chain = notice.origin_chain
        if self._last_refusal != (reason, chain):
            self._last_refusal = (reason, chain)
            self._log.warning(
                "bus.observation_refused",
                reason=reason,
                detail=detail,
                chain=chain,
                message_id="0x" + notice.message_id.hex(),
            )


class _RefusedError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
