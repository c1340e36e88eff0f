"""The notices the bus carries, as versioned msgspec schemas, and their wire encoding.

Three kinds, each a tagged msgspec struct encoded as a msgpack map (mostly bytes, which JSON would
carry as base64). The ``format`` tag names kind and version (``bus.observation.v1``): a reader
of v1 ignores fields it does not know, so v1 may gain optional fields; any other change is a new
version, which old readers drop as ``unsupported_version`` instead of misreading it.

Nothing in a notice is trusted. Anyone who can publish on the broker can put anything here, and
a replayed or forged notice decodes as well as a true one; the schemas only bound sizes and
shapes. Every consumer re-verifies what it takes off the bus, exactly as it verifies an RPC
answer: the origin plugin re-checks an observation's evidence against its own light client, the
committee scheme recovers an attestation's signer and counts only committee members.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Final, TypeAlias, TypeVar

import msgspec

from relayer.bus.errors import PayloadError, PayloadTooLargeError
from relayer.checkpoints import Attestation
from relayer.plugin import Observation

__all__ = [
    "MAX_BATCH_ENTRIES",
    "MAX_PAYLOAD_BYTES",
    "AttestationBatchNotice",
    "AttestationNotice",
    "AttestationRequest",
    "Notice",
    "NoticeT",
    "ObservationNotice",
    "decode_notice",
    "encode_notice",
]

#: The default largest payload (bytes) a publisher sends and a subscriber reads: a message's
#: inclusion proof is tens of kilobytes, a block's shared evidence (a header, a whole body) rarely
#: more than a few hundred. A larger observation is simply not announced: consumers find it in the
#: ledger when they poll.
MAX_PAYLOAD_BYTES: Final = 1024 * 1024

#: The most entries an ``AttestationBatchNotice`` holds: about 107 bytes each on the wire, so a
#: full batch is about 430 kB, well under ``MAX_PAYLOAD_BYTES``; a bigger block is published as
#: several batches.
MAX_BATCH_ENTRIES: Final = 4000

_U32 = Annotated[int, msgspec.Meta(ge=0, lt=2**32)]
# msgspec bounds integers within int64; no chain is near 2**63 blocks.
_BlockNumber = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Hash = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
_Address = Annotated[bytes, msgspec.Meta(min_length=20, max_length=20)]
_Signature = Annotated[bytes, msgspec.Meta(min_length=65, max_length=65)]
_ChainName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class ObservationNotice(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="format", tag="bus.observation.v1"
):
    """A watcher saw a message (wire format: do not rename or retype fields; add optional ones
    or make a v2). Carries the observation whole, so that a worker on another machine can
    verify it without asking the watcher; the watcher wrote it to the ledger before publishing.

    ``origin_domain`` is the topic's domain (a notice on another domain's topic is dropped);
    ``origin_chain`` is the config name of the chain (each consumer checks it against its own
    config for that domain); ``message_id`` is keccak256 of ``message`` (recomputed by the
    consumer, never believed)."""

    origin_domain: _U32
    origin_chain: _ChainName
    message_id: _Hash
    block_number: _BlockNumber
    block_hash: _Hash
    #: the message bytes (Hyperlane wire format) and the plugin's own encodings of its evidence
    message: bytes
    evidence: bytes
    block_evidence: bytes = b""

    @classmethod
    def from_observation(
        cls, observation: Observation, *, origin_domain: int, message_id: bytes
    ) -> ObservationNotice:
        return cls(
            origin_domain=origin_domain,
            origin_chain=observation.origin_chain,
            message_id=message_id,
            block_number=observation.block_number,
            block_hash=observation.block_hash,
            message=observation.message,
            evidence=observation.evidence,
            block_evidence=observation.block_evidence,
        )

    def to_observation(self) -> Observation:
        """The plugin's observation, unverified: hand it to the core, which verifies it."""
        return Observation(
            origin_chain=self.origin_chain,
            message=self.message,
            block_number=self.block_number,
            block_hash=self.block_hash,
            evidence=self.evidence,
            block_evidence=self.block_evidence,
        )


class AttestationNotice(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="format", tag="bus.attestation.v1"
):
    """An attester signed a message (wire format: do not rename or retype fields). The same
    content as ``relayer.checkpoints.Attestation``: the consumer recomputes the digest from its
    own ledger's message and recovers the signer from ``signature`` (65 bytes, r | s | v);
    ``signer`` only says whom to expect."""

    origin_domain: _U32
    destination_domain: _U32
    message_id: _Hash
    origin_block_hash: _Hash
    signer: _Address
    signature: _Signature

    @classmethod
    def from_attestation(cls, attestation: Attestation) -> AttestationNotice:
        return cls(
            origin_domain=attestation.origin_domain,
            destination_domain=attestation.destination_domain,
            message_id=attestation.message_id,
            origin_block_hash=attestation.origin_block_hash,
            signer=attestation.signer,
            signature=attestation.signature,
        )

    def to_attestation(self) -> Attestation:
        return Attestation(
            signer=self.signer,
            signature=self.signature,
            origin_domain=self.origin_domain,
            message_id=self.message_id,
            origin_block_hash=self.origin_block_hash,
            destination_domain=self.destination_domain,
        )


