"""New-head notifications over a websocket subscription (``eth_subscribe("newHeads")``).

A hint only: it wakes the watcher as soon as a block arrives, so that a message is picked up
without waiting for the next poll. The watcher still polls on its own and reads everything
over HTTP, so a dropped subscription costs latency, never a message.
"""

from __future__ import annotations

import asyncio
from typing import Any

from web3 import AsyncWeb3, WebSocketProvider

from relayer.retry import backoff_delay

__all__ = ["HeadNotifier"]


class HeadNotifier:
    def __init__(self, ws_url: str, log: Any) -> None:
        self.ws_url = ws_url
        self.log = log
        self.event = asyncio.Event()
        # One event per consumer: a consumer that clears its event must not hide the head
        # from another (the confirmed pass and the read-ahead both wake on every head).
        self._listeners: list[asyncio.Event] = [self.event]
        self.subscribed = False

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                async with AsyncWeb3(WebSocketProvider(self.ws_url)) as w3:
                    await w3.eth.subscribe("newHeads")
                    if attempt:
                        self.log.info("heads.resubscribed")
                    attempt = 0
                    self.subscribed = True
                    async for _ in w3.socket.process_subscriptions():
                        for event in self._listeners:
                            event.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (any websocket failure: fall back to polling)
                self.subscribed = False
                attempt += 1
                if attempt == 1:
                    self.log.warning(
                        "heads.subscription_lost", error=f"{type(exc).__name__}: {exc}"
                    )
                await asyncio.sleep(backoff_delay(attempt, base=1.0, cap=30.0))

    def listen(self) -> asyncio.Event:
        """A consumer's own event, set on every head."""
        event = asyncio.Event()
        self._listeners.append(event)
        return event

    async def wait(self, timeout: float, event: asyncio.Event | None = None) -> None:
        """Until the next head (or ``timeout``, the polling fallback)."""
        event = event or self.event
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
        event.clear()
