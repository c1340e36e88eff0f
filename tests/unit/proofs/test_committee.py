"""proofs.committee: digest layout, EIP-191 signatures, quorum rules."""

from __future__ import annotations

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs import ProofError, QuorumError, SignatureError
from proofs.committee import (
    ATTESTATION_TYPEHASH,
    attestation_digest,
    check_threshold,
    select_quorum,
    verify_attestation,
)
from proofs.errors import MalformedEncodingError
from proofs.hashing import keccak256

KEYS = [bytes([i + 1]) * 32 for i in range(5)]
ACCOUNTS = [Account.from_key(k) for k in KEYS]
ATTESTERS = [bytes.fromhex(a.address[2:]) for a in ACCOUNTS]
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

GATEWAY = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
DIGEST = attestation_digest(31338, GATEWAY, 1000, b"\x11" * 32, b"\x22" * 32)


def sign(digest: bytes, who: int) -> bytes:
    signed = ACCOUNTS[who].sign_message(encode_defunct(primitive=digest))
    return bytes(signed.signature)


def test_digest_is_abi_encode_of_the_bound_fields() -> None:
    expected = keccak256(
        abi_encode(
            ["bytes32", "uint256", "address", "uint32", "bytes32", "bytes32"],
            [
                keccak256(b"relayer.attestation.v1"),
                31338,
                "0x" + GATEWAY.hex(),
                1000,
                b"\x11" * 32,
                b"\x22" * 32,
            ],
        )
    )
    assert expected == DIGEST
    assert keccak256(b"relayer.attestation.v1") == ATTESTATION_TYPEHASH


@pytest.mark.parametrize(
    "changed",
    [
        (31337, GATEWAY, 1000, b"\x11" * 32, b"\x22" * 32),
        (31338, b"\x00" * 20, 1000, b"\x11" * 32, b"\x22" * 32),
        (31338, GATEWAY, 1001, b"\x11" * 32, b"\x22" * 32),
        (31338, GATEWAY, 1000, b"\x12" * 32, b"\x22" * 32),
        (31338, GATEWAY, 1000, b"\x11" * 32, b"\x23" * 32),
    ],
)
def test_every_bound_field_changes_the_digest(
    changed: tuple[int, bytes, int, bytes, bytes],
) -> None:
    assert attestation_digest(*changed) != DIGEST


def test_digest_refuses_out_of_range_fields() -> None:
    with pytest.raises(ProofError):
        attestation_digest(31338, GATEWAY[:19], 1000, b"\x11" * 32, b"\x22" * 32)
    with pytest.raises(ProofError):
        attestation_digest(31338, GATEWAY, 2**32, b"\x11" * 32, b"\x22" * 32)
    with pytest.raises(ProofError):
        attestation_digest(-1, GATEWAY, 1, b"\x11" * 32, b"\x22" * 32)


def test_three_of_five_returns_the_signers() -> None:
    sigs = [sign(DIGEST, i) for i in (4, 0, 2)]
    assert verify_attestation(DIGEST, sigs, ATTESTERS, 3) == [ATTESTERS[i] for i in (4, 0, 2)]


def test_fewer_signatures_than_threshold_is_refused() -> None:
    with pytest.raises(QuorumError):
        verify_attestation(DIGEST, [sign(DIGEST, 0), sign(DIGEST, 1)], ATTESTERS, 3)


def test_duplicate_signer_is_refused() -> None:
    with pytest.raises(SignatureError, match="repeats"):
        verify_attestation(
            DIGEST, [sign(DIGEST, 0), sign(DIGEST, 0), sign(DIGEST, 1)], ATTESTERS, 3
        )


def test_unknown_signer_is_refused() -> None:
    stranger = Account.from_key(b"\x77" * 32)
    sig = bytes(stranger.sign_message(encode_defunct(primitive=DIGEST)).signature)
    with pytest.raises(SignatureError, match="not an attester"):
        verify_attestation(DIGEST, [sign(DIGEST, 0), sign(DIGEST, 1), sig], ATTESTERS, 3)


def test_signature_over_another_digest_does_not_count() -> None:
    other = attestation_digest(31338, GATEWAY, 1000, b"\x11" * 32, b"\x33" * 32)
    with pytest.raises(SignatureError):
        verify_attestation(DIGEST, [sign(other, 0), sign(DIGEST, 1), sign(DIGEST, 2)], ATTESTERS, 3)


