"""A loopback WebSocket JSON-RPC proxy in front of a Substrate node, in the test's event loop.

- ``fail_next(method, error)``: the next call of ``method`` is not forwarded; the client gets
  ``error`` (a JSON-RPC error object) instead, as a node would send it.
- ``drop()``: closes every client connection (new ones are still accepted), an outage as a
  dropped websocket looks to the client.
- ``refuse(True)``: closes every new connection at once, until ``refuse(False)``: a node that
  stays down.
- ``lie(method, rewrite)``: every answer to ``method`` passes through ``rewrite(result)``
  until ``lie(method, None)``: an endpoint that answers, but not the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any, Self

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve

_MAX_FRAME = 64 * 1024 * 1024


class WsRpcProxy:
    def __init__(self, upstream_url: str) -> None:
        self.upstream_url = upstream_url
        self.url = ""
        #: methods whose answer was replaced, in order
        self.replaced: list[str] = []
        self._errors: dict[str, list[dict[str, Any]]] = {}
        self._lies: dict[str, Callable[[Any], Any]] = {}
        #: answers rewritten by a lie, by method
        self.lied: dict[str, int] = {}
        self._clients: set[ServerConnection] = set()
        self._server: Server | None = None
        self._refusing = False

    async def __aenter__(self) -> Self:
        self._server = await serve(self._handle, "127.0.0.1", 0, max_size=_MAX_FRAME)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def fail_next(self, method: str, error: dict[str, Any]) -> None:
        self._errors.setdefault(method, []).append(error)

    def lie(self, method: str, rewrite: Callable[[Any], Any] | None) -> None:
        if rewrite is None:
            self._lies.pop(method, None)
        else:
            self._lies[method] = rewrite

    def refuse(self, refusing: bool) -> None:
        self._refusing = refusing

    async def drop(self) -> None:
        for client in list(self._clients):
            await client.close()

    async def _handle(self, client: ServerConnection) -> None:
        if self._refusing:
            await client.close()
            return
        self._clients.add(client)
        try:
            async with connect(self.upstream_url, max_size=_MAX_FRAME, ping_interval=None) as up:
                asked: dict[Any, str] = {}  # request id -> method, per connection
                tasks = [
                    asyncio.create_task(self._upstream(client, up, asked)),
                    asyncio.create_task(self._downstream(up, client, asked)),
                ]
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, websockets.WebSocketException):
                        await task
        finally:
            self._clients.discard(client)

    async def _upstream(
        self, client: ServerConnection, up: ClientConnection, asked: dict[Any, str]
    ) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in client:
                call = json.loads(frame)
                method = call.get("method", "") if isinstance(call, dict) else ""
                if method in self._lies:
                    asked[call.get("id")] = method
                queued = self._errors.get(method)
                if queued:
                    self.replaced.append(call["method"])
                    answer = {"jsonrpc": "2.0", "id": call.get("id"), "error": queued.pop(0)}
                    await client.send(json.dumps(answer))
                    continue
                await up.send(frame)

    async def _downstream(
        self, up: ClientConnection, client: ServerConnection, asked: dict[Any, str]
    ) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for received in up:
                frame = received
                if asked:
                    answer = json.loads(frame)
                    method = asked.pop(answer.get("id"), None) if isinstance(answer, dict) else None
                    rewrite = self._lies.get(method) if method is not None else None
                    if method is not None and rewrite is not None and answer.get("result"):
                        answer["result"] = rewrite(answer["result"])
                        self.lied[method] = self.lied.get(method, 0) + 1
                        frame = json.dumps(answer)
                await client.send(frame)
