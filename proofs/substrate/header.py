"""Standard Substrate headers: the block hash, and the fields a verifier reads from them.

A header is SCALE ``(parent_hash[32], number Compact<u32>, state_root[32], extrinsics_root[32],
digest Vec<DigestItem>)`` and the block hash is blake2-256 of exactly those bytes. Chains that
append fields (Avail's ``extension``) hash differently and need their own decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

from proofs.errors import MalformedEncodingError
from proofs.hashing import blake2_256
from proofs.substrate.scale import U32_MAX, ScaleReader

__all__ = ["SubstrateHeader", "decode_header", "header_hash", "read_header"]

_HASH_LEN = 32
_ENGINE_ID_LEN = 4

# DigestItem variant indices (sp-runtime generic/digest.rs). Indices 1, 2, 3 and 7 belonged to
# items removed from Substrate; a header carrying them is not one today's chains produce.
_OTHER = 0
_CONSENSUS = 4
_SEAL = 5
_PRE_RUNTIME = 6
_RUNTIME_ENVIRONMENT_UPDATED = 8
# The smallest encoding of one DigestItem: the variant byte alone.
_MIN_DIGEST_ITEM_LEN = 1


@dataclass(frozen=True, slots=True)
class SubstrateHeader:
    """The decoded fields of a header; ``digest`` is the raw, already validated, SCALE digest."""

    parent_hash: bytes
    number: int
    state_root: bytes
    extrinsics_root: bytes
    digest: bytes


def header_hash(header_scale: bytes) -> bytes:
    """The block hash: blake2-256 of the SCALE header exactly as given (no re-encoding)."""
    return blake2_256(header_scale)


def _read_digest_item(reader: ScaleReader) -> None:
    variant = reader.u8("digest item variant")
    if variant in (_CONSENSUS, _SEAL, _PRE_RUNTIME):
        reader.fixed(_ENGINE_ID_LEN, "consensus engine id")
        reader.byte_vec("digest item payload")
    elif variant == _OTHER:
        reader.byte_vec("digest item payload")
    elif variant != _RUNTIME_ENVIRONMENT_UPDATED:
        raise MalformedEncodingError(f"digest item variant {variant} is not a known DigestItem")


def read_header(reader: ScaleReader) -> SubstrateHeader:
    """Read one header from ``reader``, leaving it just past the digest."""
    parent_hash = reader.fixed(_HASH_LEN, "header parent_hash")
    # GRANDPA signs u32 block numbers; a larger number cannot belong to a chain we verify.
    number = reader.compact("header number", U32_MAX)
    state_root = reader.fixed(_HASH_LEN, "header state_root")
    extrinsics_root = reader.fixed(_HASH_LEN, "header extrinsics_root")
    digest_start = reader.offset
    for _ in range(reader.vec_len(_MIN_DIGEST_ITEM_LEN, "header digest")):
        _read_digest_item(reader)
    digest_end = reader.offset
    return SubstrateHeader(
        parent_hash=parent_hash,
        number=number,
        state_root=state_root,
        extrinsics_root=extrinsics_root,
        digest=reader.span(digest_start, digest_end),
    )


def decode_header(header_scale: bytes) -> SubstrateHeader:
    """Strictly decode a whole SCALE header; trailing bytes are an error."""
    reader = ScaleReader(header_scale)
    header = read_header(reader)
    reader.finish("header")
    return header
