"""SubstrateSubmitter.balance against a real chopsticks chain: what the balance metric and the
min_balance check of /readyz read for a Substrate destination."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chains.substrate.chopsticks import ChopsticksNode
from chains.substrate.config import SubstrateChainConfig
from chains.substrate.keys import Sr25519Keypair
from chains.substrate.submitter import SubstrateSubmitter
from tests.integration.chopsticks import running_chopsticks

pytestmark = pytest.mark.slow

CHAIN = "xrly-substrate-balance"


@pytest.fixture(scope="module")
def chopsticks() -> Iterator[ChopsticksNode]:
    with running_chopsticks(CHAIN) as node:
        yield node


def _submitter(node: ChopsticksNode, uri: str) -> SubstrateSubmitter:
    config = SubstrateChainConfig(
        rpc=node.ws_url, system_chain=CHAIN, dev=True, extrinsics_commitment="dev-concat"
    )
    return SubstrateSubmitter(chain_name=CHAIN, config=config, signer=Sr25519Keypair.from_uri(uri))


async def test_a_funded_dev_account_has_a_balance_in_planck_and_an_unknown_one_none(
    chopsticks: ChopsticksNode,
) -> None:
    funded, unknown = _submitter(chopsticks, "//Alice"), _submitter(chopsticks, "//NoSuchAccount")
    try:
        await funded.start()
        assert funded.unit == "planck"
        assert await funded.balance() > 10**12  # the dev accounts hold thousands of units
        assert await unknown.balance() == 0
    finally:
        await funded.close()
        await unknown.close()
