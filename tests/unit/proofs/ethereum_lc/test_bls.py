"""The BLS boundary: what PyblstBackend refuses that the bindings would accept, and py_ecc (a
pure-Python implementation of the same ciphersuite) agreeing with it on mainnet data."""

from __future__ import annotations

import hashlib

import pytest
from py_ecc.bls import G2ProofOfPossession
from py_ecc.bls.g2_primitives import G2_to_signature
from py_ecc.bls.hash_to_curve import hash_to_G2

from proofs.ethereum_lc import (
    DOMAIN_SYNC_COMMITTEE,
    ChainSpec,
    InvalidSignature,
    PyblstBackend,
    compute_domain,
    compute_signing_root,
    default_backend,
)
from proofs.ethereum_lc.bls import DST
from proofs.ethereum_lc.codec import parse_bootstrap, parse_update
from tests.unit.proofs.ethereum_lc.chain_builder import INFINITY_PUBKEY, committee
from tests.unit.proofs.ethereum_lc.lc_vectors import helios_bootstrap, helios_updates

MESSAGE = hashlib.sha256(b"attested block").digest()


def test_hash_to_g2_matches_py_ecc() -> None:
    import pyblst  # noqa: PLC0415 (the binding under test, not the client's API)

    ours = bytes(pyblst.BlstP2Element.hash_to_group(MESSAGE, DST).compress())
    assert ours == G2_to_signature(hash_to_G2(MESSAGE, DST, hashlib.sha256))


def test_aggregate_of_participants_verifies_and_others_do_not() -> None:
    backend = PyblstBackend()
    members = committee(0)
    prepared = backend.prepare_committee(members.pubkeys)
    few = [i < 5 for i in range(32)]  # below half: summed directly
    most = [i != 7 for i in range(32)]  # above half: total minus the absentee
    for bits in (few, most):
        signature = members.sign(MESSAGE, bits)
        assert backend.fast_aggregate_verify(prepared, bits, MESSAGE, signature)
        other = [not b if i == 0 else b for i, b in enumerate(bits)]
        assert not backend.fast_aggregate_verify(prepared, other, MESSAGE, signature)
        assert not backend.fast_aggregate_verify(prepared, bits, MESSAGE[::-1], signature)


def test_identity_keys_signatures_and_empty_sets_are_refused() -> None:
    backend = default_backend()
    members = committee(0)
    with pytest.raises(InvalidSignature, match="key 1 is the point at infinity"):
        backend.prepare_committee([members.pubkeys[0], INFINITY_PUBKEY])
    with pytest.raises(InvalidSignature, match=r"key 0 .* is not a G1 point"):
        backend.prepare_committee([bytes(48)])
    with pytest.raises(InvalidSignature, match="47 bytes"):
        backend.prepare_committee([members.pubkeys[0][:47]])
    prepared = backend.prepare_committee(members.pubkeys)
    bits = [True] * 32
    with pytest.raises(InvalidSignature, match="point at infinity"):
        backend.fast_aggregate_verify(prepared, bits, MESSAGE, b"\xc0" + bytes(95))
    with pytest.raises(InvalidSignature, match="not a G2 point"):
        backend.fast_aggregate_verify(prepared, bits, MESSAGE, bytes(96))
    with pytest.raises(InvalidSignature, match="95 bytes"):
        backend.fast_aggregate_verify(prepared, bits, MESSAGE, bytes(95))
    signature = members.sign(MESSAGE, bits)
    with pytest.raises(InvalidSignature, match="no sync committee member"):
        backend.fast_aggregate_verify(prepared, [False] * 32, MESSAGE, signature)


def test_keys_that_cancel_out_make_no_aggregate() -> None:
    # Rogue keys (k and -k) sum to the identity; KeyValidate of the aggregate refuses it.
    import pyblst  # noqa: PLC0415

    backend = PyblstBackend()
    key = pyblst.BlstP1Element.uncompress(committee(0).pubkeys[0])
    pair = [committee(0).pubkeys[0], bytes((-key).compress())]
    prepared = backend.prepare_committee(pair)
    signature = committee(0).sign(MESSAGE, [True] * 32)
    assert not backend.fast_aggregate_verify(prepared, [True, True], MESSAGE, signature)


@pytest.mark.slow
def test_py_ecc_verifies_the_mainnet_aggregate_pyblst_verifies() -> None:
    spec = ChainSpec.mainnet()
    committee_keys = parse_bootstrap(helios_bootstrap(), spec).current_sync_committee.pubkeys
    update = parse_update(helios_updates()[0], spec)
    fork = spec.signature_fork(update.signature_slot)
    assert fork.name == "capella"
    domain = compute_domain(DOMAIN_SYNC_COMMITTEE, fork.version, spec.genesis_validators_root)
    message = compute_signing_root(update.attested_header.beacon_root, domain)
    backend = PyblstBackend()
    prepared = backend.prepare_committee(committee_keys)
    bits = update.sync_committee_bits
    signature = update.sync_committee_signature
    assert backend.fast_aggregate_verify(prepared, bits, message, signature)
    participants = [key for key, bit in zip(committee_keys, bits, strict=True) if bit]
    assert len(participants) == 511
    assert G2ProofOfPossession.FastAggregateVerify(participants, message, signature)
