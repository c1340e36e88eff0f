"""The GRANDPA case of bench/proofs.py: the Avail ancestry justification and its authority set
(decoded the way the tests decode it, so that both measure the same input)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from proofs.substrate import verify_grandpa_justification
from tests.unit.proofs.substrate.test_grandpa import _avail


def build(vectors: Path) -> Callable[[], object]:
    del vectors  # the test helpers find ../shared/vectors themselves
    justification, set_id, authorities = _avail("ancestry.json")
    return lambda: verify_grandpa_justification(
        justification, set_id=set_id, authorities=authorities
    )
