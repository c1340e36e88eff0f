"""The consensus specs' minimal-preset ``light_client/sync`` tests (Deneb): SSZ bootstrap and
updates through ``decode_ssz``, every step's expected finalized and optimistic headers."""

from __future__ import annotations

from typing import Any

import pytest

from proofs.ethereum_lc import (
    LightClientDecodeError,
    LightClientHeader,
    LightClientStore,
    compute_fork_digest,
    decode_ssz,
)
from tests.unit.proofs.ethereum_lc.lc_vectors import SPEC_TEST_CASES, SpecTestCase, hx
from tests.unit.proofs.ethereum_lc.reference_ssz import light_client_types, to_json


def _fork_for_digest(case: SpecTestCase, digest: str) -> str:
    spec = case.spec
    for fork in spec.forks[1:]:
        if compute_fork_digest(fork.version, spec.genesis_validators_root) == hx(digest):
            return fork.name
    raise AssertionError(f"no fork of the test's config has digest {digest}")


def _check(header: LightClientHeader, expected: dict[str, Any], where: str) -> None:
    assert header.slot == expected["slot"], where
    assert header.beacon_root == hx(expected["beacon_root"]), where
    if "execution_root" in expected:
        assert header.execution_root == hx(expected["execution_root"]), where


@pytest.mark.parametrize("name", SPEC_TEST_CASES)
def test_spec_test_scenario_step_by_step(name: str) -> None:
    case = SpecTestCase(name)
    fork = _fork_for_digest(case, case.meta["bootstrap_fork_digest"])
    assert fork == "deneb"
    bootstrap = decode_ssz("LightClientBootstrap", fork, case.ssz("bootstrap"), case.spec)
    store = LightClientStore.from_bootstrap(
        bootstrap, hx(case.meta["trusted_block_root"]), case.spec
    )
    assert store.finalized_header.beacon_root == hx(case.meta["trusted_block_root"])
    for number, step in enumerate(case.steps):
        ((action, body),) = step.items()
        if action == "process_update":
            update_fork = _fork_for_digest(case, body["update_fork_digest"])
            update = decode_ssz(
                "LightClientUpdate", update_fork, case.ssz(body["update"]), case.spec
            )
            store.process_update(update, body["current_slot"])
        else:
            assert action == "force_update", action
            store.force_update(body["current_slot"])
        checks = body["checks"]
        _check(store.finalized_header, checks["finalized_header"], f"{name} step {number}")
        _check(store.optimistic_header, checks["optimistic_header"], f"{name} step {number}")


def test_spec_test_state_survives_serialization_between_steps() -> None:
    case = SpecTestCase("light_client_sync")
    bootstrap = decode_ssz("LightClientBootstrap", "deneb", case.ssz("bootstrap"), case.spec)
    store = LightClientStore.from_bootstrap(
        bootstrap, hx(case.meta["trusted_block_root"]), case.spec
    )
    for step in case.steps:
        ((action, body),) = step.items()
        store = LightClientStore.from_json(store.to_json(), case.spec)
        if action == "process_update":
            raw = case.ssz(body["update"])
            store.process_update(
                decode_ssz("LightClientUpdate", "deneb", raw, case.spec), body["current_slot"]
            )
        else:
            store.force_update(body["current_slot"])
        _check(store.finalized_header, body["checks"]["finalized_header"], str(body))


def _files(case: SpecTestCase) -> list[tuple[str, str]]:
    files = [("LightClientBootstrap", "bootstrap")]
    files += [
        ("LightClientUpdate", step["process_update"]["update"])
        for step in case.steps
        if "process_update" in step
    ]
    return files


@pytest.mark.parametrize("name", SPEC_TEST_CASES)
def test_decode_ssz_agrees_with_remerkleable(name: str) -> None:
    case = SpecTestCase(name)
    types = light_client_types("deneb", case.spec.sync_committee_size)
    for kind, file in _files(case):
        raw = case.ssz(file)
        ours = decode_ssz(kind, "deneb", raw, case.spec)
        assert ours == {"version": "deneb", "data": to_json(types[kind].decode_bytes(raw))}


def test_decode_ssz_is_strict() -> None:
    case = SpecTestCase("light_client_sync")
    raw = case.ssz(case.steps[0]["process_update"]["update"])
    spec = case.spec
    with pytest.raises(LightClientDecodeError, match="shorter than"):
        decode_ssz("LightClientUpdate", "deneb", raw[:100], spec)
    bad_offset = bytearray(raw)
    bad_offset[0] ^= 1
    with pytest.raises(LightClientDecodeError, match="first offset"):
        decode_ssz("LightClientUpdate", "deneb", bytes(bad_offset), spec)
    # The finalized header's offset (after the attested header's and the fixed committee and
    # branch) pointing past the end.
    position = 4 + 48 * 33 + 32 * 5
    past_end = bytearray(raw)
    past_end[position : position + 4] = (len(raw) + 1).to_bytes(4, "little")
    with pytest.raises(LightClientDecodeError, match="past the"):
        decode_ssz("LightClientUpdate", "deneb", bytes(past_end), spec)
    # Bytes after the end belong to the last variable field, the finalized header's
    # extra_data, whose 32-byte limit they exceed.
    with pytest.raises(LightClientDecodeError, match="allows 32"):
        decode_ssz("LightClientUpdate", "deneb", raw + bytes(33), spec)
    # A Deneb update read as Electra's (deeper branches) does not fit.
    with pytest.raises(LightClientDecodeError):
        decode_ssz("LightClientUpdate", "electra", raw, spec)
    with pytest.raises(ValueError, match="unknown light-client container"):
        decode_ssz("BeaconState", "deneb", raw, spec)
    with pytest.raises(ValueError, match="no light-client data"):
        decode_ssz("LightClientUpdate", "phase0", raw, spec)
