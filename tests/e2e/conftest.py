"""End-to-end fixtures: two real anvil chains with Gateways, and the relayer's own processes
(attesters, daemon) started from its CLI. Everything started is stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chains.evm.devnet import Devnet, committee_finality, evm_only_config
from tests.integration.anvil import REPO_ROOT, require_anvil

EXAMPLE_CONFIG = REPO_ROOT / "config.toml"


@pytest.fixture
def devnet_factory(tmp_path: Path) -> Iterator[Callable[..., Devnet]]:
    """Build devnets on demand (``devnet_factory(config_text=...)``); all stopped at teardown."""
    require_anvil()
    made: list[Devnet] = []

    def make(
        *,
        config_text: str | None = None,
        block_time_a: float | None = 1,
        block_time_b: float | None = 1,
    ) -> Devnet:
        # The EVM chains of the example config unless told otherwise: the Substrate tests
        # ask for dot-a themselves.
        config_path = tmp_path / f"config-{len(made)}.toml"
        config_path.write_text(config_text if config_text is not None else example_config())
        devnet = Devnet(
            config_path=config_path,
            workdir=tmp_path / f"devnet-{len(made)}",
            block_time_a=block_time_a,
            block_time_b=block_time_b,
        )
        made.append(devnet)
        devnet.start_chains()
        return devnet

    try:
        yield make
    finally:
        for devnet in made:
            devnet.stop()


def example_config(**replacements: str) -> str:
    """The EVM chains of the example config with committee finality (these tests exercise the
    depth-based path: reorgs past ``confirmations``, manual mining; light-client finality has
    tests of its own), with literal text replaced (``{"confirmations = 2": "..."}``)."""
    text = committee_finality(evm_only_config(EXAMPLE_CONFIG.read_text()))
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return text
