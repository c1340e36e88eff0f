"""What a Substrate watcher checks before it believes a remark-carried message (pure: no I/O).

1. The header hashes to the block hash (``proofs.substrate.header_hash``).
2. The body is the one the header committed to: ``ordered-trie-v0``/``v1`` (a real node's
   ``extrinsics_root``, via ``proofs.substrate.verify_extrinsics``) or ``dev-concat``
   (chopsticks' stand-in: blake2-256 of the concatenated extrinsics as served; each carries its
   compact length prefix, so the concatenation is prefix-free and still binds body to header).
3. The extrinsic the ``System.Remarked`` event points at is a signed extrinsic from the
   event's sender whose call is ``System.remark_with_event`` (or ``Utility.batch_all`` of only
   those), and one of its remarks hashes to the event's hash; that remark's bytes are returned.

Why decode the extrinsic instead of searching its bytes for a remark with the right hash: a
byte search would also accept a remark nested in another call (``Proxy.proxy``,
``Utility.dispatch_as``) that the runtime dispatched from a different origin. Decoding is
strict, so the remark returned is exactly what the signer dispatched. The signed extra's layout
depends on the runtime's signed extensions, so it is an argument (``extrinsic.extra_layout``).

The event itself is not proven here: on chopsticks the state root is zero, so there is nothing
to prove it against. On a real chain the plugin would prove ``System.Events`` with a read proof.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from chains.substrate.extrinsic import ExtraField
from proofs.errors import HashMismatchError, MalformedEncodingError, ProofError
from proofs.hashing import blake2_256
from proofs.substrate import (
    SubstrateHeader,
    decode_header,
    dev_concat_root,
    header_hash,
    verify_dev_concat,
    verify_extrinsics,
)
from proofs.substrate.scale import ScaleReader

__all__ = [
    "ExtrinsicsScheme",
    "RemarkCalls",
    "RemarkExtrinsic",
    "RemarkNotFoundError",
    "decode_remark_extrinsic",
    "dev_concat_root",
    "extract_remark",
    "verify_body",
    "verify_header",
]

ExtrinsicsScheme = Literal["dev-concat", "ordered-trie-v0", "ordered-trie-v1"]

_SIGNED_V4 = 0x84
_ADDRESS_ID = 0x00
_ACCOUNT_LEN = 32
# MultiSignature variants and their payload lengths (Ed25519, Sr25519, Ecdsa).
_SIGNATURE_LEN = {0: 64, 1: 64, 2: 65}
_MORTAL_ERA_LEN = 2


class RemarkNotFoundError(ProofError):
    """The block body does not carry the remark the event claims, from the event's sender."""


@dataclass(frozen=True, slots=True)
class RemarkCalls:
    """The runtime's (pallet index, call index) pairs the decoder accepts."""

    remark_with_event: tuple[int, int]
    batch_all: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class RemarkExtrinsic:
    signer: bytes
    remarks: tuple[bytes, ...]


def verify_header(block_hash: bytes, header_scale: bytes) -> SubstrateHeader:
    """Decode the header strictly and check that it hashes to ``block_hash``."""
    computed = header_hash(header_scale)
    if computed != block_hash:
        raise HashMismatchError(
            f"header hashes to 0x{computed.hex()} but the endpoint called it block "
            f"0x{block_hash.hex()}; the endpoint is lying or serving another chain"
        )
    return decode_header(header_scale)


def verify_body(
    header: SubstrateHeader, extrinsics: Sequence[bytes], scheme: ExtrinsicsScheme
) -> None:
    """Check that ``extrinsics`` (as served, with length prefixes) are the header's body."""
    if scheme == "dev-concat":
        verify_dev_concat(header.extrinsics_root, extrinsics)
    elif scheme == "ordered-trie-v0":
        verify_extrinsics(header.extrinsics_root, extrinsics, 0)
    elif scheme == "ordered-trie-v1":
        verify_extrinsics(header.extrinsics_root, extrinsics, 1)
    else:
        raise ValueError(f"unknown extrinsics scheme {scheme!r}")


