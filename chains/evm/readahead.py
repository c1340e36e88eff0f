"""Reading young blocks before they are confirmed, so that confirmation costs one round trip.

A message is relayable once its block is ``confirmations`` deep, but everything the watcher
needs for it (header, receipts, proofs, their verification) can be read while the block is
still young. The read-ahead does that as heads arrive and keeps the result by block number,
with the block's hash and parent hash. The confirmed pass uses it only when the prepared blocks
link by parent hash from the cursor block up to a block the node still has at that height, so
a reorg near the head costs the prepared work, never a message: anything that does not link is
read again the ordinary way.

Blocks whose hash-verified header bloom rules out a Gateway ``Dispatch`` have no such log, so
their receipts are never fetched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from chains.evm.evidence import DISPATCH_TOPIC, build_observations
from chains.evm.rpc import EvmRpc
from proofs.ethereum import bloom_may_contain, verify_header
from relayer.plugin import Observation

__all__ = ["PreparedBlock", "ReadAhead"]

# Blocks prepared beyond the cursor at most: the read-ahead is for the blocks about to be
# confirmed; a watcher catching up reads old blocks the ordinary way, in log ranges.
_HORIZON = 128


@dataclass(frozen=True, slots=True)
class PreparedBlock:
    number: int
    hash: bytes
    parent: bytes
    observations: tuple[Observation, ...]


def _hash(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise ValueError(f"not a 32-byte hash: {value!r:.80}")
    return bytes.fromhex(value[2:])


class ReadAhead:
    def __init__(
        self,
        *,
        chain_name: str,
        gateway: bytes,
        rpc: EvmRpc,
        warm: Callable[[Sequence[Observation]], None] | None = None,
        horizon: int = _HORIZON,
    ) -> None:
        self.chain = chain_name
        self.gateway = gateway
        self.rpc = rpc
        self.warm = warm
        self.horizon = horizon
        self.blocks: dict[int, PreparedBlock] = {}
        # Held while blocks are being prepared: the confirmed pass waits for a block in the
        # making rather than reading it a second time (a block of a thousand messages takes
        # a second or more to prove).
        self.busy = asyncio.Lock()

    def take(self, cursor_hash: bytes, start: int, end: int) -> list[PreparedBlock] | None:
        """The prepared blocks ``start..end`` if they form one chain on top of the cursor block
        (whose hash is ``cursor_hash``; empty when the scan starts fresh), else None. The caller
        still checks that the node has the last one at its height."""
        blocks = [self.blocks.get(n) for n in range(start, end + 1)]
        chain = [b for b in blocks if b is not None]
        if len(chain) != len(blocks) or not chain:
            return None
        if cursor_hash and chain[0].parent != cursor_hash:
            return None
        if any(later.parent != earlier.hash for earlier, later in pairwise(chain)):
            return None
        return chain

    def forget_through(self, number: int) -> None:
        for n in [n for n in self.blocks if n <= number]:
            del self.blocks[n]

    async def extend(self, first: int) -> None:
        """Prepare the blocks from ``first`` (the first unconfirmed-and-unscanned height) up to
        the node's head that are not prepared yet. Raises what the endpoint's answers raise;
        the caller treats every failure as "not prepared"."""
        async with self.busy:
            try:
                await self._extend(first)
            except BaseException:
                self.blocks.clear()
                raise

    async def _extend(self, first: int) -> None:
        self.forget_through(first - 1)
        head = await self.rpc.block_number()
        if head - first >= self.horizon:
            self.blocks.clear()
            return
        top = max(self.blocks, default=first - 1)
        if top > head:
            # The node's head went back (a reorg to a shorter chain, or another node behind
            # a load balancer): start over from what it has now.
            self.blocks.clear()
            top = first - 1
        numbers = list(range(top + 1, head + 1))
        if not numbers:
            return
        headers = await self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        wanted: list[tuple[int, dict[str, Any]]] = []
        parent = self.blocks.get(top)
        prepared: list[PreparedBlock] = []
        for number, header in zip(numbers, headers, strict=True):
            if not isinstance(header, dict) or int(header["number"], 16) != number:
                break  # not there (yet) or not what was asked: prepare what links so far
            verify_header(header)  # the hash commits to the bloom and the parent
            block_hash, parent_hash = _hash(header["hash"]), _hash(header["parentHash"])
            previous = prepared[-1] if prepared else parent
            if previous is not None and parent_hash != previous.hash:
                # Reorged under the prepared blocks: drop them, the next head starts over.
                self.blocks.clear()
                return
            bloom = bytes.fromhex(header["logsBloom"][2:])
            if bloom_may_contain(bloom, self.gateway) and bloom_may_contain(bloom, DISPATCH_TOPIC):
                wanted.append((number, header))
            prepared.append(PreparedBlock(number, block_hash, parent_hash, ()))
        observations = await self._observations(wanted)
        for block in prepared:
            found = observations.get(block.number)
            if found is None and any(n == block.number for n, _ in wanted):
                break  # its receipts did not come: keep only the blocks below it
            self.blocks[block.number] = PreparedBlock(
                block.number, block.hash, block.parent, tuple(found or ())
            )

    async def _observations(
        self, wanted: Sequence[tuple[int, dict[str, Any]]]
    ) -> dict[int, list[Observation]]:
        if not wanted:
            return {}
        answers = await self.rpc.batch(
            [("eth_getBlockReceipts", [hex(number)]) for number, _ in wanted]
        )
        pairs = [
            (header, receipts)
            for (_, header), receipts in zip(wanted, answers, strict=True)
            if isinstance(receipts, list)
        ]
        # Building tries and proofs (and verifying them) is pure CPU: in a worker thread, so
        # that the event loop keeps delivering the blocks confirmed meanwhile.
        return await asyncio.to_thread(self._build, pairs)

    def _build(
        self, pairs: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]]
    ) -> dict[int, list[Observation]]:
        out: dict[int, list[Observation]] = {}
        for header, receipts in pairs:
            # Receipts read by number may belong to another fork than the header: their root
            # then differs from the header's and this raises, so nothing of that fork is kept.
            found = build_observations(self.chain, self.gateway, header, receipts)
            if self.warm is not None:
                self.warm(found)
            out[int(header["number"], 16)] = found
        return out
