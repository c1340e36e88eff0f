"""``relayer start``: one process, every role, one TaskGroup.

Watchers feed the core, the core gathers attestations, one delivery worker per destination
chain submits. Shutdown is cancellation: every state change was committed before the side
effect that follows it, so cancelling at any ``await`` loses nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from relayer.checkpoints import DirectoryCheckpointStore
from relayer.config import Config
from relayer.core import Core
from relayer.delivery import DeliveryWorker
from relayer.keys import KeyUnavailableError, load_key
from relayer.metrics import serve_metrics
from relayer.plugin import load_plugin
from relayer.store import Ledger

__all__ = ["run_daemon"]

OWNER = "relayer"


def _reorg_depth(plugin_config: object) -> int:
    """How long a delivery is watched for a destination reorg: the chain's own depth, or 64
    blocks (two Ethereum epochs) where it waits for the node's finalized tag."""
    depth = getattr(plugin_config, "confirmations", 12)
    return depth + 1 if isinstance(depth, int) else 64


async def run_daemon(config: Config, log: Any) -> None:
    ledger = Ledger.open(config.relayer.database)
    ledger.start_checkpointer(log=log)
    runner = None
    try:
        host, port = config.relayer.health_address
        try:
            runner = await serve_metrics(ledger, host, port, log)
        except OSError as exc:
            # Another relayer (or anything) on the port: keep relaying, just without metrics.
            log.error("metrics.unavailable", endpoint=f"{host}:{port}", error=str(exc))
        core = Core(config, ledger, DirectoryCheckpointStore(config.relayer.checkpoints), log)
        for chain in config.chains:
            if chain.finality == "confirmations":
                log.warning(
                    "chain.insecure_finality",
                    chain=chain.name,
                    detail="finality = confirmations trusts block depth alone; development only",
                )
        async with asyncio.TaskGroup() as group:
            for chain in config.chains:
                plugin = load_plugin(chain.type)
                watcher = plugin.watcher(chain, ledger=ledger, owner=OWNER, rpc_url=None, log=log)
                group.create_task(watcher.run(core.accept), name=f"watch:{chain.name}")
            group.create_task(core.collect_attestations(), name="attestations")
            for chain in config.chains:
                key_ref = getattr(chain.plugin, "submitter_key", None)
                if key_ref is None:
                    log.warning("chain.no_submitter", chain=chain.name)
                    continue
                try:
                    key = load_key(key_ref, config.base_dir)
                except KeyUnavailableError as exc:
                    log.warning("chain.no_submitter", chain=chain.name, reason=str(exc))
                    continue
                submitter = load_plugin(chain.type).submitter(chain, key=key, log=log)
                worker = DeliveryWorker(
                    chain=chain.name,
                    submitter=submitter,
                    ledger=ledger,
                    log=log,
                    submit_timeout=float(getattr(chain.plugin, "submit_timeout", 30.0)),
                    batch_size=int(getattr(chain.plugin, "batch_size", 40)),
                    max_in_flight=int(getattr(chain.plugin, "max_in_flight", 4)),
                    reorg_depth=_reorg_depth(chain.plugin),
                    wake=core.listen_attested(),
                )
                group.create_task(worker.run(), name=f"deliver:{chain.name}")
            log.info("relayer.started", chains=[c.name for c in config.chains])
    finally:
        if runner is not None:
            await runner.cleanup()
        ledger.close()
