"""Real Polkadot blocks (../shared/vectors/substrate/extrinsics_root_sidecar) through the same
functions the substrate reader uses: the header as a node serves it, rebuilt to SCALE and
hashed to the block hash, and the body checked against its extrinsics root (ordered trie, V0)."""

from __future__ import annotations

from typing import Any

import pytest

from chains.substrate.evidence import verify_body, verify_header
from chains.substrate.rpc import Header
from proofs import HashMismatchError
from tests.unit.proofs.substrate.grandpa_builders import hx, load_substrate_vector

BLOCKS = ["polkadot-21157800.json", "polkadot-18468942.json"]


def _block(name: str) -> tuple[bytes, Header, list[bytes]]:
    block: dict[str, Any] = load_substrate_vector(f"extrinsics_root_sidecar/{name}")
    # The sidecar mock writes the number in decimal; a node's chain_getHeader answers hex.
    served = {**block["header"], "number": hex(int(block["header"]["number"]))}
    header = Header.from_json(served)
    assert header.scale() == hx(block["header_scale"])
    return hx(block["hash"]), header, [hx(ext) for ext in block["extrinsics"]]


@pytest.mark.parametrize("name", BLOCKS)
def test_a_real_relay_chain_block_passes_the_readers_checks(name: str) -> None:
    block_hash, header, body = _block(name)
    decoded = verify_header(block_hash, header.scale())
    assert decoded.number == header.number
    verify_body(decoded, body, "ordered-trie-v0")


@pytest.mark.parametrize("name", BLOCKS)
def test_a_real_block_fails_under_another_commitment_scheme(name: str) -> None:
    block_hash, header, body = _block(name)
    decoded = verify_header(block_hash, header.scale())
    for scheme in ("ordered-trie-v1", "dev-concat"):
        with pytest.raises(HashMismatchError):
            verify_body(decoded, body, scheme)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", BLOCKS)
def test_a_real_block_with_its_body_changed_is_refused(name: str) -> None:
    block_hash, header, body = _block(name)
    decoded = verify_header(block_hash, header.scale())
    altered = [*body[:-1], body[-1][:-1] + bytes([body[-1][-1] ^ 1])]
    for wrong in (body[1:], body[::-1], [*body, body[0]], altered):
        with pytest.raises(HashMismatchError):
            verify_body(decoded, wrong, "ordered-trie-v0")


def test_a_header_served_for_another_block_is_refused() -> None:
    hash_a, _, _ = _block(BLOCKS[0])
    _, header_b, _ = _block(BLOCKS[1])
    with pytest.raises(HashMismatchError):
        verify_header(hash_a, header_b.scale())
