"""GRANDPA finality for a Substrate chain, verified by our own light client: fetch finality
proofs from a GRANDPA endpoint (a node's ``grandpa_proveFinality``, or the dev voters of
``grandpa_voter``), take the headers from the chain node, and let ``GrandpaLightClient`` decide.

Trust: the checkpoint (from configuration; on the devnet, ``fetch_dev_checkpoint``) and nothing
else. The prover is not trusted: its justification must verify against the store's set. The
chain node is not trusted either: every header it serves is hashed here, and the store links
them by parent hash from the finalized block to the justification's target. A proof's
``unknown_headers`` are not used (a real node may send none; the chain node's headers are
hashed and linked the same way, so nothing is lost).

Use::

    async with SubstrateRpc.connect(chain_ws, chain=name) as chain, \\
               SubstrateRpc.connect(prover_ws, chain=name) as prover:
        finality = GrandpaFinality(checkpoint.light_client(), chain=chain, prover=prover)
        await finality.sync()                 # import every proof the prover has
        finality.finalized                    # FinalizedBlock(hash, number), verified
        await finality.is_final(number, block_hash)  # that block or an ancestor by parents

A refused proof is logged (``proof.rejected`` with the reason) and raised as
``FinalityProofRejectedError``; the store stays where it was.
"""

from __future__ import annotations

from typing import Any

import structlog

from chains.substrate.finality_proof import GrandpaCheckpoint, decode_finality_proof
from chains.substrate.rpc import SubstrateRpc
from proofs.errors import HashMismatchError, MalformedEncodingError, ProofError
from proofs.hashing import blake2_256
from proofs.substrate.grandpa import FinalizedBlock, decode_justification
from proofs.substrate.grandpa_store import GrandpaImport, GrandpaLightClient
from relayer.errors import PermanentChainError, TransientChainError

__all__ = [
    "FinalityProofRejectedError",
    "GrandpaFinality",
    "HeaderUnavailableError",
    "fetch_dev_checkpoint",
]

# Blocks to import per proof at most: a real node sends proofs over whole sets, and headers
# come one request each from the chain node.
_MAX_HEADERS_PER_IMPORT = 4096
# Parent links walked per ``is_final`` call for blocks below what this client has linked.
_MAX_ANCESTRY_WALK = 100_000


class FinalityProofRejectedError(PermanentChainError):
    """The prover's proof did not verify; ``reason`` is the light client's (or decoder's)
    error. Finality did not advance. Replace the prover or wait for an honest proof."""

    def __init__(self, message: str, reason: ProofError) -> None:
        super().__init__(message)
        self.reason = reason


class HeaderUnavailableError(TransientChainError):
    """The chain node has no block at a height the proof needs (not synced yet); retry."""


async def fetch_dev_checkpoint(prover: SubstrateRpc) -> GrandpaCheckpoint:
    """The dev voters' checkpoint (``dev_grandpaCheckpoint``). A devnet convenience: a real
    deployment configures its checkpoint. Raises MalformedEncodingError for a wrong shape."""
    return GrandpaCheckpoint.from_json(await prover.request("dev_grandpaCheckpoint"))


