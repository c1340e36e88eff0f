"""What a GRANDPA finality endpoint serves, in wire form: ``grandpa_proveFinality``'s SCALE
``FinalityProof`` and the dev voters' bootstrap checkpoint (JSON).

``FinalityProof`` is ``sc-consensus-grandpa``'s (``finality_proof.rs``)::

    struct FinalityProof<Header> {
        block: Header::Hash,            // F, the block the justification finalizes
        justification: Vec<u8>,         // SCALE GrandpaJustification of F
        unknown_headers: Vec<Header>,   // headers (B; F] for a request about block B, ordered
    }

and ``grandpa_proveFinality(block_number)`` answers it SCALE-encoded as a 0x-hex string, or
null when the node has no justification covering the block.

The checkpoint is not a real node's: a real deployment takes it from its configuration. The dev
voters serve it (``dev_grandpaCheckpoint``) so that a local run can bootstrap without one::

    {"header": "0x<SCALE header>", "hash": "0x..", "number": n,
     "authorities": [["0x<ed25519 key>", weight], ...], "set_id": s,
     "pending_change": null | {"next_authorities": [...], "signal_number": n, "delay": d,
                               "forced": false}}

``forced`` is optional (false): true for a ``ForcedChange`` (``Grandpa.PendingForcedChange``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proofs.errors import MalformedEncodingError
from proofs.substrate.grandpa_store import GrandpaLightClient, PendingAuthorityChange
from proofs.substrate.header import read_header
from proofs.substrate.scale import ScaleReader, encode_compact

__all__ = [
    "FinalityProof",
    "GrandpaCheckpoint",
    "decode_finality_proof",
    "encode_finality_proof",
]

_HASH_LEN = 32
# parent, compact number, two roots, empty digest: the smallest header.
_MIN_HEADER_LEN = 32 + 1 + 32 + 32 + 1

Authorities = tuple[tuple[bytes, int], ...]


@dataclass(frozen=True, slots=True)
class FinalityProof:
    """``block`` is the justification's target; ``unknown_headers`` are SCALE headers exactly
    as served (to be hashed by whoever uses them, never trusted by their claimed hashes)."""

    block: bytes
    justification: bytes
    unknown_headers: tuple[bytes, ...]


def encode_finality_proof(proof: FinalityProof) -> bytes:
    return b"".join(
        (
            proof.block,
            encode_compact(len(proof.justification)),
            proof.justification,
            encode_compact(len(proof.unknown_headers)),
            *proof.unknown_headers,
        )
    )


def decode_finality_proof(data: bytes) -> FinalityProof:
    """Strictly decode a SCALE ``FinalityProof`` of standard Substrate headers.

    Raises MalformedEncodingError for anything truncated, non-canonical or trailing.
    """
    reader = ScaleReader(data)
    block = reader.fixed(_HASH_LEN, "finality proof block")
    justification = reader.byte_vec("finality proof justification")
    headers = []
    for _ in range(reader.vec_len(_MIN_HEADER_LEN, "finality proof unknown_headers")):
        start = reader.offset
        read_header(reader)
        headers.append(reader.span(start, reader.offset))
    reader.finish("finality proof")
    return FinalityProof(block=block, justification=justification, unknown_headers=tuple(headers))


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _unhex(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise MalformedEncodingError(f"checkpoint {what} must be a 0x-hex string")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise MalformedEncodingError(f"checkpoint {what} is not hex") from None


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedEncodingError(f"checkpoint {what} must be a non-negative integer")
    return value


def _authorities_json(authorities: Authorities) -> list[list[Any]]:
    return [[_hex(key), weight] for key, weight in authorities]


def _authorities_from(value: Any, what: str) -> Authorities:
    if not isinstance(value, list):
        raise MalformedEncodingError(f"checkpoint {what} must be a list of [key, weight]")
    pairs = []
    for index, item in enumerate(value):
        if not isinstance(item, list) or len(item) != 2:
            raise MalformedEncodingError(f"checkpoint {what}[{index}] must be [key, weight]")
        pairs.append((_unhex(item[0], f"{what}[{index}]"), _int(item[1], f"{what}[{index}]")))
    return tuple(pairs)


@dataclass(frozen=True, slots=True)
class GrandpaCheckpoint:
    """A trusted starting point: the finalized ``header`` (SCALE), the set and set id that
    finalize the blocks after it, and the change pending at it, if any (``Grandpa.PendingChange``
    in the chain's storage at that block)."""

    header: bytes
    authorities: Authorities
    set_id: int
    pending_change: PendingAuthorityChange | None

    def light_client(self) -> GrandpaLightClient:
        """A store at this checkpoint; raises what ``GrandpaLightClient`` raises."""
        return GrandpaLightClient(
            header=self.header,
            authorities=self.authorities,
            set_id=self.set_id,
            pending_change=self.pending_change,
        )

    def to_json(self, *, block_hash: bytes, number: int) -> dict[str, Any]:
        pending = self.pending_change
        return {
            "header": _hex(self.header),
            "hash": _hex(block_hash),
            "number": number,
            "authorities": _authorities_json(self.authorities),
            "set_id": self.set_id,
            "pending_change": None
            if pending is None
            else {
                "next_authorities": _authorities_json(pending.next_authorities),
                "signal_number": pending.signal_number,
                "delay": pending.delay,
                "forced": pending.forced,
            },
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> GrandpaCheckpoint:
        """Read ``to_json``'s form; ``hash`` and ``number`` are informative (the store derives
        both from the header). Raises MalformedEncodingError for a wrong shape."""
        if not isinstance(raw, Mapping):
            raise MalformedEncodingError("checkpoint must be a JSON object")
        try:
            pending_raw = raw["pending_change"]
            pending = None
            if pending_raw is not None:
                pending = PendingAuthorityChange(
                    next_authorities=_authorities_from(
                        pending_raw["next_authorities"], "pending_change.next_authorities"
                    ),
                    signal_number=_int(pending_raw["signal_number"], "signal_number"),
                    delay=_int(pending_raw["delay"], "delay"),
                    forced=_flag(pending_raw.get("forced", False), "forced"),
                )
            return cls(
                header=_unhex(raw["header"], "header"),
                authorities=_authorities_from(raw["authorities"], "authorities"),
                set_id=_int(raw["set_id"], "set_id"),
                pending_change=pending,
            )
        except (KeyError, TypeError) as exc:
            raise MalformedEncodingError(f"checkpoint is missing a field: {exc!r}") from None


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise MalformedEncodingError(f"checkpoint {what} must be true or false, got {value!r}")
    return value
