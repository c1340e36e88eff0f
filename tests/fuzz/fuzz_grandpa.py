"""Fuzz target: the SCALE GRANDPA justification decoder and the verifier behind it.

The property: whatever bytes arrive, ``fuzz_once`` returns or raises ``ProofError``. Any other
exception is a crash, because the relay core treats only ProofError as "evidence refused" and
anything else would take a worker down on a malicious RPC answer.

    python tests/fuzz/fuzz_grandpa.py [corpus_dir ...]   # with atheris installed (libFuzzer flags)
    python tests/fuzz/fuzz_grandpa.py                    # without it: a hypothesis campaign

The unit tests drive ``fuzz_once`` with hypothesis too, from random bytes and from mutations of
a valid justification signed by ``AUTHORITY_SEEDS``.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys

from nacl.signing import SigningKey

from proofs import ProofError
from proofs.substrate import decode_justification, verify_grandpa_justification

# Seeds of the authority set the target verifies against; tests sign seed inputs with them so
# that mutations reach the ancestry walk and the signature checks, not just the decoder.
AUTHORITY_SEEDS = tuple(
    hashlib.blake2b(b"\x00" + i.to_bytes(4, "little"), digest_size=32).digest() for i in range(4)
)
SET_ID = 7
AUTHORITIES = tuple((bytes(SigningKey(seed).verify_key), 1) for seed in AUTHORITY_SEEDS)


def fuzz_once(data: bytes) -> None:
    """Decode and verify one input; only ProofError may escape."""
    justification = decode_justification(data)
    verify_grandpa_justification(justification, set_id=SET_ID, authorities=AUTHORITIES)


def _one_input(data: bytes) -> None:
    with contextlib.suppress(ProofError):
        fuzz_once(data)


def _hypothesis_campaign(examples: int) -> None:
    from hypothesis import HealthCheck, given, settings  # noqa: PLC0415 -- only without atheris
    from hypothesis import strategies as st  # noqa: PLC0415

    @settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(st.binary(max_size=4096))
    def campaign(data: bytes) -> None:
        _one_input(data)

    campaign()


def main() -> None:
    try:
        import atheris  # type: ignore[import-untyped]  # noqa: PLC0415 -- optional
    except ImportError:
        _hypothesis_campaign(examples=20_000)
        return
    atheris.Setup(sys.argv, _one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
