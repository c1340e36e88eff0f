"""Where the Ethereum light-client vectors are, and how the tests read them (in place, from
../shared/vectors/eth_cl; see tests/vectors.py for what happens when they are absent)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import cramjam
import yaml

from proofs.ethereum_lc import ChainSpec
from tests.vectors import vectors_dir

# helios' tests trust this block root (the bootstrap's header, slot 7,069,376, period 862).
HELIOS_CHECKPOINT = bytes.fromhex(
    "5afc212a7924789b2bc86acad3ab3a6ffb1f6e97253ea50bee7f4f51422c9275"
)
SPEC_TEST_CASES = (
    "light_client_sync",
    "supply_sync_committee_from_past_update",
    "advance_finality_without_sync_committee",
)


@cache
def _helios_file(name: str) -> Any:
    return json.loads((vectors_dir() / "eth_cl" / "helios" / name).read_text())


def helios_bootstrap() -> dict[str, Any]:
    return copy.deepcopy(_helios_file("bootstrap.json"))


def helios_updates() -> list[dict[str, Any]]:
    return copy.deepcopy(_helios_file("updates.json"))


def helios_optimistic() -> dict[str, Any]:
    return copy.deepcopy(_helios_file("optimistic.json"))


def finality_update_from(update: dict[str, Any]) -> dict[str, Any]:
    """The ``LightClientFinalityUpdate`` a beacon node would serve for ``update``'s attested
    block: the same fields without the next sync committee and its branch."""
    data = {
        key: copy.deepcopy(value)
        for key, value in update["data"].items()
        if key not in ("next_sync_committee", "next_sync_committee_branch")
    }
    return {"version": update["version"], "data": data}


class SpecTestCase:
    """One consensus-spec ``light_client/sync`` test directory."""

    def __init__(self, name: str) -> None:
        self.path: Path = vectors_dir() / "eth_cl" / "spec_tests_minimal_deneb" / name
        self.meta: dict[str, Any] = yaml.safe_load((self.path / "meta.yaml").read_text())
        self.config: dict[str, Any] = yaml.safe_load((self.path / "config.yaml").read_text())
        self.steps: list[dict[str, Any]] = yaml.safe_load((self.path / "steps.yaml").read_text())
        self.spec = ChainSpec.minimal(
            self.config, genesis_validators_root=hx(self.meta["genesis_validators_root"])
        )

    def ssz(self, name: str) -> bytes:
        return bytes(cramjam.snappy.decompress_raw((self.path / f"{name}.ssz_snappy").read_bytes()))


def hx(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))
