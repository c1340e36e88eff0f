"""GRANDPA justifications: a block is final when precommits of > 2/3 of the authority weight
of one set, in one round, vote for it or for blocks that provably descend from it.

Precommits are ed25519 signatures over SCALE ``(Message::Precommit(target_hash, target_number),
round u64, set_id u64)``, i.e. ``0x01 || target_hash || target_number u32 LE || round u64 LE ||
set_id u64 LE``. A precommit for a descendant counts for the commit target only through
``votes_ancestries``: headers that link the precommit's target back to the commit target by
parent hashes. How a header hashes is chain-specific (Avail appends an ``extension``), so the
verifier takes the ancestry as (hash, parent_hash, number) triples the caller computed from the
header bytes; ``decode_justification`` computes them for standard Substrate headers.

Policy choices, stricter than Substrate where noted:

* A precommit whose target cannot be linked to the commit target (a missing ancestry header, a
  lower number, a number that disagrees with its header) is not counted, and is not an error
  either: the weight that does link decides. Substrate rejects such a justification outright;
  we accept it because the unlinked vote cannot add weight, and real justifications (Avail's
  ``ancestry_missing_link_works``) carry such votes.
* Ancestry headers that no precommit needs are tolerated for the same reason. Substrate rejects
  them; they cannot make a vote count that would not count without them.
* A voter that appears twice is refused (SignatureError), even though GRANDPA tolerates
  equivocations in a commit and counts an equivocator once. Counting a signer's weight twice is
  the classic way to forge a quorum, and refusing costs only liveness: the next justification,
  or the next block's, normally carries no equivocation.
* Every precommit's signature is checked, counted or not: a justification carrying a forgery is
  evidence from a source that lies, and we would rather wait for another.
* ed25519 is checked by libsodium, which accepts a subset of what Substrate's ed25519-zebra
  (ZIP-215) accepts, so we may refuse a contrived signature Substrate takes, never the reverse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from proofs.errors import MalformedEncodingError, QuorumError, SignatureError
from proofs.hashing import blake2_256
from proofs.substrate.header import read_header
from proofs.substrate.scale import U32_MAX, U64_MAX, ScaleReader

__all__ = [
    "AncestryHeader",
    "FinalizedBlock",
    "GrandpaJustification",
    "SignedPrecommit",
    "decode_justification",
    "precommit_message",
    "verify_grandpa_justification",
    "verify_precommit_signature",
]

_HASH_LEN = 32
_PUBLIC_KEY_LEN = 32
_SIGNATURE_LEN = 64
_PRECOMMIT_TAG = b"\x01"
_SIGNED_PRECOMMIT_LEN = _HASH_LEN + 4 + _SIGNATURE_LEN + _PUBLIC_KEY_LEN
# parent, compact number, two roots, empty digest.
_MIN_HEADER_LEN = _HASH_LEN + 1 + _HASH_LEN + _HASH_LEN + 1


@dataclass(frozen=True, slots=True)
class AncestryHeader:
    """What the ancestry walk needs of a header; ``hash`` must be computed by the caller."""

    hash: bytes
    parent_hash: bytes
    number: int


@dataclass(frozen=True, slots=True)
class SignedPrecommit:
    target_hash: bytes
    target_number: int
    signature: bytes
    authority_id: bytes


@dataclass(frozen=True, slots=True)
class GrandpaJustification:
    """A justification with the commit flattened in: ``target_*`` is the block it finalizes."""

    round: int
    target_hash: bytes
    target_number: int
    precommits: tuple[SignedPrecommit, ...]
    votes_ancestries: tuple[AncestryHeader, ...]


@dataclass(frozen=True, slots=True)
class FinalizedBlock:
    """The block a verified justification finalizes."""

    hash: bytes
    number: int


def precommit_message(
    target_hash: bytes, target_number: int, round_number: int, set_id: int
) -> bytes:
    """The bytes a voter signs for a precommit. Raises MalformedEncodingError out of range."""
    if len(target_hash) != _HASH_LEN:
        raise MalformedEncodingError(f"precommit target hash must be 32 bytes: {target_hash!r}")
    if not 0 <= target_number <= U32_MAX:
        raise MalformedEncodingError(f"precommit target number {target_number} is not a u32")
    if not 0 <= round_number <= U64_MAX or not 0 <= set_id <= U64_MAX:
        raise MalformedEncodingError(f"round {round_number} or set id {set_id} is not a u64")
    return b"".join(
        (
            _PRECOMMIT_TAG,
            target_hash,
            target_number.to_bytes(4, "little"),
            round_number.to_bytes(8, "little"),
            set_id.to_bytes(8, "little"),
        )
    )


def _check_signature(key: VerifyKey, message: bytes, signature: bytes, who: bytes) -> None:
    try:
        key.verify(message, signature)
    except BadSignatureError:
        raise SignatureError(
            f"precommit signature of authority {who.hex()} does not verify"
        ) from None


def _check_key_shapes(signature: bytes, authority_id: bytes) -> None:
    if len(signature) != _SIGNATURE_LEN:
        raise SignatureError(f"ed25519 signature must be 64 bytes, got {len(signature)}")
    if len(authority_id) != _PUBLIC_KEY_LEN:
        raise SignatureError(f"ed25519 public key must be 32 bytes, got {len(authority_id)}")


def verify_precommit_signature(
    *,
    target_hash: bytes,
    target_number: int,
    round_number: int,
    set_id: int,
    signature: bytes,
    authority_id: bytes,
) -> None:
    """Check one precommit's ed25519 signature. Raises SignatureError if it does not verify."""
    _check_key_shapes(signature, authority_id)
    message = precommit_message(target_hash, target_number, round_number, set_id)
    _check_signature(VerifyKey(authority_id), message, signature, authority_id)


