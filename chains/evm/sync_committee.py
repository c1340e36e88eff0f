"""``finality = "sync-committee"`` for an EVM chain: the execution block the beacon chain's sync
committee has finalized, as ``proofs.ethereum_lc`` proves it from a beacon node's light-client
answers.

The client starts from the operator's trusted block root (or the state it saved in the ledger),
asks the beacon node for the period updates it lacks and for the latest finality update, and
hands each to the light client. An update the light client refuses is logged with its reason
(``lightclient.update_refused``) and changes nothing: a beacon node that lies gets nothing
relayed, and the next honest answer carries on. Finality never moves backwards.

What the watcher gets is the finalized execution block (number, hash); ``chains.evm.ancestry``
links the blocks it reads to it by parent hashes.

The saved state names its network (``"mainnet"``, or a dev server's config) beside the store,
so that a restart and ``relayer lightclient status`` read it without asking anyone.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from chains.evm.beacon_api import BeaconApi, attested_slot
from proofs.ethereum_lc import ChainSpec, LightClientError, LightClientStore
from relayer.plugin import LightClientState

__all__ = ["FinalizedExecution", "SyncCommitteeFinality", "status_of"]

MODE = "sync-committee"


@dataclass(frozen=True, slots=True)
class FinalizedExecution:
    """The execution block of the light client's finalized beacon header."""

    number: int
    hash: bytes


