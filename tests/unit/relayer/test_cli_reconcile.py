"""`relayer clear --route a->b --from-block N`: the reconciler's pass on demand, then the
failed messages re-queued as plain `clear` does."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from relayer.cli import main
from relayer.store import Ledger, State
from tests.unit.chains.evm.test_evidence import single
from tests.unit.relayer.test_core import Harness, make_id
from tests.unit.relayer.test_reconciler import FakeDestination, FakeReader


def test_clear_from_block_verifies_what_the_stream_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path)
    h.ledger.set_cursor("chain-a", "relayer", 80, (80).to_bytes(32, "big"))
    h.ledger.close()
    missed = single()
    reader = FakeReader([missed])
    monkeypatch.setattr("relayer.reconciler.origin_reader", lambda *_: reader)
    monkeypatch.setattr("relayer.reconciler._submitter", lambda *_: FakeDestination())
    result = CliRunner().invoke(
        main,
        [
            "clear",
            "-c",
            str(tmp_path / "relayer.toml"),
            "--route",
            "chain-a->chain-b",
            "--from-block",
            "40",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "chain-a blocks 40..80: 1 message(s) of chain-a->chain-b; 1 missing" in result.output
    assert "re-queued 0 failed message(s)" in result.output
    with Ledger.open(h.config.relayer.database) as ledger:
        record = ledger.get(make_id(missed.message))
    assert record is not None and record.state is State.VERIFIED


def test_clear_from_block_needs_a_route(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.ledger.close()
    result = CliRunner().invoke(
        main, ["clear", "-c", str(tmp_path / "relayer.toml"), "--from-block", "40"]
    )
    assert result.exit_code == 2
    assert "--from-block needs --route" in result.output


def test_clear_from_block_names_an_unknown_chain(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.ledger.close()
    result = CliRunner().invoke(
        main,
        [
            "clear",
            "-c",
            str(tmp_path / "relayer.toml"),
            "--route",
            "chain-a->nowhere",
            "--from-block",
            "0",
        ],
    )
    assert result.exit_code == 1
    assert "no chain named 'nowhere'" in result.output