def decode_justification(data: bytes) -> GrandpaJustification:
    """Strictly decode a SCALE ``GrandpaJustification`` whose ancestry headers are standard
    Substrate headers; each ancestry hash is blake2-256 of that header's exact bytes.

    Raises MalformedEncodingError for anything truncated, non-canonical or trailing.
    """
    reader = ScaleReader(data)
    round_number = reader.u64("justification round")
    target_hash = reader.fixed(_HASH_LEN, "commit target_hash")
    target_number = reader.u32("commit target_number")
    precommits = tuple(
        SignedPrecommit(
            target_hash=reader.fixed(_HASH_LEN, "precommit target_hash"),
            target_number=reader.u32("precommit target_number"),
            signature=reader.fixed(_SIGNATURE_LEN, "precommit signature"),
            authority_id=reader.fixed(_PUBLIC_KEY_LEN, "precommit authority id"),
        )
        for _ in range(reader.vec_len(_SIGNED_PRECOMMIT_LEN, "commit precommits"))
    )
    ancestries = []
    for _ in range(reader.vec_len(_MIN_HEADER_LEN, "votes_ancestries")):
        start = reader.offset
        header = read_header(reader)
        ancestries.append(
            AncestryHeader(
                hash=blake2_256(reader.span(start, reader.offset)),
                parent_hash=header.parent_hash,
                number=header.number,
            )
        )
    reader.finish("justification")
    return GrandpaJustification(
        round=round_number,
        target_hash=target_hash,
        target_number=target_number,
        precommits=precommits,
        votes_ancestries=tuple(ancestries),
    )


def _authority_weights(authorities: Sequence[tuple[bytes, int]]) -> dict[bytes, int]:
    weights: dict[bytes, int] = {}
    for key, weight in authorities:
        if len(key) != _PUBLIC_KEY_LEN:
            raise QuorumError(f"authority key must be 32 bytes, got {len(key)}")
        if weight <= 0:
            raise QuorumError(f"authority {key.hex()} has weight {weight}; weights must be > 0")
        if key in weights:
            raise QuorumError(f"authority {key.hex()} is listed twice in the authority set")
        weights[key] = weight
    if not weights:
        raise QuorumError("the authority set is empty; nothing can be finalized")
    return weights


