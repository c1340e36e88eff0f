"""``/metrics`` (Prometheus, ``prometheus-client``), ``/healthz``, ``/readyz`` and ``/explain/<id>``
(what ``relayer explain`` says, as JSON) on the configured loopback address.

Every daemon has a ``RelayerMetrics`` of its own, with its own ``CollectorRegistry`` (tests run
several daemons in one process). Events are counted where they happen (the core, the delivery
workers, the followers, the plugins' RPC layers through ``relayer.plugin.observe_rpc``); what
the ledger holds (messages by route and state, the backlog and its age) is read when scraped, in
a worker thread, so that a scrape never holds the event loop while SQLite answers. No handler
changes anything: a scraper or an operator's tool can never disturb delivery.

Amounts are in each chain's smallest unit (the ``unit`` label: "wei", "planck"); times in
seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from relayer.explain import ExplainError, explanation, resolve
from relayer.health import HEALTH
from relayer.readiness import (
    Backlog,
    Balances,
    ChainHeads,
    ChainLimits,
    EndpointVerdicts,
    Paused,
    Spending,
    problems,
)
from relayer.store import Ledger, State

if TYPE_CHECKING:
    from relayer.config import Config

__all__ = [
    "PENDING_STATES",
    "LedgerSnapshot",
    "RelayerMetrics",
    "metrics_text",
    "serve_metrics",
]

# A `_created` timestamp beside every counter and histogram doubles the series for nothing an
# alert uses (Prometheus knows when it first saw a series).
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client

#: states of a message the relayer still owes work: the backlog
PENDING_STATES = frozenset({State.OBSERVED, State.VERIFIED, State.ATTESTED, State.SUBMITTED})

# Seconds: a block or two to a few minutes (a fee bump waits submit_timeout, 30 s by default).
_LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """What a scrape reports of the ledger."""

    counts: Mapping[tuple[str, State], int] = field(default_factory=dict)
    backlog: Mapping[str, Backlog] = field(default_factory=dict)

    @staticmethod
    def read(ledger: Ledger) -> LedgerSnapshot:
        """Blocking (the ledger's queries): call it from a worker thread."""
        counts = ledger.counts()
        backlog = {route: Backlog(size=0, oldest_at=None) for route, _ in counts}
        for route, size, oldest_at in _backlog_rows(ledger):
            backlog[route] = Backlog(size=int(size), oldest_at=float(oldest_at))
        return LedgerSnapshot(counts=counts, backlog=backlog)


_PENDING_SQL = ", ".join("?" for _ in PENDING_STATES)


def _backlog_rows(ledger: Ledger) -> list[tuple[str, int, float]]:
    """(route, undelivered messages, first observed) per route with a backlog."""
    # One aggregate over the (route, state) index, as ``Ledger.counts`` does; reading the rows
    # themselves (``in_state``) held the ledger's lock for half a second at a 10,000-message
    # backlog, and every writer waits on that lock. It belongs in the store as a method of
    # its own (both engines take this SQL as it is): until then, its read context.
    with ledger._read() as conn:
        rows = conn.execute(
            "SELECT route, count(*), min(created_at) FROM messages"  # noqa: S608 -- constant
            f" WHERE state IN ({_PENDING_SQL}) GROUP BY route",
            tuple(state.value for state in sorted(PENDING_STATES)),
        ).fetchall()
    return [(str(route), int(n), float(at)) for route, n, at in rows]


class RelayerMetrics:
    """One daemon's metrics and readiness state. Its methods are what the roles call when
    something happens; each costs a dictionary lookup and a lock, nothing more."""

    def __init__(
        self,
        *,
        limits: Mapping[str, ChainLimits] | None = None,
        backlog_slo: float = 0.0,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.limits: Mapping[str, ChainLimits] = dict(limits or {})
        self.backlog_slo = backlog_slo
        self.heads = ChainHeads(list(self.limits))
        self.balances = Balances()
        registry = self.registry
        self.proof_failures = Counter(
            "relayer_proof_failures",
            "Evidence that failed verification, by origin chain and reason: 'verify' failures "
            "are observations the core rejected, 'read' failures are endpoint answers that did "
            "not hash together (nothing of them was kept).",
            ["chain", "stage", "reason"],
            registry=registry,
        )
        self.submission_latency = Histogram(
            "relayer_submission_latency_seconds",
            "Seconds from a message becoming due for delivery (attested, or its retry due) "
            "to its signed transaction being recorded, by destination chain.",
            ["chain"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.confirmation_latency = Histogram(
            "relayer_confirmation_latency_seconds",
            "Seconds from signing a delivery transaction to seeing it included, by "
            "destination chain.",
            ["chain"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "relayer_retries",
            "Delivery retries by destination chain: 'scheduled' (a message set aside for a "
            "later attempt), 'failed' (its retry budget spent: `relayer clear` re-queues it), "
            "'fee_bump' (a stuck transaction replaced with higher fees).",
            ["chain", "kind"],
            registry=registry,
        )
        self.fee_paid = Counter(
            "relayer_fee_paid",
            "Fees paid by delivery transactions, in the destination chain's smallest unit "
            "(the unit label).",
            ["chain", "unit"],
            registry=registry,
        )
        self.balance = Gauge(
            "relayer_signer_balance",
            "Balance of the key that delivers to a chain, in its smallest unit (the unit "
            "label), as last read.",
            ["chain", "signer", "unit"],
            registry=registry,
        )
        self.rpc_latency = Histogram(
            "relayer_rpc_latency_seconds",
            "Seconds per RPC call, by endpoint (scheme, host and port only) and method.",
            ["endpoint", "method"],
            buckets=_RPC_BUCKETS,
            registry=registry,
        )
        self.endpoints = EndpointVerdicts()
        self.endpoint_healthy = Gauge(
            "relayer_rpc_endpoint_healthy",
            "1 while a chain endpoint is healthy, 0 while an endpoint pool has it marked "
            "unhealthy (failing, disagreeing with the quorum, or lagging; endpoint.unhealthy "
            "logs why). Reads and submissions go to the healthy ones.",
            ["chain", "endpoint"],
            registry=registry,
        )
        self.rpc_errors = Counter(
            "relayer_rpc_errors",
            "RPC calls that failed, by endpoint, method and error class.",
            ["endpoint", "method", "error"],
            registry=registry,
        )
        self.head = Gauge(
            "relayer_chain_head",
            "Newest block number seen on each chain (final or not).",
            ["chain"],
            registry=registry,
        )
        self.stream_reconnects = Counter(
            "relayer_stream_reconnects",
            "Head subscriptions restarted by the watchdog after saying nothing for longer "
            "than stall_after_blocks block times.",
            ["chain"],
            registry=registry,
        )
        self.reconciled = Counter(
            "relayer_reconciled",
            "What the reconciler's re-scans of final blocks found the event stream or the "
            "ledger had missed, by origin chain: 'healed' (a message handed to verification), "
            "'marked_delivered' (the destination had delivered it already), "
            "'delivery_missing' (the ledger says delivered, the destination does not know it).",
            ["chain", "kind"],
            registry=registry,
        )
        self.policy_refused = Counter(
            "relayer_policy_refused",
            "Messages recorded rejected by a route's allowlist (the rule label: 'sender' or "
            "'recipient'); they never count towards the circuit breaker.",
            ["route", "rule"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "relayer_rate_limited",
            "Claimed messages a route's rate_limit held back for a later pass (a message "
            "counts at every pass it waits; nothing is dropped).",
            ["route"],
            registry=registry,
        )
        self.breaker_trips = Counter(
            "relayer_breaker_trips",
            "Routes paused by the circuit breaker, by reason: 'rejections' (verification "
            "failures of the route's messages), 'read_failures' (its origin endpoint's answers "
            "did not verify), 'foreign_transaction' (a transaction from our key that the "
            "daemon did not send).",
            ["route", "reason"],
            registry=registry,
        )
        self.route_paused = Gauge(
            "relayer_route_paused",
            "1 while a route is paused (by the breaker or `relayer route pause`): its messages "
            "are verified and kept, not delivered, until `relayer route resume`.",
            ["route"],
            registry=registry,
        )
        #: each destination chain's fee window (``relayer.safety``), for the scrape and /readyz
        self.spending: dict[str, Spending] = {}
        #: the paused routes as last read from the ledger (``relayer.safety``), for /readyz
        self.paused: Mapping[str, Paused] = {}
        self._proof_listeners: list[Callable[[str, str, str], None]] = []
        self._scrape = _ScrapeCollector(self)
        registry.register(self._scrape)

    @staticmethod
    def for_config(config: Config) -> RelayerMetrics:
        return RelayerMetrics(
            limits={
                chain.name: ChainLimits(
                    block_time=chain.block_time,
                    stall_after_blocks=chain.stall_after_blocks,
                    min_balance=chain.min_balance,
                )
                for chain in config.chains
            },
            backlog_slo=config.relayer.backlog_slo,
        )

    # --- events ----------------------------------------------------------------------------------

    def rpc_call(self, endpoint: str, method: str, seconds: float, error: str | None) -> None:
        """``relayer.plugin.RpcObserver``."""
        self.rpc_latency.labels(endpoint, method).observe(seconds)
        if error is not None:
            self.rpc_errors.labels(endpoint, method, error).inc()

    def endpoint_health(
        self, chain: str, endpoint: str, *, judge: int, healthy: bool, reason: str | None
    ) -> None:
        """``relayer.plugin.RpcObserver``."""
        now = self.endpoints.judged(chain, endpoint, judge=judge, healthy=healthy, reason=reason)
        self.endpoint_healthy.labels(chain, endpoint).set(int(now))

    def proof_rejected(self, chain: str, stage: str, reason: str) -> None:
        self.proof_failures.labels(chain, stage, reason_label(reason)).inc()
        for listener in self._proof_listeners:
            listener(chain, stage, reason)

    def add_proof_listener(self, listener: Callable[[str, str, str], None]) -> None:
        """Call ``listener(chain, stage, reason)`` at every ``proof_rejected`` (the circuit
        breaker counts the watchers' "read" failures through it)."""
        self._proof_listeners.append(listener)

    def head_seen(self, chain: str, number: int) -> None:
        if self.heads.seen(chain, number):
            self.head.labels(chain).set(number)

    def balance_seen(self, chain: str, signer: str, balance: int, unit: str) -> None:
        self.balances.seen(chain, signer, balance, unit)
        self.balance.labels(chain, signer, unit).set(balance)

    def reconcile_found(self, chain: str, kind: str, count: int) -> None:
        if count:
            self.reconciled.labels(chain, kind).inc(count)

    # --- scrapes ---------------------------------------------------------------------------------

    def exposition(self, snapshot: LedgerSnapshot) -> bytes:
        """The text format, with ``snapshot`` as the ledger's part."""
        self._scrape.snapshot = snapshot
        return generate_latest(self.registry)

    def ready(self, snapshot: LedgerSnapshot) -> list[dict[str, str]]:
        """The failed readiness checks (empty: ready)."""
        found = problems(
            heads=self.heads,
            balances=self.balances,
            limits=self.limits,
            backlog=snapshot.backlog,
            backlog_slo=self.backlog_slo,
            now=time.time(),
            spending=self.spending,
            paused=self.paused,
            endpoints=self.endpoints,
        )
        return [p.as_json() for p in found]


# Hex, numbers and quoted values in a rejection's text make it unique per message: the reason
# label keeps only its fixed wording (the part before the first colon), so that the number of
# series stays that of the distinct checks.
_VARIABLE_PART = re.compile(r"0x[0-9a-fA-F]+|\d+|'[^']*'|\"[^\"]*\"|`[^`]*`")


def reason_label(reason: str) -> str:
    """A bounded label for a rejection reason: its fixed wording, without the values."""
    head = reason.split(":", 1)[0]
    return " ".join(_VARIABLE_PART.sub("", head).split())[:60] or "unspecified"


class _ScrapeCollector(Collector):
    """The metrics read when scraped: the ledger's (from the snapshot taken for this scrape),
    the endpoints' health and how long each chain's head has stood still."""

    def __init__(self, metrics: RelayerMetrics) -> None:
        self.metrics = metrics
        self.snapshot = LedgerSnapshot()

    def describe(self) -> Iterable[Metric]:
        return ()  # collected on scrape only; registering must not read the ledger

    def collect(self) -> Iterable[Metric]:
        snapshot = self.snapshot
        messages = GaugeMetricFamily(
            "relayer_messages",
            "Messages in the ledger per route and state.",
            labels=["route", "state"],
        )
        for (route, state), count in sorted(snapshot.counts.items()):
            messages.add_metric([route, state.value], count)
        yield messages
        size = GaugeMetricFamily(
            "relayer_backlog_messages",
            "Undelivered messages per route (observed, verified, attested or submitted).",
            labels=["route"],
        )
        age = GaugeMetricFamily(
            "relayer_backlog_oldest_age_seconds",
            "Seconds since the oldest undelivered message of a route was observed (0: none).",
            labels=["route"],
        )
        now = time.time()
        for route, backlog in sorted(snapshot.backlog.items()):
            size.add_metric([route], backlog.size)
            oldest = backlog.oldest_at
            age.add_metric([route], 0.0 if oldest is None else max(0.0, now - oldest))
        yield size
        yield age
        up = GaugeMetricFamily(
            "relayer_endpoint_up",
            "Whether the last call to a chain endpoint succeeded.",
            labels=["chain", "endpoint"],
        )
        for chain, endpoint, is_up in HEALTH.endpoints():
            up.add_metric([chain, endpoint], int(is_up))
        yield up
        still = GaugeMetricFamily(
            "relayer_chain_head_age_seconds",
            "Seconds since each chain's head last advanced (since the start, before any).",
            labels=["chain"],
        )
        for chain in self.metrics.limits:
            still.add_metric([chain], self.metrics.heads.still_for(chain))
        yield still
        spent = GaugeMetricFamily(
            "relayer_fee_spent_last_hour",
            "Fees the delivering key paid over the last hour, in the chain's smallest unit, "
            "for chains with a fee_budget_per_hour.",
            labels=["chain", "signer", "unit"],
        )
        exhausted = GaugeMetricFamily(
            "relayer_fee_budget_exhausted",
            "1 while a chain's delivering key has spent its fee_budget_per_hour: no new "
            "delivery transaction is sent until the hour has room.",
            labels=["chain"],
        )
        for chain, window in sorted(self.metrics.spending.items()):
            paid = window.spent()
            spent.add_metric([chain, window.signer, window.unit], paid)
            exhausted.add_metric([chain], int(paid >= window.budget))
        yield spent
        yield exhausted


def metrics_text(ledger: Ledger, metrics: RelayerMetrics | None = None) -> str:
    """The exposition text as a scrape would return it now (blocking: tests and tools)."""
    return (metrics or RelayerMetrics()).exposition(LedgerSnapshot.read(ledger)).decode()


async def serve_metrics(
    ledger: Ledger,
    host: str,
    port: int,
    log: Any,
    *,
    metrics: RelayerMetrics | None = None,
) -> web.AppRunner:
    metrics = metrics or RelayerMetrics()

    async def snapshot() -> LedgerSnapshot:
        return await asyncio.to_thread(LedgerSnapshot.read, ledger)

    async def healthz(_: web.Request) -> web.Response:
        # The process is up and serving: that is all /healthz says (an orchestrator restarts
        # on its failure). What is wrong with the relaying is /readyz's business.
        down = [f"{c} {e}" for c, e, up in HEALTH.endpoints() if not up]
        counts = (await snapshot()).counts
        body: dict[str, object] = {
            "status": "ok",
            "down": down,
            "failed": sum(n for (_, s), n in counts.items() if s is State.FAILED),
            "messages": {f"{r} {s.value}": n for (r, s), n in counts.items()},
        }
        return _json(body, 200)

    async def readyz(_: web.Request) -> web.Response:
        found = metrics.ready(await snapshot())
        body = {"status": "unready" if found else "ready", "problems": found}
        return _json(body, 503 if found else 200)

    async def exposition(_: web.Request) -> web.Response:
        body = metrics.exposition(await snapshot())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def explain(request: web.Request) -> web.Response:
        try:
            record, history = resolve(ledger, request.match_info["message_id"])
        except ExplainError as exc:
            return _json({"error": str(exc)}, exc.status)
        return _json(explanation(record, history), 200)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", exposition)
    app.router.add_get("/explain/{message_id}", explain)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics.listening", endpoint=f"http://{host}:{port}")
    return runner


def _json(body: object, status: int) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")
