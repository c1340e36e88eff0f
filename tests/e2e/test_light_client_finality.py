"""Light-client finality through the daemon and attesters as processes: chain-a follows its dev
beacon server's sync committee, dot-a its dev GRANDPA voters. A finality source that lies gets
nothing relayed; once it is honest again, the messages sent meanwhile arrive exactly once, and
the ledger says which mode made each final."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from chains.evm.beacon_dev import BeaconDevNode, LieMode
from chains.evm.devnet import Devnet, evm_only_config
from chains.substrate.grandpa_voter import GrandpaVoterProcess
from relayer.store import Ledger
from tests.e2e.conftest import EXAMPLE_CONFIG
from tests.e2e.substrate import config_with_dot_a
from tests.integration.chopsticks import require_chopsticks

pytestmark = pytest.mark.slow

# Long enough for a dozen finality updates (1 s slots) or justifications to be refused.
_LYING_FOR_S = 8.0


def _events(devnet: Devnet, process: str, name: str) -> list[dict[str, Any]]:
    out = []
    for line in (devnet.work / f"{process}.log").read_text().splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            entry = json.loads(line)
            if entry.get("event") == name:
                out.append(entry)
    return out


def _finality_of(devnet: Devnet, ids: list[bytes]) -> set[str]:
    with Ledger.open(devnet.config.relayer.database) as ledger:
        records = [ledger.get(mid) for mid in ids]
    return {r.finality for r in records if r is not None}


def test_a_lying_beacon_server_gets_nothing_relayed_until_it_is_honest(
    devnet_factory: Callable[..., Devnet],
) -> None:
    devnet = devnet_factory(config_text=evm_only_config(EXAMPLE_CONFIG.read_text()))
    beacon = devnet.finality_sources["chain-a"]
    assert isinstance(beacon, BeaconDevNode)
    devnet.start_attesters()
    devnet.start_daemon()
    honest = asyncio.run(devnet.send("chain-a", "chain-b", 5))
    asyncio.run(devnet.await_delivery({"chain-b": honest}, timeout=120))

    sent: list[tuple[bytes, float]] = []
    for lie in (LieMode.WRONG_FINALITY_BRANCH, LieMode.FORGED_BLOCK, LieMode.MINORITY):
        beacon.set_mode(lie)
        sent += asyncio.run(devnet.send("chain-a", "chain-b", 5))
        time.sleep(_LYING_FOR_S)
        delivered = asyncio.run(devnet.delivered_events("chain-b"))
        assert not any(delivered[mid] for mid, _ in sent), f"relayed while the server said {lie}"
    assert _events(devnet, "relayer", "lightclient.update_refused"), "wrong branch not logged"
    # The forged block is signed by the whole committee: the light client takes it, and the
    # watcher refuses the span because anvil's block at that height hashes otherwise.
    log_text = (devnet.work / "relayer.log").read_text()
    assert "but the finalized chain has" in log_text, "the forged block went unnoticed"

    beacon.set_mode(LieMode.HONEST)
    asyncio.run(devnet.await_delivery({"chain-b": sent}, timeout=120))
    delivered = asyncio.run(devnet.delivered_events("chain-b"))
    assert {mid: delivered[mid] for mid, _ in sent} == dict.fromkeys([m for m, _ in sent], 1)
    assert _finality_of(devnet, [mid for mid, _ in sent]) == {"sync-committee"}
    devnet.check_alive()


def test_lying_grandpa_voters_get_nothing_relayed_until_they_are_honest(
    devnet_factory: Callable[..., Devnet],
) -> None:
    require_chopsticks()
    devnet = devnet_factory(config_text=config_with_dot_a())
    voters = devnet.finality_sources["dot-a"]
    assert isinstance(voters, GrandpaVoterProcess)
    devnet.start_attesters()
    devnet.start_daemon()
    honest = asyncio.run(devnet.send("dot-a", "chain-a", 5))
    asyncio.run(devnet.await_delivery({"chain-a": honest}, timeout=120))

    sent: list[tuple[bytes, float]] = []
    for lie in ("flip-signature", "outside-key", "phantom-block"):
        voters.rpc("dev_grandpaSetLie", [lie])
        sent += asyncio.run(devnet.send("dot-a", "chain-a", 5))
        time.sleep(_LYING_FOR_S / 2)
        delivered = asyncio.run(devnet.delivered_events("chain-a"))
        assert not any(delivered[mid] for mid, _ in sent), f"relayed while the voters said {lie}"
    assert _events(devnet, "relayer", "proof.rejected"), "no refused justification logged"

    voters.rpc("dev_grandpaSetLie", ["honest"])
    asyncio.run(devnet.await_delivery({"chain-a": sent}, timeout=120))
    delivered = asyncio.run(devnet.delivered_events("chain-a"))
    assert {mid: delivered[mid] for mid, _ in sent} == dict.fromkeys([m for m, _ in sent], 1)
    assert _finality_of(devnet, [mid for mid, _ in sent]) == {"grandpa"}
    devnet.check_alive()
