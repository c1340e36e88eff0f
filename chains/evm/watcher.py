"""Follows one EVM chain: finds Gateway Dispatch logs in confirmed blocks and proves them.

The cursor (last scanned block and its hash) lives in the ledger, so a restart backfills from
where it stopped and no event is missed while the process was down. Each pass also re-reads the
cursor block: if the node's hash for it changed, a reorg went deeper than the configured depth,
which is an alarm (``chain.reorg_beyond_finality``), and the scan rewinds to the fork point so
that re-included messages are observed in their new blocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from chains.evm.config import EvmChainConfig
from chains.evm.evidence import DISPATCH_TOPIC, build_observations
from chains.evm.heads import HeadNotifier
from chains.evm.readahead import ReadAhead
from chains.evm.rpc import EvmRpc
from proofs import ProofError
from relayer.errors import TransientChainError
from relayer.health import HEALTH
from relayer.plugin import Observation, ObservationSink
from relayer.retry import backoff_delay
from relayer.store import Ledger

__all__ = ["EvmWatcher"]

# Blocks per eth_getLogs query: small enough for any node's range limit.
_LOG_RANGE = 500
# Blocks whose hashes are kept for finding the fork point after a deep reorg.
_REMEMBERED_BLOCKS = 256


class EvmWatcher:
    def __init__(
        self,
        *,
        chain_name: str,
        config: EvmChainConfig,
        rpc: EvmRpc,
        ledger: Ledger,
        owner: str,
        log: Any = None,
        warm: Callable[[Sequence[Observation]], None] | None = None,
    ) -> None:
        self.chain = chain_name
        self.config = config
        self.rpc = rpc
        self.ledger = ledger
        self.owner = owner
        self.gateway = bytes.fromhex(config.gateway[2:])
        self.gateway_hex = "0x" + self.gateway.hex()
        self.log = (log or structlog.get_logger()).bind(chain=chain_name)
        self._fetch_limit = asyncio.Semaphore(8)
        self.heads = HeadNotifier(str(config.ws), self.log) if config.ws else None
        self.ahead = ReadAhead(chain_name=chain_name, gateway=self.gateway, rpc=rpc, warm=warm)

    async def run(self, sink: ObservationSink) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                if self.heads is not None:
                    group.create_task(self.heads.run(), name=f"heads:{self.chain}")
                group.create_task(self._follow(sink), name=f"follow:{self.chain}")
                group.create_task(self._read_ahead(), name=f"read-ahead:{self.chain}")
        finally:
            await self.rpc.close()

    async def _read_ahead(self) -> None:
        """Prepare young blocks as heads arrive (see ``chains.evm.readahead``)."""
        wake = self.heads.listen() if self.heads is not None else None
        while True:
            cursor = self.ledger.get_cursor(self.chain, self.owner)
            first = cursor.block_number + 1 if cursor is not None else self.config.start_block
            try:
                await self.ahead.extend(first)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (a failed read-ahead only costs latency)
                # The confirmed pass reads these blocks itself and reports what is wrong.
                self.log.debug("read_ahead.skipped", error=f"{type(exc).__name__}: {exc}")
            if self.heads is not None and wake is not None:
                await self.heads.wait(self.config.poll_interval, wake)
            else:
                await asyncio.sleep(self.config.poll_interval)

    async def _follow(self, sink: ObservationSink) -> None:
        attempt = 0
        while True:
            try:
                progressed = await self._step(sink)
            except TransientChainError as exc:
                attempt += 1
                HEALTH.failed(self.log, self.chain, self.rpc.endpoint, exc)
                await asyncio.sleep(backoff_delay(attempt, base=0.5, cap=15.0))
                continue
            except (KeyError, TypeError, ValueError) as exc:
                # An answer that is not what JSON-RPC promises (a missing field, a non-hex
                # string): the endpoint is broken or lying. Nothing was persisted; retry.
                attempt += 1
                HEALTH.failed(self.log, self.chain, self.rpc.endpoint, f"garbage answer: {exc!r}")
                await asyncio.sleep(backoff_delay(attempt, base=1.0, cap=30.0))
                continue
            except ProofError as exc:
                # The endpoint served data that does not hash together: nothing of it is
                # persisted or submitted, and the cursor stays put, so the block is read again
                # (a later honest answer passes; a lie never does).
                attempt += 1
                self.log.error("proof.rejected", endpoint=self.rpc.endpoint, reason=str(exc))
                await asyncio.sleep(backoff_delay(attempt, base=1.0, cap=30.0))
                continue
            HEALTH.succeeded(self.log, self.chain, self.rpc.endpoint)
            attempt = 0
            if not progressed:
                if self.heads is not None:
                    await self.heads.wait(self.config.poll_interval)
                else:
                    await asyncio.sleep(self.config.poll_interval)

    async def _confirmed_head(self) -> int:
        if self.config.confirmations == "finalized":
            block = await self.rpc.block("finalized")
            if block is None:
                return -1
            return int(block["number"], 16)
        return await self.rpc.block_number() - int(self.config.confirmations)

    async def _step(self, sink: ObservationSink) -> bool:
        cursor = self.ledger.get_cursor(self.chain, self.owner)
        if cursor is not None and cursor.block_hash:
            block = await self.rpc.block(cursor.block_number)
            if block is None or bytes.fromhex(block["hash"][2:]) != cursor.block_hash:
                await self._rewind(cursor.block_number, cursor.block_hash, block)
                return True
        start = cursor.block_number + 1 if cursor is not None else self.config.start_block
        head = await self._confirmed_head()
        if start > head:
            return False
        end = min(head, start + _LOG_RANGE - 1)
        cursor_hash = cursor.block_hash if cursor is not None else b""
        async with self.ahead.busy:
            ready = self.ahead.take(cursor_hash, start, end)
        if ready is not None:
            end_hash = await self._hash_at(end)
            if end_hash != ready[-1].hash:
                ready = None  # prepared on a fork the node has left
        if ready is not None:
            observations = [obs for block in ready for obs in block.observations]
            remembered = [(b.number, b.hash) for b in ready if b.observations]
        else:
            observations, remembered, end_hash = await self._read(start, end)
        self.ahead.forget_through(end)
        if observations:
            await sink(observations)
            for obs in observations:
                self.log.debug("message.observed", block=obs.block_number)
        remembered.append((end, end_hash))
        self.ledger.remember_blocks(self.chain, self.owner, remembered)
        self.ledger.set_cursor(self.chain, self.owner, end, end_hash)
        self.ledger.prune_blocks(self.chain, self.owner, below=end - _REMEMBERED_BLOCKS)
        return True

    async def _hash_at(self, number: int) -> bytes:
        block = await self.rpc.block(number)
        if block is None:
            raise TransientChainError(f"node does not know block {number}, below its own head")
        return bytes.fromhex(block["hash"][2:])

    async def _read(
        self, start: int, end: int
    ) -> tuple[list[Observation], list[tuple[int, bytes]], bytes]:
        """Read ``start..end`` from the node: the observations, the (number, hash) of each
        block that had some, and the hash of ``end``."""
        logs = await self.rpc.logs(start, end, self.gateway_hex, ["0x" + DISPATCH_TOPIC.hex()])
        numbers = sorted({int(entry["blockNumber"], 16) for entry in logs})
        log_hashes = {int(e["blockNumber"], 16): e.get("blockHash") for e in logs}
        fetched = await asyncio.gather(*(self._fetch(n) for n in numbers))
        observations: list[Observation] = []
        remembered: list[tuple[int, bytes]] = []
        for number, (block, receipts) in zip(numbers, fetched, strict=True):
            if log_hashes[number] != block["hash"]:
                # The log query and the block fetch saw different chains: a reorg in flight.
                raise TransientChainError(f"block {number} changed while it was being read")
            observations.extend(build_observations(self.chain, self.gateway, block, receipts))
            remembered.append((number, bytes.fromhex(block["hash"][2:])))
        return observations, remembered, await self._hash_at(end)

    async def _fetch(self, number: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with self._fetch_limit:
            block, receipts = await self.rpc.batch(
                [
                    ("eth_getBlockByNumber", [hex(number), False]),
                    ("eth_getBlockReceipts", [hex(number)]),
                ]
            )
        if not isinstance(block, dict) or not isinstance(receipts, list):
            raise TransientChainError(f"block {number} or its receipts are missing at the node")
        return block, receipts

    async def _rewind(self, number: int, old_hash: bytes, new_block: dict[str, Any] | None) -> None:
        fork = await self._fork_point(number)
        self.log.error(
            "chain.reorg_beyond_finality",
            block=number,
            old_hash="0x" + old_hash.hex(),
            new_hash=new_block["hash"] if new_block else None,
            rescan_from=fork + 1,
            depth=self.config.confirmations,
        )
        self.ledger.forget_blocks_from(self.chain, self.owner, fork + 1)
        if fork < self.config.start_block:
            self.ledger.set_cursor(self.chain, self.owner, self.config.start_block - 1, b"")
            return
        self.ledger.set_cursor(self.chain, self.owner, fork, await self._hash_at(fork))

    async def _fork_point(self, number: int) -> int:
        """The highest remembered block that the node still has with the same hash."""
        candidates: Sequence[tuple[int, bytes]] = self.ledger.remembered_blocks(
            self.chain, self.owner, below=number
        )
        for height, known in sorted(candidates, reverse=True):
            block = await self.rpc.block(height)
            if block is not None and bytes.fromhex(block["hash"][2:]) == known:
                return height
        return self.config.start_block - 1
