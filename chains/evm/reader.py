"""What a watcher reads from one EVM chain: Gateway ``Dispatch`` logs in final blocks, proven.

``relayer.follower`` drives it (cursor, reorg alarm, fork point, outages). Blocks prepared
ahead by ``chains.evm.readahead`` are used where they link to the cursor and the node still has
the last of them at its height; anything else is read the ordinary way, in log ranges.

With ``finality = "sync-committee"`` the confirmed head is the execution block the beacon
chain's sync committee has finalized (``chains.evm.sync_committee``, proven by
``proofs.ethereum_lc``), and a span is handed over only if each of its blocks is on the parent-
hash walk down from that block (``chains.evm.ancestry``): the node's word on depth counts for
nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from chains.endpoints import urls_of
from chains.evm.ancestry import FinalizedAncestry, off_the_finalized_chain
from chains.evm.config import EvmChainConfig
from chains.evm.evidence import DISPATCH_TOPIC, build_observations
from chains.evm.heads import HeadNotifier
from chains.evm.readahead import ReadAhead
from chains.evm.rpc import EvmRpc
from chains.evm.sync_committee import FinalizedExecution, SyncCommitteeFinality
from proofs import ProofError
from relayer.errors import TransientChainError
from relayer.plugin import CursorView, Observation, Span

__all__ = ["EvmReader"]

# Blocks per eth_getLogs query: small enough for any node's range limit.
_LOG_RANGE = 500


class EvmReader:
    max_span = _LOG_RANGE

    def __init__(
        self,
        *,
        chain_name: str,
        config: EvmChainConfig,
        rpc: EvmRpc,
        log: Any = None,
        warm: Callable[[Sequence[Observation]], None] | None = None,
        finality: SyncCommitteeFinality | None = None,
    ) -> None:
        self.chain = chain_name
        self.config = config
        self.rpc = rpc
        self.endpoint = rpc.endpoint
        self.log = (log or structlog.get_logger()).bind(chain=chain_name)
        # The quorum is over the chain's own endpoints; an attester reading from an endpoint of
        # its own choosing (its operator's trust, not the chain's list) reads from that alone.
        self.quorum = config.quorum if rpc.urls == urls_of(config.rpc) else 1
        rpc.require(chain=chain_name, quorum=self.quorum, max_lag=config.max_lag, log=self.log)
        self.start_block = config.start_block
        self.poll_interval = config.poll_interval
        self.depth: int | str = "sync-committee" if finality else config.confirmations
        self.finality = finality
        self.ancestry = FinalizedAncestry(rpc, chain=chain_name) if finality else None
        self._final: FinalizedExecution | None = None
        self.gateway = bytes.fromhex(config.gateway[2:])
        self.gateway_hex = "0x" + self.gateway.hex()
        self._fetch_limit = asyncio.Semaphore(8)
        self.heads = HeadNotifier(str(config.ws), self.log) if config.ws else None
        self.ahead = ReadAhead(chain_name=chain_name, gateway=self.gateway, rpc=rpc, warm=warm)

    async def close(self) -> None:
        if self.finality is not None:
            await self.finality.close()
        await self.rpc.close()

    async def background(self, cursor: CursorView) -> None:
        async with asyncio.TaskGroup() as group:
            if self.heads is not None:
                group.create_task(self.heads.run(), name=f"heads:{self.chain}")
            group.create_task(self._read_ahead(cursor), name=f"read-ahead:{self.chain}")

    async def latest_head(self) -> int:
        return await self.rpc.block_number()

    def head_stream_idle(self) -> float | None:
        return self.heads.idle() if self.heads is not None else None

    def restart_head_stream(self) -> None:
        if self.heads is not None:
            self.heads.restart()

    async def wait_for_head(self, timeout: float) -> None:
        if self.heads is not None:
            await self.heads.wait(timeout)
        else:
            await asyncio.sleep(timeout)

    async def _read_ahead(self, cursor: CursorView) -> None:
        """Prepare young blocks as heads arrive (see ``chains.evm.readahead``)."""
        wake = self.heads.listen() if self.heads is not None else None
        while True:
            try:
                await self.ahead.extend(cursor.next_block())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (a failed read-ahead only costs latency)
                # The confirmed pass reads these blocks itself and reports what is wrong.
                self.log.debug("read_ahead.skipped", error=f"{type(exc).__name__}: {exc}")
            if self.heads is not None and wake is not None:
                await self.heads.wait(self.config.poll_interval, wake)
            else:
                await asyncio.sleep(self.config.poll_interval)

    async def confirmed_head(self) -> int:
        if self.finality is not None:
            final = await self.finality.finalized()
            if final is None:
                return -1
            self._final = final
            return final.number
        if self.config.confirmations == "finalized":
            block = await self.rpc.block("finalized")
            if block is None:
                return -1
            return int(block["number"], 16)
        return await self.rpc.block_number() - int(self.config.confirmations)

    async def hash_at(self, number: int) -> bytes | None:
        block = await self.rpc.block(number)
        return None if block is None else bytes.fromhex(block["hash"][2:])

    async def _hash_at(self, number: int) -> bytes:
        found = await self.hash_at(number)
        if found is None:
            raise TransientChainError(f"node does not know block {number}, below its own head")
        return found

    async def read(self, start: int, end: int, *, after: bytes) -> Span:
        async with self.ahead.busy:
            ready = self.ahead.take(after, start, end)
        span: Span | None = None
        if ready is not None:
            end_hash = await self._hash_at(end)
            if end_hash == ready[-1].hash:  # else prepared on a fork the node has left
                span = Span(
                    observations=[obs for block in ready for obs in block.observations],
                    blocks=[(b.number, b.hash) for b in ready if b.observations],
                    end_hash=end_hash,
                )
        if span is None:
            span = await self._read(start, end)
        self.ahead.forget_through(end)
        if self.ancestry is not None:
            await self._check_finalized(span, start, end)
        return span

    async def _check_finalized(self, span: Span, start: int, end: int) -> None:
        """Refuse a span any of whose blocks is not on the light client's finalized chain."""
        assert self.ancestry is not None
        final = self._final
        if final is None or end > final.number:
            raise TransientChainError(
                f"chain `{self.chain}`: block {end} is above what the light client has finalized"
            )
        await self.ancestry.ensure(final.number, final.hash, low=start)
        problems = off_the_finalized_chain(self.ancestry, [*span.blocks, (end, span.end_hash)])
        if problems:
            raise ProofError(f"chain `{self.chain}`: " + "; ".join(problems))
        self.ancestry.forget_below(end)

    async def _read(self, start: int, end: int) -> Span:
        logs = await self.rpc.logs(start, end, self.gateway_hex, ["0x" + DISPATCH_TOPIC.hex()])
        numbers = sorted({int(entry["blockNumber"], 16) for entry in logs})
        log_hashes = {int(e["blockNumber"], 16): e.get("blockHash") for e in logs}
        fetched = await asyncio.gather(*(self._fetch(n) for n in numbers))
        observations: list[Observation] = []
        blocks: list[tuple[int, bytes]] = []
        for number, (block, receipts) in zip(numbers, fetched, strict=True):
            if log_hashes[number] != block["hash"]:
                # The log query and the block fetch saw different chains: a reorg in flight.
                raise TransientChainError(f"block {number} changed while it was being read")
            observations.extend(build_observations(self.chain, self.gateway, block, receipts))
            blocks.append((number, bytes.fromhex(block["hash"][2:])))
        if self.quorum > 1:
            # The logs and blocks came from one endpoint: each block holding a message must be
            # the one the quorum agrees on at its height (the span's end is agreed on below).
            agreed = await asyncio.gather(*(self._hash_at(n) for n, _ in blocks))
            for (number, seen), hash_ in zip(blocks, agreed, strict=True):
                if seen != hash_:
                    raise TransientChainError(
                        f"chain `{self.chain}`: block {number} read from one endpoint is not "
                        f"the one {self.quorum} endpoints agree on; reading it again"
                    )
        return Span(observations=observations, blocks=blocks, end_hash=await self._hash_at(end))

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
