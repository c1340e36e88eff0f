"""``relayer start``: one process and one TaskGroup, for every role or one of them.

Watchers feed the core, the core gathers attestations, one delivery worker per destination
chain submits, a reconciler per origin chain re-reads final blocks for what the watchers
missed, and retention prunes what is final and old. Shutdown is cancellation: every
state change was committed before the side effect that follows it, so cancelling at any
``await`` loses nothing.

With ``[bus] type = "mqtt"`` and a shared (PostgreSQL) ledger the work splits over processes
(``relayer.roles``): a ``watcher`` runs the watchers and reconcilers and announces what it
recorded; a ``worker`` takes the announcements (re-verified), gathers attestations (also those
attesters publish on the bus) and delivers, with its own keys, claiming work under leases so
that no two workers submit the same message. ``all`` runs both halves in one process.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from relayer.bus import Bus, MqttBus
from relayer.bus.attestations import (
    AttestationCheck,
    AttestationCollector,
    AttestationRequester,
    blocks_short_of_quorum,
)
from relayer.checkpoints import CheckpointPruneReport, DirectoryCheckpointStore
from relayer.config import Config
from relayer.core import Core
from relayer.delivery import DeliveryWorker
from relayer.errors import ConfigError, StoreError
from relayer.follower import follow, orphan_on_reorg
from relayer.keys import KeyUnavailableError
from relayer.metrics import RelayerMetrics, serve_metrics
from relayer.plugin import Submitter, load_plugin, observing_rpc
from relayer.reconciler import Reconciler, origin_lister, origin_reader, reconcile_settings
from relayer.retry import describe_error
from relayer.roles import ObservationAnnouncer, ObservationIntake, Role
from relayer.safety import Safety
from relayer.store import Ledger, PruneReport

__all__ = ["prune_expired", "run_daemon", "watch_balance"]

OWNER = "relayer"


async def run_daemon(
    config: Config, log: Any, role: Role = Role.ALL, instance: str | None = None
) -> None:
    """Run ``role`` until cancelled. ``instance`` names this watcher among several on one
    shared ledger (each follows the chains with a cursor of its own); without it the cursor is
    the single daemon's. Raises ``ConfigError`` for a split role without a bus."""
    if role is not Role.ALL and config.bus.type != "mqtt":
        raise ConfigError(
            f'relayer start --role {role.value} needs [bus] type = "mqtt" (and a PostgreSQL '
            "[relayer] database): the roles of separate processes meet through them"
        )
    metrics = RelayerMetrics.for_config(config)
    # Every RPC call of this daemon's tasks (they inherit the context) is timed and counted.
    with observing_rpc(metrics):
        if config.bus.type == "mqtt":
            async with MqttBus(config.bus.mqtt, log=log) as bus:
                await _run(config, metrics, log, role, bus, instance)
        else:
            await _run(config, metrics, log, role, None, instance)


async def _run(
    config: Config,
    metrics: RelayerMetrics,
    log: Any,
    role: Role,
    bus: Bus | None,
    instance: str | None,
) -> None:
    owner = OWNER if instance is None else f"{OWNER}:{instance}"
    ledger = Ledger.open(config.relayer.database)
    safety = Safety(config, ledger, metrics=metrics, log=log, by=f"{owner}@{socket.gethostname()}")
    ledger.start_checkpointer(log=log)
    runner = None
    try:
        host, port = config.relayer.health_address
        try:
            runner = await serve_metrics(ledger, host, port, log, metrics=metrics)
        except OSError as exc:
            # Another relayer (or anything) on the port: keep relaying, just without metrics.
            log.error("metrics.unavailable", endpoint=f"{host}:{port}", error=str(exc))
        checkpoints = DirectoryCheckpointStore(config.relayer.checkpoints)
        core = Core(config, ledger, checkpoints, log, metrics=metrics, safety=safety)
        # Before any work: a route paused before this start must not be claimed once.
        await safety.refresh()
        for chain in config.chains:
            if chain.finality == "confirmations":
                log.warning(
                    "chain.insecure_finality",
                    chain=chain.name,
                    detail="finality = confirmations trusts block depth alone; development only",
                )
        async with asyncio.TaskGroup() as group:
            # Pauses and resumes of other processes (`relayer route`) take effect within 1 s.
            group.create_task(safety.watch(interval=1.0), name="safety:pauses")
            if role.watches:
                # The watchers' answers that do not verify count towards the breaker.
                metrics.add_proof_listener(
                    lambda chain, stage, reason: (
                        safety.read_failed(chain, reason) if stage == "read" else None
                    )
                )
                # A watcher of a split deployment announces what it recorded to the workers.
                sink: Any = core.accept
                if bus is not None:
                    sink = ObservationAnnouncer(bus, config, log).sink(core.accept)
                # A reorg beyond finality orphans what the rescan does not find again.
                orphan = orphan_on_reorg(ledger, log)
                for chain in config.chains:
                    watcher = follow(
                        chain,
                        ledger=ledger,
                        owner=owner,
                        rpc_url=None,
                        log=log,
                        metrics=metrics,
                        on_reorg=orphan,
                    )
                    group.create_task(watcher.run(sink), name=f"watch:{chain.name}")
            submitters: dict[str, Submitter] = {}
            if role.works:
                _start_work(
                    group, config, ledger, core, checkpoints, submitters, metrics, safety, log
                )
                if bus is not None:
                    _start_bus_intake(group, config, ledger, core, checkpoints, bus, log)
            for chain in config.chains if role.watches else ():
                interval, window = reconcile_settings(config, chain)
                if interval <= 0:
                    log.info("reconcile.disabled", chain=chain.name)
                    continue
                reader = origin_reader(ledger, chain, log)
                reconciler = Reconciler(
                    config=config,
                    chain=chain,
                    reader=reader,
                    ledger=ledger,
                    sink=core.accept,
                    submitters=submitters,
                    log=log,
                    metrics=metrics,
                    lister=origin_lister(chain, reader),
                    owner=owner,
                )
                group.create_task(
                    reconciler.run(interval=interval, window=window),
                    name=f"reconcile:{chain.name}",
                )
            log.info("relayer.started", role=role.value, chains=[c.name for c in config.chains])
    finally:
        if runner is not None:
            await runner.cleanup()
        ledger.close()


