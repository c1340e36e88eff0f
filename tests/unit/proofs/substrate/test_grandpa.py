"""proofs.substrate.grandpa: Avail's real precommits and ancestry justifications, and a signed
synthetic fork to forge against."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofs import MalformedEncodingError, ProofError, QuorumError, SignatureError
from proofs.hashing import blake2_256
from proofs.substrate import (
    AncestryHeader,
    FinalizedBlock,
    GrandpaJustification,
    SignedPrecommit,
    decode_justification,
    verify_grandpa_justification,
    verify_precommit_signature,
)
from tests.unit.proofs.substrate.grandpa_builders import (
    SignedFork,
    avail_ancestry,
    avail_authorities,
    encode_header,
    encode_justification,
    hx,
    load_substrate_vector,
    sign_vote,
    signed_fork,
    signing_keys,
)
from tests.unit.proofs.substrate.ss58 import ss58_decode

# ---------------------------------------------------------------- Avail precommit signatures


def _precommit_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = load_substrate_vector(
        "grandpa_avail/precommit_signature_cases.json"
    )["cases"]
    assert len(cases) == 3
    return cases


def _check_case(case: dict[str, Any], **changes: int) -> None:
    fields = {
        "target_number": case["target_number"],
        "round_number": case["round"],
        "set_id": case["set_id"],
    }
    fields.update(changes)
    verify_precommit_signature(
        target_hash=hx(case["target_hash"]),
        signature=hx(case["signature"]),
        authority_id=hx(case["authority_id"]),
        **fields,
    )


@pytest.mark.parametrize("index", range(3))
def test_avail_precommit_signature_verifies(index: int) -> None:
    _check_case(_precommit_cases()[index])


@pytest.mark.parametrize("index", range(3))
@pytest.mark.parametrize("field", ["set_id", "round_number", "target_number"])
def test_avail_precommit_signature_is_bound_to_set_round_and_number(index: int, field: str) -> None:
    case = _precommit_cases()[index]
    current = {"set_id": case["set_id"], "round_number": case["round"]}.get(
        field, case["target_number"]
    )
    with pytest.raises(SignatureError):
        _check_case(case, **{field: current + 1})


def test_avail_precommit_signature_is_bound_to_the_target_hash() -> None:
    case = dict(_precommit_cases()[0])
    case["target_hash"] = blake2_256(b"another block").hex()
    with pytest.raises(SignatureError):
        _check_case(case)


def test_precommit_with_a_malformed_signature_is_refused() -> None:
    case = dict(_precommit_cases()[0])
    case["signature"] = case["signature"][:-2]
    with pytest.raises(SignatureError):
        _check_case(case)


# ---------------------------------------------------------------- Avail ancestry justifications


def _avail_justification(vector: dict[str, Any]) -> GrandpaJustification:
    raw = vector["justification"]
    return GrandpaJustification(
        round=raw["round"],
        target_hash=hx(raw["commit"]["target_hash"]),
        target_number=raw["commit"]["target_number"],
        precommits=tuple(
            SignedPrecommit(
                target_hash=hx(p["precommit"]["target_hash"]),
                target_number=p["precommit"]["target_number"],
                signature=hx(p["signature"]),
                authority_id=ss58_decode(p["id"]),
            )
            for p in raw["commit"]["precommits"]
        ),
        votes_ancestries=tuple(avail_ancestry(h) for h in raw["votes_ancestries"]),
    )


def _avail(name: str) -> tuple[GrandpaJustification, int, list[tuple[bytes, int]]]:
    vector = load_substrate_vector(f"grandpa_avail/{name}")
    return (
        _avail_justification(vector),
        vector["validator_set"]["set_id"],
        avail_authorities(vector),
    )


def test_avail_header_encoding_reproduces_the_parent_links() -> None:
    justification, _, _ = _avail("ancestry.json")
    hashes = {h.hash for h in justification.votes_ancestries}
    linked = {h.parent_hash for h in justification.votes_ancestries} - {justification.target_hash}
    # Every parent link except the commit target points at another ancestry header, and
    # every precommit target is one of them: the encoding is Avail's, byte for byte.
    assert linked <= hashes
    assert {p.target_hash for p in justification.precommits} <= hashes


def test_avail_ancestry_justification_is_valid() -> None:
    justification, set_id, authorities = _avail("ancestry.json")
    finalized = verify_grandpa_justification(justification, set_id=set_id, authorities=authorities)
    assert finalized == FinalizedBlock(hash=justification.target_hash, number=1)


def test_avail_justification_with_a_missing_ancestry_link_is_still_valid() -> None:
    justification, set_id, authorities = _avail("ancestry_missing_link_works.json")
    assert len(justification.precommits) == 4
    verify_grandpa_justification(justification, set_id=set_id, authorities=authorities)


def test_avail_missing_link_vote_does_not_count() -> None:
    # Three of the four votes link; dropping one more linking header must leave too little.
    justification, set_id, authorities = _avail("ancestry_missing_link_works.json")
    by_hash = {h.hash: h for h in justification.votes_ancestries}
    linked_target = justification.precommits[0].target_hash
    ancestries = tuple(h for h in justification.votes_ancestries if h.hash != linked_target)
    assert linked_target in by_hash
    with pytest.raises(QuorumError):
        verify_grandpa_justification(
            dataclasses.replace(justification, votes_ancestries=ancestries),
            set_id=set_id,
            authorities=authorities,
        )


@pytest.mark.parametrize("name", ["ancestry.json", "ancestry_missing_link_works.json"])
def test_avail_justification_under_another_set_id_is_refused(name: str) -> None:
    justification, set_id, authorities = _avail(name)
    with pytest.raises(SignatureError):
        verify_grandpa_justification(justification, set_id=set_id + 1, authorities=authorities)


@pytest.mark.parametrize("name", ["ancestry.json", "ancestry_missing_link_works.json"])
def test_avail_justification_for_another_round_is_refused(name: str) -> None:
    justification, set_id, authorities = _avail(name)
    with pytest.raises(SignatureError):
        verify_grandpa_justification(
            dataclasses.replace(justification, round=justification.round + 1),
            set_id=set_id,
            authorities=authorities,
        )


def test_avail_justification_against_another_authority_set_is_refused() -> None:
    justification, set_id, _ = _avail("ancestry.json")
    strangers = [(bytes(k.verify_key), 1) for k in signing_keys(4, salt=9)]
    with pytest.raises(SignatureError):
        verify_grandpa_justification(justification, set_id=set_id, authorities=strangers)


# ---------------------------------------------------------------- the signed synthetic fork


def _verify(fork: SignedFork, encoded: bytes | None = None) -> FinalizedBlock:
    justification = decode_justification(fork.encoded() if encoded is None else encoded)
    return verify_grandpa_justification(
        justification, set_id=fork.set_id, authorities=fork.authorities
    )


def test_standard_justification_decodes_and_verifies() -> None:
    fork = signed_fork()
    justification = decode_justification(fork.encoded())
    assert justification.round == fork.round_number
    assert [h.hash for h in justification.votes_ancestries] == [blake2_256(h) for h in fork.headers]
    assert _verify(fork) == FinalizedBlock(hash=fork.target_hash, number=100)


def test_voter_outside_the_authority_set_is_refused() -> None:
    fork = signed_fork()
    outsider = signing_keys(1, salt=3)[0]
    votes = [*fork.votes, sign_vote(outsider, fork.target_hash, 100, fork.round_number, 7)]
    with pytest.raises(SignatureError):
        _verify(dataclasses.replace(fork, votes=votes))


def test_duplicate_voter_is_refused_rather_than_counted_once() -> None:
    fork = signed_fork()
    again = sign_vote(fork.keys[0], blake2_256(fork.headers[0]), 101, 42, 7)
    with pytest.raises(SignatureError):
        _verify(dataclasses.replace(fork, votes=[*fork.votes, again]))
    with pytest.raises(SignatureError):
        _verify(dataclasses.replace(fork, votes=[*fork.votes, fork.votes[0]]))


def test_invalid_signature_is_refused() -> None:
    fork = signed_fork()
    bad = dataclasses.replace(fork.votes[1], signature=bytes(64))
    with pytest.raises(SignatureError):
        _verify(dataclasses.replace(fork, votes=[fork.votes[0], bad, fork.votes[2]]))


def test_extra_vote_with_an_invalid_signature_is_refused_even_if_not_needed() -> None:
    fork = signed_fork()
    spare = sign_vote(fork.keys[3], fork.target_hash, 100, fork.round_number, fork.set_id)
    spare = dataclasses.replace(spare, signature=spare.signature[::-1])
    with pytest.raises(SignatureError):
        _verify(dataclasses.replace(fork, votes=[*fork.votes, spare]))


def test_two_thirds_exactly_is_not_a_quorum() -> None:
    fork = signed_fork()
    weights = [(key, 2 if i == 0 else 1) for i, (key, _) in enumerate(fork.authorities[:2])]
    only_heavy = dataclasses.replace(fork, authorities=weights, votes=fork.votes[:1])
    with pytest.raises(QuorumError):
        _verify(only_heavy)  # 2 of 3: 6 > 6 is false
    heavier = [(key, 3 if i == 0 else 1) for i, (key, _) in enumerate(fork.authorities[:2])]
    _verify(dataclasses.replace(only_heavy, authorities=heavier))  # 3 of 4: 9 > 8


def test_too_few_votes_fail_on_weight_before_any_signature_is_checked() -> None:
    fork = signed_fork()
    forged = [dataclasses.replace(v, signature=bytes(64)) for v in fork.votes[:2]]
    with pytest.raises(QuorumError):
        _verify(dataclasses.replace(fork, votes=forged))


def test_vote_for_a_block_off_the_target_chain_does_not_count() -> None:
    fork = signed_fork()
    sibling = encode_header(blake2_256(b"not block 100"), 101)
    stray = sign_vote(fork.keys[2], blake2_256(sibling), 101, 42, 7)
    fork = dataclasses.replace(fork, headers=[*fork.headers, sibling])
    with pytest.raises(QuorumError):
        _verify(dataclasses.replace(fork, votes=[*fork.votes[:2], stray]))
    # ...and a fourth, linking vote makes up for it without the stray one raising.
    fourth = sign_vote(fork.keys[3], fork.target_hash, 100, 42, 7)
    _verify(dataclasses.replace(fork, votes=[*fork.votes[:2], stray, fourth]))


def test_vote_below_the_target_or_with_a_wrong_number_does_not_count() -> None:
    fork = signed_fork()
    parent = encode_header(b"\x00" * 32, 99)
    low = sign_vote(fork.keys[2], blake2_256(parent), 99, 42, 7)
    wrong_number = sign_vote(fork.keys[2], blake2_256(fork.headers[1]), 103, 42, 7)
    for vote in (low, wrong_number):
        with pytest.raises(QuorumError):
            _verify(dataclasses.replace(fork, votes=[*fork.votes[:2], vote]))


def test_vote_without_its_ancestry_header_does_not_count() -> None:
    fork = signed_fork()
    with pytest.raises(QuorumError):
        _verify(dataclasses.replace(fork, headers=fork.headers[:1]))


def test_changed_set_id_or_round_is_refused() -> None:
    fork = signed_fork()
    justification = decode_justification(fork.encoded())
    with pytest.raises(SignatureError):
        verify_grandpa_justification(
            justification, set_id=fork.set_id + 1, authorities=fork.authorities
        )
    with pytest.raises(SignatureError):
        _verify(dataclasses.replace(fork, round_number=fork.round_number + 1))


@pytest.mark.parametrize(
    "authorities",
    [
        [],
        [(b"\x01" * 32, 0)],
        [(b"\x01" * 32, 1), (b"\x01" * 32, 1)],
        [(b"\x01" * 31, 1)],
    ],
)
def test_unusable_authority_set_is_refused(authorities: list[tuple[bytes, int]]) -> None:
    fork = signed_fork()
    with pytest.raises(QuorumError):
        verify_grandpa_justification(
            decode_justification(fork.encoded()), set_id=fork.set_id, authorities=authorities
        )


def test_conflicting_ancestry_triples_are_refused() -> None:
    fork = signed_fork()
    justification = decode_justification(fork.encoded())
    first = justification.votes_ancestries[0]
    liar = AncestryHeader(hash=first.hash, parent_hash=b"\x00" * 32, number=first.number)
    with pytest.raises(MalformedEncodingError):
        verify_grandpa_justification(
            dataclasses.replace(
                justification, votes_ancestries=(*justification.votes_ancestries, liar)
            ),
            set_id=fork.set_id,
            authorities=fork.authorities,
        )


def test_truncated_or_padded_justification_is_refused() -> None:
    encoded = signed_fork().encoded()
    with pytest.raises(MalformedEncodingError):
        decode_justification(encoded[:-1])
    with pytest.raises(MalformedEncodingError):
        decode_justification(encoded + b"\x00")


_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(st.data())
def test_any_flipped_byte_in_a_minimal_justification_is_refused(data: st.DataObject) -> None:
    # Every byte of this justification is needed: three of four votes, each header on a path.
    fork = signed_fork()
    encoded = bytearray(fork.encoded())
    encoded[data.draw(st.integers(0, len(encoded) - 1))] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ProofError):
        _verify(fork, bytes(encoded))


@_SETTINGS
@given(st.binary(max_size=600))
def test_random_bytes_decode_as_a_justification_or_raise_malformed_encoding(data: bytes) -> None:
    with contextlib.suppress(MalformedEncodingError):
        decode_justification(data)


def test_justification_claiming_huge_vectors_is_refused_without_allocating() -> None:
    encoded = encode_justification(1, b"\x00" * 32, 1, [], [])
    huge = encoded[:44] + b"\xfe\xff\xff\xff" + encoded[45:]
    with pytest.raises(MalformedEncodingError):
        decode_justification(huge)
