"""New-head notifications over a websocket subscription (``eth_subscribe("newHeads")``).

A hint only: it wakes the watcher as soon as a block arrives, so that a message is picked up
without waiting for the next poll. The watcher still polls on its own and reads everything
over HTTP, so a dropped subscription costs latency, never a message.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import msgspec

from relayer.retry import backoff_delay

__all__ = ["HeadNotifier"]

# Seconds a websocket connection (TCP and the HTTP upgrade) may take.
_CONNECT_TIMEOUT = 10.0

_SUBSCRIBE = msgspec.json.encode(
    {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
).decode()


class HeadNotifier:
    def __init__(self, ws_url: str, log: Any) -> None:
        self.ws_url = ws_url
        self.log = log
        self.event = asyncio.Event()
        # One event per consumer: a consumer that clears its event must not hide the head
        # from another (the confirmed pass and the read-ahead both wake on every head).
        self._listeners: list[asyncio.Event] = [self.event]
        self.subscribed = False
        # Monotonic time of the last head announced, or of the last (re)start without one since.
        self.last_head = time.monotonic()
        self._current: asyncio.Task[None] | None = None
        self._restart = False
        self._retry_now = asyncio.Event()

    def idle(self) -> float:
        """Seconds since the last head (or the last restart, if none came since)."""
        return time.monotonic() - self.last_head

    def restart(self) -> None:
        """Drop the subscription (or the attempt to make one) and subscribe again at once."""
        self.last_head = time.monotonic()
        if self._current is not None and not self._current.done():
            self._restart = True
            self._current.cancel()
        else:
            self._retry_now.set()  # waiting to try again after a failure: try now

    async def run(self) -> None:
        attempt = 0
        while True:
            self._current = asyncio.create_task(self._subscribe(attempt))
            try:
                await self._current
                raise ConnectionError("the node closed the subscription")
            except asyncio.CancelledError:
                running = asyncio.current_task()
                if not self._restart or (running is not None and running.cancelling()):
                    raise
                # restart(): the watchdog found it silent; it counts and logs that itself.
                self._restart = False
                self.subscribed = False
                attempt = 1  # "resubscribed" is logged when it is back
                continue
            except Exception as exc:  # noqa: BLE001  (any websocket failure: fall back to polling)
                if self.subscribed:
                    attempt = 0  # it worked until now: a new outage, logged once again
                self.subscribed = False
                attempt += 1
                if attempt == 1:
                    self.log.warning(
                        "heads.subscription_lost", error=f"{type(exc).__name__}: {exc}"
                    )
                self._retry_now.clear()
                try:
                    async with asyncio.timeout(backoff_delay(attempt, base=1.0, cap=30.0)):
                        await self._retry_now.wait()
                except TimeoutError:
                    pass

    async def _subscribe(self, attempt: int) -> None:
        """One subscription, until the socket closes. JSON-RPC over aiohttp's websocket: the
        only thing needed is a wake-up per head, not web3's subscription machinery."""
        async with aiohttp.ClientSession() as session:
            # Bounded: a node that accepts the connection and then says nothing (a stopped
            # process still has its listening socket) must not hold the attempt for ever.
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                socket = await session.ws_connect(
                    self.ws_url,
                    heartbeat=30.0,
                    # A stopped node never answers the close frame either.
                    timeout=aiohttp.ClientWSTimeout(ws_close=_CONNECT_TIMEOUT / 5),
                )
            async with socket:
                await self._listen(socket, attempt)

    async def _listen(self, socket: aiohttp.ClientWebSocketResponse, attempt: int) -> None:
        await socket.send_str(_SUBSCRIBE)
        async for frame in socket:
            if frame.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                break
            note = msgspec.json.decode(frame.data)
            if not isinstance(note, dict):
                continue
            if note.get("id") == 1:
                if "error" in note or not isinstance(note.get("result"), str):
                    raise ConnectionError(f"eth_subscribe refused: {note.get('error')}")
                if attempt:
                    self.log.info("heads.resubscribed")
                self.subscribed = True
            elif note.get("method") == "eth_subscription":
                self.last_head = time.monotonic()
                for event in self._listeners:
                    event.set()

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
