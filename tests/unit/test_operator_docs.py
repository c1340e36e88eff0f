"""docs/operators.md lists every metric family a daemon exposes: a metric added without its
line in the operator's table fails here."""

from __future__ import annotations

import re
from pathlib import Path

from relayer.metrics import RelayerMetrics, metrics_text
from relayer.store import Ledger

REPO = Path(__file__).resolve().parents[2]


def test_every_metric_family_is_documented(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "relayer.db") as ledger:
        text = metrics_text(ledger, RelayerMetrics())
    families = {
        name.removesuffix("_total")
        for name in re.findall(r"^# HELP (relayer_\w+)", text, flags=re.MULTILINE)
    }
    assert len(families) >= 10, text
    documented = (REPO / "docs" / "operators.md").read_text(encoding="utf-8")
    missing = sorted(f for f in families if f"`{f}" not in documented)
    assert not missing, f"metrics missing from docs/operators.md's table: {missing}"
