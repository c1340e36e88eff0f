"""Header digests: the items a header's digest carries, and the GRANDPA consensus logs among them.

A digest is SCALE ``Vec<DigestItem>`` (sp-runtime ``generic/digest.rs``): ``Other(Vec<u8>)`` = 0,
``Consensus(engine_id [u8; 4], Vec<u8>)`` = 4, ``Seal`` = 5 and ``PreRuntime`` = 6 (same shape),
``RuntimeEnvironmentUpdated`` = 8 (no payload). ``header.py`` validates this layout while it reads
a header; ``decode_digest`` reads the validated bytes (``SubstrateHeader.digest``) into items.

GRANDPA speaks through ``Consensus(b"FRNK", ConsensusLog<u32>)`` (sp-consensus-grandpa):
``ScheduledChange { next_authorities: Vec<(ed25519 key, u64 weight)>, delay: u32 }`` = 1,
``ForcedChange(median_last_finalized: u32, ScheduledChange)`` = 2, ``OnDisabled(u64)`` = 3,
``Pause(u32)`` = 4, ``Resume(u32)`` = 5.

Stricter than Substrate: its ``find_scheduled_change`` decodes a consensus payload with
``Decode::decode``, so it skips a ``FRNK`` item that does not decode and ignores bytes after one
that does. We refuse both (MalformedEncodingError): an unreadable GRANDPA log may be exactly the
authority-set change a light client must follow, and a runtime never emits one.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from proofs.errors import MalformedEncodingError
from proofs.substrate.scale import ScaleReader

__all__ = [
    "GRANDPA_ENGINE_ID",
    "DigestItem",
    "DigestItemKind",
    "ForcedChange",
    "GrandpaLog",
    "OnDisabled",
    "Pause",
    "Resume",
    "ScheduledChange",
    "decode_digest",
    "decode_grandpa_log",
    "grandpa_logs",
]

GRANDPA_ENGINE_ID = b"FRNK"

_ENGINE_ID_LEN = 4
_PUBLIC_KEY_LEN = 32
# One (AuthorityId, u64) pair of an authority list.
_AUTHORITY_LEN = _PUBLIC_KEY_LEN + 8


class DigestItemKind(enum.IntEnum):
    """DigestItem variant indices; 1, 2, 3 and 7 belonged to items removed from Substrate."""

    OTHER = 0
    CONSENSUS = 4
    SEAL = 5
    PRE_RUNTIME = 6
    RUNTIME_ENVIRONMENT_UPDATED = 8


_WITH_ENGINE = (DigestItemKind.CONSENSUS, DigestItemKind.SEAL, DigestItemKind.PRE_RUNTIME)


@dataclass(frozen=True, slots=True)
class DigestItem:
    """One digest item; ``engine_id`` is set for consensus, seal and pre-runtime items only."""

    kind: DigestItemKind
    engine_id: bytes | None
    payload: bytes


def _read_item(reader: ScaleReader) -> DigestItem:
    variant = reader.u8("digest item variant")
    try:
        kind = DigestItemKind(variant)
    except ValueError:
        raise MalformedEncodingError(
            f"digest item variant {variant} is not a known DigestItem"
        ) from None
    if kind in _WITH_ENGINE:
        engine_id = reader.fixed(_ENGINE_ID_LEN, "consensus engine id")
        return DigestItem(kind=kind, engine_id=engine_id, payload=reader.byte_vec("digest payload"))
    if kind is DigestItemKind.OTHER:
        return DigestItem(kind=kind, engine_id=None, payload=reader.byte_vec("digest payload"))
    return DigestItem(kind=kind, engine_id=None, payload=b"")


def decode_digest(digest: bytes) -> tuple[DigestItem, ...]:
    """Strictly decode a SCALE ``Vec<DigestItem>`` (as ``SubstrateHeader.digest`` holds it).

    Raises MalformedEncodingError for an unknown variant, truncation or trailing bytes.
    """
    reader = ScaleReader(digest)
    # The smallest item is its variant byte alone.
    items = tuple(_read_item(reader) for _ in range(reader.vec_len(1, "header digest")))
    reader.finish("header digest")
    return items


@dataclass(frozen=True, slots=True)
class ScheduledChange:
    """The next authority set, in force after the block ``delay`` blocks after the signal."""

    next_authorities: tuple[tuple[bytes, int], ...]
    delay: int


@dataclass(frozen=True, slots=True)
class ForcedChange:
    """A change enacted on best-chain depth, without a justification linking the two sets."""

    median_last_finalized: int
    change: ScheduledChange


@dataclass(frozen=True, slots=True)
class OnDisabled:
    authority_index: int


@dataclass(frozen=True, slots=True)
class Pause:
    delay: int


@dataclass(frozen=True, slots=True)
class Resume:
    delay: int


GrandpaLog = ScheduledChange | ForcedChange | OnDisabled | Pause | Resume


def _read_scheduled_change(reader: ScaleReader) -> ScheduledChange:
    count = reader.vec_len(_AUTHORITY_LEN, "next_authorities")
    authorities = tuple(
        (reader.fixed(_PUBLIC_KEY_LEN, "authority id"), reader.u64("authority weight"))
        for _ in range(count)
    )
    return ScheduledChange(next_authorities=authorities, delay=reader.u32("change delay"))


def decode_grandpa_log(payload: bytes) -> GrandpaLog:
    """Strictly decode the payload of a ``Consensus(b"FRNK", ...)`` digest item.

    Raises MalformedEncodingError for an unknown variant, truncation or trailing bytes.
    """
    reader = ScaleReader(payload)
    variant = reader.u8("GRANDPA consensus log variant")
    log: GrandpaLog
    if variant == 1:
        log = _read_scheduled_change(reader)
    elif variant == 2:
        median = reader.u32("forced change median_last_finalized")
        log = ForcedChange(median_last_finalized=median, change=_read_scheduled_change(reader))
    elif variant == 3:
        log = OnDisabled(authority_index=reader.u64("disabled authority index"))
    elif variant == 4:
        log = Pause(delay=reader.u32("pause delay"))
    elif variant == 5:
        log = Resume(delay=reader.u32("resume delay"))
    else:
        raise MalformedEncodingError(
            f"GRANDPA consensus log variant {variant} is not one of ScheduledChange (1), "
            "ForcedChange (2), OnDisabled (3), Pause (4), Resume (5)"
        )
    reader.finish("GRANDPA consensus log")
    return log


def grandpa_logs(items: Iterable[DigestItem]) -> tuple[GrandpaLog, ...]:
    """The GRANDPA logs among ``items``, in digest order.

    Only ``Consensus`` items count, as in Substrate (``OpaqueDigestItemId::Consensus``): a
    pre-runtime or seal item tagged ``FRNK`` is not a GRANDPA log.
    """
    return tuple(
        decode_grandpa_log(item.payload)
        for item in items
        if item.kind is DigestItemKind.CONSENSUS and item.engine_id == GRANDPA_ENGINE_ID
    )
