"""proofs.ethereum_lc's own SSZ (hash-tree-roots, branches, the decoder) against remerkleable,
the consensus specs' SSZ library, on mainnet and spec-test data and on generated values."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs.ethereum_lc import ChainSpec, decode_ssz
from proofs.ethereum_lc.codec import parse_bootstrap, parse_header, parse_update
from proofs.ethereum_lc.ssz import (
    ZERO_HASHES,
    is_valid_merkle_branch,
    is_valid_normalized_merkle_branch,
    merkleize,
)
from proofs.ethereum_lc.types import ExecutionPayloadHeader, default_committee_root
from tests.unit.proofs.ethereum_lc.lc_vectors import (
    SpecTestCase,
    finality_update_from,
    helios_bootstrap,
    helios_optimistic,
    helios_updates,
)
from tests.unit.proofs.ethereum_lc.reference_ssz import (
    BeaconBlockHeader,
    ExecutionPayloadHeaderCapella,
    ExecutionPayloadHeaderDeneb,
    from_json,
    light_client_types,
    sync_committee_type,
)

MAINNET = ChainSpec.mainnet()


def test_mainnet_header_roots_match_remerkleable() -> None:
    updates = helios_updates()
    headers: list[dict[str, Any]] = [helios_bootstrap()["data"]["header"]]
    for update in updates:
        headers += [update["data"]["attested_header"], update["data"]["finalized_header"]]
    for raw in headers:
        ours = parse_header(raw, "capella", MAINNET)
        assert ours.beacon_root == bytes(
            from_json(BeaconBlockHeader, raw["beacon"]).hash_tree_root()
        )
        execution = from_json(ExecutionPayloadHeaderCapella, raw["execution"])
        assert ours.execution_root == bytes(execution.hash_tree_root())


def test_mainnet_sync_committee_roots_match_remerkleable() -> None:
    reference = sync_committee_type(512)
    bootstrap = parse_bootstrap(helios_bootstrap(), MAINNET)
    expected = from_json(reference, helios_bootstrap()["data"]["current_sync_committee"])
    assert bootstrap.current_sync_committee.root == bytes(expected.hash_tree_root())
    for raw in helios_updates():
        update = parse_update(raw, MAINNET)
        assert update.next_sync_committee is not None
        expected = from_json(reference, raw["data"]["next_sync_committee"])
        assert update.next_sync_committee.root == bytes(expected.hash_tree_root())


def test_deneb_execution_roots_match_remerkleable() -> None:
    case = SpecTestCase("light_client_sync")
    raw = decode_ssz("LightClientBootstrap", "deneb", case.ssz("bootstrap"), case.spec)
    header = raw["data"]["header"]
    ours = parse_header(header, "deneb", case.spec)
    expected = from_json(ExecutionPayloadHeaderDeneb, header["execution"])
    assert ours.execution_root == bytes(expected.hash_tree_root())


def test_mainnet_ssz_round_trips_through_decode_ssz() -> None:
    types = light_client_types("capella", 512)
    cases = [("LightClientBootstrap", helios_bootstrap())]
    cases += [("LightClientUpdate", update) for update in helios_updates()]
    cases += [("LightClientOptimisticUpdate", helios_optimistic())]
    cases += [("LightClientFinalityUpdate", finality_update_from(helios_updates()[5]))]
    for kind, obj in cases:
        encoded = from_json(types[kind], obj["data"]).encode_bytes()
        assert decode_ssz(kind, "capella", encoded, MAINNET) == obj


_hash = st.binary(min_size=32, max_size=32)
_u64 = st.integers(0, 2**64 - 1)


@st.composite
def _execution_headers(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "parent_hash": draw(_hash),
        "fee_recipient": draw(st.binary(min_size=20, max_size=20)),
        "state_root": draw(_hash),
        "receipts_root": draw(_hash),
        "logs_bloom": draw(st.binary(min_size=256, max_size=256)),
        "prev_randao": draw(_hash),
        "block_number": draw(_u64),
        "gas_limit": draw(_u64),
        "gas_used": draw(_u64),
        "timestamp": draw(_u64),
        "extra_data": draw(st.binary(max_size=32)),
        "base_fee_per_gas": draw(st.integers(0, 2**256 - 1)),
        "block_hash": draw(_hash),
        "transactions_root": draw(_hash),
        "withdrawals_root": draw(_hash),
        "blob_gas_used": draw(_u64),
        "excess_blob_gas": draw(_u64),
    }


@settings(max_examples=60, deadline=None)
@given(_execution_headers())
def test_execution_header_roots_match_remerkleable(fields: dict[str, Any]) -> None:
    ours = ExecutionPayloadHeader(**fields)
    assert ours.hash_tree_root(deneb=True) == bytes(
        ExecutionPayloadHeaderDeneb(**fields).hash_tree_root()
    )
    capella = {k: v for k, v in fields.items() if k not in ("blob_gas_used", "excess_blob_gas")}
    assert ours.hash_tree_root(deneb=False) == bytes(
        ExecutionPayloadHeaderCapella(**capella).hash_tree_root()
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(_hash, max_size=40), st.integers(0, 24))
def test_merkleize_pads_like_a_full_tree(chunks: list[bytes], extra: int) -> None:
    limit = len(chunks) + extra
    width = 1 << max(limit - 1, 0).bit_length()
    padded = chunks + [bytes(32)] * (width - len(chunks))
    assert merkleize(chunks, limit=limit) == merkleize(padded)
    if not chunks:
        assert merkleize([], limit=limit) == ZERO_HASHES[max(limit - 1, 0).bit_length()]


@settings(max_examples=40, deadline=None)
@given(st.lists(_hash, min_size=1, max_size=64), st.data())
def test_every_leaf_branch_verifies_and_no_other(leaves: list[bytes], data: st.DataObject) -> None:
    depth = max(len(leaves) - 1, 0).bit_length()
    width = 1 << depth
    layers = [leaves + [bytes(32)] * (width - len(leaves))]
    while len(layers[-1]) > 1:
        level = layers[-1]
        layers.append([merkleize(level[i : i + 2]) for i in range(0, len(level), 2)])
    root = layers[-1][0]
    index = data.draw(st.integers(0, len(leaves) - 1))
    branch = [layers[level][(index >> level) ^ 1] for level in range(depth)]
    assert is_valid_merkle_branch(leaves[index], branch, depth, index, root)
    assert is_valid_normalized_merkle_branch(leaves[index], branch, width + index, root)
    # The same branch padded with a leading zero (Electra's normalization) still verifies;
    # padded with anything else, or cut short, it does not.
    assert is_valid_normalized_merkle_branch(
        leaves[index], [bytes(32), *branch], width + index, root
    )
    assert not is_valid_normalized_merkle_branch(
        leaves[index], [b"\x01" * 32, *branch], width + index, root
    )
    if depth:
        assert not is_valid_normalized_merkle_branch(leaves[index], branch[1:], width + index, root)
        wrong = data.draw(st.integers(0, width - 1).filter(lambda i: i != index))
        if leaves[index] != layers[0][wrong]:
            assert not is_valid_merkle_branch(leaves[index], branch, depth, wrong, root)


@pytest.mark.parametrize("size", [32, 512])
def test_default_committee_root_matches_remerkleable(size: int) -> None:
    assert default_committee_root(size) == bytes(sync_committee_type(size)().hash_tree_root())