def test_high_s_twin_of_a_valid_signature_is_refused() -> None:
    sig = sign(DIGEST, 0)
    s = int.from_bytes(sig[32:64], "big")
    twin = sig[:32] + (N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    with pytest.raises(SignatureError, match="low-s"):
        verify_attestation(DIGEST, [twin, sign(DIGEST, 1), sign(DIGEST, 2)], ATTESTERS, 3)


@pytest.mark.parametrize(("threshold", "size"), [(0, 5), (-1, 5), (2, 5), (2, 4), (1, 2), (6, 5)])
def test_unsafe_thresholds_are_refused(threshold: int, size: int) -> None:
    with pytest.raises(QuorumError):
        check_threshold(threshold, size)
    with pytest.raises(QuorumError):
        verify_attestation(DIGEST, [sign(DIGEST, i) for i in range(5)], ATTESTERS[:size], threshold)


def test_duplicate_attester_in_the_set_is_refused() -> None:
    with pytest.raises(QuorumError):
        verify_attestation(DIGEST, [sign(DIGEST, 0)], [ATTESTERS[0], ATTESTERS[0]], 2)


@settings(max_examples=600, deadline=None)
@given(
    which=st.integers(0, 2),
    byte=st.integers(0, 64),
    xor=st.integers(1, 255),
)
def test_any_flipped_signature_byte_is_refused(which: int, byte: int, xor: int) -> None:
    sigs = [bytearray(sign(DIGEST, i)) for i in range(3)]
    sigs[which][byte] ^= xor
    with pytest.raises(ProofError):
        verify_attestation(DIGEST, [bytes(s) for s in sigs], ATTESTERS, 3)


@settings(max_examples=300, deadline=None)
@given(sigs=st.lists(st.binary(min_size=0, max_size=70), max_size=4))
def test_garbage_signatures_raise_only_proof_error(sigs: list[bytes]) -> None:
    with pytest.raises(ProofError):
        verify_attestation(DIGEST, sigs, ATTESTERS, 3)


def test_select_quorum_skips_what_does_not_count_and_stops_at_the_threshold() -> None:
    stranger = Account.from_key(b"\x77" * 32)
    strange = bytes(stranger.sign_message(encode_defunct(primitive=DIGEST)).signature)
    candidates = [b"garbage", strange, sign(DIGEST, 3), sign(DIGEST, 3), sign(DIGEST, 1)]
    candidates.append(sign(DIGEST, 0))
    chosen = select_quorum(DIGEST, candidates, ATTESTERS, 3)
    assert [signer for signer, _ in chosen] == sorted([ATTESTERS[3], ATTESTERS[1], ATTESTERS[0]])
    assert verify_attestation(DIGEST, [s for _, s in chosen], ATTESTERS, 3)


def test_select_quorum_without_enough_valid_signatures_is_a_quorum_error() -> None:
    with pytest.raises(QuorumError):
        select_quorum(DIGEST, [sign(DIGEST, 0), sign(DIGEST, 0), b"x" * 65], ATTESTERS, 3)
    with pytest.raises(QuorumError):
        select_quorum(DIGEST, [sign(DIGEST, i) for i in range(5)], ATTESTERS, 2)  # unsafe


@settings(max_examples=300, deadline=None)
@given(sigs=st.lists(st.binary(min_size=0, max_size=70), max_size=5))
def test_select_quorum_on_garbage_raises_only_quorum_error(sigs: list[bytes]) -> None:
    with pytest.raises(QuorumError):
        select_quorum(DIGEST, sigs, ATTESTERS, 3)


def test_named_digest_binds_domain_name_origin_id_and_block() -> None:
    from proofs.committee import NAMED_ATTESTATION_TYPEHASH, named_attestation_digest  # noqa: PLC0415

    args = (3000, "dot-a", 1000, b"\x11" * 32, b"\x22" * 32)
    expected = keccak256(
        NAMED_ATTESTATION_TYPEHASH
        + (3000).to_bytes(32, "big")
        + keccak256(b"dot-a")
        + (1000).to_bytes(32, "big")
        + b"\x11" * 32
        + b"\x22" * 32
    )
    assert named_attestation_digest(*args) == expected
    # Each input moves the digest, and it never equals the contract form's.
    for changed in (
        (3001, "dot-a", 1000, b"\x11" * 32, b"\x22" * 32),
        (3000, "dot-b", 1000, b"\x11" * 32, b"\x22" * 32),
        (3000, "dot-a", 1001, b"\x11" * 32, b"\x22" * 32),
        (3000, "dot-a", 1000, b"\x12" * 32, b"\x22" * 32),
        (3000, "dot-a", 1000, b"\x11" * 32, b"\x23" * 32),
    ):
        assert named_attestation_digest(*changed) != expected
    with pytest.raises(MalformedEncodingError):
        named_attestation_digest(3000, "", 1000, b"\x11" * 32, b"\x22" * 32)
