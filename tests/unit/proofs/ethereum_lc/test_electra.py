"""Electra, on a chain the tests build (no Electra vectors are shipped): the deeper state
gindices (finalized root 169, committees 86 and 87) and branch depths, the fork version the
committee signs with, and the Deneb-to-Electra transition."""

from __future__ import annotations

from typing import Any

import pytest

from proofs.ethereum_lc import (
    ChainSpec,
    InvalidBootstrap,
    InvalidFinalityProof,
    InvalidNextSyncCommitteeProof,
    InvalidSignature,
    LightClientStore,
    decode_ssz,
)
from tests.unit.proofs.ethereum_lc.chain_builder import (
    COMMITTEE_SIZE,
    GENESIS_VALIDATORS_ROOT,
    INFINITY_PUBKEY,
    TestChain,
    committee,
    config,
    gindices,
)
from tests.unit.proofs.ethereum_lc.reference_ssz import from_json, light_client_types

ELECTRA = TestChain(config(electra_epoch=0))
# Electra from epoch 2 (slot 16): slots 0..15 are Deneb.
TRANSITION = TestChain(config(electra_epoch=2))


def _spec(chain: TestChain) -> ChainSpec:
    return ChainSpec.minimal(chain.config, genesis_validators_root=GENESIS_VALIDATORS_ROOT)


def _electra_store() -> LightClientStore:
    bootstrap, root = ELECTRA.bootstrap(10, committee(0), committee(1))
    return LightClientStore.from_bootstrap(bootstrap, root, _spec(ELECTRA))


def _electra_update(**changes: Any) -> tuple[dict[str, Any], Any, Any]:
    arguments: dict[str, Any] = {
        "attested_slot": 20,
        "finalized_slot": 16,
        "signature_slot": 21,
        "signers": committee(0),
        "current": committee(0),
        "next_committee": committee(1),
        "participation": [i % 16 != 3 for i in range(COMMITTEE_SIZE)],  # 30 of 32
    }
    arguments.update(changes)
    return ELECTRA.update(**arguments)


def test_state_shapes_give_the_specs_gindices() -> None:
    assert gindices("deneb") == {"current": 54, "next": 55, "finalized": 105}
    assert gindices("electra") == {"current": 86, "next": 87, "finalized": 169}
    spec = _spec(ELECTRA)
    assert spec.finalized_root_gindex_at_slot(0) == 169
    assert spec.current_sync_committee_gindex_at_slot(0) == 86
    assert spec.next_sync_committee_gindex_at_slot(0) == 87


def test_electra_bootstrap_and_update_are_followed() -> None:
    store = _electra_store()
    assert store.finalized_header.slot == 10
    update, attested, finalized = _electra_update()
    assert len(update["data"]["finality_branch"]) == 7
    assert len(update["data"]["next_sync_committee_branch"]) == 6
    store.process_update(update, 21)
    assert store.finalized_header.slot == 16
    assert store.finalized_header.beacon_root == finalized.root
    assert store.optimistic_header.beacon_root == attested.root
    execution = store.finalized_header.execution
    assert execution is not None
    assert execution.block_hash == finalized.block_hash
    assert execution.block_number == 1016
    assert execution.blob_gas_used == 131072
    assert store.finalized_header.execution_root == bytes(
        finalized.header.execution.hash_tree_root()
    )
    assert store.next_sync_committee is not None
    assert store.next_sync_committee.pubkeys == committee(1).pubkeys


def test_electra_ssz_decodes_to_the_same_json() -> None:
    bootstrap, root = ELECTRA.bootstrap(10, committee(0), committee(1))
    update, _, _ = _electra_update()
    types = light_client_types("electra", COMMITTEE_SIZE)
    spec = _spec(ELECTRA)
    for kind, obj in (("LightClientBootstrap", bootstrap), ("LightClientUpdate", update)):
        encoded = from_json(types[kind], obj["data"]).encode_bytes()
        assert decode_ssz(kind, "electra", encoded, spec) == obj
    store = LightClientStore.from_bootstrap(
        decode_ssz(
            "LightClientBootstrap",
            "electra",
            from_json(types["LightClientBootstrap"], bootstrap["data"]).encode_bytes(),
            spec,
        ),
        root,
        spec,
    )
    store.process_update(update, 21)
    assert store.finalized_header.slot == 16


def test_electra_bootstrap_with_a_deneb_shaped_branch_is_refused() -> None:
    spec = _spec(ELECTRA)
    # The committee proven in a 28-field (Deneb) state: gindex 54, a 5-node branch.
    bootstrap, root = ELECTRA.bootstrap(
        10, committee(0), committee(1), state_fork="deneb", data_fork="deneb"
    )
    with pytest.raises(InvalidBootstrap, match="gindex 86"):
        LightClientStore.from_bootstrap(bootstrap, root, spec)
    # The same branch zero-padded to Electra's length does not stand in for a 6-deep one.
    bootstrap, root = ELECTRA.bootstrap(
        10, committee(0), committee(1), state_fork="deneb", pad_branch=bytes(32)
    )
    with pytest.raises(InvalidBootstrap, match="gindex 86"):
        LightClientStore.from_bootstrap(bootstrap, root, spec)
    # Under a Deneb schedule the Deneb-shaped one is right.
    deneb_chain = TestChain(config(electra_epoch=2**64 - 1))
    bootstrap, root = deneb_chain.bootstrap(10, committee(0), committee(1))
    store = LightClientStore.from_bootstrap(bootstrap, root, _spec(deneb_chain))
    assert store.finalized_header.slot == 10


