"""The fake node's HTTP API as the plugin uses it, and the one place where transport failures
become the relayer's errors: an endpoint that cannot be reached or fails is a
``TransientChainError``; a node that refuses a request says why in a ``NodeRefusalError`` (a
``PermanentChainError`` carrying the node's word for it); an answer that is not the API's
raises ``KeyError``/``TypeError``/``ValueError``, which the core treats as a broken endpoint.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from relayer.errors import PermanentChainError, TransientChainError

__all__ = ["NodeClient", "NodeRefusalError", "redact", "unhex"]


class NodeRefusalError(PermanentChainError):
    """The node answered and refused. ``code`` is its word for why (``nonce_used``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def redact(url: str) -> str:
    """Scheme, host and port: endpoint URLs may carry credentials in their path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def unhex(value: object) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise TypeError(f"expected a 0x-hex string, got {type(value).__name__}")
    return bytes.fromhex(value[2:])


class NodeClient:
    """One HTTP session to one node, opened on first use (in the loop that uses it)."""

    def __init__(self, url: str, *, chain: str, timeout: float) -> None:
        self.base = url.rstrip("/")
        self.chain = chain
        self.endpoint = redact(url)
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, timeout: float = 0
    ) -> dict[str, Any] | None:
        """The answer's JSON object; None for a 404 (the node has no such thing)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(timeout or self.timeout):
                async with self._session.request(method, self.base + path, json=body) as answer:
                    status, raw = answer.status, await answer.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TransientChainError(
                f"chain `{self.chain}`: endpoint {self.endpoint} failed ({type(exc).__name__}: "
                f"{exc}); will retry"
            ) from None
        if status >= 500:
            raise TransientChainError(
                f"chain `{self.chain}`: endpoint {self.endpoint} answered HTTP {status}; will retry"
            )
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise TypeError(f"endpoint {self.endpoint} answered a {type(data).__name__}")
        if status == 404:
            return None
        if status >= 400:
            error = data["error"]
            raise NodeRefusalError(
                str(error["code"]),
                f"chain `{self.chain}`: endpoint {self.endpoint} refused: {error['message']}",
            )
        return data

    async def get(self, path: str, *, timeout: float = 0) -> dict[str, Any] | None:
        return await self.request("GET", path, timeout=timeout)

    async def must(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """As ``request``, for things the node must have (a 404 is an outage by another
        name: a node behind its peers, or restarted empty)."""
        answer = await self.request(method, path, body)
        if answer is None:
            raise TransientChainError(
                f"chain `{self.chain}`: endpoint {self.endpoint} has nothing at {path}; will retry"
            )
        return answer
