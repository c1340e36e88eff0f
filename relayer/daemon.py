"""``relayer start``: one process, every role, one TaskGroup.

Watchers feed the core, the core gathers attestations, one delivery worker per destination
chain submits, and retention prunes what is final and old. Shutdown is cancellation: every
state change was committed before the side effect that follows it, so cancelling at any
``await`` loses nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

from relayer.checkpoints import CheckpointPruneReport, DirectoryCheckpointStore
from relayer.config import Config
from relayer.core import Core
from relayer.delivery import DeliveryWorker
from relayer.errors import StoreError
from relayer.follower import follow
from relayer.keys import KeyUnavailableError
from relayer.metrics import serve_metrics
from relayer.plugin import load_plugin
from relayer.store import Ledger, PruneReport

__all__ = ["prune_expired", "run_daemon"]

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
        checkpoints = DirectoryCheckpointStore(config.relayer.checkpoints)
        core = Core(config, ledger, checkpoints, log)
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
            if config.relayer.retention_days > 0:
                group.create_task(
                    _prune_periodically(config, ledger, checkpoints, log), name="prune"
                )
            else:
                log.info("retention.disabled", detail="relayer.retention_days = 0")
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


_DAY = 86_400.0


def prune_expired(
    config: Config,
    ledger: Ledger,
    checkpoints: DirectoryCheckpointStore,
    older_than: float,
    *,
    dry_run: bool = False,
    stop: threading.Event | None = None,
) -> tuple[PruneReport, CheckpointPruneReport]:
    """One retention pass (the daemon's every ``prune_interval``, and `relayer prune`): the
    ledger's messages that became final before ``older_than``, batch by batch, then the
    attestation files of the origin blocks the ledger keeps no message of
    (``DirectoryCheckpointStore.prune`` says which, blocks the ledger does not know included).
    ``dry_run`` counts instead; ``stop``, once set, ends the pass after the current batch or
    block. Raises ``StoreError`` or ``OSError``."""
    if dry_run:
        report = ledger.prunable(older_than)
    else:
        report = PruneReport()
        while stop is None or not stop.is_set():
            step = ledger.prune(older_than, max_batches=1)
            report += step
            if step.complete:
                break
    chains = {chain.domain: chain.name for chain in config.chains}

    def in_use(domain: int, block_hashes: Sequence[bytes]) -> set[bytes]:
        return ledger.blocks_kept(chains[domain], block_hashes, older_than=older_than)

    files = checkpoints.prune(older_than, in_use=in_use, domains=chains, dry_run=dry_run, stop=stop)
    return report, files


async def _prune_periodically(
    config: Config, ledger: Ledger, checkpoints: DirectoryCheckpointStore, log: Any
) -> None:
    """Retention, from the start and then every ``prune_interval`` seconds, in a worker thread
    (a pass reads and deletes on disk for a while; the loop must not wait for it). A failed
    pass is logged and tried again at the next interval: relaying matters more than pruning."""
    settings = config.relayer
    while True:
        older_than = time.time() - settings.retention_days * _DAY
        stop = threading.Event()
        work = asyncio.ensure_future(
            asyncio.to_thread(prune_expired, config, ledger, checkpoints, older_than, stop=stop)
        )
        try:
            report, files = await asyncio.shield(work)
        except asyncio.CancelledError:
            # The thread cannot be cancelled: it stops after its current batch or block, and
            # the ledger must not be closed under it.
            stop.set()
            await asyncio.wait([work])
            if not work.cancelled():
                work.exception()  # retrieved: a shutdown is no time to report it
            raise
        except (StoreError, OSError) as exc:
            log.warning(
                "ledger.prune_failed",
                error=f"{type(exc).__name__}: {exc}",
                retry_in=settings.prune_interval,
            )
        else:
            log.info(
                "ledger.pruned",
                retention_days=settings.retention_days,
                older_than=older_than,
                messages=report.messages,
                history=report.history,
                evidence=report.evidence,
                block_evidence=report.block_evidence,
                batches=report.batches,
                checkpoint_blocks=files.blocks,
                checkpoint_files=files.files,
                checkpoint_bytes=files.size,
                checkpoint_failed=files.failed,
            )
        await asyncio.sleep(settings.prune_interval)
