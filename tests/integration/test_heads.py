"""New-head notifications from a real anvil websocket: one wake-up per block for every
listener, and a dropped node is survived (warned once, resubscribed when it is back)."""

from __future__ import annotations

import asyncio
from typing import Any

from chains.evm.heads import HeadNotifier
from tests.integration.anvil import AnvilFactory


class Log:
    def __init__(self) -> None:
        self.events: list[str] = []

    def info(self, event: str, **_: Any) -> None:
        self.events.append(event)

    def warning(self, event: str, **_: Any) -> None:
        self.events.append(event)


def test_every_listener_wakes_on_each_new_head(anvil_factory: AnvilFactory) -> None:
    node = anvil_factory(31411)
    ws_url = node.ws_url

    async def run() -> None:
        notifier = HeadNotifier(ws_url, Log())
        other = notifier.listen()
        task = asyncio.create_task(notifier.run())
        try:
            for _ in range(100):
                if notifier.subscribed:
                    break
                await asyncio.sleep(0.05)
            assert notifier.subscribed
            for _ in range(2):
                node.rpc("evm_mine", [])
                async with asyncio.timeout(5):
                    await notifier.event.wait()
                    await other.wait()
                notifier.event.clear()
                other.clear()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run())


def test_an_unreachable_node_is_warned_about_once(anvil_factory: AnvilFactory) -> None:
    node = anvil_factory(31412)
    ws_url = node.ws_url
    node.stop()
    log = Log()

    async def run() -> None:
        notifier = HeadNotifier(ws_url, log)
        task = asyncio.create_task(notifier.run())
        await asyncio.sleep(3.5)  # backoff 1 s, 2 s: at least two failed attempts
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert not notifier.subscribed

    asyncio.run(run())
    assert log.events == ["heads.subscription_lost"]
