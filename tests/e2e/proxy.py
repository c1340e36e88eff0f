"""Loopback proxies in front of a real chain, each in its own thread and event loop.

- ``TcpProxy``: forwards bytes; ``drop()`` cuts every connection and refuses new ones until
  ``restore()`` (an outage without stopping anvil, which would lose its state).
- ``JsonRpcProxy``: forwards JSON-RPC over HTTP and lets a test rewrite answers (a lying
  endpoint), e.g. ``proxy.rewrite = lambda method, params, result: ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from chains.localnode import free_port


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class TcpProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dropping = False
        self.dropped_connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = _LoopThread()
        self._server = self._thread.run(asyncio.start_server(self._handle, "127.0.0.1", self.port))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.dropping:
            self.dropped_connections += 1
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update({writer, up_writer})

    def drop(self) -> None:
        async def cut() -> None:
            self.dropping = True
            for writer in list(self._writers):
                writer.close()

        self._thread.run(cut())

    def restore(self) -> None:
        self.dropping = False

    def close(self) -> None:
        self.drop()
        self._server.close()
        self._thread.close()


Rewrite = Callable[[str, Any, Any], Any]


class JsonRpcProxy:
    def __init__(self, upstream_url: str) -> None:
        self.upstream_url = upstream_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.rewrite: Rewrite | None = None
        self.rewritten = 0
        self._thread = _LoopThread()
        self._runner = self._thread.run(self._start())

    async def _start(self) -> web.AppRunner:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/", self._handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self._session.post(
            self.upstream_url, data=body, headers={"Content-Type": "application/json"}
        ) as upstream:
            answer = await upstream.read()
        rewrite = self.rewrite
        if rewrite is not None:
            calls = json.loads(body)
            replies = json.loads(answer)
            if isinstance(calls, list):
                by_id = {c.get("id"): c for c in calls}
                for reply in replies:
                    call = by_id.get(reply.get("id"), {})
                    self._apply(rewrite, call, reply)
            else:
                self._apply(rewrite, calls, replies)
            answer = json.dumps(replies).encode()
        return web.Response(body=answer, content_type="application/json")

    def _apply(self, rewrite: Rewrite, call: dict[str, Any], reply: dict[str, Any]) -> None:
        if "result" not in reply:
            return
        new = rewrite(call.get("method", ""), call.get("params"), reply["result"])
        if new is not reply["result"]:
            self.rewritten += 1
            reply["result"] = new

    def close(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()
            await self._session.close()

        self._thread.run(stop())
        self._thread.close()
