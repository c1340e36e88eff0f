"""Keep the fuzz targets alive: a short hypothesis run of each in the normal test suite."""

from __future__ import annotations

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs.ethereum import encode_header
from tests.fuzz.targets import TARGETS
from tests.unit.proofs.eth_vectors import load


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_survives_random_input(name: str) -> None:
    @settings(max_examples=300, deadline=None, database=None)
    @given(st.binary(max_size=600))
    def run(data: bytes) -> None:
        TARGETS[name](data)

    run()


def test_header_target_round_trips_a_real_header() -> None:
    encoded = encode_header(load("helios_rpc/block.json"))
    TARGETS["rlp_header"](encoded)


@settings(max_examples=300, deadline=None)
@given(fields=st.lists(st.binary(max_size=40), min_size=15, max_size=21))
def test_header_target_on_header_shaped_rlp(fields: list[bytes]) -> None:
    TARGETS["rlp_header"](rlp.encode(fields))
