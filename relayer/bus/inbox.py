"""The subscriber's side of either bus: payloads admitted off the wire, and a bounded backlog.

``admit`` turns wire bytes into a notice or drops them with a ``bus.payload_dropped`` line
saying why; it never raises, so nothing a publisher sends can stop a subscriber. ``Inbox`` is one
subscription's backlog: it never blocks the side that fills it (a broker connection must keep
reading, or the broker disconnects it), so a backlog that is full drops the newest notices, says
so once (``bus.backlog_full``) and once again when it takes notices again
(``bus.backlog_recovered``, with the count). A dropped notice only delays its message: the ledger
holds it and consumers poll it.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Generic

from relayer.bus.errors import PayloadError
from relayer.bus.payloads import Notice, NoticeT, decode_notice
from relayer.bus.topics import Topics

__all__ = ["DEFAULT_MAX_BACKLOG", "Inbox", "admit"]

#: the default backlog of one subscription, in notices
DEFAULT_MAX_BACKLOG = 10_000


def admit(topics: Topics, topic: str, payload: bytes, *, max_bytes: int, log: Any) -> Notice | None:
    """The notice in ``payload`` if it is one and belongs on ``topic``; else None, logged."""
    try:
        notice = decode_notice(payload, max_bytes=max_bytes)
    except PayloadError as exc:
        log.warning(
            "bus.payload_dropped",
            reason=exc.reason,
            detail=exc.detail,
            topic=topic,
            size=len(payload),
        )
        return None
    if topics.parse(topic) != (type(notice), notice.origin_domain):
        # A notice of origin 7 on origin 5's topic would reach consumers that never asked for
        # origin 7; the topic is what they subscribed to, so the topic wins.
        log.warning(
            "bus.payload_dropped",
            reason="wrong_topic",
            detail=f"{type(notice).__name__} of origin {notice.origin_domain}",
            topic=topic,
            size=len(payload),
        )
        return None
    return notice


class Inbox(Generic[NoticeT]):
    """One subscription's notices; iterate it (``async for notice in inbox``) until it closes."""

    def __init__(self, kind: type[NoticeT], *, max_backlog: int, log: Any) -> None:
        if max_backlog < 1:
            raise ValueError(f"max_backlog must be at least 1, not {max_backlog}")
        self.kind: type[NoticeT] = kind
        self._max_backlog = max_backlog
        self._log = log
        self._items: collections.deque[NoticeT] = collections.deque()
        self._wakeup = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._closed = False
        #: notices dropped because the backlog was full, since the inbox was made
        self.dropped = 0
        self._dropped_in_episode = 0

    # -- the side that fills it ------------------------------------------------------------------

    def offer(self, notice: Notice) -> bool:
        """Queue ``notice`` for the consumer; False if it was dropped (closed, wrong kind, or the
        backlog is full)."""
        if self._closed or not isinstance(notice, self.kind):
            return False
        if len(self._items) >= self._max_backlog:
            self.dropped += 1
            self._dropped_in_episode += 1
            if self._dropped_in_episode == 1:
                self._log.warning(
                    "bus.backlog_full", kind=self.kind.__name__, limit=self._max_backlog
                )
            return False
        if self._dropped_in_episode:
            self._log.info(
                "bus.backlog_recovered", kind=self.kind.__name__, dropped=self._dropped_in_episode
            )
            self._dropped_in_episode = 0
        self._items.append(notice)
        self._wakeup.set()
        return True

    def set_subscribed(self, subscribed: bool) -> None:
        if subscribed:
            self._subscribed.set()
        else:
            self._subscribed.clear()

    def close(self) -> None:
        """End the iteration; what was not taken yet is dropped."""
        self._closed = True
        self._items.clear()
        self._subscribed.clear()
        self._wakeup.set()

    # -- the consumer's side ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def backlog(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self._max_backlog

    async def wait_subscribed(self, timeout: float | None = None) -> None:
        """Return once notices published from now on reach this inbox; ``TimeoutError`` if that
        does not happen within ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self._subscribed.wait()

    def __aiter__(self) -> Inbox[NoticeT]:
        return self

    async def __anext__(self) -> NoticeT:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._items.popleft()
