"""The whole boundary between the relayer and a chain family.

A chain plugin is an object registered under the ``relayer.chains`` entry-point group (built-ins
too, the same way third-party plugins register). ``relayer/`` talks to chains only through these
protocols and types and never imports a concrete chain: a family supplies the chain-specific
reads (``ChainReader``) and the steps of a delivery (``Submitter``); the cursor, reorg handling,
outage logging and backoff around them (``relayer.follower``), and the ledger bookkeeping of a
delivery (``relayer.delivery``), are the core's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec
from pydantic import BaseModel

from relayer.errors import UnknownChainError

if TYPE_CHECKING:
    from relayer.config import ChainConfig
    from relayer.keys import KeyRef

__all__ = [
    "ENTRY_POINT_GROUP",
    "BroadcastResult",
    "ChainPlugin",
    "ChainReader",
    "CursorView",
    "Delivery",
    "DeliveryOutcome",
    "DeliverySettings",
    "ListsMessages",
    "MessageLister",
    "Observation",
    "ObservationSink",
    "PendingTx",
    "ReadsAccountNonce",
    "RpcObserver",
    "Signer",
    "Span",
    "Submitter",
    "VerifiedMessage",
    "load_plugin",
    "observe_endpoint_health",
    "observe_rpc",
    "observing_rpc",
    "reload_plugins",
    "rpc_call",
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
    # Evidence every message of the block shares (a header, a whole body), encoded by the
    # plugin. The ledger stores each distinct value once however many messages carry it, so a
    # family whose proof is the block itself pays for it once a block, not once a message.
    # Hand the same bytes object to each of the block's observations.
    block_evidence: bytes = b""


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
    #: what the transaction that carried it cost its signer, in the chain's smallest unit
    #: (``Submitter.unit``); the same value on every outcome of one transaction, None when
    #: the chain did not say
    fee: int | None = None


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """What the core's delivery worker needs to know of a destination chain. No defaults here:
    each plugin's config model holds them, so there is one default per setting."""

    #: messages per delivery transaction
    batch_size: int
    #: delivery transactions in flight at once (consecutive nonces)
    max_in_flight: int
    #: seconds without inclusion before a transaction is replaced with higher fees
    submit_timeout: float
    #: blocks a delivery is watched for a destination reorg before it counts as settled
    reorg_depth: int


class BroadcastResult(Enum):
    """What a node said to a signed transaction, as far as the delivery worker acts on it."""

    ACCEPTED = "accepted"  # taken into the pool now, or it was there already
    NONCE_USED = "nonce_used"  # the nonce is spent: by this very transaction (mined) or another
    FEE_TOO_LOW = "fee_too_low"  # below what the node takes now: the fee bump will follow


