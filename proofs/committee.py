"""M-of-N ECDSA attestations by a known committee of attesters.

Each attester signs, with an Ethereum key, the EIP-191 form of one digest that binds everything
the signature vouches for. The destination Gateway contract checks the same bytes on chain, so
the digest layout here and in ``Gateway.sol`` must never drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence

from coincurve import PublicKey

from proofs.errors import MalformedEncodingError, QuorumError, SignatureError
from proofs.hashing import keccak256

__all__ = [
    "ATTESTATION_TYPEHASH",
    "NAMED_ATTESTATION_TYPEHASH",
    "attestation_digest",
    "check_threshold",
    "eth_signed_message_hash",
    "named_attestation_digest",
    "recover_signer",
    "select_quorum",
    "verify_attestation",
]

ATTESTATION_TYPEHASH = keccak256(b"relayer.attestation.v1")

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _SECP256K1_N // 2
_EIP191_PREFIX = b"\x19Ethereum Signed Message:\n32"


def _word(value: int, bits: int, what: str) -> bytes:
    if not 0 <= value < 1 << bits:
        raise MalformedEncodingError(f"{what} {value} does not fit in uint{bits}")
    return value.to_bytes(32, "big")


def _fixed(value: bytes, length: int, what: str) -> bytes:
    if len(value) != length:
        raise MalformedEncodingError(f"{what} must be {length} bytes, got {len(value)}")
    return value.rjust(32, b"\x00")


def attestation_digest(
    destination_chain_id: int,
    destination_gateway: bytes,
    origin_domain: int,
    message_id: bytes,
    origin_block_hash: bytes,
) -> bytes:
    """``keccak256(abi.encode(TYPEHASH, chainid, gateway, origin, id, originBlockHash))``.

    The chain id and gateway address pin a signature to one deployment (no replay on another
    chain or a redeployed gateway); the block hash pins it to the block the attester verified.
    """
    return keccak256(
        ATTESTATION_TYPEHASH
        + _word(destination_chain_id, 256, "destination chain id")
        + _fixed(destination_gateway, 20, "destination gateway address")
        + _word(origin_domain, 32, "origin domain")
        + _fixed(message_id, 32, "message id")
        + _fixed(origin_block_hash, 32, "origin block hash")
    )


NAMED_ATTESTATION_TYPEHASH = keccak256(b"relayer.attestation.named.v1")


def named_attestation_digest(
    destination_domain: int,
    destination_name: str,
    origin_domain: int,
    message_id: bytes,
    origin_block_hash: bytes,
) -> bytes:
    """The digest for a destination without a contract (a Substrate chain without a pallet):
    ``keccak256(TYPEHASH' || word(domain) || keccak256(name) || word(origin) || id || block hash)``
    (32-byte big-endian words, as in ``attestation_digest``).

    Such a chain has no chain id and gateway to pin a signature to, and every chopsticks chain
    shares one genesis hash, so its domain and its ``system_chain`` name stand in for them. A
    different tag keeps these digests apart from the contract form's."""
    if not destination_name:
        raise MalformedEncodingError("destination name must not be empty")
    return keccak256(
        NAMED_ATTESTATION_TYPEHASH
        + _word(destination_domain, 32, "destination domain")
        + keccak256(destination_name.encode())
        + _word(origin_domain, 32, "origin domain")
        + _fixed(message_id, 32, "message id")
        + _fixed(origin_block_hash, 32, "origin block hash")
    )


def eth_signed_message_hash(digest: bytes) -> bytes:
    """EIP-191 version 0x45 of a 32-byte digest (OpenZeppelin ``toEthSignedMessageHash``)."""
    if len(digest) != 32:
        raise MalformedEncodingError(f"digest must be 32 bytes, got {len(digest)}")
    return keccak256(_EIP191_PREFIX + digest)


def recover_signer(signed_hash: bytes, signature: bytes) -> bytes:
    """The 20-byte address that produced ``signature`` (r ‖ s ‖ v) over ``signed_hash``."""
    if len(signature) != 65:
        raise SignatureError(f"signature must be 65 bytes (r, s, v), got {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise SignatureError(f"signature v must be 27 or 28, got {v}")
    if not 0 < r < _SECP256K1_N or not 0 < s < _SECP256K1_N:
        raise SignatureError("signature r or s is out of range")
    # Both (r, s) and (r, n - s) verify; accepting only the low one makes signatures unique,
    # which is what the on-chain ecrecover check enforces as well.
    if s > _HALF_N:
        raise SignatureError("signature s is in the upper half of the curve order (not low-s)")
    try:
        key = PublicKey.from_signature_and_message(
            signature[:64] + bytes([v - 27]), signed_hash, hasher=None
        )
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"no public key recovers from the signature: {exc}") from None
    return keccak256(key.format(compressed=False)[1:])[12:]


def check_threshold(threshold: int, committee_size: int) -> None:
    """Refuse thresholds that a minority (or nobody) could meet."""
    if threshold <= 0:
        raise QuorumError(f"threshold must be positive, got {threshold}")
    if threshold * 2 <= committee_size:
        raise QuorumError(
            f"threshold {threshold} of {committee_size} attesters is not above half of the set"
        )
    if threshold > committee_size:
        raise QuorumError(f"threshold {threshold} exceeds the {committee_size} attesters")


def verify_attestation(
    digest: bytes,
    signatures: Sequence[bytes],
    attesters: Sequence[bytes],
    threshold: int,
) -> list[bytes]:
    """Check ``signatures`` over ``digest`` against the committee; return the signers in order.

    Every signature must recover to a distinct member of ``attesters``: a stranger's or a
    repeated signature means someone is forging or replaying, so it refuses the whole set rather
    than counting around it.
    """
    members = set(attesters)
    if len(members) != len(attesters) or any(len(a) != 20 for a in members):
        raise QuorumError("attester set must hold distinct 20-byte addresses")
    check_threshold(threshold, len(members))
    signed_hash = eth_signed_message_hash(digest)
    signers: list[bytes] = []
    seen: set[bytes] = set()
    for i, signature in enumerate(signatures):
        signer = recover_signer(signed_hash, signature)
        if signer not in members:
            raise SignatureError(f"signature {i} recovers to 0x{signer.hex()}, not an attester")
        if signer in seen:
            raise SignatureError(f"signature {i} repeats attester 0x{signer.hex()}")
        seen.add(signer)
        signers.append(signer)
    if len(signers) < threshold:
        raise QuorumError(f"{len(signers)} valid signature(s), threshold is {threshold}")
    return signers


def select_quorum(
    digest: bytes,
    candidates: Sequence[bytes],
    attesters: Sequence[bytes],
    threshold: int,
) -> list[tuple[bytes, bytes]]:
    """The first ``threshold`` valid signatures of distinct attesters among ``candidates``, as
    ``(signer, signature)`` sorted by signer (the order the Gateway checks).

    For collecting from an untrusted store: unlike ``verify_attestation`` it skips what does
    not count (malformed, high-s, a stranger, a repeat) instead of refusing the whole set, and
    recovers each signature at most once, stopping as soon as the quorum is complete. Raises
    ``QuorumError`` when fewer than ``threshold`` count (or the threshold is unsafe)."""
    members = set(attesters)
    if len(members) != len(attesters) or any(len(a) != 20 for a in members):
        raise QuorumError("attester set must hold distinct 20-byte addresses")
    check_threshold(threshold, len(members))
    signed_hash = eth_signed_message_hash(digest)
    chosen: dict[bytes, bytes] = {}
    for signature in candidates:
        try:
            signer = recover_signer(signed_hash, signature)
        except SignatureError:
            continue
        if signer in members and signer not in chosen:
            chosen[signer] = signature
            if len(chosen) == threshold:
                return sorted(chosen.items())
    raise QuorumError(f"{len(chosen)} valid signature(s) of attesters, threshold is {threshold}")
