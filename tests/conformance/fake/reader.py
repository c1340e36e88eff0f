"""What a watcher reads from a fake chain: dispatches in blocks ``confirmations`` below the
head, each proven against its block before it is handed over.

``relayer.follower`` drives it (cursor, reorg alarm, fork point, outages). Each block of a
span is checked as served: its header hashes to its hash, carries its height, links to the
block before it, and its tx root is the Merkle root of its transactions; only then are its
dispatches turned into observations, each with a Merkle path of its own as evidence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from proofs.errors import HashMismatchError, MalformedEncodingError, ProofError
from relayer.errors import PermanentChainError, TransientChainError
from relayer.message import Message, MessageFormatError
from relayer.plugin import CursorView, Observation, Span
from tests.conformance.fake.blocks import Header, TxKind, decode_tx, sha256
from tests.conformance.fake.client import NodeClient, unhex
from tests.conformance.fake.config import FakeChainConfig
from tests.conformance.fake.evidence import build_observation
from tests.conformance.fake.merkle import inclusion_path, tree_root

__all__ = ["FakeReader"]


@dataclass(frozen=True, slots=True)
class _Proven:
    number: int
    hash: bytes
    parent: bytes
    observations: list[Observation]


class FakeReader:
    def __init__(
        self,
        *,
        chain_name: str,
        domain: int,
        config: FakeChainConfig,
        url: str,
        log: Any = None,
        prepared: Callable[[Sequence[Observation]], None] | None = None,
    ) -> None:
        self.chain = chain_name
        self.domain = domain
        self.config = config
        self.client = NodeClient(url, chain=chain_name, timeout=config.request_timeout)
        self.endpoint = self.client.endpoint
        self.start_block = config.start_block
        self.poll_interval = config.poll_interval
        self.max_span = config.max_span
        self.depth: int | str = config.confirmations
        self.log = (log or structlog.get_logger()).bind(chain=chain_name)
        self.prepared = prepared
        self._checked = False
        # The head the follower last saw: wait_for_head waits for one above it.
        self._seen = -1

    async def close(self) -> None:
        await self.client.close()

    async def _check(self) -> None:
        """Once: the endpoint serves the configured network (a reader pointed at the wrong
        chain would otherwise prove that chain's messages perfectly well)."""
        if self._checked:
            return
        info = await self.client.must("GET", "/info")
        if info["network"] != self.config.network:
            raise PermanentChainError(
                f"chain `{self.chain}`: endpoint {self.endpoint} serves network "
                f"{info['network']!r}, the config says {self.config.network!r}; point rpc at "
                "the right node"
            )
        self._checked = True

    # --- heads ---------------------------------------------------------------------------------

    async def _poll_head(self, *, above: int | None = None, wait: float = 0) -> int:
        """The node's head; with ``above``, held open up to ``wait`` seconds for a higher one."""
        path = "/head" if above is None else f"/head?above={above}&wait={wait}"
        answer = await self.client.request("GET", path, timeout=wait + self.config.request_timeout)
        if answer is None:
            raise TransientChainError(f"chain `{self.chain}`: {self.endpoint} has no head")
        return int(answer["number"])

    async def latest_head(self) -> int:
        return await self._poll_head()

    def head_stream_idle(self) -> float | None:
        return None  # no subscription: the family long-polls its node for heads

    def restart_head_stream(self) -> None:
        return

    async def wait_for_head(self, timeout: float) -> None:
        started = asyncio.get_running_loop().time()
        try:
            await self._poll_head(above=self._seen, wait=timeout)
        except (TransientChainError, PermanentChainError, KeyError, TypeError, ValueError):
            # The follower's next pass meets (and reports) the failure; here only the pause.
            left = timeout - (asyncio.get_running_loop().time() - started)
            await asyncio.sleep(max(left, 0))

    async def confirmed_head(self) -> int:
        await self._check()
        self._seen = await self._poll_head()
        return max(self._seen - self.config.confirmations, -1)

    async def hash_at(self, number: int) -> bytes | None:
        answer = await self.client.get(f"/block/{number}?hash_only=1")
        return None if answer is None else unhex(answer["hash"])

    async def background(self, cursor: CursorView) -> None:
        """With a ``prepared`` callback: prove each young block as it appears and hand its
        observations over early. Without one there is nothing to do ahead."""
        if self.prepared is None:
            return
        done = -1
        while True:
            try:
                head = await self._poll_head(above=done, wait=self.poll_interval)
                start = max(cursor.next_block(), head - self.config.confirmations + 1, done + 1)
                if start <= head:
                    for block in await self._blocks(start, head):
                        if block.observations:
                            await asyncio.to_thread(self.prepared, block.observations)
                # Also when nothing was young enough: the next poll waits for a new head.
                done = head
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (a failed read ahead only costs latency)
                # The confirmed pass reads these blocks itself and reports what is wrong.
                self.log.debug("read_ahead.skipped", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(self.poll_interval)

    # --- reading -------------------------------------------------------------------------------

    async def read(self, start: int, end: int, *, after: bytes) -> Span:
        await self._check()
        blocks = await self._blocks(start, end)
        if after and blocks[0].parent != after:
            # The cursor's block is no longer the parent: a reorg between the follower's hash
            # check and this read. Its next pass finds it and rewinds.
            raise TransientChainError(f"block {start} no longer follows the cursor's block")
        return Span(
            observations=[o for block in blocks for o in block.observations],
            blocks=[(block.number, block.hash) for block in blocks if block.observations],
            end_hash=blocks[-1].hash,
        )

    async def _blocks(self, start: int, end: int) -> list[_Proven]:
        answer = await self.client.must("GET", f"/blocks?start={start}&end={end}")
        served = answer["blocks"]
        if not isinstance(served, list):
            raise TypeError("blocks is not a list")
        if len(served) != end - start + 1:
            raise TransientChainError(
                f"chain `{self.chain}`: {self.endpoint} served {len(served)} of blocks "
                f"{start}..{end}, below its own head; will retry"
            )
        # Hashing and Merkle work is CPU: off the event loop.
        return await asyncio.to_thread(self._prove, start, served)

    def _prove(self, start: int, served: list[Any]) -> list[_Proven]:
        proven: list[_Proven] = []
        for offset, raw in enumerate(served):
            block = self._prove_block(start + offset, raw)
            if proven and block.parent != proven[-1].hash:
                raise HashMismatchError(
                    f"block {block.number} names parent 0x{block.parent.hex()}, block "
                    f"{block.number - 1} as served hashes to 0x{proven[-1].hash.hex()}"
                )
            proven.append(block)
        return proven

    def _prove_block(self, number: int, raw: dict[str, Any]) -> _Proven:
        block_hash, header_bytes = unhex(raw["hash"]), unhex(raw["header"])
        txs = [unhex(tx) for tx in raw["txs"]]
        if sha256(header_bytes) != block_hash:
            raise HashMismatchError(
                f"block {number} is served with hash 0x{block_hash.hex()} but its header "
                f"hashes to 0x{sha256(header_bytes).hex()}"
            )
        header = Header.decode(header_bytes)
        if header.number != number:
            raise ProofError(f"block at height {number} has a header of #{header.number}")
        if header.tx_count != len(txs) or tree_root(txs) != header.tx_root:
            raise HashMismatchError(
                f"block {number}'s {len(txs)} transactions as served are not the ones its "
                "header commits to"
            )
        found = []
        for index, raw_tx in enumerate(txs):
            try:
                tx = decode_tx(raw_tx)
                if tx.kind is not TxKind.DISPATCH:
                    continue  # a delivery to this chain: the submitter's business
                message = Message.decode(tx.payload)
            except (MalformedEncodingError, MessageFormatError) as exc:
                self._ignored(number, index, str(exc))
                continue
            if message.sender != tx.sender or message.origin != self.domain:
                self._ignored(number, index, "its sender or origin is not its signer's, here")
                continue
            found.append(
                build_observation(
                    chain_name=self.chain,
                    message=tx.payload,
                    block_hash=block_hash,
                    header=header_bytes,
                    tx=raw_tx,
                    tx_index=index,
                    path=inclusion_path(txs, index),
                )
            )
        return _Proven(number, block_hash, header.parent, found)

    def _ignored(self, number: int, index: int, reason: str) -> None:
        self.log.warning("dispatch.ignored", block=number, tx=index, reason=reason)
