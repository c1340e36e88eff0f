"""The beacon-API light-client endpoints of one beacon node, over HTTP (aiohttp).

Only transport lives here: answers come back as the node's JSON, untrusted; the light client in
``proofs.ethereum_lc`` decides what they prove. Every failure is one of the relayer's errors: a
node that is down or answers 5xx is ``TransientChainError``; an answer that is not the API's
shape is ``TransientChainError`` too (the watcher waits and asks again, the operator sees why);
a checkpoint the node does not have is ``BeaconCheckpointError``, which only the operator can
fix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec

from relayer.errors import PermanentChainError, TransientChainError
from relayer.keys import redact_url

__all__ = ["BeaconApi", "BeaconCheckpointError", "attested_slot"]

_PATH = "/eth/v1/beacon/light_client"
# Beacon nodes serve at most MAX_REQUEST_LIGHT_CLIENT_UPDATES (128) updates a request.
MAX_UPDATES = 128


class BeaconCheckpointError(PermanentChainError):
    """The beacon node has no bootstrap for the configured trusted block root."""


class BeaconApi:
    def __init__(self, url: str, *, chain: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.chain = chain
        self.endpoint = redact_url(url)
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def bootstrap(self, block_root: bytes) -> Mapping[str, Any]:
        """``LightClientBootstrap`` for ``block_root`` (``{"version", "data"}``)."""
        answer = await self._get(f"{_PATH}/bootstrap/0x{block_root.hex()}", missing_ok=True)
        if answer is None:
            raise BeaconCheckpointError(
                f"chain `{self.chain}`: beacon node {self.endpoint} has no light-client bootstrap "
                f"for trusted block root 0x{block_root.hex()}; configure the root of a recent "
                "finalized block it serves"
            )
        return _versioned(answer, "bootstrap", self._where("bootstrap"))

    async def updates(self, start_period: int, count: int) -> list[Mapping[str, Any]]:
        """``LightClientUpdate``s of periods ``start_period ..`` (at most ``count``, and at
        most 128), oldest first."""
        count = max(1, min(count, MAX_UPDATES))
        answer = await self._get(f"{_PATH}/updates?start_period={start_period}&count={count}")
        if not isinstance(answer, list):
            raise TransientChainError(f"{self._where('updates')} did not answer a list")
        return [_versioned(item, "updates", self._where("updates")) for item in answer]

    async def finality_update(self) -> Mapping[str, Any] | None:
        """The latest ``LightClientFinalityUpdate``; None while the node has none."""
        answer = await self._get(f"{_PATH}/finality_update", missing_ok=True)
        if answer is None:
            return None
        return _versioned(answer, "finality_update", self._where("finality_update"))

    async def dev_network(self) -> tuple[dict[str, Any], bytes]:
        """A dev beacon server's own network config (``config/spec`` with its genesis time and
        validators root) and finalized block root: what ``trusted_block_root = "dev"`` trusts.
        Never for a real network, whose config and checkpoint are the operator's to give."""
        spec = await self._get("/eth/v1/config/spec")
        genesis = await self._get("/eth/v1/beacon/genesis")
        head = await self._get("/eth/v1/beacon/headers/finalized")
        try:
            config = dict(spec["data"])
            config["GENESIS_TIME"] = genesis["data"]["genesis_time"]
            config["GENESIS_VALIDATORS_ROOT"] = genesis["data"]["genesis_validators_root"]
            root = bytes.fromhex(str(head["data"]["root"]).removeprefix("0x"))
        except (KeyError, TypeError, ValueError) as exc:
            raise TransientChainError(
                f"{self._where('dev network')}: unexpected answer ({exc})"
            ) from None
        if len(root) != 32 or not any(root):
            raise TransientChainError(f"{self._where('dev network')}: nothing finalized yet")
        return config, root

    def _where(self, what: str) -> str:
        return f"chain `{self.chain}`: beacon node {self.endpoint} {what}"

    async def _get(self, path: str, *, missing_ok: bool = False) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        what = path.split("?", 1)[0].rsplit("/", 1)[-1]
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.get(self.url + path) as response:
                    body = await response.read()
                    status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientChainError(
                f"{self._where(what)}: {type(exc).__name__}: {exc}; will retry"
            ) from None
        if status == 404 and missing_ok:
            return None
        if status != 200:
            raise TransientChainError(f"{self._where(what)}: HTTP {status}; will retry")
        try:
            return msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise TransientChainError(f"{self._where(what)}: not JSON ({exc})") from None


def _versioned(item: Any, what: str, where: str) -> Mapping[str, Any]:
    if not (
        isinstance(item, Mapping)
        and isinstance(item.get("version"), str)
        and isinstance(item.get("data"), Mapping)
    ):
        raise TransientChainError(f"{where}: answer is not {{version, data}} ({what})")
    return item


def attested_slot(update: Mapping[str, Any]) -> int | None:
    """The attested beacon slot of a beacon-API update, or None if it has none readable (the
    light client then judges the update in full)."""
    try:
        return int(update["data"]["attested_header"]["beacon"]["slot"])
    except (KeyError, TypeError, ValueError):
        return None