ObservationSink = Callable[[Sequence[Observation]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Span:
    """What a reader found in blocks ``start..end`` of the chain it follows."""

    observations: Sequence[Observation]
    #: (number, hash) of every block that holds observations, for finding a fork point later
    blocks: Sequence[tuple[int, bytes]]
    #: the hash of block ``end``: the new cursor
    end_hash: bytes


class CursorView(Protocol):
    """The watcher's cursor as a reader may see it: read-only."""

    def next_block(self) -> int:
        """The first block not handed over yet."""
        ...


@runtime_checkable
class ChainReader(Protocol):
    """The chain-specific reads of a watcher. ``relayer.follower`` drives them: it keeps the
    cursor, detects reorgs below the confirmed head, finds the fork point, backs off and logs
    outages. Methods raise ``TransientChainError`` for an endpoint that fails, ``ProofError``
    for answers that do not hash together, and ``KeyError``/``TypeError``/``ValueError`` for
    answers that are not what the endpoint's API promises; nothing is persisted on any of them,
    and the follower tries again after a pause. Anything else, ``PermanentChainError`` included
    (an endpoint serving another chain), stops the follower and with it the process: raise it
    only for what an operator must fix."""

    #: the endpoint as it may be logged (no credentials)
    endpoint: str
    #: first block scanned when there is no cursor yet
    start_block: int
    #: seconds between polls when no new head is announced
    poll_interval: float
    #: most blocks read in one ``read`` (an endpoint's range limit)
    max_span: int
    #: how final a block must be before it is read, as the operator configured it (for logs)
    depth: int | str

    async def background(self, cursor: CursorView) -> None:
        """Side work for as long as the watcher runs (head subscriptions, reading ahead);
        return at once if there is none. Must not raise but on cancellation."""
        ...

    async def wait_for_head(self, timeout: float) -> None:
        """Until a new head is announced, or ``timeout`` seconds. Never raises (but on
        cancellation): a broken subscription only means waiting the whole timeout."""
        ...

    async def confirmed_head(self) -> int:
        """The highest block final enough to read (-1 for none yet)."""
        ...

    async def hash_at(self, number: int) -> bytes | None:
        """The hash of the node's block at ``number``; None when it has none there."""
        ...

    async def read(self, start: int, end: int, *, after: bytes) -> Span:
        """The observations of blocks ``start..end`` (all final), each block's evidence
        proven. ``after`` is the hash of block ``start - 1`` as the cursor knows it (empty when
        unknown), so that blocks prepared ahead are used only where they link to it."""
        ...

    async def latest_head(self) -> int:
        """The number of the node's newest block, final or not: what the head metric shows and
        the stall check of ``/readyz`` watches. Raises ``TransientChainError``."""
        ...

    def head_stream_idle(self) -> float | None:
        """Seconds since the head subscription last announced a head, or since it was
        (re)started if it announced none since; None when the reader has no subscription."""
        ...

    def restart_head_stream(self) -> None:
        """Drop the head subscription and subscribe again (the watchdog's remedy for one that
        went silent while the chain makes blocks: a node can stop sending on a socket that
        stays open). Returns at once; does nothing when there is no subscription."""
        ...

    async def close(self) -> None:
        """Release connections (at shutdown)."""
        ...


@runtime_checkable
class MessageLister(Protocol):
    """A cheap listing of what a chain's gateway emitted, without evidence: what the reconciler
    compares with the ledger before it reads (and proves) only the blocks that hold messages
    the ledger lacks, through ``ChainReader.read``. Nothing listed is trusted or recorded."""

    async def list_messages(self, start: int, end: int) -> Sequence[tuple[int, bytes]]:
        """``(block number, message bytes)`` of each message emitted in blocks ``start..end``
        (all final), as the endpoint says. Raises ``TransientChainError`` for an endpoint that
        fails, ``KeyError``/``TypeError``/``ValueError`` for answers that do not decode."""
        ...


@runtime_checkable
class ListsMessages(Protocol):
    """Optional for a ``ChainPlugin``: a family that can list its messages cheaply. Without it
    the reconciler reads every block of its window with ``ChainReader.read``."""

    def message_lister(self, reader: ChainReader) -> MessageLister | None:
        """A lister reading through ``reader``'s connections (one this plugin's ``reader``
        made); None when it cannot list for that reader."""
        ...


@runtime_checkable
class Signer(Protocol):
    """A loaded key, opaque to the core: only the plugin that loaded it signs with it. Its
    ``repr`` shows the account and where the key came from, never the key."""

    #: the account's on-chain identity (address or public key): keys are compared by it
    address: bytes

    @property
    def printable_address(self) -> str:
        """``address`` as the chain's users write it (checksummed hex, SS58...)."""
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
    #: the chain's smallest unit of account, in which fees and balances are counted
    #: ("wei", "planck"): the ``unit`` label of the fee and balance metrics
    unit: str
    #: the account that signs (and pays for) the deliveries, its ``Signer.address``: the
    #: ledger keeps it with each signed transaction, so that each of several workers
    #: delivering to one chain recovers, and counts nonces from, only its own
    signer_address: bytes

    async def start(self) -> None:
        """Check the endpoint serves the configured chain. Raises ``PermanentChainError``."""
        ...

    async def close(self) -> None:
        """Release connections (at shutdown)."""
        ...

    async def balance(self) -> int:
        """The signer's spendable balance in ``unit`` (what pays for deliveries), as the node
        says it now. Raises ``TransientChainError``."""
        ...

    async def delivered_flags(self, message_ids: Sequence[bytes]) -> list[bool]:
        """Ask the destination which ids it already delivered. ``TransientChainError``."""
        ...

    async def simulate(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Dry-run: which deliveries would succeed. Raises ``ChainError`` if the whole call
        fails (not ``retryable`` when the destination refuses the whole batch)."""
        ...

    async def prepare(self, deliveries: Sequence[Delivery]) -> PendingTx:
        """Sign a transaction at the next nonce. Nothing is sent. ``TransientChainError``;
        a nonce taken for a transaction that fails to sign is given back."""
        ...

    def bump(self, pending: PendingTx) -> PendingTx | None:
        """The same transaction with higher fees, or None when the fee cap forbids it."""
        ...

    async def broadcast(self, pending: PendingTx) -> BroadcastResult:
        """Send. Raises ``ChainError`` for answers the worker cannot act on (``retryable``
        says whether the endpoint may take it later)."""
        ...

    async def outcome(self, pending: PendingTx) -> list[DeliveryOutcome] | None:
        """Per-message outcomes once included, else None. ``TransientChainError``."""
        ...

    async def confirmations(self, tx_hash: bytes) -> int | None:
        """How deep ``tx_hash`` is buried (1 = in the head block); None once a reorg dropped
        it. ``TransientChainError``."""
        ...

    async def resync_nonce(self, at_least: int = 0) -> int:
        """Re-read the account nonce from the chain; the next transaction takes the larger of
        it and ``at_least``. ``TransientChainError``."""
        ...

    def release_nonce(self, nonce: int) -> None:
        """Give back a nonce that was taken but never sent (only the latest one taken can be
        given back; the core releases newest first)."""
        ...

    def decode_pending(self, raw: bytes) -> PendingTx:
        """A pending transaction from its ``encode()`` bytes (after a restart)."""
        ...


@runtime_checkable
class ReadsAccountNonce(Protocol):
    """Optional for a ``Submitter``: what lets the delivery worker notice a transaction from
    its key that it did not send (``relayer.safety``). A submitter without it gets no such
    alarm."""

    async def account_nonce(self) -> int:
        """The signer's next nonce as the chain sees it now, its transaction pool included
        (what ``resync_nonce`` reads), without changing the nonce the next ``prepare``
        takes. Raises ``TransientChainError``."""
        ...


class LightClientState(Protocol):
    """Where a reader keeps its light client between runs (the daemon's ledger): opaque bytes
    the plugin encodes. An attester without a ledger gets None and bootstraps at each start."""

    def load(self) -> bytes | None:
        """The state saved for this chain and mode, or None (bootstrap from the config)."""
        ...

    def save(self, state: bytes) -> None:
        """Replace the saved state; called after the client advanced."""
        ...


@runtime_checkable
class ChainPlugin(Protocol):
    #: the ``type`` value of a ``[[chains]]`` table this plugin serves
    kind: str
    #: pydantic model for the plugin's own keys of a ``[[chains]]`` table
    config_model: type[BaseModel]
    #: light clients a chain of this family may name as its ``finality`` (besides the
    #: relayer's own "committee" and "confirmations"); its reader then hands over only blocks
    #: that light client has finalized
    light_client_modes: frozenset[str]

    def verify(self, chain: ChainConfig, observation: Observation) -> VerifiedMessage:
        """Re-verify an observation's evidence with ``proofs/``. Pure: no I/O.

        Raises ``EvidenceRejectedError`` naming the failed check."""
        ...

    def attestation_digest(
        self, destination: ChainConfig, origin_domain: int, message_id: bytes, block_hash: bytes
    ) -> bytes:
        """The digest attesters sign for delivering ``message_id`` to ``destination``."""
        ...

    def reader(
        self,
        chain: ChainConfig,
        *,
        rpc_url: str | None,
        log: Any,
        prepared: Callable[[Sequence[Observation]], None] | None = None,
        light_client: LightClientState | None = None,
    ) -> ChainReader:
        """The reads a watcher of ``chain`` needs, from ``rpc_url`` (None: the chain's own).

        With a light-client ``finality``, ``confirmed_head`` is what the light client has
        finalized and ``read`` hands over only blocks linked to it by parent hashes; the client
        keeps its state in ``light_client`` when given one.

        ``prepared``, if given, is called (from a worker thread) with the observations of a
        block that is not final yet, as soon as the reader has fetched them: a chance to do
        per-message work ahead that can be thrown away. Nothing in them is verified or final;
        only what ``read`` returns later is."""
        ...

    def finality_problems(self, chain: ChainConfig) -> Sequence[str]:
        """What ``chain``'s settings lack for its ``finality`` (a light client's endpoint or
        checkpoint), each as a sentence: ``relayer config check`` refuses the chain with them."""
        ...

    def light_client_status(self, chain: ChainConfig, state: bytes) -> Mapping[str, str]:
        """What ``relayer lightclient status`` shows of a saved state (checkpoint, period or
        set id, finalized head), in display order. Raises ``ValueError`` for a state it cannot
        read."""
        ...

    def warnings(self, chain: ChainConfig) -> Sequence[str]:
        """Settings of ``chain`` that are unsafe outside development, each as a sentence for
        the operator: ``relayer config check`` lists them, and every process logs them at
        start (``config.warning``)."""
        ...

    def default_rpc(self, chain: ChainConfig) -> str | None:
        """The chain's own endpoint, for an attester that configures none (None: it must)."""
        ...

    def submitter_key(self, chain: ChainConfig) -> KeyRef | None:
        """Where the key that signs deliveries to ``chain`` lives; None: never a destination."""
        ...

    def load_signer(
        self,
        chain: ChainConfig,
        ref: KeyRef,
        *,
        base_dir: Path | None,
        env: Mapping[str, str] = os.environ,
    ) -> Signer:
        """The key ``ref`` names, decoded as this family's key (``relayer.keys.resolve_key``
        reads it). Raises ``KeyUnavailableError`` when it is absent on this host,
        ``ConfigError`` when it is there but unusable; messages never carry key material."""
        ...

    def delivery_settings(self, chain: ChainConfig) -> DeliverySettings:
        """How the delivery worker batches and paces transactions to ``chain``."""
        ...

    def submitter(self, chain: ChainConfig, *, signer: Signer, log: Any) -> Submitter:
        """A submitter for ``chain`` as a destination, signing with ``signer`` (which this
        plugin's ``load_signer`` made)."""
        ...


class RpcObserver(Protocol):
    """Told of every call a plugin's RPC layer makes (the daemon's metrics)."""

    def rpc_call(self, endpoint: str, method: str, seconds: float, error: str | None) -> None:
        """One call to ``endpoint`` (redacted: no credentials) took ``seconds``; ``error`` is
        the failure's class name, None for an answer."""
        ...

    def endpoint_health(
        self, chain: str, endpoint: str, *, judge: int, healthy: bool, reason: str | None
    ) -> None:
        """An endpoint pool (``judge``: which one; a chain may have several, a reader's and a
        submitter's) found ``endpoint`` of ``chain`` healthy again, or not (``reason``)."""
        ...


# Per daemon, not per process: tests run several daemons in one process, each with metrics of
# its own. Tasks (and asyncio.to_thread) copy the context they were created in, so every call
# made under ``observing_rpc`` reaches that daemon's observer and no other.
_RPC_OBSERVER: ContextVar[RpcObserver | None] = ContextVar("relayer_rpc_observer", default=None)


@contextmanager
def observing_rpc(observer: RpcObserver) -> Iterator[None]:
    """RPC calls made in this context (and in tasks created in it) go to ``observer``."""
    token = _RPC_OBSERVER.set(observer)
    try:
        yield
    finally:
        _RPC_OBSERVER.reset(token)


def observe_rpc(endpoint: str, method: str, seconds: float, error: str | None = None) -> None:
    """For a plugin's RPC layer: report one call (see ``RpcObserver.rpc_call``)."""
    observer = _RPC_OBSERVER.get()
    if observer is not None:
        observer.rpc_call(endpoint, method, seconds, error)


def observe_endpoint_health(
    chain: str, endpoint: str, *, judge: int, healthy: bool, reason: str | None = None
) -> None:
    """For a plugin's endpoint pool: report a change of an endpoint's health (see
    ``RpcObserver.endpoint_health``)."""
    observer = _RPC_OBSERVER.get()
    if observer is not None:
        observer.endpoint_health(chain, endpoint, judge=judge, healthy=healthy, reason=reason)


@contextmanager
def rpc_call(endpoint: str, method: str) -> Iterator[None]:
    """For a plugin's RPC layer: time the call made in this block and report it (an exception
    counts as an error, by its class name, and propagates)."""
    if _RPC_OBSERVER.get() is None:  # no daemon listening (the CLI, an attester): no cost
        yield
        return
    started = time.perf_counter()
    try:
        yield
    except Exception as exc:  # a cancellation is no error of the endpoint: not counted
        observe_rpc(endpoint, method, time.perf_counter() - started, type(exc).__name__)
        raise
    observe_rpc(endpoint, method, time.perf_counter() - started)


@cache
def _registry() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def reload_plugins() -> None:
    """Look at the entry points again: for code that makes a family installable at run time
    (a test putting a ``dist-info`` folder on ``sys.path``); the registry is read once."""
    _registry.cache_clear()


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