class _Ancestry:
    """Parent links by hash, with every answer remembered: votes cluster on a few blocks."""

    __slots__ = ("_by_hash", "_known", "_target")

    def __init__(self, headers: Sequence[AncestryHeader], target: tuple[bytes, int]) -> None:
        self._by_hash: dict[bytes, AncestryHeader] = {}
        for header in headers:
            seen = self._by_hash.setdefault(header.hash, header)
            if seen != header:
                raise MalformedEncodingError(
                    f"two different ancestry headers claim the hash {header.hash.hex()}"
                )
        self._target = target
        self._known: dict[tuple[bytes, int], bool] = {target: True}

    def links(self, block: tuple[bytes, int]) -> bool:
        """Whether ``block`` is the target or descends from it through the given headers."""
        walked: list[tuple[bytes, int]] = []
        target_number = self._target[1]
        current = block
        # Each step needs a header whose number is one less than the last; so the walk visits
        # each header at most once and ends within len(headers) steps.
        while current not in self._known:
            walked.append(current)
            header = self._by_hash.get(current[0])
            if current[1] <= target_number or header is None or header.number != current[1]:
                self._known[current] = False
                break
            current = (header.parent_hash, current[1] - 1)
        result = self._known[current]
        for step in walked:
            self._known[step] = result
        return result


def verify_grandpa_justification(
    justification: GrandpaJustification,
    *,
    set_id: int,
    authorities: Sequence[tuple[bytes, int]],
) -> FinalizedBlock:
    """Verify that ``justification`` finalizes its commit target under authority set ``set_id``.

    ``authorities`` are the set's (ed25519 public key, weight) pairs, from the light client's
    own state, never from the evidence. Returns the finalized block; the caller checks that it
    is the block it wanted (or an ancestor-proven descendant of it).

    Raises SignatureError for a voter outside the set, a voter appearing twice, or a signature
    that does not verify; QuorumError when the linked weight is not more than 2/3 of the total,
    or the authority set itself is unusable; MalformedEncodingError for out-of-range numbers or
    inconsistent ancestry triples.
    """
    if len(justification.target_hash) != _HASH_LEN:
        raise MalformedEncodingError("commit target hash must be 32 bytes")
    weights = _authority_weights(authorities)
    total = sum(weights.values())
    target = (justification.target_hash, justification.target_number)
    ancestry = _Ancestry(justification.votes_ancestries, target)

    # Cheap checks first; signatures (the expensive part) only for a justification that would
    # be sufficient if they all verified.
    voters: set[bytes] = set()
    counted = 0
    for precommit in justification.precommits:
        _check_key_shapes(precommit.signature, precommit.authority_id)
        voter = precommit.authority_id
        weight = weights.get(voter)
        if weight is None:
            raise SignatureError(f"precommit from {voter.hex()}, not in authority set {set_id}")
        if voter in voters:
            raise SignatureError(
                f"authority {voter.hex()} precommits twice in one commit (equivocation); "
                "refusing rather than counting it once"
            )
        voters.add(voter)
        if ancestry.links((precommit.target_hash, precommit.target_number)):
            counted += weight
    if counted * 3 <= total * 2:
        raise QuorumError(
            f"precommits linked to block #{justification.target_number} "
            f"{justification.target_hash.hex()} carry weight {counted} of {total}; "
            "more than 2/3 is needed"
        )

    for precommit in justification.precommits:
        message = precommit_message(
            precommit.target_hash, precommit.target_number, justification.round, set_id
        )
        _check_signature(
            VerifyKey(precommit.authority_id),
            message,
            precommit.signature,
            precommit.authority_id,
        )
    return FinalizedBlock(hash=justification.target_hash, number=justification.target_number)
