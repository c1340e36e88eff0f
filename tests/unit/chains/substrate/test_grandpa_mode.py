"""chains.substrate.grandpa_mode: what a GRANDPA light client saves in the ledger, and what
``relayer lightclient status`` makes of it (the checkpoint it started from included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chains.substrate.config import GrandpaSettings
from chains.substrate.grandpa_mode import _load, status_of
from proofs.hashing import blake2_256
from proofs.substrate.grandpa_store import GrandpaLightClient
from tests.unit.proofs.substrate.grandpa_builders import authority_list, block_header, signing_keys


def _saved(origin: object) -> tuple[bytes, GrandpaLightClient]:
    header = block_header(b"\x07" * 32, 12)
    store = GrandpaLightClient(header=header, authorities=authority_list(signing_keys(4)), set_id=3)
    return json.dumps({"checkpoint": origin, "store": store.to_bytes().hex()}).encode(), store


def test_a_saved_state_round_trips_with_its_checkpoint() -> None:
    origin = {"block": 12, "hash": "0xab", "set_id": 3, "dev": True}
    saved, store = _saved(origin)
    loaded_origin, loaded = _load(saved)
    assert loaded_origin == origin
    assert loaded == store


def test_status_shows_checkpoint_set_and_finalized_block() -> None:
    saved, store = _saved({"block": 12, "hash": "0xab", "set_id": 3, "dev": False})
    shown = status_of(saved)
    assert shown["checkpoint"] == "block 12 (0xab), set id 3, from the config"
    assert shown["set id"] == "3"
    assert shown["authorities"] == "4 (total weight 4)"
    header_hash = blake2_256(block_header(b"\x07" * 32, 12))
    assert shown["finalized block"] == f"12 (0x{header_hash.hex()})"
    assert store.finalized.hash == header_hash


@pytest.mark.parametrize(
    "state",
    [b"", b"{}", b'{"checkpoint": null}', b'{"checkpoint": 5, "store": ""}', b"not json"],
)
def test_an_unreadable_state_is_a_value_error(state: bytes) -> None:
    with pytest.raises(ValueError, match=r"saved GRANDPA state does not load|Expecting value"):
        status_of(state)


def test_a_relative_checkpoint_path_is_beside_the_config_file(tmp_path: Path) -> None:
    def settings(checkpoint: str) -> GrandpaSettings:
        return GrandpaSettings.model_validate(
            {"prover": "ws://127.0.0.1:9944", "checkpoint": checkpoint},
            context={"base_dir": tmp_path},
        )

    assert settings("keys/checkpoint.json").checkpoint == str(tmp_path / "keys/checkpoint.json")
    assert settings("/etc/relayer/cp.json").checkpoint == "/etc/relayer/cp.json"
    assert settings("dev").checkpoint == "dev"
