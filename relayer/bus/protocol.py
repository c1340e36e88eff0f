"""The bus: one interface, an in-process implementation (``memory``) and a broker (``mqtt``).

What the bus is for: telling another role, soon, that there is work (a watcher's observation, an
attester's signature). What it is not: a place where anything is kept. The ledger holds every
message before its notice is published, and consumers also poll the ledger, so a notice that is
lost (a broker restart, a full backlog, a dead worker holding it) only delays its message, and a
notice that arrives twice is deduplicated by message id. Nothing on the bus is trusted either:
every consumer re-verifies what it takes off it (``relayer.bus.payloads``).

Usage::

    async with bus:                                   # connects (MQTT), or nothing (memory)
        await bus.publish(ObservationNotice(...))     # to relayer/v1/<origin>/observations
        async with bus.subscribe(ObservationNotice, origins=[1000], group="workers") as notices:
            async for notice in notices:              # ends when the bus closes
                ...                                   # re-verify, then act

``group`` makes the subscription one member of a shared subscription: each notice goes to one
member of the group (the load is split); without a group every subscription gets every notice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Protocol, Self, TypeVar

from relayer.bus.payloads import Notice, NoticeT

__all__ = ["Bus", "Subscription"]

_NoticeT_co = TypeVar("_NoticeT_co", bound=Notice, covariant=True)


class Subscription(Protocol[_NoticeT_co]):
    """The notices of one subscription, in arrival order; the iteration ends when the
    subscription or its bus is closed, never with an error (a broker outage is waited out)."""

    def __aiter__(self) -> AsyncIterator[_NoticeT_co]: ...

    async def __anext__(self) -> _NoticeT_co: ...

    @property
    def backlog(self) -> int:
        """Notices waiting for the consumer."""
        ...

    async def wait_subscribed(self, timeout: float | None = None) -> None:
        """Return once notices published from now on reach this subscription (at once on the
        memory bus; on MQTT once the broker has acknowledged the subscription, again after each
        reconnection). Raises ``TimeoutError`` if not within ``timeout`` seconds."""
        ...


class Bus(Protocol):
    async def __aenter__(self) -> Self:
        """Start the bus. Raises ``BrokerRefusedError`` if the broker refuses the credentials
        or the certificate (a broker that cannot be reached is retried in the background)."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """``aclose()``."""
        ...

    async def aclose(self) -> None:
        """Close every subscription (their iterations end) and disconnect. Idempotent."""
        ...

    @property
    def connected(self) -> bool:
        """Whether a publish would go out now (always true for the memory bus)."""
        ...

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Return once connected; ``TimeoutError`` if not within ``timeout`` seconds."""
        ...

    async def publish(self, notice: Notice) -> None:
        """Send ``notice`` to its topic (QoS 1 on MQTT: returns once the broker has it).

        Raises ``PayloadTooLargeError`` if it encodes to more than the maximum payload size
        (not retryable: leave the message to the ledger), ``BusUnavailableError`` (retryable)
        if there is no connection or no acknowledgement within the publish timeout. Neither
        loses the message, which is in the ledger: log and go on."""
        ...

    def subscribe(
        self,
        kind: type[NoticeT],
        *,
        origins: Iterable[int] | None = None,
        group: str | None = None,
    ) -> AbstractAsyncContextManager[Subscription[NoticeT]]:
        """Notices of ``kind`` from ``origins`` (origin domains; None: all), as one member of the
        shared subscription ``group`` if given. Entering waits for the subscription to be in
        place when the bus is connected (and raises ``BrokerRefusedError`` as ``__aenter__``
        does); leaving ends it. Raises ``ValueError`` for an empty ``origins`` or a ``group``
        that cannot name a shared subscription."""
        ...
