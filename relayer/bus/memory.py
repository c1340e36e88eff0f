"""The embedded bus: every role in one process, notices handed over as objects.

The same semantics as the MQTT bus where they matter: a notice reaches every plain subscription
to its kind and origin, and one member of each shared-subscription group (round robin, skipping
members whose backlog is full; a member that leaves is out of the group at once); notices
published before a subscription is entered do not reach it; a full backlog drops the newest.
What it leaves out is the wire: notices are not encoded (nothing to parse, nothing to bound), so
``publish`` costs a few dictionary look-ups. ``publish_payload`` takes wire bytes as the MQTT bus
would receive them, for tests and tools, and drops what does not parse as MQTT does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import structlog

from relayer.bus.errors import BusUnavailableError
from relayer.bus.inbox import DEFAULT_MAX_BACKLOG, Inbox, admit
from relayer.bus.payloads import MAX_PAYLOAD_BYTES, Notice, NoticeT
from relayer.bus.protocol import Subscription
from relayer.bus.topics import Topics

__all__ = ["MemoryBus"]

# (kind, origin domain), or (kind, None) for a subscription to every origin.
_Filter = tuple[type[Notice], int | None]


@dataclass(eq=False)
class _Group:
    """The members of one shared subscription (one group name on one filter)."""

    members: list[Inbox[Any]] = field(default_factory=list)
    next: int = 0

    def deliver(self, notice: Notice) -> None:
        count = len(self.members)
        for step in range(count):
            member = self.members[(self.next + step) % count]
            if not member.full:
                member.offer(notice)
                self.next = (self.next + step + 1) % count
                return
        # Every member is behind: the one whose turn it is drops it (and says so).
        self.members[self.next % count].offer(notice)
        self.next = (self.next + 1) % count


class MemoryBus:
    """In-process bus (``relayer.bus.Bus``). Cheap to make; ``aclose`` ends every subscription."""

    def __init__(
        self,
        *,
        topics: Topics | None = None,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        log: Any = None,
    ) -> None:
        self.topics = topics if topics is not None else Topics()
        self._max_backlog = max_backlog
        self._max_payload_bytes = max_payload_bytes
        self._log = log if log is not None else structlog.get_logger()
        self._plain: dict[_Filter, list[Inbox[Any]]] = {}
        self._groups: dict[_Filter, dict[str, _Group]] = {}
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        for inboxes in self._plain.values():
            for inbox in inboxes:
                inbox.close()
        for groups in self._groups.values():
            for group in groups.values():
                for inbox in group.members:
                    inbox.close()
        self._plain.clear()
        self._groups.clear()

    @property
    def connected(self) -> bool:
        return not self._closed

    async def wait_connected(self, timeout: float | None = None) -> None:
        self._check_open()

    async def publish(self, notice: Notice) -> None:
        self._check_open()
        self._route(notice)

    async def publish_payload(self, topic: str, payload: bytes) -> None:
        """Deliver wire bytes as if they had come from a broker on ``topic``: what is not a
        notice of that topic's kind and origin is dropped with a ``bus.payload_dropped`` line."""
        self._check_open()
        notice = admit(
            self.topics, topic, payload, max_bytes=self._max_payload_bytes, log=self._log
        )
        if notice is not None:
            self._route(notice)

    def subscribe(
        self,
        kind: type[NoticeT],
        *,
        origins: Iterable[int] | None = None,
        group: str | None = None,
    ) -> contextlib.AbstractAsyncContextManager[Subscription[NoticeT]]:
        origins = None if origins is None else sorted(set(origins))
        self.topics.filters(kind, origins, group)  # the same ValueErrors as the MQTT bus
        return self._subscription(kind, origins, group)

    @contextlib.asynccontextmanager
    async def _subscription(
        self, kind: type[NoticeT], origins: list[int] | None, group: str | None
    ) -> AsyncIterator[Subscription[NoticeT]]:
        self._check_open()
        inbox: Inbox[NoticeT] = Inbox(kind, max_backlog=self._max_backlog, log=self._log)
        filters: list[_Filter] = (
            [(kind, None)] if origins is None else [(kind, domain) for domain in origins]
        )
        for key in filters:
            if group is None:
                self._plain.setdefault(key, []).append(inbox)
            else:
                self._groups.setdefault(key, {}).setdefault(group, _Group()).members.append(inbox)
        inbox.set_subscribed(True)
        try:
            yield inbox
        finally:
            inbox.close()
            for key in filters:
                self._forget(key, group, inbox)

    def _forget(self, key: _Filter, group: str | None, inbox: Inbox[Any]) -> None:
        if group is None:
            inboxes = self._plain.get(key, [])
            if inbox in inboxes:
                inboxes.remove(inbox)
            if not inboxes:
                self._plain.pop(key, None)
            return
        groups = self._groups.get(key, {})
        shared = groups.get(group)
        if shared is None:
            return
        if inbox in shared.members:
            shared.members.remove(inbox)
        if not shared.members:
            del groups[group]
        if not groups:
            self._groups.pop(key, None)

    def _route(self, notice: Notice) -> None:
        kind = type(notice)
        for key in ((kind, notice.origin_domain), (kind, None)):
            for inbox in self._plain.get(key, ()):
                inbox.offer(notice)
            for shared in self._groups.get(key, {}).values():
                shared.deliver(notice)

    def _check_open(self) -> None:
        if self._closed:
            raise BusUnavailableError("the in-process bus is closed (the daemon is stopping)")
