"""`relayer route pause | resume | list`: the ledger's pauses as an operator handles them."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from relayer.cli import main
from relayer.store import Ledger
from tests.unit.relayer.test_config import BASE

ROUTES = """
[routes."chain-a->chain-b"]
senders = ["0x01"]
rate_limit = 2.0
pause_after_rejections = 4
"""


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[relayer]\ndatabase = "ledger.db"\n' + BASE + ROUTES)
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["route", *args])
    return result.exit_code, result.output


def test_pause_list_and_resume_a_route(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    code, out = _run("pause", "-c", config, "chain-a->chain-b", "--reason", "endpoint swap")
    assert code == 0, out
    assert "resume with: relayer route resume chain-a->chain-b" in out
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        pause = ledger.paused_routes()["chain-a->chain-b"]
    assert pause.reason == "endpoint swap"
    assert pause.paused_by.startswith("cli:")

    code, out = _run("pause", "-c", config, "chain-a->chain-b", "--reason", "again")
    assert code == 0, out
    assert "was paused already" in out and "endpoint swap" in out

    code, out = _run("list", "-c", config)
    assert code == 0, out
    lines = out.splitlines()
    paused = next(line for line in lines if line.startswith("chain-a->chain-b"))
    assert "PAUSED since" in paused and "endpoint swap" in paused
    assert "chain-b->chain-a  active" in lines
    assert "  senders     0x" + "00" * 31 + "01" in lines
    assert "  rate limit  2 msg/s, burst 2" in lines
    assert "  breaker     pauses after 4 verification failures in a row" in lines
    assert "  senders     anyone" in lines  # chain-b->chain-a has no table

    code, out = _run("resume", "-c", config, "chain-a->chain-b")
    assert code == 0, out
    assert out.startswith("resumed chain-a->chain-b (paused ")
    code, out = _run("resume", "-c", config, "chain-a->chain-b")
    assert (code, out) == (0, "chain-a->chain-b is not paused\n")
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        assert ledger.paused_routes() == {}


def test_an_unknown_route_is_refused_naming_the_configured_chains(tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    for command in (["pause", "--reason", "x"], ["resume"]):
        code, out = _run(*command, "-c", config, "chain-a->chain-z")
        assert code != 0
        assert "unknown chain 'chain-z' (configured chains: chain-a, chain-b)" in out
    code, out = _run("pause", "-c", config, "chain-a", "--reason", "x")
    assert code != 0
    assert 'a route is written "origin->destination"' in out


def test_a_pause_of_a_route_no_longer_configured_is_listed_and_can_be_lifted(
    tmp_path: Path,
) -> None:
    config = str(_config(tmp_path))
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        ledger.pause_route("chain-a->gone", reason="old", by="relayer@host")
    code, out = _run("list", "-c", config)
    assert code == 0, out
    assert "  (no longer configured)" in out
    code, out = _run("resume", "-c", config, "chain-a->gone")
    assert code == 0, out
    assert out.startswith("resumed chain-a->gone")