def _split_length_prefix(extrinsic: bytes, what: str) -> ScaleReader:
    reader = ScaleReader(extrinsic)
    length = reader.compact(f"{what} length")
    if length != reader.remaining:
        raise MalformedEncodingError(
            f"{what} announces {length} bytes but carries {reader.remaining}"
        )
    return reader


def decode_remark_extrinsic(
    extrinsic: bytes, layout: Sequence[ExtraField], calls: RemarkCalls
) -> RemarkExtrinsic:
    """Strictly decode a signed v4 extrinsic whose call is a remark or a batch_all of remarks.

    Raises MalformedEncodingError for anything else (another call, an unsigned extrinsic, a
    non-Id address, trailing bytes).
    """
    reader = _split_length_prefix(extrinsic, "extrinsic")
    version = reader.u8("extrinsic version")
    if version != _SIGNED_V4:
        raise MalformedEncodingError(f"extrinsic version byte 0x{version:02x} is not signed v4")
    if reader.u8("address variant") != _ADDRESS_ID:
        raise MalformedEncodingError("extrinsic signer is not a MultiAddress::Id")
    signer = reader.fixed(_ACCOUNT_LEN, "signer")
    variant = reader.u8("signature variant")
    if variant not in _SIGNATURE_LEN:
        raise MalformedEncodingError(f"signature variant {variant} is not a MultiSignature")
    reader.fixed(_SIGNATURE_LEN[variant], "signature")
    for field in layout:
        if field is ExtraField.ERA:
            if reader.u8("era") != 0:
                reader.fixed(_MORTAL_ERA_LEN - 1, "mortal era")
        elif field is ExtraField.COMPACT:
            reader.compact("signed extra", 2**128 - 1)
        else:
            reader.u8("signed extra byte")
    call = (reader.u8("pallet index"), reader.u8("call index"))
    if call == calls.remark_with_event:
        remarks: tuple[bytes, ...] = (reader.byte_vec("remark"),)
    elif calls.batch_all is not None and call == calls.batch_all:
        count = reader.vec_len(3, "batch calls")
        items = []
        for index in range(count):
            inner = (reader.u8("pallet index"), reader.u8("call index"))
            if inner != calls.remark_with_event:
                raise MalformedEncodingError(
                    f"batch call {index} is {inner}, not System.remark_with_event"
                )
            items.append(reader.byte_vec("remark"))
        remarks = tuple(items)
    else:
        raise MalformedEncodingError(f"extrinsic call {call} is not a remark or batch of them")
    reader.finish("extrinsic")
    return RemarkExtrinsic(signer=signer, remarks=remarks)


def extract_remark(
    extrinsics: Sequence[bytes],
    extrinsic_index: int,
    sender: bytes,
    remark_hash: bytes,
    layout: Sequence[ExtraField],
    calls: RemarkCalls,
) -> bytes:
    """The remark bytes a ``System.Remarked(sender, remark_hash)`` event of extrinsic
    ``extrinsic_index`` stands for, taken from a body already checked by ``verify_body``."""
    if not 0 <= extrinsic_index < len(extrinsics):
        raise RemarkNotFoundError(
            f"event points at extrinsic {extrinsic_index}, the block has {len(extrinsics)}"
        )
    try:
        decoded = decode_remark_extrinsic(extrinsics[extrinsic_index], layout, calls)
    except MalformedEncodingError as exc:
        raise RemarkNotFoundError(
            f"extrinsic {extrinsic_index} is not a signed remark: {exc}"
        ) from exc
    if decoded.signer != sender:
        raise RemarkNotFoundError(
            f"extrinsic {extrinsic_index} is signed by 0x{decoded.signer.hex()}, the event "
            f"names sender 0x{sender.hex()}"
        )
    for remark in decoded.remarks:
        if blake2_256(remark) == remark_hash:
            return remark
    raise RemarkNotFoundError(
        f"no remark in extrinsic {extrinsic_index} hashes to 0x{remark_hash.hex()}"
    )
