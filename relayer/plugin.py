"""The whole boundary between the relayer and a chain family.

A chain plugin is an object registered under the ``relayer.chains`` entry-point group (built-ins
too, the same way third-party plugins register). ``relayer/`` talks to chains only through these
protocols and never imports a concrete chain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec
from pydantic import BaseModel

from relayer.errors import UnknownChainError

if TYPE_CHECKING:
    from relayer.config import ChainConfig
    from relayer.keys import LocalKey
    from relayer.retry import RpcErrorKind
    from relayer.store import Ledger

__all__ = [
    "ENTRY_POINT_GROUP",
    "ChainPlugin",
    "Delivery",
    "DeliveryOutcome",
    "Observation",
    "ObservationSink",
    "PendingTx",
    "Submitter",
    "VerifiedMessage",
    "Watcher",
    "load_plugin",
]

ENTRY_POINT_GROUP = "relayer.chains"


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """A message a watcher found, with the evidence it fetched. Nothing in it is trusted yet:
    the core re-verifies it through the origin plugin's ``verify``."""

    origin_chain: str
    message: bytes
    block_number: int
    block_hash: bytes
    # Plugin-specific evidence (header, inclusion proof), encoded by the plugin that made it.
    evidence: bytes


@dataclass(frozen=True, slots=True)
class VerifiedMessage:
    """What ``verify`` proved: these message bytes were emitted in the block with this hash."""

    message: bytes
    block_number: int
    block_hash: bytes


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message ready for its destination, with the quorum of attestations over it."""

    message_id: bytes
    message: bytes
    origin_block_hash: bytes
    signatures: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    message_id: bytes
    delivered: bool
    tx_hash: bytes | None = None
    error: str | None = None


ObservationSink = Callable[[Sequence[Observation]], Awaitable[None]]


@runtime_checkable
class Watcher(Protocol):
    async def run(self, sink: ObservationSink) -> None:
        """Follow the chain forever from the persisted cursor, handing confirmed observations to
        ``sink``; the cursor advances only after ``sink`` returned, so nothing is skipped.
        Each call of ``sink`` carries every observation of the blocks it covers (attesters
        publish one file per block and replace it whole on a re-scan).

        Handles endpoint outages itself (backoff; ``chain.unavailable`` / ``chain.recovered``
        logged once each); returns only when cancelled."""
        ...


@runtime_checkable
class PendingTx(Protocol):
    """A signed transaction carrying one or more deliveries, persisted while in flight."""

    nonce: int
    tx_hash: bytes
    message_ids: tuple[bytes, ...]
    signed_at: float

    def encode(self) -> bytes: ...


@runtime_checkable
class Submitter(Protocol):
    """Steps of a delivery; the core commits each to the ledger before the next side effect."""

    #: the endpoint as it may be logged (no credentials)
    endpoint: str

    async def start(self) -> None:
        """Check the endpoint serves the configured chain. Raises ``PermanentChainError``."""
        ...

    async def close(self) -> None:
        """Release connections (at shutdown)."""
        ...

    async def delivered_flags(self, message_ids: Sequence[bytes]) -> list[bool]:
        """Ask the destination which ids it already delivered. ``TransientChainError``."""
        ...

    async def simulate(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Dry-run: which deliveries would succeed. Raises ``ChainError`` if the whole call
        fails (``RpcError`` with ``kind`` REVERTED when the contract refuses it)."""
        ...

    async def prepare(self, deliveries: Sequence[Delivery]) -> PendingTx:
        """Sign a transaction at the next nonce. Nothing is sent. ``TransientChainError``."""
        ...

    def bump(self, pending: PendingTx) -> PendingTx | None:
        """The same transaction with higher fees, or None when the fee cap forbids it."""
        ...

    async def broadcast(self, pending: PendingTx) -> RpcErrorKind | None:
        """Send. None when accepted or already known; otherwise the kind to act on."""
        ...

    async def outcome(self, pending: PendingTx) -> list[DeliveryOutcome] | None:
        """Per-message outcomes once mined, else None. ``TransientChainError``."""
        ...

    async def confirmations(self, tx_hash: bytes) -> int | None:
        """How deep ``tx_hash`` is buried (1 = in the head block); None once a reorg dropped
        it. ``TransientChainError``."""
        ...

    async def resync_nonce(self, at_least: int = 0) -> int:
        """Re-read the account nonce from the chain."""
        ...

    def release_nonce(self, nonce: int) -> None:
        """Give back a nonce that was taken but never sent."""
        ...

    def decode_pending(self, raw: bytes) -> PendingTx:
        """A pending transaction from its ``encode()`` bytes (after a restart)."""
        ...


@runtime_checkable
class ChainPlugin(Protocol):
    #: the ``type`` value of a ``[[chains]]`` table this plugin serves
    kind: str
    #: pydantic model for the plugin's own keys of a ``[[chains]]`` table
    config_model: type[BaseModel]

    def verify(self, chain: ChainConfig, observation: Observation) -> VerifiedMessage:
        """Re-verify an observation's evidence with ``proofs/``. Pure: no I/O.

        Raises ``EvidenceRejectedError`` naming the failed check."""
        ...

    def attestation_digest(
        self, destination: ChainConfig, origin_domain: int, message_id: bytes, block_hash: bytes
    ) -> bytes:
        """The digest attesters sign for delivering ``message_id`` to ``destination``."""
        ...

    def watcher(
        self,
        chain: ChainConfig,
        *,
        ledger: Ledger,
        owner: str,
        rpc_url: str | None,
        log: Any,
        prepared: Callable[[Sequence[Observation]], None] | None = None,
    ) -> Watcher:
        """A watcher for ``chain`` whose cursor is kept in ``ledger`` under ``owner``.

        ``prepared``, if given, is called (from a worker thread) with the observations of a
        block that is not final yet, as soon as the watcher has fetched them: a chance to do
        per-message work ahead that can be thrown away. Nothing in them is verified or final;
        only what the watcher hands over later is."""
        ...

    def submitter(self, chain: ChainConfig, *, key: LocalKey, log: Any) -> Submitter:
        """A submitter for ``chain`` as a destination, signing with ``key``."""
        ...


@cache
def _registry() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_plugin(kind: str) -> ChainPlugin:
    """The plugin registered for ``kind``. Raises ``UnknownChainError`` listing what exists."""
    entry = _registry().get(kind)
    if entry is None:
        known = ", ".join(sorted(_registry())) or "none"
        raise UnknownChainError(
            f"no chain plugin of type {kind!r} is installed (installed: {known}); "
            f"plugins register under the {ENTRY_POINT_GROUP!r} entry-point group"
        )
    return _load(entry)


@cache
def _load(entry: Any) -> ChainPlugin:
    # Cached: the attester and the core ask once per message, and EntryPoint.load imports.
    plugin: ChainPlugin = entry.load()
    return plugin
