"""Signed extrinsics (format v4) for the few calls the relayer makes (pure: no I/O).

    Compact<len> | 0x84 | MultiAddress::Id (0x00, AccountId32) | MultiSignature::Sr25519
                 (0x01, 64 bytes) | signed extra (per extension) | call

Encoded here by hand rather than through a metadata-driven codec: the relayer signs two calls
(``System.remark_with_event`` and ``Utility.batch_all`` of those), and every extension value is
a protocol constant or a number, so the bytes are easy to test and fast to build. What the
runtime decides (pallet and call indices, which extensions it wants) comes in as a
``SigningContext`` that ``rpc.py`` reads from the runtime's metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from proofs.hashing import blake2_256
from proofs.substrate.scale import encode_compact

__all__ = [
    "Extension",
    "ExtraField",
    "SigningContext",
    "UnsupportedExtensionError",
    "batch_all_call",
    "extra_layout",
    "remark_call",
    "signed_extrinsic",
]

_SIGNED_V4 = 0x84
_ADDRESS_ID = 0x00
_SIGNATURE_SR25519 = 0x01
_IMMORTAL_ERA = b"\x00"
# Payloads longer than this are signed through their blake2-256 (sp-runtime SignedPayload).
_MAX_SIGNED_PAYLOAD = 256


class UnsupportedExtensionError(ValueError):
    """The runtime asks for a signed extension this encoder cannot fill."""


class Signer(Protocol):
    @property
    def public_key(self) -> bytes: ...

    def sign(self, payload: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Extension:
    """One signed extension as the metadata lists it; ``*_empty`` when its type is ``()``."""

    identifier: str
    extra_empty: bool
    additional_empty: bool


@dataclass(frozen=True, slots=True)
class SigningContext:
    genesis_hash: bytes
    spec_version: int
    transaction_version: int
    extensions: tuple[Extension, ...]
    remark_with_event: tuple[int, int]  # (pallet index, call index)
    batch_all: tuple[int, int] | None  # None when the runtime has no Utility pallet


def remark_call(context: SigningContext, remark: bytes) -> bytes:
    pallet, call = context.remark_with_event
    return bytes([pallet, call]) + encode_compact(len(remark)) + remark


def batch_all_call(context: SigningContext, calls: Sequence[bytes]) -> bytes:
    """``Utility.batch_all``: all calls or none, so a batch is one fate for the ledger."""
    if context.batch_all is None:
        raise UnsupportedExtensionError("the runtime has no Utility.batch_all to batch with")
    pallet, call = context.batch_all
    return bytes([pallet, call]) + encode_compact(len(calls)) + b"".join(calls)


def signed_extrinsic(
    signer: Signer, call: bytes, nonce: int, context: SigningContext, tip: int = 0
) -> bytes:
    """The extrinsic as ``author_submitExtrinsic`` takes it and ``chain_getBlock`` serves it.

    Immortal: the relayer resubmits by nonce, and an immortal transaction cannot silently
    expire between being signed and being recorded. Raises UnsupportedExtensionError when the
    runtime wants an extension value this encoder does not know how to fill.
    """
    extra, additional = _extension_bytes(context, nonce, tip)
    payload = call + extra + additional
    if len(payload) > _MAX_SIGNED_PAYLOAD:
        payload = blake2_256(payload)
    signature = signer.sign(payload)
    body = (
        bytes([_SIGNED_V4, _ADDRESS_ID])
        + signer.public_key
        + bytes([_SIGNATURE_SR25519])
        + signature
        + extra
        + call
    )
    return encode_compact(len(body)) + body


def _extension_bytes(context: SigningContext, nonce: int, tip: int) -> tuple[bytes, bytes]:
    extra = bytearray()
    additional = bytearray()
    for ext in context.extensions:
        name = ext.identifier
        if name == "CheckSpecVersion":
            additional += context.spec_version.to_bytes(4, "little")
        elif name == "CheckTxVersion":
            additional += context.transaction_version.to_bytes(4, "little")
        elif name == "CheckGenesis":
            additional += context.genesis_hash
        elif name == "CheckMortality":
            extra += _IMMORTAL_ERA
            additional += context.genesis_hash
        elif name == "CheckNonce":
            extra += encode_compact(nonce)
        elif name == "ChargeTransactionPayment":
            extra += encode_compact(tip)
        elif name == "CheckMetadataHash":
            # Mode::Disabled, and no metadata hash in the signed payload.
            extra += b"\x00"
            additional += b"\x00"
        elif not (ext.extra_empty and ext.additional_empty):
            raise UnsupportedExtensionError(
                f"the runtime requires signed extension {name}, which carries data this "
                "relayer cannot fill; it cannot sign for this runtime until it learns it"
            )
    return bytes(extra), bytes(additional)


class ExtraField(Enum):
    """How one signed extension's extra data is laid out, for decoders that skip over it."""

    ERA = "era"  # Era: 0x00 immortal, else two bytes
    COMPACT = "compact"  # Compact<u128> (nonce, tip)
    BYTE = "byte"  # u8 (CheckMetadataHash mode)


_EXTRA_LAYOUT = {
    "CheckMortality": (ExtraField.ERA,),
    "CheckNonce": (ExtraField.COMPACT,),
    "ChargeTransactionPayment": (ExtraField.COMPACT,),
    "CheckMetadataHash": (ExtraField.BYTE,),
}


def extra_layout(context: SigningContext) -> tuple[ExtraField, ...]:
    """The runtime's signed extra as a list of fields, in order (mirrors _extension_bytes)."""
    layout: list[ExtraField] = []
    for ext in context.extensions:
        fields = _EXTRA_LAYOUT.get(ext.identifier)
        if fields is not None:
            layout.extend(fields)
        elif not ext.extra_empty:
            raise UnsupportedExtensionError(
                f"signed extension {ext.identifier} carries extra data of unknown layout"
            )
    return tuple(layout)
