"""A Substrate-origin observation's evidence, and its verification from that evidence alone.

The block evidence (``Observation.block_evidence``, stored once a block) is the block's SCALE
header and its whole body as served; a message's own evidence is where it sits (extrinsic index,
remark index inside a ``batch_all``). ``verify_observation`` is pure: it
recomputes the block hash from the header, checks the body against the header's extrinsics
commitment (the chain's configured scheme), decodes the extrinsic strictly with the runtime
facts from the operator's config (never from an endpoint), and requires the dispatch remark to
carry exactly the observed message, sent by the extrinsic's signer from this chain's domain.

The whole body travels because ``dev-concat`` (chopsticks) has no per-extrinsic proof; with an
ordered trie a proof of the one extrinsic would do, which is the next step for real chains. It
travels once a block: the messages of a block share one bytes object, and the ledger stores it
once.
The ``System.Remarked`` event itself is not proven: chopsticks' state root is zero. The signed
``remark_with_event`` in a final block is what the runtime executed, which is what the event
reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import msgspec

from chains.substrate.config import ExtrinsicsCommitment, SubstrateChainConfig
from chains.substrate.evidence import (
    RemarkCalls,
    RemarkExtrinsic,
    decode_remark_extrinsic,
    verify_body,
    verify_header,
)
from chains.substrate.extrinsic import ExtraField
from chains.substrate.remark import Dispatch, RemarkError, decode_remark
from proofs.errors import ProofError
from relayer.errors import EvidenceRejectedError
from relayer.plugin import Observation, VerifiedMessage

__all__ = [
    "BlockEvidence",
    "RemarkLocation",
    "block_evidence",
    "build_observation",
    "decode_calls",
    "verify_observation",
]


class BlockEvidence(msgspec.Struct, frozen=True, kw_only=True):
    """A block as served, shared by its messages. Stored in the ledger: field names must not
    change."""

    header: bytes
    extrinsics: tuple[bytes, ...]


class RemarkLocation(msgspec.Struct, frozen=True, kw_only=True):
    """Where one message sits in its block. Stored in the ledger: field names must not
    change."""

    extrinsic_index: int
    remark_index: int


_encoder = msgspec.msgpack.Encoder()
_block_decoder = msgspec.msgpack.Decoder(BlockEvidence)
_location_decoder = msgspec.msgpack.Decoder(RemarkLocation)


def block_evidence(header: bytes, extrinsics: Sequence[bytes]) -> bytes:
    """The block evidence of every message in this block: encode it once, pass the same bytes
    to each ``build_observation``."""
    return _encoder.encode(BlockEvidence(header=header, extrinsics=tuple(extrinsics)))


def decode_calls(config: SubstrateChainConfig) -> tuple[tuple[ExtraField, ...], RemarkCalls]:
    """The runtime facts the verifier trusts, from the chain's config."""
    layout = tuple(ExtraField(name) for name in config.signed_extra)
    return layout, RemarkCalls(config.remark_with_event_call, config.batch_all_call)


def build_observation(
    *,
    chain_name: str,
    message: bytes,
    block_number: int,
    block_hash: bytes,
    block: bytes,
    extrinsic_index: int,
    remark_index: int,
) -> Observation:
    """``block`` is ``block_evidence(header, extrinsics)``, the same object for the block's
    messages."""
    location = RemarkLocation(extrinsic_index=extrinsic_index, remark_index=remark_index)
    return Observation(
        origin_chain=chain_name,
        message=message,
        block_number=block_number,
        block_hash=block_hash,
        evidence=_encoder.encode(location),
        block_evidence=block,
    )


# The messages of one block arrive one by one, each with the same block evidence: a thousand
# remarks in one batch_all would otherwise decode and hash the body and decode the batch a
# thousand times. The caches key on the bytes themselves (compared in full on a hit, and a
# bytes object hashes once), so a hit is the verdict on exactly these bytes; a failure raises
# and is never cached.
@lru_cache(maxsize=64)
def _checked_block(
    block_hash: bytes, block: bytes, scheme: ExtrinsicsCommitment
) -> tuple[int, tuple[bytes, ...]]:
    try:
        evidence = _block_decoder.decode(block)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProofError(f"block evidence does not decode: {exc}") from None
    decoded = verify_header(block_hash, evidence.header)
    verify_body(decoded, evidence.extrinsics, scheme)
    return decoded.number, evidence.extrinsics


@lru_cache(maxsize=256)
def _decoded(
    extrinsic: bytes, layout: tuple[ExtraField, ...], calls: RemarkCalls
) -> RemarkExtrinsic:
    return decode_remark_extrinsic(extrinsic, layout, calls)


def verify_observation(
    observation: Observation, *, config: SubstrateChainConfig, domain: int
) -> VerifiedMessage:
    """Re-verify an observation from its evidence alone. Raises ``EvidenceRejectedError``."""
    try:
        evidence = _location_decoder.decode(observation.evidence)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EvidenceRejectedError(f"evidence does not decode: {exc}") from None
    if not observation.block_evidence:
        raise EvidenceRejectedError("the observation carries no block evidence")
    layout, calls = decode_calls(config)
    try:
        number, extrinsics = _checked_block(
            observation.block_hash, observation.block_evidence, config.extrinsics_commitment
        )
        if number != observation.block_number:
            raise ProofError(
                f"header is block #{number}, the observation says #{observation.block_number}"
            )
        if not 0 <= evidence.extrinsic_index < len(extrinsics):
            raise ProofError(
                f"extrinsic {evidence.extrinsic_index} is not in a body of {len(extrinsics)}"
            )
        extrinsic = _decoded(extrinsics[evidence.extrinsic_index], layout, calls)
    except ProofError as exc:
        raise EvidenceRejectedError(f"proof rejected: {exc}") from None
    if not 0 <= evidence.remark_index < len(extrinsic.remarks):
        raise EvidenceRejectedError(
            f"remark {evidence.remark_index} is not in an extrinsic of "
            f"{len(extrinsic.remarks)} remarks"
        )
    try:
        remark = decode_remark(extrinsic.remarks[evidence.remark_index])
    except RemarkError as exc:
        raise EvidenceRejectedError(f"the proven remark is not a message: {exc}") from None
    if not isinstance(remark, Dispatch):
        raise EvidenceRejectedError("the proven remark is a delivery, not a dispatch")
    message = remark.message
    if message.encode() != observation.message:
        raise EvidenceRejectedError("the proven remark carries other message bytes than observed")
    if message.sender != extrinsic.signer:
        raise EvidenceRejectedError(
            f"message claims sender 0x{message.sender.hex()}, the extrinsic is signed by "
            f"0x{extrinsic.signer.hex()}"
        )
    if message.origin != domain:
        raise EvidenceRejectedError(
            f"message claims origin domain {message.origin}, the chain's domain is {domain}"
        )
    return VerifiedMessage(
        message=observation.message,
        block_number=observation.block_number,
        block_hash=observation.block_hash,
    )
