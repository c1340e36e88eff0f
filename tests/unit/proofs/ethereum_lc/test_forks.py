"""Header rules by the fork at the header's slot: no execution part before Capella, Capella's
15-field execution root before Deneb (blob fields zero), and the ChainSpec that decides it."""

from __future__ import annotations

from typing import Any

import pytest

from proofs.ethereum_lc import (
    ChainSpec,
    InvalidBootstrap,
    LightClientStore,
    compute_fork_digest,
)
from tests.unit.proofs.ethereum_lc.chain_builder import (
    GENESIS_VALIDATORS_ROOT,
    TestChain,
    committee,
    config,
)
from tests.unit.proofs.ethereum_lc.reference_ssz import ExecutionPayloadHeaderCapella, from_json

# Bellatrix until slot 32, Capella until 64, then Deneb; Electra never.
CHAIN = TestChain(config(capella_epoch=4, deneb_epoch=8, electra_epoch=2**64 - 1))
SPEC = ChainSpec.minimal(CHAIN.config, genesis_validators_root=GENESIS_VALIDATORS_ROOT)


def _bootstrap(slot: int, data_fork: str | None = None) -> tuple[dict[str, Any], bytes]:
    return CHAIN.bootstrap(slot, committee(0), committee(1), data_fork=data_fork)


def test_bellatrix_headers_have_no_execution_part_and_capella_ones_do() -> None:
    bootstrap, root = _bootstrap(9)
    assert bootstrap["version"] == "bellatrix"
    assert "execution" not in bootstrap["data"]["header"]
    store = LightClientStore.from_bootstrap(bootstrap, root, SPEC)
    assert store.finalized_header.execution is None
    assert store.finalized_header.execution_root == bytes(32)
    common = {"signers": committee(0), "current": committee(0), "next_committee": committee(1)}
    update, _, finalized = CHAIN.update(
        attested_slot=20, finalized_slot=16, signature_slot=21, **common
    )
    store.process_update(update, 21)
    assert store.finalized_header.beacon_root == finalized.root
    update, _, finalized = CHAIN.update(
        attested_slot=40, finalized_slot=33, signature_slot=41, **common
    )
    assert update["version"] == "capella"
    store.process_update(update, 41)
    assert store.finalized_header.execution is not None
    assert store.finalized_header.execution.block_number == 1033
    assert store.finalized_header.execution_root == bytes(
        finalized.header.execution.hash_tree_root()
    )


def test_pre_capella_header_must_not_carry_an_execution_header() -> None:
    bootstrap, root = _bootstrap(9, data_fork="capella")
    store = LightClientStore.from_bootstrap(bootstrap, root, SPEC)  # zero execution: fine
    assert store.finalized_header.execution is None
    bootstrap["data"]["header"]["execution"]["block_number"] = "1"
    with pytest.raises(InvalidBootstrap, match="execution header before Capella"):
        LightClientStore.from_bootstrap(bootstrap, root, SPEC)


def test_capella_header_must_carry_its_execution_header() -> None:
    bootstrap, root = _bootstrap(40)
    assert bootstrap["version"] == "capella"
    # The same block served in Bellatrix form: the beacon header (and so the root) is intact.
    bootstrap["version"] = "bellatrix"
    del bootstrap["data"]["header"]["execution"], bootstrap["data"]["header"]["execution_branch"]
    with pytest.raises(InvalidBootstrap, match="has no execution header"):
        LightClientStore.from_bootstrap(bootstrap, root, SPEC)


def test_capella_header_in_deneb_form_uses_the_capella_root() -> None:
    bootstrap, root = _bootstrap(40, data_fork="deneb")
    store = LightClientStore.from_bootstrap(bootstrap, root, SPEC)
    execution = bootstrap["data"]["header"]["execution"]
    capella = {k: v for k, v in execution.items() if k not in ("blob_gas_used", "excess_blob_gas")}
    expected = from_json(ExecutionPayloadHeaderCapella, capella).hash_tree_root()
    assert store.finalized_header.execution_root == bytes(expected)
    # The Capella root does not cover the blob fields, so a nonzero one is refused outright.
    bootstrap["data"]["header"]["execution"]["blob_gas_used"] = "1"
    with pytest.raises(InvalidBootstrap, match="blob gas fields"):
        LightClientStore.from_bootstrap(bootstrap, root, SPEC)


# ------------------------------------------------------------------------------ ChainSpec


def test_mainnet_schedule_and_digests() -> None:
    spec = ChainSpec.mainnet()
    assert spec.fork_at_slot(7_061_720).name == "capella"
    assert spec.fork_at_slot(364_032 * 32).name == "electra"
    assert spec.fork_at_slot(411_392 * 32).name == "fulu"
    assert spec.finalized_root_gindex_at_slot(364_032 * 32 - 1) == 105
    assert spec.finalized_root_gindex_at_slot(364_032 * 32) == 169
    assert spec.signature_fork(364_032 * 32).name == "deneb"
    assert spec.signature_fork(364_032 * 32 + 1).name == "electra"
    assert spec.period_at_slot(7_069_376) == 862
    # Mainnet's well-known Capella and Deneb fork digests.
    root = spec.genesis_validators_root
    assert compute_fork_digest(spec.fork("capella").version, root).hex() == "bba4da96"
    assert compute_fork_digest(spec.fork("deneb").version, root).hex() == "6a95a1a9"


def test_minimal_config_overrides_forks() -> None:
    spec = ChainSpec.minimal({"ELECTRA_FORK_EPOCH": 0, "ELECTRA_FORK_VERSION": "0x05000009"})
    assert spec.fork_at_slot(0).name == "electra"
    assert spec.fork("electra").version == bytes.fromhex("05000009")
    assert spec.sync_committee_size == 32
    assert spec.slots_per_period == 64
    assert ChainSpec.minimal().fork_at_slot(10**6).name == "deneb"
    merged = ChainSpec.minimal({"genesis_validators_root": "0x" + "ab" * 32})
    assert merged.genesis_validators_root == b"\xab" * 32


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"PRESET_BASE": "mainnet"}, "preset"),
        ({"DENEB_FORK_EPOCH": 5, "ELECTRA_FORK_EPOCH": 3}, "must not decrease"),
        ({"CAPELLA_FORK_VERSION": "0x0300"}, "4 bytes"),
        ({"GENESIS_VALIDATORS_ROOT": "0x1234"}, "32 bytes"),
    ],
)
def test_unusable_configs_are_refused(overrides: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        ChainSpec.minimal(overrides)
