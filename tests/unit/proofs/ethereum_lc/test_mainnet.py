"""proofs.ethereum_lc on mainnet data: helios' Capella bootstrap, six period updates and an
optimistic update, and every forgery helios' own tests make of them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proofs import HashMismatchError, ProofError, SignatureError
from proofs.ethereum_lc import (
    ChainSpec,
    InvalidBootstrap,
    InvalidFinalityProof,
    InvalidNextSyncCommitteeProof,
    InvalidSignature,
    InvalidUpdate,
    LightClientDecodeError,
    LightClientStore,
)
from tests.unit.proofs.ethereum_lc.lc_vectors import (
    HELIOS_CHECKPOINT,
    finality_update_from,
    helios_bootstrap,
    helios_optimistic,
    helios_updates,
    hx,
)

MAINNET = ChainSpec.mainnet()
# The optimistic update's signature slot: late enough for every vector, as a clock would be.
NOW = 7_109_432
ZERO_SIGNATURE = "0x" + "00" * 96
INFINITY_SIGNATURE = "0xc0" + "00" * 95


@pytest.fixture(scope="module")
def stores() -> list[LightClientStore]:
    """The store after the bootstrap, then after each of the six updates (index i+1)."""
    store = LightClientStore.from_bootstrap(helios_bootstrap(), HELIOS_CHECKPOINT, MAINNET)
    history = [store.copy()]
    for update in helios_updates():
        store.process_update(update, NOW)
        history.append(store.copy())
    return history


def _slot(update: dict[str, Any], header: str) -> int:
    return int(update["data"][header]["beacon"]["slot"])


def test_bootstrap_is_trusted_by_its_block_root(stores: list[LightClientStore]) -> None:
    store = stores[0]
    header = store.finalized_header
    assert header.beacon_root == HELIOS_CHECKPOINT
    assert header.slot == 7_069_376
    assert store.period == 862
    assert store.optimistic_header == header
    assert store.next_sync_committee is None
    assert header.execution is not None
    assert header.execution.block_number == 17_883_333
    assert header.execution.block_hash == hx(
        "0xd131b92cb98455882c2c7b4ebf55dc6d02cc47e0e55a4d9570dea498affd6e74"
    )


def test_six_period_updates_apply_in_order(stores: list[LightClientStore]) -> None:
    updates = helios_updates()
    # updates[0] attests a block before the checkpoint: it only supplies period 863's committee.
    first = stores[1]
    assert first.finalized_header.slot == 7_069_376
    assert first.next_sync_committee is not None
    assert first.next_sync_committee.pubkeys[0] == hx(
        updates[0]["data"]["next_sync_committee"]["pubkeys"][0]
    )
    for index, update in enumerate(updates[1:], start=2):
        store = stores[index]
        assert store.finalized_header.slot == _slot(update, "finalized_header")
        assert store.optimistic_header.slot == _slot(update, "attested_header")
        assert store.period == 862 + index - 1
        finalized = update["data"]["finalized_header"]
        assert store.finalized_header.execution is not None
        assert store.finalized_header.execution.block_hash == hx(
            finalized["execution"]["block_hash"]
        )
        assert store.finalized_header.beacon.state_root == hx(finalized["beacon"]["state_root"])
    assert stores[-1].finalized_header.execution is not None
    assert stores[-1].finalized_header.execution.block_number == 17_917_816


def test_optimistic_update_moves_only_the_optimistic_header(
    stores: list[LightClientStore],
) -> None:
    store = stores[-1].copy()
    before = store.finalized_header
    store.process_update(helios_optimistic(), NOW)
    assert store.finalized_header == before
    assert store.optimistic_header.slot == 7_109_431
    assert store.optimistic_header.execution is not None
    assert store.optimistic_header.execution.block_number == 17_923_113


def test_finality_update_is_accepted(stores: list[LightClientStore]) -> None:
    updates = helios_updates()
    store = stores[5].copy()
    store.process_update(finality_update_from(updates[5]), NOW)
    assert store.finalized_header.slot == _slot(updates[5], "finalized_header")
    # It brings no committee, so period 868's stays unknown after crossing into 867.
    assert store.period == 867
    assert store.next_sync_committee is None


def test_force_update_adopts_the_best_update_only_after_the_timeout(
    stores: list[LightClientStore],
) -> None:
    store = stores[-1].copy()
    store.force_update(NOW)  # nothing to adopt yet
    store.process_update(helios_optimistic(), NOW)
    best = store.best_valid_update
    assert best is not None
    finalized = store.finalized_header
    deadline = finalized.slot + MAINNET.update_timeout
    store.force_update(deadline)
    assert store.finalized_header == finalized
    # An optimistic update finalizes nothing, so its attested header stands in.
    store.force_update(deadline + 1)
    assert store.finalized_header == best.attested_header
    assert store.optimistic_header == best.attested_header
    assert store.best_valid_update is None


# ------------------------------------------------------------------ helios' negative cases


def test_zeroed_next_committee_key_fails_the_next_committee_proof(
    stores: list[LightClientStore],
) -> None:
    update = helios_updates()[0]
    update["data"]["next_sync_committee"]["pubkeys"][0] = "0x" + "00" * 48
    with pytest.raises(InvalidNextSyncCommitteeProof, match="not in attested state"):
        stores[0].copy().process_update(update, NOW)


@pytest.mark.parametrize("signature", [ZERO_SIGNATURE, INFINITY_SIGNATURE])
def test_default_signature_is_invalid(stores: list[LightClientStore], signature: str) -> None:
    update = helios_updates()[0]
    update["data"]["sync_aggregate"]["sync_committee_signature"] = signature
    with pytest.raises(InvalidSignature):
        stores[0].copy().process_update(update, NOW)


def test_earlier_finalized_header_fails_the_finality_proof(
    stores: list[LightClientStore],
) -> None:
    updates = helios_updates()
    forged = updates[1]
    forged["data"]["finalized_header"] = updates[0]["data"]["finalized_header"]
    with pytest.raises(InvalidFinalityProof, match="finality branch does not prove"):
        stores[1].copy().process_update(forged, NOW)


def test_finality_update_with_swapped_finalized_header_fails(
    stores: list[LightClientStore],
) -> None:
    updates = helios_updates()
    forged = finality_update_from(updates[5])
    forged["data"]["finalized_header"] = updates[0]["data"]["finalized_header"]
    for store in (stores[5], stores[6]):
        with pytest.raises(InvalidFinalityProof):
            store.copy().process_update(forged, NOW)


def test_finality_update_with_zero_signature_fails(stores: list[LightClientStore]) -> None:
    forged = finality_update_from(helios_updates()[5])
    forged["data"]["sync_aggregate"]["sync_committee_signature"] = ZERO_SIGNATURE
    with pytest.raises(InvalidSignature):
        stores[5].copy().process_update(forged, NOW)


def test_checkpoint_age_is_checked_only_when_asked() -> None:
    bootstrap = helios_bootstrap()
    two_weeks = 14 * 24 * 3600 // 12
    # Years later, as these vectors now are.
    later = MAINNET.slot_at_time(1_767_225_600)
    with pytest.raises(InvalidBootstrap, match="slots old"):
        LightClientStore.from_bootstrap(
            bootstrap,
            HELIOS_CHECKPOINT,
            MAINNET,
            current_slot=later,
            max_checkpoint_age_slots=two_weeks,
        )
    store = LightClientStore.from_bootstrap(
        bootstrap,
        HELIOS_CHECKPOINT,
        MAINNET,
        current_slot=7_069_376 + two_weeks,
        max_checkpoint_age_slots=two_weeks,
    )
    assert store.finalized_header.slot == 7_069_376


# --------------------------------------------------------------------- more ways to lie


def test_bootstrap_for_another_root_is_refused() -> None:
    with pytest.raises(InvalidBootstrap, match="not the trusted block root"):
        LightClientStore.from_bootstrap(helios_bootstrap(), bytes(32), MAINNET)


def test_bootstrap_with_forged_committee_is_refused() -> None:
    bootstrap = helios_bootstrap()
    keys = bootstrap["data"]["current_sync_committee"]["pubkeys"]
    keys[0], keys[1] = keys[1], keys[0]
    with pytest.raises(InvalidBootstrap, match="current sync committee"):
        LightClientStore.from_bootstrap(bootstrap, HELIOS_CHECKPOINT, MAINNET)


def test_bootstrap_with_forged_execution_header_is_refused() -> None:
    bootstrap = helios_bootstrap()
    bootstrap["data"]["header"]["execution"]["block_number"] = "17883334"
    with pytest.raises(InvalidBootstrap, match="is not in block body"):
        LightClientStore.from_bootstrap(bootstrap, HELIOS_CHECKPOINT, MAINNET)


def test_update_skipping_a_period_is_refused(stores: list[LightClientStore]) -> None:
    with pytest.raises(InvalidUpdate, match="period 864"):
        stores[1].copy().process_update(helios_updates()[2], NOW)


def test_replayed_update_brings_nothing_new(stores: list[LightClientStore]) -> None:
    with pytest.raises(InvalidUpdate, match="nothing new"):
        stores[1].copy().process_update(helios_updates()[0], NOW)


def test_update_signed_after_the_clock_is_refused(stores: list[LightClientStore]) -> None:
    update = helios_updates()[1]
    with pytest.raises(InvalidUpdate, match="slots out of order"):
        stores[1].copy().process_update(update, int(update["data"]["signature_slot"]) - 1)


def test_update_without_participants_is_refused(stores: list[LightClientStore]) -> None:
    update = helios_updates()[1]
    update["data"]["sync_aggregate"]["sync_committee_bits"] = "0x" + "00" * 64
    with pytest.raises(InvalidUpdate, match="0 sync committee participants"):
        stores[1].copy().process_update(update, NOW)


def test_one_absent_member_claimed_present_breaks_the_signature(
    stores: list[LightClientStore],
) -> None:
    update = helios_updates()[0]  # 511 of 512 signed
    update["data"]["sync_aggregate"]["sync_committee_bits"] = "0x" + "ff" * 64
    with pytest.raises(InvalidSignature, match="512 of 512"):
        stores[0].copy().process_update(update, NOW)


def test_forged_attested_execution_header_is_refused(stores: list[LightClientStore]) -> None:
    update = helios_updates()[1]
    update["data"]["attested_header"]["execution"]["receipts_root"] = "0x" + "11" * 32
    with pytest.raises(InvalidUpdate, match="attested header"):
        stores[1].copy().process_update(update, NOW)


def test_next_committee_contradicting_the_known_one_is_refused(
    stores: list[LightClientStore],
) -> None:
    # After updates[1] the store is in period 863 and knows 864's committee; updates[2]
    # (attested in 864) is fine, but a committee for 864 other than the known one is not.
    updates = helios_updates()
    forged = updates[1]
    forged["data"]["next_sync_committee"] = updates[2]["data"]["next_sync_committee"]
    store = stores[2].copy()
    with pytest.raises(InvalidNextSyncCommitteeProof, match="contradicts"):
        store.process_update(forged, NOW)


def test_rejection_leaves_the_store_unchanged(stores: list[LightClientStore]) -> None:
    store = stores[1].copy()
    before = store.to_json()
    forged = helios_updates()[1]
    forged["data"]["sync_aggregate"]["sync_committee_signature"] = INFINITY_SIGNATURE
    with pytest.raises(InvalidSignature):
        store.process_update(forged, NOW)
    assert store.to_json() == before
    store.process_update(helios_updates()[1], NOW)
    assert store.finalized_header == stores[2].finalized_header


def test_errors_fit_the_proof_error_tree() -> None:
    assert issubclass(InvalidSignature, SignatureError)
    assert issubclass(InvalidFinalityProof, HashMismatchError)
    assert issubclass(InvalidNextSyncCommitteeProof, HashMismatchError)
    for error in (InvalidSignature, InvalidFinalityProof, InvalidNextSyncCommitteeProof):
        assert issubclass(error, ProofError)
        assert not issubclass(error, InvalidUpdate)
    assert issubclass(InvalidBootstrap, InvalidUpdate)
    assert issubclass(LightClientDecodeError, InvalidUpdate)


def test_malformed_json_is_an_invalid_update(stores: list[LightClientStore]) -> None:
    update = helios_updates()[1]
    del update["data"]["signature_slot"]
    with pytest.raises(LightClientDecodeError, match=r"data\.signature_slot is missing"):
        stores[1].copy().process_update(update, NOW)
    update = helios_updates()[1]
    update["version"] = "phase0"
    with pytest.raises(LightClientDecodeError, match="not a light-client fork"):
        stores[1].copy().process_update(update, NOW)
    update = helios_updates()[1]
    update["data"]["finality_branch"] = update["data"]["finality_branch"][:5]
    with pytest.raises(LightClientDecodeError, match="list of 6 hashes"):
        stores[1].copy().process_update(update, NOW)


# ------------------------------------------------------------------------------ persisting


def test_store_survives_a_restart_mid_sequence(stores: list[LightClientStore]) -> None:
    saved = json.loads(json.dumps(stores[3].to_json()))
    restored = LightClientStore.from_json(saved, MAINNET)
    assert restored.finalized_header == stores[3].finalized_header
    assert restored.next_sync_committee == stores[3].next_sync_committee
    assert restored.trusted_block_root == HELIOS_CHECKPOINT
    for update in helios_updates()[3:]:
        restored.process_update(update, NOW)
    assert restored.to_json() == stores[-1].to_json()


def test_store_keeps_its_best_valid_update(stores: list[LightClientStore]) -> None:
    store = stores[-1].copy()
    store.process_update(helios_optimistic(), NOW)
    assert store.best_valid_update is not None
    restored = LightClientStore.from_json(json.loads(json.dumps(store.to_json())), MAINNET)
    assert restored.best_valid_update == store.best_valid_update


def test_corrupt_or_foreign_stored_state_is_refused(stores: list[LightClientStore]) -> None:
    saved = stores[2].to_json()
    saved["finalized_header"]["beacon"]["slot"] = "1"
    with pytest.raises(LightClientDecodeError, match="corrupt"):
        LightClientStore.from_json(saved, MAINNET)
    with pytest.raises(LightClientDecodeError, match="genesis validators root"):
        LightClientStore.from_json(stores[2].to_json(), ChainSpec.minimal())
