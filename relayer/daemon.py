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
from relayer.follower import follow
from relayer.keys import KeyUnavailableError
from relayer.metrics import serve_metrics
from relayer.plugin import load_plugin
from relayer.store import Ledger

__all__ = ["run_daemon"]

OWNER = "relayer"


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
                watcher = follow(chain, ledger=ledger, owner=OWNER, rpc_url=None, log=log)
                group.create_task(watcher.run(core.accept), name=f"watch:{chain.name}")
            group.create_task(core.collect_attestations(), name="attestations")
            for chain in config.chains:
                plugin = load_plugin(chain.type)
                key_ref = plugin.submitter_key(chain)
                if key_ref is None:
                    log.warning("chain.no_submitter", chain=chain.name)
                    continue
                try:
                    signer = plugin.load_signer(chain, key_ref, base_dir=config.base_dir)
                except KeyUnavailableError as exc:
                    log.warning("chain.no_submitter", chain=chain.name, reason=str(exc))
                    continue
                worker = DeliveryWorker(
                    chain=chain.name,
                    submitter=plugin.submitter(chain, signer=signer, log=log),
                    ledger=ledger,
                    log=log,
                    settings=plugin.delivery_settings(chain),
                    wake=core.listen_attested(),
                )
                group.create_task(worker.run(), name=f"deliver:{chain.name}")
            log.info("relayer.started", chains=[c.name for c in config.chains])
    finally:
        if runner is not None:
            await runner.cleanup()
        ledger.close()
