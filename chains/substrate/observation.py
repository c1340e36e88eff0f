"""A Substrate-origin observation's evidence, and its verification from that evidence alone.

The evidence is the block's SCALE header, its whole body as served, and where the message sits
(extrinsic index, remark index inside a ``batch_all``). ``verify_observation`` is pure: it
recomputes the block hash from the header, checks the body against the header's extrinsics
commitment (the chain's configured scheme), decodes the extrinsic strictly with the runtime
facts from the operator's config (never from an endpoint), and requires the dispatch remark to
carry exactly the observed message, sent by the extrinsic's signer from this chain's domain.

The whole body travels because ``dev-concat`` (chopsticks) has no per-extrinsic proof; with an
ordered trie a proof of the one extrinsic would do, which is the next step for real chains.
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

__all__ = ["RemarkEvidence", "build_observation", "decode_calls", "verify_observation"]


class RemarkEvidence(msgspec.Struct, frozen=True, kw_only=True):
    """Stored with the message in the ledger: its field names must not change."""

    header: bytes
    extrinsics: tuple[bytes, ...]
    extrinsic_index: int
    remark_index: int


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(RemarkEvidence)


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
    header: bytes,
    extrinsics: Sequence[bytes],
    extrinsic_index: int,
    remark_index: int,
) -> Observation:
    evidence = RemarkEvidence(
        header=header,
        extrinsics=tuple(extrinsics),
        extrinsic_index=extrinsic_index,
        remark_index=remark_index,
    )
    return Observation(
        origin_chain=chain_name,
        message=message,
        block_number=block_number,
        block_hash=block_hash,
        evidence=_encoder.encode(evidence),
    )


# The messages of one block arrive one by one, each with the whole block as evidence: a
# thousand remarks in one batch_all would otherwise hash the body and decode the batch a
# thousand times. The caches key on the bytes themselves (compared in full on a hit), so a
# hit is the verdict on exactly these bytes; a failure raises and is never cached.
@lru_cache(maxsize=64)
def _checked_header(
    block_hash: bytes, header: bytes, extrinsics: tuple[bytes, ...], scheme: ExtrinsicsCommitment
) -> int:
    decoded = verify_header(block_hash, header)
    verify_body(decoded, extrinsics, scheme)
    return decoded.number


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
        evidence = _decoder.decode(observation.evidence)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EvidenceRejectedError(f"evidence does not decode: {exc}") from None
    layout, calls = decode_calls(config)
    try:
        number = _checked_header(
            observation.block_hash,
            evidence.header,
            evidence.extrinsics,
            config.extrinsics_commitment,
        )
        if number != observation.block_number:
            raise ProofError(
                f"header is block #{number}, the observation says #{observation.block_number}"
            )
        if not 0 <= evidence.extrinsic_index < len(evidence.extrinsics):
            raise ProofError(
                f"extrinsic {evidence.extrinsic_index} is not in a body of "
                f"{len(evidence.extrinsics)}"
            )
        extrinsic = _decoded(evidence.extrinsics[evidence.extrinsic_index], layout, calls)
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