def _start_work(
    group: asyncio.TaskGroup,
    config: Config,
    ledger: Ledger,
    core: Core,
    checkpoints: DirectoryCheckpointStore,
    submitters: dict[str, Submitter],
    metrics: RelayerMetrics,
    safety: Safety,
    log: Any,
) -> None:
    """A worker's tasks: attestations, retention, a delivery worker and a balance watch per
    destination chain with a key here (its submitter added to ``submitters``)."""
    group.create_task(core.collect_attestations(), name="attestations")
    if config.relayer.retention_days > 0:
        group.create_task(_prune_periodically(config, ledger, checkpoints, log), name="prune")
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
        submitter = plugin.submitter(chain, signer=signer, log=log)
        submitters[chain.name] = submitter
        worker = DeliveryWorker(
            chain=chain.name,
            submitter=submitter,
            ledger=ledger,
            log=log,
            settings=plugin.delivery_settings(chain),
            wake=core.listen_attested(),
            metrics=metrics,
            lease=config.relayer.lease,
            safety=safety,
            fees=safety.fee_window(
                chain.name, signer=signer.printable_address, unit=submitter.unit
            ),
        )
        group.create_task(worker.run(), name=f"deliver:{chain.name}")
        group.create_task(
            watch_balance(
                chain.name,
                signer.printable_address,
                submitter,
                metrics,
                interval=config.relayer.balance_interval,
                log=log,
            ),
            name=f"balance:{chain.name}",
        )


def _start_bus_intake(
    group: asyncio.TaskGroup,
    config: Config,
    ledger: Ledger,
    core: Core,
    checkpoints: DirectoryCheckpointStore,
    bus: Bus,
    log: Any,
) -> None:
    """A worker's side of the bus: the watchers' observations (re-verified, load shared with
    the other workers), the attesters' signatures (checked, kept in this process's checkpoint
    directory), and requests for the blocks still short of a quorum."""

    async def known(ids: Sequence[bytes]) -> set[bytes]:
        return set(await asyncio.to_thread(ledger.states, ids))

    intake = ObservationIntake(bus, config, core.accept, log, known=known)
    group.create_task(intake.run(), name="bus:observations")
    collector = AttestationCollector(
        bus,
        checkpoints,
        AttestationCheck(config, core.plugins),
        log,
        origins=[chain.domain for chain in config.chains if chain.committee is not None],
        # Wake the core once signatures are stored, rather than at its next poll.
        on_stored=core.verified_event.set,
    )
    group.create_task(collector.run(), name="bus:attestations")
    requester = AttestationRequester(
        bus,
        blocks_short_of_quorum(ledger, config),
        log,
        # A worker still taking notices is behind, not short of them: re-sends would only
        # add to its backlog (measured: 3.7x the notices in a 10,000-message run).
        busy=lambda: time.monotonic() - collector.last_taken < 2.0,
    )
    group.create_task(requester.run(), name="bus:attestation-requests")


async def watch_balance(
    chain: str,
    account: str,
    submitter: Submitter,
    metrics: RelayerMetrics,
    *,
    interval: float,
    log: Any,
) -> None:
    """Read the balance of the key that delivers to ``chain`` every ``interval`` seconds (the
    balance metric, and the min_balance check of /readyz). A failed read keeps the last value:
    the delivery worker reports the endpoint's outage itself."""
    while True:
        try:
            async with asyncio.timeout(30.0):
                balance = await submitter.balance()
        except Exception as exc:  # noqa: BLE001  (reading a balance must never stop delivery)
            log.debug("balance.read_failed", chain=chain, error=describe_error(exc))
        else:
            metrics.balance_seen(chain, account, balance, submitter.unit)
        await asyncio.sleep(interval)


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
