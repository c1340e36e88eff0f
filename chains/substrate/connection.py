"""One websocket client to a node, for the reader and the submitter alike: connected on first
use, checked with ``check_node`` on every connect, and connected again after it failed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from chains.substrate.rpc import SubstrateRpc

__all__ = ["NodeConnection"]


class NodeConnection:
    def __init__(
        self,
        url: str,
        *,
        chain: str,
        timeout: float,
        on_connect: Callable[[SubstrateRpc], Awaitable[None]],
    ) -> None:
        self._url = url
        self._chain = chain
        self._timeout = timeout
        # Runs on every new client before it is used (the compatibility check): a failure
        # closes the client, which is never handed out.
        self._on_connect = on_connect
        #: the client in use; None before the first call and after a failure
        self.current: SubstrateRpc | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._connecting = asyncio.Lock()
        # The last client connected, closed or not: a new one reuses its decoded runtime.
        self._previous: SubstrateRpc | None = None

    async def client(self) -> SubstrateRpc:
        async with self._connecting:
            if self.current is None:
                stack = contextlib.AsyncExitStack()
                try:
                    rpc = await stack.enter_async_context(
                        SubstrateRpc.connect(self._url, chain=self._chain, timeout=self._timeout)
                    )
                    if self._previous is not None:
                        rpc.reuse_runtime(self._previous)
                    await self._on_connect(rpc)
                except BaseException:
                    await stack.aclose()
                    raise
                self.current, self._stack, self._previous = rpc, stack, rpc
            return self.current

    async def drop(self, rpc: SubstrateRpc | None) -> None:
        """Close ``rpc`` after it failed, so that the next call connects again (a dropped
        websocket does not come back by itself). Only that client: another task may have
        connected a new one meanwhile."""
        if rpc is None or rpc is not self.current:
            return
        stack, self.current, self._stack = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(Exception):
                await stack.aclose()

    async def close(self) -> None:
        await self.drop(self.current)
