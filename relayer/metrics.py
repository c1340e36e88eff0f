"""``/healthz``, ``/metrics`` (Prometheus text format) and ``/explain/<id>`` (what
``relayer explain`` says, as JSON) on the configured loopback address.

All read the ledger and the endpoint-health registry; none changes anything, so a scraper or an
operator's tool can never disturb delivery.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from relayer.explain import ExplainError, explanation, resolve
from relayer.health import HEALTH
from relayer.store import Ledger, State

__all__ = ["metrics_text", "serve_metrics"]


def metrics_text(ledger: Ledger) -> str:
    lines = [
        "# HELP relayer_messages Messages in the ledger per route and state.",
        "# TYPE relayer_messages gauge",
    ]
    for (route, state), count in sorted(ledger.counts().items()):
        lines.append(f'relayer_messages{{route="{route}",state="{state.value}"}} {count}')
    lines += [
        "# HELP relayer_endpoint_up Whether the last call to a chain endpoint succeeded.",
        "# TYPE relayer_endpoint_up gauge",
    ]
    for chain, endpoint, up in HEALTH.endpoints():
        lines.append(f'relayer_endpoint_up{{chain="{chain}",endpoint="{endpoint}"}} {int(up)}')
    return "\n".join(lines) + "\n"


async def serve_metrics(ledger: Ledger, host: str, port: int, log: Any) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        down = [f"{c} {e}" for c, e, up in HEALTH.endpoints() if not up]
        counts = {f"{r} {s.value}": n for (r, s), n in ledger.counts().items()}
        failed = sum(n for (_, s), n in ledger.counts().items() if s is State.FAILED)
        body: dict[str, object] = {
            "status": "degraded" if down else "ok",
            "down": down,
            "failed": failed,
            "messages": counts,
        }
        return web.Response(
            text=json.dumps(body), status=503 if down else 200, content_type="application/json"
        )

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=metrics_text(ledger), content_type="text/plain")

    async def explain(request: web.Request) -> web.Response:
        try:
            record, history = resolve(ledger, request.match_info["message_id"])
        except ExplainError as exc:
            body = json.dumps({"error": str(exc)})
            return web.Response(text=body, status=exc.status, content_type="application/json")
        return web.Response(
            text=json.dumps(explanation(record, history)), content_type="application/json"
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/explain/{message_id}", explain)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics.listening", endpoint=f"http://{host}:{port}")
    return runner
