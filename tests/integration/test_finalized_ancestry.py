"""chains.evm.ancestry on a real anvil chain: the blocks below a finalized block are the ones its
parent hashes name, a node on another fork is caught, and finality cannot move back or fork."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chains.evm.ancestry import FinalizedAncestry, off_the_finalized_chain
from chains.evm.rpc import EvmRpc
from proofs import HashMismatchError, ProofError
from tests.integration.anvil import AnvilNode


def _hash(node: AnvilNode, number: int) -> bytes:
    return bytes.fromhex(node.rpc("eth_getBlockByNumber", [hex(number), False])["hash"][2:])


async def test_the_walk_links_every_block_below_the_finalized_one(
    anvil_factory: Callable[..., AnvilNode],
) -> None:
    node = anvil_factory()
    node.rpc("anvil_mine", ["0xf0"])  # 240 blocks: the walk crosses batch boundaries
    rpc = EvmRpc(node.url)
    try:
        ancestry = FinalizedAncestry(rpc, chain="chain-a")
        await ancestry.ensure(200, _hash(node, 200), low=50)
        assert all(ancestry.hash_at(n) == _hash(node, n) for n in range(50, 201))
        assert ancestry.hash_at(49) is None and ancestry.hash_at(201) is None
        # a newer finalized block joins the walk; a lower bound extends it downwards
        await ancestry.ensure(230, _hash(node, 230), low=10)
        assert all(ancestry.hash_at(n) == _hash(node, n) for n in range(10, 231))
        ancestry.forget_below(225)
        assert ancestry.hash_at(224) is None and ancestry.hash_at(225) == _hash(node, 225)
        await ancestry.ensure(230, _hash(node, 230), low=100)  # walks down again from 224
        assert ancestry.hash_at(100) == _hash(node, 100)
        assert off_the_finalized_chain(ancestry, [(120, _hash(node, 120))]) == []
        assert off_the_finalized_chain(ancestry, [(120, b"\x01" * 32)]) != []
    finally:
        await rpc.close()


async def test_a_node_on_another_fork_is_caught(anvil_factory: Callable[..., AnvilNode]) -> None:
    node = anvil_factory()
    node.rpc("anvil_mine", ["0x14"])
    snapshot = node.rpc("evm_snapshot")
    node.rpc("anvil_mine", ["0x14"])
    first_fork = {n: _hash(node, n) for n in range(21, 41)}
    rpc = EvmRpc(node.url)
    try:
        before_the_fork = FinalizedAncestry(rpc, chain="chain-a")
        await before_the_fork.ensure(25, first_fork[25], low=10)
        node.rpc("evm_revert", [snapshot])
        node.rpc("evm_setNextBlockTimestamp", [hex(2_000_000_000)])
        node.rpc("anvil_mine", ["0x14"])
        assert _hash(node, 30) != first_fork[30]
        # the light client finalized block 35 of the first fork; the node now serves the other
        fresh = FinalizedAncestry(rpc, chain="chain-a")
        with pytest.raises(HashMismatchError, match="block 35"):
            await fresh.ensure(35, first_fork[35], low=10)
        assert fresh.hash_at(35) is None, "nothing of a failed walk is kept"
        # a finalized block of the second fork does not descend from the first fork's
        with pytest.raises(ProofError, match="conflicting finality"):
            await before_the_fork.ensure(35, _hash(node, 35), low=10)
        assert before_the_fork.hash_at(35) is None
        assert before_the_fork.hash_at(25) == first_fork[25]
    finally:
        await rpc.close()


async def test_finality_that_moves_back_or_forks_is_refused(
    anvil_factory: Callable[..., AnvilNode],
) -> None:
    node = anvil_factory()
    node.rpc("anvil_mine", ["0x1e"])
    rpc = EvmRpc(node.url)
    try:
        ancestry = FinalizedAncestry(rpc, chain="chain-a")
        await ancestry.ensure(20, _hash(node, 20), low=0)
        with pytest.raises(ProofError, match="never moves backwards"):
            await ancestry.ensure(15, _hash(node, 15), low=0)
        with pytest.raises(ProofError, match="never moves backwards or forks"):
            await ancestry.ensure(20, b"\x02" * 32, low=0)
        # block 25 as the node has it links to 20; a forged top hash does not hash as 25
        with pytest.raises(HashMismatchError):
            await ancestry.ensure(25, b"\x03" * 32, low=0)
        await ancestry.ensure(25, _hash(node, 25), low=0)
        assert ancestry.hash_at(21) == _hash(node, 21)
    finally:
        await rpc.close()
