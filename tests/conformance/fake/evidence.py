"""A fake-chain observation's evidence, and its verification from that evidence alone.

The evidence is the block's header, the dispatch transaction and its Merkle path to the
header's tx root. ``verify_observation`` is pure: the header must hash to the observed block
hash and carry the observed number, the path must lead from the transaction to the header's
tx root, and the transaction must be a dispatch of exactly the observed message, sent by the
transaction's signer from this chain's domain. The transaction's signature is not checked: a
final block holds what the chain executed, and the node checked it before that.
"""

from __future__ import annotations

import msgspec

from proofs.errors import HashMismatchError, ProofError
from relayer.errors import EvidenceRejectedError
from relayer.message import Message, MessageFormatError
from relayer.plugin import Observation, VerifiedMessage
from tests.conformance.fake.blocks import Header, TxKind, decode_tx, sha256
from tests.conformance.fake.merkle import root_from_path

__all__ = ["DispatchEvidence", "build_observation", "verify_observation"]


class DispatchEvidence(msgspec.Struct, frozen=True, kw_only=True):
    """Stored with the message in the ledger: its field names must not change."""

    header: bytes
    tx: bytes
    tx_index: int
    path: tuple[bytes, ...]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(DispatchEvidence)


def build_observation(
    *,
    chain_name: str,
    message: bytes,
    block_hash: bytes,
    header: bytes,
    tx: bytes,
    tx_index: int,
    path: tuple[bytes, ...],
) -> Observation:
    return Observation(
        origin_chain=chain_name,
        message=message,
        block_number=Header.decode(header).number,
        block_hash=block_hash,
        evidence=_encoder.encode(
            DispatchEvidence(header=header, tx=tx, tx_index=tx_index, path=path)
        ),
    )


def verify_observation(observation: Observation, *, domain: int) -> VerifiedMessage:
    """Raises ``EvidenceRejectedError`` naming the check that failed."""
    try:
        evidence = _decoder.decode(observation.evidence)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EvidenceRejectedError(f"evidence does not decode: {exc}") from None
    try:
        header = Header.decode(evidence.header)
        if sha256(evidence.header) != observation.block_hash:
            raise HashMismatchError(
                f"the header hashes to 0x{sha256(evidence.header).hex()}, the observation "
                f"names block 0x{observation.block_hash.hex()}"
            )
        if header.number != observation.block_number:
            raise ProofError(
                f"the header is block #{header.number}, the observation says "
                f"#{observation.block_number}"
            )
        root = root_from_path(evidence.tx, evidence.tx_index, header.tx_count, evidence.path)
        if root != header.tx_root:
            raise HashMismatchError("the transaction's Merkle path does not lead to the tx root")
        tx = decode_tx(evidence.tx)
    except ProofError as exc:
        raise EvidenceRejectedError(f"proof rejected: {exc}") from None
    if tx.kind is not TxKind.DISPATCH:
        raise EvidenceRejectedError("the proven transaction is a delivery, not a dispatch")
    if tx.payload != observation.message:
        raise EvidenceRejectedError("the proven dispatch carries other message bytes than observed")
    try:
        message = Message.decode(tx.payload)
    except MessageFormatError as exc:
        raise EvidenceRejectedError(f"the proven dispatch is not a message: {exc}") from None
    if message.sender != tx.sender:
        raise EvidenceRejectedError(
            f"message claims sender 0x{message.sender.hex()}, the transaction is signed by "
            f"0x{tx.sender.hex()}"
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
