"""Follows one chain for one owner: the cursor, reorgs below the confirmed head, outages.

The family's ``ChainReader`` says what the chain holds; this module decides what is handed
over and when. The cursor (last block handed over and its hash) lives in the ledger, so a
restart backfills from where it stopped and no message is missed while the process was down.
Each pass re-reads the cursor block first: if the node's hash for it changed, a reorg went
deeper than the chain's configured finality, which is an alarm (``chain.reorg_beyond_finality``),
and the scan rewinds to the fork point so that re-included messages are observed in their new
blocks; before it does, an ``on_reorg`` hook (the relayer's: ``Ledger.orphan_above``) hears of
the fork, so that what the rescan does not find again stays marked as gone. The cursor advances
only after the sink returned, so nothing is skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from proofs import ProofError
from relayer.errors import ChainError, TransientChainError
from relayer.health import HEALTH
from relayer.metrics import RelayerMetrics
from relayer.plugin import ChainReader, Observation, ObservationSink, load_plugin
from relayer.retry import backoff_delay, describe_error
from relayer.store import Cursor, Ledger, from_loop

if TYPE_CHECKING:
    from relayer.config import ChainConfig

__all__ = ["Follower", "LedgerCursor", "ReorgHook", "follow", "orphan_on_reorg"]

# Blocks whose hashes are kept for finding the fork point after a deep reorg.
_REMEMBERED_BLOCKS = 256

#: Told of a reorg deeper than finality before the follower rewinds: (chain, fork block: the
#: highest block both chains share, the cursor block's old hash, the node's hash for that block
#: now or None if the node no longer has a block at that height).
ReorgHook = Callable[[str, int, bytes, bytes | None], Awaitable[None]]


class LedgerLightClient:
    """``LightClientState`` in the ledger: one owner's light client of one chain. A state saved
    under another mode (the operator changed ``finality``) is not handed back: the new client
    bootstraps from its configured checkpoint."""

    def __init__(self, ledger: Ledger, chain: str, owner: str, mode: str) -> None:
        self._ledger = ledger
        self._chain = chain
        self._owner = owner
        self._mode = mode

    def load(self) -> bytes | None:
        saved = self._ledger.light_client(self._chain, self._owner)
        return saved.state if saved is not None and saved.mode == self._mode else None

    def save(self, state: bytes) -> None:
        self._ledger.save_light_client(self._chain, self._owner, self._mode, state)


class LedgerCursor:
    """The part of the ledger one watcher uses: its cursor and its remembered block hashes."""

    def __init__(self, ledger: Ledger, chain: str, owner: str, *, start_block: int) -> None:
        self._ledger = ledger
        self._chain = chain
        self._owner = owner
        self._start_block = start_block

    def get(self) -> Cursor | None:
        return self._ledger.get_cursor(self._chain, self._owner)

    def next_block(self) -> int:
        cursor = self.get()
        return cursor.block_number + 1 if cursor is not None else self._start_block

    def advance(self, number: int, block_hash: bytes, blocks: Sequence[tuple[int, bytes]]) -> None:
        """Remember ``blocks`` (and ``number`` itself), then move the cursor to ``number``."""
        self._ledger.remember_blocks(self._chain, self._owner, [*blocks, (number, block_hash)])
        self._ledger.set_cursor(self._chain, self._owner, number, block_hash)
        self._ledger.prune_blocks(self._chain, self._owner, below=number - _REMEMBERED_BLOCKS)

    def remembered(self, *, below: int) -> Sequence[tuple[int, bytes]]:
        return self._ledger.remembered_blocks(self._chain, self._owner, below=below)

    def rewind(self, fork: int, number: int, block_hash: bytes) -> None:
        """Forget the blocks above ``fork`` and continue after ``number`` (``block_hash`` may
        be empty: unknown, before the first block scanned)."""
        self._ledger.forget_blocks_from(self._chain, self._owner, fork + 1)
        self._ledger.set_cursor(self._chain, self._owner, number, block_hash)


class Follower:
    """Hands a chain's final observations to a sink, block range by block range, for ever.

    With a ``block_time`` (the chain makes blocks on its own), a watchdog restarts the
    reader's head subscription once it has said nothing for ``stall_after_blocks`` block times:
    a node can stop sending on a socket that stays open, and then the watcher would fall back
    to polling for as long as the socket lives. With ``metrics``, the node's newest head is
    read every block time (or poll interval) for the head metric and ``/readyz``. With
    ``on_reorg``, a reorg deeper than finality is told to it, awaited, before the cursor
    rewinds to the fork point: should it fail, nothing rewinds, and the next pass finds the
    reorg again."""

    def __init__(
        self,
        *,
        chain: str,
        reader: ChainReader,
        cursor: LedgerCursor,
        log: Any,
        metrics: RelayerMetrics | None = None,
        block_time: float | None = None,
        stall_after_blocks: int = 10,
        on_reorg: ReorgHook | None = None,
    ) -> None:
        self.chain = chain
        self.reader = reader
        self.cursor = cursor
        self.log = (log or structlog.get_logger()).bind(chain=chain)
        self.metrics = metrics
        self.block_time = block_time
        self.stall_after_blocks = stall_after_blocks
        self.on_reorg = on_reorg
        self._reconnects = (metrics or RelayerMetrics()).stream_reconnects.labels(chain)

    async def run(self, sink: ObservationSink) -> None:
        """Returns only when cancelled; the reader's connections are closed then."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.reader.background(self.cursor), name=f"reader:{self.chain}")
                group.create_task(self._follow(sink), name=f"follow:{self.chain}")
                if self.metrics is not None:
                    group.create_task(self._watch_head(), name=f"head:{self.chain}")
                if self.block_time is not None:
                    threshold = self.block_time * self.stall_after_blocks
                    group.create_task(self.watchdog(threshold), name=f"watchdog:{self.chain}")
        finally:
            await self.reader.close()

    async def _watch_head(self) -> None:
        """The node's newest head, every block time: what the head metric shows and the stall
        check of /readyz watches. A failed read is only a head not seen (the follower logs
        the outage itself); this task must never end the watcher."""
        assert self.metrics is not None
        interval = self.block_time or self.reader.poll_interval
        while True:
            try:
                async with asyncio.timeout(max(interval, 5.0)):
                    head = await self.reader.latest_head()
            except Exception as exc:  # noqa: BLE001  (see the docstring)
                self.log.debug("heads.read_failed", error=describe_error(exc))
            else:
                self.metrics.head_seen(self.chain, head)
            await asyncio.sleep(interval)

    async def watchdog(self, threshold: float) -> None:
        """Restart the head subscription whenever it has been silent for ``threshold``
        seconds, counting each restart; the first of an outage is logged as a warning, its
        end (a head announced after a restart) once as information."""
        check_every = min(max(threshold / 4, 0.25), 5.0)
        restarts = 0
        restarted_at = 0.0
        while True:
            await asyncio.sleep(check_every)
            idle = self.reader.head_stream_idle()
            if idle is None:
                continue  # no subscription (or none any more): polling only
            if idle <= threshold:
                # A head announced after the last restart ends the outage.
                if restarts and idle < time.monotonic() - restarted_at:
                    self.log.info("heads.stream_recovered", restarts=restarts)
                    restarts = 0
                continue
            restarts += 1
            self._reconnects.inc()
            (self.log.warning if restarts == 1 else self.log.debug)(
                "heads.stream_restarted",
                silent_s=round(idle, 1),
                threshold_s=threshold,
                restarts=restarts,
            )
            self.reader.restart_head_stream()
            restarted_at = time.monotonic()

    async def _follow(self, sink: ObservationSink) -> None:
        endpoint = self.reader.endpoint
        attempt = 0
        while True:
            try:
                progressed = await self.step(sink)
            except ChainError as exc:
                attempt += 1
                HEALTH.failed(self.log, self.chain, endpoint, exc)
                if not exc.retryable:
                    # Something the operator must fix (an endpoint serving another chain, a
                    # runtime the config does not describe): said at every try, a minute apart
                    # at most, while this chain waits and every other chain goes on.
                    self.log.error("chain.refused", endpoint=endpoint, error=describe_error(exc))
                    await asyncio.sleep(backoff_delay(attempt, base=5.0, cap=60.0))
                    continue
                await asyncio.sleep(backoff_delay(attempt, base=0.5, cap=15.0))
                continue
            except (KeyError, TypeError, ValueError) as exc:
                # An answer that is not what the endpoint's API promises (a missing field, a
                # non-hex string): the endpoint is broken or lying. Nothing was persisted.
                attempt += 1
                HEALTH.failed(self.log, self.chain, endpoint, f"garbage answer: {exc!r}")
                await asyncio.sleep(backoff_delay(attempt, base=1.0, cap=30.0))
                continue
            except ProofError as exc:
                # The endpoint served data that does not hash together: nothing of it is
                # persisted or submitted, and the cursor stays put, so the block is read again
                # (a later honest answer passes; a lie never does).
                attempt += 1
                self.log.error("proof.rejected", endpoint=endpoint, reason=str(exc))
                if self.metrics is not None:
                    self.metrics.proof_rejected(self.chain, "read", type(exc).__name__)
                await asyncio.sleep(backoff_delay(attempt, base=1.0, cap=30.0))
                continue
            HEALTH.succeeded(self.log, self.chain, endpoint)
            attempt = 0
            if not progressed:
                await self.reader.wait_for_head(self.reader.poll_interval)

    async def step(self, sink: ObservationSink) -> bool:
        """One pass: a reorg check, then at most ``max_span`` final blocks. Whether it moved."""
        cursor = self.cursor.get()
        if cursor is not None and cursor.block_hash:
            now = await self.reader.hash_at(cursor.block_number)
            if now != cursor.block_hash:
                await self._rewind(cursor.block_number, cursor.block_hash, now)
                return True
        start = self.cursor.next_block()
        head = await self.reader.confirmed_head()
        if start > head:
            return False
        end = min(head, start + self.reader.max_span - 1)
        span = await self.reader.read(
            start, end, after=cursor.block_hash if cursor is not None else b""
        )
        observations: Sequence[Observation] = span.observations
        if observations:
            await sink(observations)
            for obs in observations:
                self.log.debug("message.observed", block=obs.block_number)
        self.cursor.advance(end, span.end_hash, span.blocks)
        return True

    async def _hash_at(self, number: int) -> bytes:
        found = await self.reader.hash_at(number)
        if found is None:
            raise TransientChainError(f"node does not know block {number}, below its own head")
        return found

    async def _rewind(self, number: int, old_hash: bytes, new_hash: bytes | None) -> None:
        fork = await self._fork_point(number)
        self.log.error(
            "chain.reorg_beyond_finality",
            block=number,
            old_hash="0x" + old_hash.hex(),
            new_hash="0x" + new_hash.hex() if new_hash is not None else None,
            rescan_from=fork + 1,
            depth=self.reader.depth,
        )
        # Before the rewind: the rescan that follows it observes the re-included messages
        # again, after the hook has marked everything above the fork as gone.
        if self.on_reorg is not None:
            await self.on_reorg(self.chain, fork, old_hash, new_hash)
        start = self.reader.start_block
        if fork < start:
            self.cursor.rewind(fork, start - 1, b"")
            return
        self.cursor.rewind(fork, fork, await self._hash_at(fork))

    async def _fork_point(self, number: int) -> int:
        """The highest remembered block that the node still has with the same hash."""
        for height, known in sorted(self.cursor.remembered(below=number), reverse=True):
            if await self.reader.hash_at(height) == known:
                return height
        return self.reader.start_block - 1