class SyncCommitteeFinality:
    def __init__(
        self,
        *,
        chain: str,
        api: BeaconApi,
        network: dict[str, Any] | str | None,
        trusted_block_root: bytes | None,
        state: LightClientState | None,
        log: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``network``: ``"mainnet"`` or a minimal-preset config (``config.yaml`` keys with
        the genesis time and validators root). ``network`` and ``trusted_block_root`` None: a
        dev beacon server's own (``trusted_block_root = "dev"``)."""
        self.chain = chain
        self.api = api
        self._network: dict[str, Any] | str | None = network
        self.spec = None if network is None else _spec(network)
        self.trusted_block_root = trusted_block_root
        self._state = state
        self.log = (log or structlog.get_logger()).bind(chain=chain, endpoint=api.endpoint)
        self._clock = clock
        self._store: LightClientStore | None = None
        self._lock = asyncio.Lock()

    @property
    def store(self) -> LightClientStore | None:
        return self._store

    async def close(self) -> None:
        await self.api.close()

    async def finalized(self) -> FinalizedExecution | None:
        """Advance from the beacon node, then the finalized execution block (None before the
        light client has finalized a block with an execution payload). Raises
        ``TransientChainError`` while the beacon node is unreachable and
        ``BeaconCheckpointError`` when it lacks the trusted checkpoint."""
        async with self._lock:
            store = await self._loaded()
            before = store.finalized_header.beacon_root
            await self._advance(store)
            if store.finalized_header.beacon_root != before:
                self._save(store)
            return _execution(store)

    def _save(self, store: LightClientStore) -> None:
        if self._state is not None:
            saved = {"network": self._network, "store": store.to_json()}
            self._state.save(json.dumps(saved).encode())

    async def _loaded(self) -> LightClientStore:
        if self._store is not None:
            return self._store
        saved = self._state.load() if self._state is not None else None
        if self._network is None or self.trusted_block_root is None:
            if saved is not None:
                resumed = self._resumed(saved, dev=True)
                if resumed is not None:
                    return resumed
            config, root = await self.api.dev_network()
            self.spec, self.trusted_block_root, self._network = (
                ChainSpec.minimal(config),
                root,
                config,
            )
            saved = None
        if saved is not None:
            resumed = self._resumed(saved, dev=False)
            if resumed is not None:
                return resumed
        assert self.spec is not None and self.trusted_block_root is not None
        bootstrap = await self.api.bootstrap(self.trusted_block_root)
        store = await asyncio.to_thread(
            LightClientStore.from_bootstrap, bootstrap, self.trusted_block_root, self.spec
        )
        self._store = store
        self._save(store)
        self.log.info("lightclient.bootstrapped", mode=MODE, **_status(store))
        return store

    def _resumed(self, saved: bytes, *, dev: bool) -> LightClientStore | None:
        """The saved store, if it is usable here; None (logged) to bootstrap instead."""
        try:
            network, store = _load(saved)
        except (LightClientError, ValueError, KeyError, TypeError) as exc:
            # A state this client cannot use (another network, a corrupt row) is set aside:
            # the configured checkpoint is the operator's word, the saved state only a cache.
            self.log.error("lightclient.state_unusable", mode=MODE, error=str(exc))
            return None
        if dev:
            if not isinstance(network, dict):
                return None
            self.spec, self.trusted_block_root = store.spec, store.trusted_block_root
            self._network = network
        elif store.trusted_block_root != self.trusted_block_root or network != self._network:
            self.log.warning(
                "lightclient.checkpoint_changed",
                mode=MODE,
                detail="the configured trusted block root or network differs from the saved "
                "state's; bootstrapping from the configured one",
            )
            return None
        store.warm_up()
        self._store = store
        self.log.info("lightclient.resumed", mode=MODE, **_status(store))
        return store

    async def _advance(self, store: LightClientStore) -> None:
        spec = store.spec
        current_slot = spec.slot_at_time(self._clock())
        current_period = spec.period_at_slot(current_slot)
        if store.next_sync_committee is None or current_period > store.period:
            count = current_period - store.period + 1
            for period_update in await self.api.updates(store.period, count):
                await self._apply(store, period_update, current_slot, "update")
        latest = await self.api.finality_update()
        if latest is not None:
            await self._apply(store, latest, current_slot, "finality_update")

    async def _apply(
        self, store: LightClientStore, update: Any, current_slot: int, kind: str
    ) -> None:
        slot = attested_slot(update)
        # Nothing newer than what is finalized, and no next committee the store lacks (only a
        # period update can bring one): not worth a signature check, nor a refusal in the log.
        may_bring_committee = kind == "update" and store.next_sync_committee is None
        stale = slot is not None and slot <= store.finalized_header.beacon.slot
        if stale and not may_bring_committee:
            return
        try:
            await asyncio.to_thread(store.process_update, update, current_slot)
        except LightClientError as exc:
            self.log.error(
                "lightclient.update_refused",
                mode=MODE,
                kind=kind,
                attested_slot=slot,
                reason=f"{type(exc).__name__}: {exc}",
            )
            return
        self.log.debug("lightclient.update_applied", mode=MODE, kind=kind, **_status(store))


def _execution(store: LightClientStore) -> FinalizedExecution | None:
    header = store.finalized_header
    if header.execution is None:
        return None
    return FinalizedExecution(
        number=header.execution.block_number,
        hash=header.execution.block_hash,
    )


def _status(store: LightClientStore) -> dict[str, Any]:
    execution = _execution(store)
    return {
        "period": store.period,
        "finalized_slot": store.finalized_header.beacon.slot,
        "block": execution.number if execution is not None else None,
    }


def _load(saved: bytes) -> tuple[dict[str, Any] | str, LightClientStore]:
    """A saved state: its network (``"mainnet"`` or a dev config) and the store. Raises
    LightClientError, ValueError, KeyError or TypeError."""
    data = json.loads(saved)
    network = data["network"]
    return network, LightClientStore.from_json(data["store"], _spec(network))


def _spec(network: object) -> ChainSpec:
    if network == "mainnet":
        return ChainSpec.mainnet()
    if isinstance(network, dict):
        return ChainSpec.minimal(network)
    raise ValueError(f"unknown beacon network {network!r}")


def status_of(state: bytes) -> dict[str, str]:
    """What ``relayer lightclient status`` shows of a saved state. Raises ValueError."""
    try:
        network, store = _load(state)
    except (LightClientError, KeyError, TypeError) as exc:
        raise ValueError(f"saved sync-committee state does not load: {exc}") from exc
    header = store.finalized_header
    shown = {
        "network": network if isinstance(network, str) else "dev beacon server",
        "checkpoint": "0x" + store.trusted_block_root.hex(),
        "period": str(store.period),
        "next committee": "known" if store.next_sync_committee is not None else "not yet",
        "finalized slot": f"{header.beacon.slot} (0x{header.beacon_root.hex()})",
    }
    if header.execution is not None:
        shown["finalized block"] = (
            f"{header.execution.block_number} (0x{header.execution.block_hash.hex()})"
        )
    return shown
