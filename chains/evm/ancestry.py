"""The execution blocks below a light client's finalized block, linked to it by parent hashes.

A light client proves one block final (number, hash); every block below it on the same chain is
final too, and which blocks those are follows from parent hashes alone. ``FinalizedAncestry``
walks down from the finalized block, fetching each header from the node and hashing it itself
(``proofs.ethereum.header_hash``), so that a node cannot pass off a block of another fork as
final: the watcher hands over only blocks whose hash is on this walk.

A new finalized block is walked down to the previous one; if it does not link to it, the light
client proved two conflicting finalized blocks, and the walk stops with a ProofError naming both
(finality must never fork).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chains.evm.rpc import EvmRpc
from proofs import HashMismatchError, ProofError
from proofs.ethereum import header_hash
from relayer.errors import TransientChainError

__all__ = ["FinalizedAncestry", "off_the_finalized_chain"]

# Headers fetched per JSON-RPC batch while walking down.
_BATCH = 100


class FinalizedAncestry:
    def __init__(self, rpc: EvmRpc, *, chain: str) -> None:
        self.rpc = rpc
        self.chain = chain
        # number -> hash of the finalized chain: a contiguous run, each the parent of the next
        self._hashes: dict[int, bytes] = {}
        self._low_parent = b""  # parent hash of the lowest block in the run

    def hash_at(self, number: int) -> bytes | None:
        """The finalized chain's hash at ``number``, if the walk has reached it."""
        return self._hashes.get(number)

    def forget_below(self, number: int) -> None:
        """Drop what lies below ``number`` (the watcher has passed it); the top stays, for the
        next finalized block to join."""
        if not self._hashes:
            return
        low, top = min(self._hashes), max(self._hashes)
        keep_from = min(number, top)
        if keep_from <= low:
            return
        self._low_parent = self._hashes[keep_from - 1]
        for n in range(low, keep_from):
            del self._hashes[n]

    async def ensure(self, top_number: int, top_hash: bytes, low: int) -> None:
        """Make ``hash_at`` answer for every block from ``low`` to ``top_number``, linked by
        parent hashes to ``top_hash``. Raises ProofError when the node's headers do not link,
        or when the new top does not descend from the previous one (conflicting finality);
        ``TransientChainError`` when the node is unreachable or lacks a block."""
        low = max(low, 0)
        if not self._hashes:
            walked, parent = await self._walk(top_number, top_hash, low)
            self._hashes, self._low_parent = walked, parent
        else:
            top = max(self._hashes)
            if top_number < top or (top_number == top and top_hash != self._hashes[top]):
                raise ProofError(
                    f"chain `{self.chain}`: the light client finalized block {top_number} "
                    f"(0x{top_hash.hex()}) after block {top} (0x{self._hashes[top].hex()}); "
                    "finality never moves backwards or forks"
                )
            if top_number > top:
                walked, parent = await self._walk(top_number, top_hash, top + 1)
                if parent != self._hashes[top]:
                    raise ProofError(
                        f"chain `{self.chain}`: finalized block {top_number} "
                        f"(0x{top_hash.hex()}) does not descend from the previously finalized "
                        f"block {top} (0x{self._hashes[top].hex()}): the light client proved "
                        "conflicting finality"
                    )
                self._hashes.update(walked)
        lowest = min(self._hashes)
        if low < lowest:
            walked, parent = await self._walk(lowest - 1, self._low_parent, low)
            self._hashes.update(walked)
            self._low_parent = parent

    async def _walk(self, number: int, expected: bytes, low: int) -> tuple[dict[int, bytes], bytes]:
        """Blocks ``number`` down to ``low``, each checked to hash to what its child names as
        its parent (``expected`` for the first). Returns the hashes walked and the parent hash
        of the lowest."""
        walked: dict[int, bytes] = {}
        while number >= low:
            numbers = list(range(number, max(low, number - _BATCH + 1) - 1, -1))
            blocks = await self.rpc.batch(
                [("eth_getBlockByNumber", [hex(n), False]) for n in numbers]
            )
            for n, block in zip(numbers, blocks, strict=True):
                walked[n] = expected
                expected = self._checked_parent(n, block, expected)
            number = numbers[-1] - 1
        return walked, expected

    def _checked_parent(self, number: int, block: Any, expected: bytes) -> bytes:
        if not isinstance(block, dict):
            raise TransientChainError(
                f"chain `{self.chain}`: node {self.rpc.endpoint} has no block {number} below "
                "the finalized head"
            )
        try:
            actual = header_hash(block)
            parent = bytes.fromhex(str(block["parentHash"])[2:])
        except (KeyError, ValueError, ProofError) as exc:
            raise ProofError(
                f"chain `{self.chain}`: block {number} from {self.rpc.endpoint} does not hash: "
                f"{exc}"
            ) from None
        if actual != expected:
            raise HashMismatchError(
                f"chain `{self.chain}`: node {self.rpc.endpoint} serves block {number} as "
                f"0x{actual.hex()}, but the finalized chain has 0x{expected.hex()} there"
            )
        return parent


def off_the_finalized_chain(
    ancestry: FinalizedAncestry, blocks: Sequence[tuple[int, bytes]]
) -> list[str]:
    """Why each of ``blocks`` is not on the finalized chain (empty: all are)."""
    problems = []
    for number, block_hash in blocks:
        final = ancestry.hash_at(number)
        if final != block_hash:
            known = "unknown" if final is None else f"0x{final.hex()}"
            problems.append(
                f"block {number} 0x{block_hash.hex()} is not the finalized chain's ({known})"
            )
    return problems