def orphan_on_reorg(ledger: Ledger, log: Any) -> ReorgHook:
    """The relayer's ``on_reorg``: the messages of the chain above the fork that nothing was
    sent for yet become ORPHANED (``Ledger.orphan_above``; in a worker thread on a shared
    ledger, where it is a network round trip), logged as ``message.orphaned`` with how many
    (and the first 20 ids).
    The rescan that follows observes again those the canonical chain holds. Only the relayer's
    own followers take it: an attester keeps no messages to orphan."""

    async def orphan(chain: str, fork: int, old_hash: bytes, new_hash: bytes | None) -> None:
        now = "gone" if new_hash is None else "0x" + new_hash.hex()
        reason = (
            f"a reorg deeper than the finality of {chain} replaced its blocks above {fork}"
            f" (chain.reorg_beyond_finality: the block at the follower's cursor was"
            f" 0x{old_hash.hex()}, is {now} now)"
        )
        ids = await from_loop(ledger, ledger.orphan_above, chain, fork, reason=reason)
        if ids:
            log.warning(
                "message.orphaned",
                chain=chain,
                block=fork,
                count=len(ids),
                message_ids=["0x" + message_id.hex() for message_id in ids[:20]],
            )

    return orphan


def follow(
    chain: ChainConfig,
    *,
    ledger: Ledger,
    owner: str,
    rpc_url: str | None,
    log: Any,
    prepared: Callable[[Sequence[Observation]], None] | None = None,
    metrics: RelayerMetrics | None = None,
    on_reorg: ReorgHook | None = None,
) -> Follower:
    """A follower of ``chain`` whose cursor is kept in ``ledger`` under
    ``owner`` ("relayer", "attester:<name>"), reading through its plugin's ``reader``; with
    its head watchdog when the chain has a ``block_time``, and ``on_reorg`` told of reorgs
    deeper than finality (``Follower``)."""
    mode = chain.light_client_mode
    reader = load_plugin(chain.type).reader(
        chain,
        rpc_url=rpc_url,
        log=log,
        prepared=prepared,
        light_client=None if mode is None else LedgerLightClient(ledger, chain.name, owner, mode),
    )
    cursor = LedgerCursor(ledger, chain.name, owner, start_block=reader.start_block)
    return Follower(
        chain=chain.name,
        reader=reader,
        cursor=cursor,
        log=log,
        metrics=metrics,
        block_time=chain.block_time,
        stall_after_blocks=chain.stall_after_blocks,
        on_reorg=on_reorg,
    )
