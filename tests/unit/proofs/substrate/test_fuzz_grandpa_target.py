"""tests/fuzz/fuzz_grandpa.py: the target itself, driven by hypothesis from random bytes and from
mutations of a justification that passes."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofs import ProofError
from tests.fuzz.fuzz_grandpa import AUTHORITIES, SET_ID, fuzz_once
from tests.unit.proofs.substrate.grandpa_builders import signed_fork

_SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _seed() -> bytes:
    fork = signed_fork(set_id=SET_ID)
    assert fork.authorities == list(AUTHORITIES)
    return fork.encoded()


def test_fuzz_target_accepts_its_valid_seed() -> None:
    fuzz_once(_seed())


@_SETTINGS
@given(st.binary(max_size=1024))
def test_fuzz_target_raises_only_proof_errors_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(ProofError):
        fuzz_once(data)


@_SETTINGS
@given(st.data())
def test_fuzz_target_raises_only_proof_errors_on_mutated_seeds(data: st.DataObject) -> None:
    seed = bytearray(_seed())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(seed)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and position < len(seed):
            seed[position] ^= data.draw(st.integers(1, 255))
        elif action == "insert":
            seed[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del seed[position : position + data.draw(st.integers(1, 8))]
        else:
            del seed[position:]
    # Whether a mutation is refused is test_grandpa's business; here only the error type is.
    with contextlib.suppress(ProofError):
        fuzz_once(bytes(seed))