def test_electra_update_with_deneb_shaped_branches_is_refused() -> None:
    store = _electra_store()
    update, _, _ = _electra_update(state_fork="deneb", pad_branches=bytes(32))
    with pytest.raises(InvalidFinalityProof, match="gindex 169"):
        store.copy().process_update(update, 21)
    # Only the committee branch Deneb-shaped: the finality branch passes, this one fails.
    good, _, _ = _electra_update()
    good["data"]["next_sync_committee_branch"] = update["data"]["next_sync_committee_branch"]
    with pytest.raises(InvalidNextSyncCommitteeProof, match="gindex 87"):
        store.copy().process_update(good, 21)


def test_signature_binds_the_electra_fork_version_and_the_chain() -> None:
    store = _electra_store()
    deneb_version = TRANSITION.version_at(0)
    update, _, _ = _electra_update(sign_version=deneb_version)
    with pytest.raises(InvalidSignature, match="electra fork version 0x05000001"):
        store.copy().process_update(update, 21)
    update, _, _ = _electra_update(genesis_validators_root=bytes(32))
    with pytest.raises(InvalidSignature):
        store.copy().process_update(update, 21)
    update, _, _ = _electra_update(signers=committee(7))
    with pytest.raises(InvalidSignature):
        store.copy().process_update(update, 21)


def test_infinity_key_in_the_committee_is_refused() -> None:
    weak = committee(3, infinity_at=5)
    assert weak.pubkeys[5] == INFINITY_PUBKEY
    bootstrap, root = ELECTRA.bootstrap(10, weak, committee(1))
    store = LightClientStore.from_bootstrap(bootstrap, root, _spec(ELECTRA))
    update, _, _ = _electra_update(signers=weak, current=weak)
    with pytest.raises(InvalidSignature, match="key 5 is the point at infinity"):
        store.process_update(update, 21)


# --------------------------------------------------------------- across the Electra fork


def _transition_store() -> LightClientStore:
    bootstrap, root = TRANSITION.bootstrap(9, committee(0), committee(1))
    assert bootstrap["version"] == "deneb"
    return LightClientStore.from_bootstrap(bootstrap, root, _spec(TRANSITION))


def _last_deneb_update(**changes: Any) -> dict[str, Any]:
    # Attested in the last Deneb slot, signed in the first Electra slot: the committee signs
    # the previous slot's block with the version of the fork at that slot, Deneb's.
    arguments: dict[str, Any] = {
        "attested_slot": 15,
        "finalized_slot": 12,
        "signature_slot": 16,
        "signers": committee(0),
        "current": committee(0),
        "next_committee": committee(1),
    }
    arguments.update(changes)
    update, _, _ = TRANSITION.update(**arguments)
    return update


def test_store_follows_the_chain_across_the_electra_fork() -> None:
    store = _transition_store()
    update = _last_deneb_update()
    assert update["version"] == "deneb"
    assert TRANSITION.version_at(15) != TRANSITION.version_at(16)
    store.process_update(update, 16)
    assert store.finalized_header.slot == 12
    electra, attested, finalized = TRANSITION.update(
        attested_slot=30,
        finalized_slot=24,
        signature_slot=31,
        signers=committee(0),
        current=committee(0),
        next_committee=committee(1),
    )
    assert electra["version"] == "electra"
    store.process_update(electra, 31)
    assert store.finalized_header.beacon_root == finalized.root
    assert store.optimistic_header.beacon_root == attested.root


def test_signature_at_the_fork_boundary_uses_the_previous_slots_fork() -> None:
    store = _transition_store()
    electra_version = TRANSITION.version_at(16)
    with pytest.raises(InvalidSignature, match="deneb fork version"):
        store.copy().process_update(_last_deneb_update(sign_version=electra_version), 16)
    store.process_update(_last_deneb_update(), 16)


def test_pre_electra_update_in_electra_form_uses_normalized_branches() -> None:
    # An Electra store may hold Deneb data upgraded to Electra's containers: the shorter
    # branches padded at the front with zero hashes, which must stay zero.
    upgraded = _last_deneb_update(data_fork="electra", pad_branches=bytes(32))
    assert len(upgraded["data"]["finality_branch"]) == 7
    store = _transition_store()
    store.copy().process_update(upgraded, 16)
    tampered = _last_deneb_update(data_fork="electra", pad_branches=b"\x01" + bytes(31))
    with pytest.raises(InvalidFinalityProof):
        store.copy().process_update(tampered, 16)
