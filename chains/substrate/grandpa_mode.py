"""``finality = "grandpa"`` for a Substrate chain: what the reader asks of its light client.

The reader's confirmed head becomes the block our GRANDPA light client has finalized from a
prover's justifications (``chains.substrate.grandpa_finality``), and a span is handed over only
if each of its blocks is that block or an ancestor linked to it by parent hashes. The light
client starts from the configured checkpoint (on a dev chain it may be the dev voters' own,
``checkpoint = "dev"``), or from the state it saved in the ledger, and saves itself whenever it
advanced.

A proof that does not verify is logged (``proof.rejected``) and changes nothing: the watcher
keeps relaying from what is already final, and nothing from the lie. A prover that is down is a
``TransientChainError`` like any endpoint outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from chains.substrate.connection import NodeConnection
from chains.substrate.finality_proof import GrandpaCheckpoint
from chains.substrate.grandpa_finality import (
    FinalityProofRejectedError,
    GrandpaFinality,
    fetch_dev_checkpoint,
)
from chains.substrate.rpc import SubstrateRpc
from proofs.errors import ProofError
from proofs.substrate.grandpa_store import GrandpaLightClient
from relayer.errors import ConfigError, TransientChainError
from relayer.keys import redact_url
from relayer.plugin import LightClientState

__all__ = ["MODE", "GrandpaSource", "load_checkpoint", "status_of"]

MODE = "grandpa"
_TIMEOUT_S = 30.0


def load_checkpoint(path: Path) -> GrandpaCheckpoint:
    """A checkpoint file: the JSON ``dev_grandpaCheckpoint`` answers (header, authorities,
    set id, pending change). Raises ConfigError naming the file."""
    try:
        return GrandpaCheckpoint.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ProofError) as exc:
        raise ConfigError(f"GRANDPA checkpoint {path} is not usable: {exc}") from None


class GrandpaSource:
    def __init__(
        self,
        *,
        chain: str,
        prover_url: str,
        checkpoint: GrandpaCheckpoint | None,
        state: LightClientState | None,
        log: Any = None,
    ) -> None:
        """``checkpoint`` None: take the dev voters' (``dev_grandpaCheckpoint``; a dev chain
        only, which the config enforces)."""
        self.chain = chain
        self.endpoint = redact_url(prover_url)
        self._checkpoint = checkpoint
        self._state = state
        self.log = (log or structlog.get_logger()).bind(chain=chain, finality=MODE)
        self._prover = NodeConnection(
            prover_url, chain=chain, timeout=_TIMEOUT_S, on_connect=_nothing_to_check
        )
        self._finality: GrandpaFinality | None = None
        # What the light client started from (block, hash, set id), saved beside it for
        # `relayer lightclient status`.
        self._origin: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self._prover.close()

    async def finalized(self, chain_rpc: SubstrateRpc) -> int:
        """Import what the prover has, then the finalized block number."""
        async with self._lock:
            finality = await self._ready(chain_rpc)
            before = finality.finalized
            # A refused proof is logged as proof.rejected; finality stays where it was.
            with contextlib.suppress(FinalityProofRejectedError):
                await finality.sync()
            if finality.finalized != before:
                self._save(finality.store)
            return finality.finalized.number

    def _save(self, store: GrandpaLightClient) -> None:
        if self._state is not None:
            saved = {"checkpoint": self._origin, "store": store.to_bytes().hex()}
            self._state.save(json.dumps(saved).encode())

    async def off_the_finalized_chain(
        self, chain_rpc: SubstrateRpc, blocks: Sequence[tuple[int, bytes]]
    ) -> list[str]:
        """Why each of ``blocks`` is not final by our light client (empty: all are)."""
        async with self._lock:
            finality = await self._ready(chain_rpc)
            problems = []
            for number, block_hash in blocks:
                if not await finality.is_final(number, block_hash):
                    problems.append(
                        f"block {number} 0x{block_hash.hex()} is not on the chain our GRANDPA "
                        f"light client finalized (up to #{finality.finalized.number})"
                    )
            return problems

    def forget_below(self, number: int) -> None:
        if self._finality is not None:
            self._finality.forget_below(number)

    async def _ready(self, chain_rpc: SubstrateRpc) -> GrandpaFinality:
        prover = await self._connected_prover()
        if self._finality is None:
            self._finality = GrandpaFinality(
                await self._store(prover), chain=chain_rpc, prover=prover, log=self.log
            )
        else:
            self._finality.use(chain=chain_rpc, prover=prover)
        return self._finality

    async def _connected_prover(self) -> SubstrateRpc:
        try:
            return await self._prover.client()
        except TransientChainError:
            raise
        except Exception as exc:  # any failure to connect is an outage
            raise TransientChainError(
                f"chain `{self.chain}`: GRANDPA prover {self.endpoint} is unreachable ({exc})"
            ) from exc

    async def _store(self, prover: SubstrateRpc) -> GrandpaLightClient:
        saved = self._state.load() if self._state is not None else None
        if saved is not None:
            try:
                origin, store = _load(saved)
            except (ProofError, ValueError, KeyError, TypeError) as exc:
                self.log.error("lightclient.state_unusable", error=str(exc))
            else:
                self._origin = origin
                self.log.info("lightclient.resumed", **_fields(store))
                return store
        checkpoint = self._checkpoint
        if checkpoint is None:
            checkpoint = await fetch_dev_checkpoint(prover)
        store = checkpoint.light_client()
        status = store.status()
        self._origin = {
            "block": status.finalized_number,
            "hash": "0x" + status.finalized_hash.hex(),
            "set_id": status.set_id,
            "dev": self._checkpoint is None,
        }
        self._save(store)
        self.log.info("lightclient.bootstrapped", **_fields(store))
        return store


async def _nothing_to_check(rpc: SubstrateRpc) -> None:
    return None


def _fields(store: GrandpaLightClient) -> dict[str, Any]:
    status = store.status()
    return {
        "set_id": status.set_id,
        "authorities": status.authority_count,
        "block": status.finalized_number,
    }


def _load(saved: bytes) -> tuple[dict[str, Any] | None, GrandpaLightClient]:
    """A saved state: what the client started from, and the store. Raises ProofError,
    ValueError, KeyError or TypeError."""
    data = json.loads(saved)
    origin = data["checkpoint"]
    if origin is not None and not isinstance(origin, dict):
        raise TypeError("the saved checkpoint is not a table")
    return origin, GrandpaLightClient.from_bytes(bytes.fromhex(data["store"]))


def status_of(state: bytes) -> dict[str, str]:
    """What ``relayer lightclient status`` shows of a saved state. Raises ValueError."""
    try:
        origin, store = _load(state)
    except (ProofError, KeyError, TypeError) as exc:
        raise ValueError(f"saved GRANDPA state does not load: {exc}") from exc
    status = store.status()
    shown: dict[str, str] = {}
    if origin is not None:
        source = "the dev voters' own" if origin.get("dev") else "from the config"
        shown["checkpoint"] = (
            f"block {origin.get('block')} ({origin.get('hash')}), set id {origin.get('set_id')}, "
            f"{source}"
        )
    shown |= {
        "set id": str(status.set_id),
        "authorities": f"{status.authority_count} (total weight {status.total_weight})",
        "finalized block": f"{status.finalized_number} (0x{status.finalized_hash.hex()})",
    }
    if status.pending_enactment_number is not None:
        shown["pending change"] = f"enacted at block {status.pending_enactment_number}"
    return shown