class GrandpaFinality:
    """One chain's verified GRANDPA finality. ``store`` is the light client to advance (from a
    checkpoint, or restored from the ledger); ``chain`` serves headers, ``prover`` serves
    ``grandpa_proveFinality``."""

    def __init__(
        self,
        store: GrandpaLightClient,
        *,
        chain: SubstrateRpc,
        prover: SubstrateRpc,
        log: Any = None,
    ) -> None:
        self.store = store
        self._chain = chain
        self._prover = prover
        self._log = (log or structlog.get_logger()).bind(
            chain=chain.chain, endpoint=prover.endpoint, finality="grandpa"
        )
        finalized = store.finalized
        # Hashes of the verified chain by number: the checkpoint, then every header an
        # accepted import linked to it; ``is_final`` extends it downwards when asked.
        self._verified: dict[int, bytes] = {finalized.number: finalized.hash}

    def use(self, *, chain: SubstrateRpc, prover: SubstrateRpc) -> None:
        """Continue on these clients (the previous ones were dropped and reconnected)."""
        self._chain = chain
        self._prover = prover

    def forget_below(self, number: int) -> None:
        """Drop linked hashes below ``number`` (a watcher has passed them); the finalized
        block's stays."""
        keep_from = min(number, self.store.finalized.number)
        for height in [h for h in self._verified if h < keep_from]:
            del self._verified[height]

    @property
    def finalized(self) -> FinalizedBlock:
        return self.store.finalized

    @property
    def set_id(self) -> int:
        return self.store.set_id

    async def is_final(self, number: int, block_hash: bytes) -> bool:
        """Whether block ``(number, block_hash)`` is the verified finalized block or one of its
        ancestors by parent hashes. Ancestors this client has not linked yet (a store restored
        from the ledger knows only its finalized block) are linked now, walking parent hashes
        down from the lowest verified block with headers from the chain node, each hashed
        here. False for any other block at a final height, and above the finalized height.

        Raises the ``SubstrateRpc`` errors of the chain node.
        """
        if not 0 <= number <= self.store.finalized.number:
            return False
        known = self._verified.get(number)
        if known is None:
            await self._link_down_to(number)
            known = self._verified.get(number)
        return known == block_hash

    async def _link_down_to(self, number: int) -> None:
        lowest = min(self._verified)
        while lowest > number and lowest - number <= _MAX_ANCESTRY_WALK:
            header = await self._chain.header(self._verified[lowest])
            if header is None or blake2_256(header.scale()) != self._verified[lowest]:
                # The chain node does not have it, or serves a header that is not this block
                # (chopsticks' genesis is the 0x4545.. stand-in): nothing more can be linked.
                return
            if header.number != lowest:
                return
            self._verified[lowest - 1] = header.parent_hash
            lowest -= 1

    async def advance(self) -> GrandpaImport | None:
        """Fetch and import one proof: for the enactment block of a pending change when the
        prover has one (its justification must come before any later one), else for the
        finalized block's child. None when the prover has nothing newer than the finalized block.

        Raises FinalityProofRejectedError for a proof that does not verify,
        HeaderUnavailableError when the chain node lacks a needed block, and the
        ``SubstrateRpc`` errors for either endpoint.
        """
        store = self.store
        pending = store.pending_change
        ask = store.finalized.number + 1
        answer = None
        if pending is not None:
            # Its justification must come before any later one; until the chain has built
            # it, the blocks before it are still the old set's to finalize.
            answer = await self._prover.request("grandpa_proveFinality", [pending.enactment_number])
            if answer is not None:
                ask = pending.enactment_number
        if answer is None:
            answer = await self._prover.request("grandpa_proveFinality", [ask])
        if answer is None:
            return None
        try:
            proof = decode_finality_proof(bytes.fromhex(str(answer).removeprefix("0x")))
            justification = decode_justification(proof.justification)
            if justification.target_hash != proof.block:
                raise HashMismatchError(
                    f"the proof names block 0x{proof.block.hex()} but its justification "
                    f"finalizes 0x{justification.target_hash.hex()}"
                )
        except (ProofError, ValueError) as exc:
            reason = exc if isinstance(exc, ProofError) else MalformedEncodingError(str(exc))
            raise self._rejected(ask, reason) from exc
        target = justification.target_number
        if target <= store.finalized.number:
            return None  # nothing newer yet; the import would be refused as stale
        if target - store.finalized.number > _MAX_HEADERS_PER_IMPORT:
            raise self._rejected(
                target,
                MalformedEncodingError(
                    f"the proof finalizes #{target}, more than {_MAX_HEADERS_PER_IMPORT} blocks "
                    f"past #{store.finalized.number}"
                ),
            )
        first = store.finalized.number + 1
        headers = await self._headers(first, target)
        try:
            result = store.import_justification(justification, [raw for _, raw in headers])
        except ProofError as exc:
            raise self._rejected(target, exc) from exc
        for number, (block_hash, _) in enumerate(headers, start=first):
            self._verified[number] = block_hash
        self._log.info(
            "finality.advanced",
            block=result.finalized.number,
            set_id=result.set_id,
            set_changed=result.set_changed,
        )
        return result

    async def sync(self, until: int | None = None) -> FinalizedBlock:
        """Import proofs until the prover has nothing newer (or ``until`` is finalized)."""
        while until is None or self.store.finalized.number < until:
            if await self.advance() is None:
                break
        return self.store.finalized

    async def _headers(self, first: int, last: int) -> list[tuple[bytes, bytes]]:
        """(hash, SCALE header) for ``first..last`` from the chain node; each hash is computed
        here, and must be the hash the node gave for that height."""
        headers = []
        for number in range(first, last + 1):
            found = await self._chain.header_by_number(number)
            if found is None:
                raise HeaderUnavailableError(
                    f"chain `{self._chain.chain}`: {self._chain.endpoint} has no block "
                    f"#{number} yet; retry when it has synced"
                )
            claimed, header = found
            raw = header.scale()
            computed = blake2_256(raw)
            if computed != claimed:
                raise PermanentChainError(
                    f"chain `{self._chain.chain}`: {self._chain.endpoint} answered block "
                    f"#{number} with hash 0x{claimed.hex()} but its header hashes to "
                    f"0x{computed.hex()}; it is not a node of a standard-header chain"
                )
            headers.append((computed, raw))
        return headers

    def _rejected(self, block: int, reason: ProofError) -> FinalityProofRejectedError:
        self._log.warning(
            "proof.rejected",
            block=block,
            reason=str(reason),
            error=type(reason).__name__,
            finalized=self.store.finalized.number,
        )
        return FinalityProofRejectedError(
            f"chain `{self._chain.chain}`: {self._prover.endpoint} served a finality proof "
            f"for #{block} that does not verify ({type(reason).__name__}: {reason}); finality "
            f"stays at #{self.store.finalized.number}",
            reason,
        )