#: one attestation of a batch: (message_id, destination_domain, signature)
_BatchEntry: TypeAlias = tuple[_Hash, _U32, _Signature]


class AttestationBatchNotice(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="format", tag="bus.attestation_batch.v1"
):
    """An attester's signatures of messages of one origin block (wire format: do not rename or
    retype fields). One notice per block and signer instead of one per message: a worker takes
    a block's signatures in one payload. Each entry is checked on its own, exactly as an
    ``AttestationNotice`` with the batch's origin, block and signer would be."""

    origin_domain: _U32
    origin_block_hash: _Hash
    signer: _Address
    entries: Annotated[list[_BatchEntry], msgspec.Meta(min_length=1, max_length=MAX_BATCH_ENTRIES)]

    @classmethod
    def from_attestations(cls, attestations: Sequence[Attestation]) -> list[AttestationBatchNotice]:
        """The batches carrying ``attestations``: one per (origin, block, signer), split every
        ``MAX_BATCH_ENTRIES`` entries."""
        groups: dict[tuple[int, bytes, bytes], list[_BatchEntry]] = {}
        for att in attestations:
            groups.setdefault((att.origin_domain, att.origin_block_hash, att.signer), []).append(
                (att.message_id, att.destination_domain, att.signature)
            )
        return [
            cls(
                origin_domain=domain,
                origin_block_hash=block_hash,
                signer=signer,
                entries=entries[start : start + MAX_BATCH_ENTRIES],
            )
            for (domain, block_hash, signer), entries in groups.items()
            for start in range(0, len(entries), MAX_BATCH_ENTRIES)
        ]

    def notices(self) -> list[AttestationNotice]:
        """Each entry as the single notice it stands for (unchecked)."""
        return [
            AttestationNotice(
                origin_domain=self.origin_domain,
                destination_domain=destination_domain,
                message_id=message_id,
                origin_block_hash=self.origin_block_hash,
                signer=self.signer,
                signature=signature,
            )
            for message_id, destination_domain, signature in self.entries
        ]


class AttestationRequest(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="format", tag="bus.attestation_request.v1"
):
    """A relayer asks the attesters to publish their attestations of one origin block again
    (wire format: do not rename or retype fields): it holds messages of the block short of a
    quorum, and notices are not kept (a broker restart, a relayer that was down). Answering is
    cheap and idempotent: an attester republishes what it stored for the block, if anything."""

    origin_domain: _U32
    block_hash: _Hash


Notice: TypeAlias = (
    ObservationNotice | AttestationNotice | AttestationBatchNotice | AttestationRequest
)
NoticeT = TypeVar(
    "NoticeT", ObservationNotice, AttestationNotice, AttestationBatchNotice, AttestationRequest
)

_FORMATS: Final = frozenset(
    str(kind.__struct_config__.tag)
    for kind in (ObservationNotice, AttestationNotice, AttestationBatchNotice, AttestationRequest)
)
# The kind part of each format tag, for telling a newer version of ours from a stranger's format.
_KIND_PREFIXES: Final = tuple(sorted({fmt.rpartition(".")[0] + "." for fmt in _FORMATS}))


class _Head(msgspec.Struct):
    """What every version of every notice has: its format tag."""

    format: str


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Notice)
_head_decoder = msgspec.msgpack.Decoder(_Head)
_MAX_DETAIL = 200


def encode_notice(notice: Notice, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> bytes:
    """The notice's wire bytes; raises ``PayloadTooLargeError`` past ``max_bytes``."""
    data = _encoder.encode(notice)
    if len(data) > max_bytes:
        raise PayloadTooLargeError(len(data), max_bytes)
    return data


def decode_notice(data: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Notice:
    """The notice in ``data``; raises ``PayloadError`` (its ``reason`` says why) for anything
    else, and nothing other than that whatever the bytes."""
    if len(data) > max_bytes:
        raise PayloadTooLargeError(len(data), max_bytes)
    try:
        notice: Notice = _decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        error = exc
    else:
        return notice
    # Only a payload that failed is looked at twice, to say why it failed.
    try:
        head = _head_decoder.decode(data)
    except msgspec.DecodeError:
        raise PayloadError("garbage", _short(error)) from None
    if head.format in _FORMATS:
        raise PayloadError("invalid", _short(error)) from None
    if head.format.startswith(_KIND_PREFIXES):
        raise PayloadError("unsupported_version", f"format {_short(head.format)!r}") from None
    raise PayloadError("unknown_format", f"format {_short(head.format)!r}") from None


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."
