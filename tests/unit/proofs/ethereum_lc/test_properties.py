"""Any single-byte change to an update, a branch or a signature is refused.

``signature_slot`` is the one field no signature or branch covers (the spec calls it
untrusted); it is pinned instead by the checks ``current_slot >= signature_slot >
attested_slot``, so these tests run at ``current_slot == signature_slot == attested_slot + 1``,
where any change to it breaks one side or the other.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofs import ProofError
from proofs.ethereum_lc import (
    ChainSpec,
    InvalidBootstrap,
    InvalidFinalityProof,
    InvalidNextSyncCommitteeProof,
    InvalidSignature,
    InvalidUpdate,
    LightClientDecodeError,
    LightClientStore,
    decode_ssz,
)
from tests.unit.proofs.ethereum_lc.chain_builder import (
    COMMITTEE_SIZE,
    GENESIS_VALIDATORS_ROOT,
    TestChain,
    committee,
    config,
)
from tests.unit.proofs.ethereum_lc.lc_vectors import (
    HELIOS_CHECKPOINT,
    helios_bootstrap,
    helios_updates,
)
from tests.unit.proofs.ethereum_lc.reference_ssz import from_json, light_client_types

MAINNET = ChainSpec.mainnet()
_SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@cache
def _mainnet() -> tuple[LightClientStore, dict[str, Any], bytes, int]:
    """(warm store after the bootstrap, updates[0] JSON, its SSZ, current slot)."""
    store = LightClientStore.from_bootstrap(helios_bootstrap(), HELIOS_CHECKPOINT, MAINNET)
    store.warm_up()
    update = helios_updates()[0]
    data = update["data"]
    current_slot = int(data["signature_slot"])
    assert current_slot == int(data["attested_header"]["beacon"]["slot"]) + 1
    types = light_client_types("capella", 512)
    encoded = from_json(types["LightClientUpdate"], data).encode_bytes()
    store.copy().process_update(update, current_slot)  # the unchanged update is valid
    return store, update, encoded, current_slot


@cache
def _electra() -> tuple[LightClientStore, bytes, ChainSpec]:
    chain = TestChain(config(electra_epoch=0))
    spec = ChainSpec.minimal(chain.config, genesis_validators_root=GENESIS_VALIDATORS_ROOT)
    bootstrap, root = chain.bootstrap(10, committee(0), committee(1))
    store = LightClientStore.from_bootstrap(bootstrap, root, spec)
    update, _, _ = chain.update(
        attested_slot=20,
        finalized_slot=16,
        signature_slot=21,
        signers=committee(0),
        current=committee(0),
        next_committee=committee(1),
    )
    types = light_client_types("electra", COMMITTEE_SIZE)
    encoded = from_json(types["LightClientUpdate"], update["data"]).encode_bytes()
    store.copy().process_update(decode_ssz("LightClientUpdate", "electra", encoded, spec), 21)
    return store, encoded, spec


def _flip(data: bytes, position: int, mask: int) -> bytes:
    changed = bytearray(data)
    changed[position] ^= mask
    return bytes(changed)


def _refused(store: LightClientStore, kind: str, fork: str, raw: bytes, now: int) -> None:
    before = store.to_json()
    try:
        store.process_update(decode_ssz(kind, fork, raw, store.spec), now)
    except ProofError:
        assert store.to_json() == before
        return
    raise AssertionError("a changed update was accepted")


@_SETTINGS
@given(st.data())
def test_any_byte_of_a_mainnet_update_matters(data: st.DataObject) -> None:
    store, _, encoded, now = _mainnet()
    position = data.draw(st.integers(0, len(encoded) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="xor")
    _refused(store, "LightClientUpdate", "capella", _flip(encoded, position, mask), now)


@_SETTINGS
@given(st.data())
def test_any_byte_of_an_electra_update_matters(data: st.DataObject) -> None:
    store, encoded, _ = _electra()
    position = data.draw(st.integers(0, len(encoded) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="xor")
    _refused(store, "LightClientUpdate", "electra", _flip(encoded, position, mask), 21)


_BRANCHES: dict[str, tuple[tuple[str, ...], int, type[ProofError]]] = {
    "finality": (("finality_branch",), 6, InvalidFinalityProof),
    "next committee": (("next_sync_committee_branch",), 5, InvalidNextSyncCommitteeProof),
    "attested execution": (("attested_header", "execution_branch"), 4, InvalidUpdate),
    "finalized execution": (("finalized_header", "execution_branch"), 4, InvalidFinalityProof),
}


def _flip_hex(value: str, position: int, mask: int) -> str:
    return "0x" + _flip(bytes.fromhex(value[2:]), position, mask).hex()


@_SETTINGS
@given(
    st.sampled_from(sorted(_BRANCHES)),
    st.integers(0, 6),
    st.integers(0, 31),
    st.integers(1, 255),
)
def test_any_byte_of_any_branch_matters(which: str, node: int, position: int, mask: int) -> None:
    store, update, _, now = _mainnet()
    path, length, error = _BRANCHES[which]
    update = {"version": update["version"], "data": dict(update["data"])}
    container: dict[str, Any] = update["data"]
    for key in path[:-1]:
        container[key] = dict(container[key])
        container = container[key]
    branch = list(container[path[-1]])
    branch[node % length] = _flip_hex(branch[node % length], position, mask)
    container[path[-1]] = branch
    try:
        store.copy().process_update(update, now)
    except error:
        return
    raise AssertionError(f"a changed {which} branch was accepted")


@_SETTINGS
@given(st.integers(0, 95), st.integers(1, 255))
def test_any_byte_of_the_signature_matters(position: int, mask: int) -> None:
    store, update, _, now = _mainnet()
    data = dict(update["data"])
    aggregate = dict(data["sync_aggregate"])
    aggregate["sync_committee_signature"] = _flip_hex(
        aggregate["sync_committee_signature"], position, mask
    )
    data["sync_aggregate"] = aggregate
    try:
        store.copy().process_update({"version": update["version"], "data": data}, now)
    except InvalidSignature:
        return
    raise AssertionError("a changed signature was accepted")


@cache
def _bootstrap_ssz() -> bytes:
    types = light_client_types("capella", 512)
    return bytes(
        from_json(types["LightClientBootstrap"], helios_bootstrap()["data"]).encode_bytes()
    )


@settings(deadline=None, max_examples=60)
@given(st.data())
def test_any_byte_of_a_bootstrap_matters(data: st.DataObject) -> None:
    encoded = _bootstrap_ssz()
    position = data.draw(st.integers(0, len(encoded) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="xor")
    try:
        LightClientStore.from_bootstrap(
            decode_ssz("LightClientBootstrap", "capella", _flip(encoded, position, mask), MAINNET),
            HELIOS_CHECKPOINT,
            MAINNET,
        )
    except (InvalidBootstrap, LightClientDecodeError):
        return
    raise AssertionError("a changed bootstrap was accepted")
