"""The operator commands that read the ledger: status, explain, clear, config check."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from relayer.cli import main
from relayer.store import Ledger, ObservedRow, State
from tests.unit.relayer.test_config import BASE, DEV_ENV

MESSAGE_ID = bytes.fromhex("ab" * 32)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[relayer]\ndatabase = "ledger.db"\n' + BASE)
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        ledger.record_observed_many(
            [
                ObservedRow(
                    id=MESSAGE_ID,
                    origin_chain="chain-a",
                    destination_chain="chain-b",
                    route="chain-a->chain-b",
                    nonce=7,
                    message=b"\x03" + bytes(80),
                    block_number=12,
                    block_hash=b"\x01" * 32,
                    evidence=b"",
                    finality="committee",
                )
            ]
        )
        ledger.transition(MESSAGE_ID, State.VERIFIED)
        ledger.transition(MESSAGE_ID, State.ATTESTED, signatures=(b"\x05" * 65, b"\x06" * 65))
        ledger.transition(MESSAGE_ID, State.FAILED, error="recipient reverted: 0x08c379a0")
    return path


def test_status_counts_messages_per_route_and_state(config_path: Path) -> None:
    result = CliRunner().invoke(main, ["status", "-c", str(config_path)])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("chain-a->chain-b"))
    header = result.output.splitlines()[0].split()
    assert row.split()[header.index("failed")] == "1"


def test_explain_shows_the_history_and_why_it_is_failed(config_path: Path) -> None:
    result = CliRunner().invoke(main, ["explain", "-c", str(config_path), "0xabab"])
    assert result.exit_code == 0, result.output
    assert "0x" + MESSAGE_ID.hex() in result.output
    assert "recipient reverted" in result.output
    for step in ("-> observed", "observed -> verified", "verified -> attested", "-> failed"):
        assert step in result.output
    assert "relayer clear" in result.output
    assert "finality   committee" in result.output


def test_explain_of_an_unknown_id_is_a_clear_error(config_path: Path) -> None:
    result = CliRunner().invoke(main, ["explain", "-c", str(config_path), "0xcd"])
    assert result.exit_code != 0
    assert "no message with id starting 0xcd" in result.output


def test_clear_requeues_failed_messages(config_path: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["clear", "-c", str(config_path)])
    assert result.exit_code == 0, result.output
    assert "re-queued 1" in result.output
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        record = ledger.get(MESSAGE_ID)
        assert record is not None
        assert record.state is State.ATTESTED


def test_config_check_names_the_table_and_key_of_an_unsafe_threshold(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BASE.replace("threshold = 2", "threshold = 1", 1))
    result = CliRunner().invoke(main, ["config", "check", "-c", str(path)], env=DEV_ENV)
    assert result.exit_code != 0
    assert 'chains[name="chain-a"].committee.threshold' in result.output


def test_config_check_accepts_the_example_config(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[3] / "config.toml"
    result = CliRunner().invoke(main, ["config", "check", "-c", str(example)], env=DEV_ENV)
    assert result.exit_code == 0, result.output
    assert "ok (3 chains)" in result.output


def test_lightclient_status_names_saved_states_it_cannot_use(config_path: Path) -> None:
    with Ledger.open(config_path.parent / "ledger.db") as ledger:
        ledger.save_light_client("chain-a", "relayer", "sync-committee", b"{}")
        ledger.save_light_client("gone", "relayer", "grandpa", b"{}")
    result = CliRunner().invoke(main, ["lightclient", "status", "-c", str(config_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(
        line.startswith("chain-a (sync-committee, relayer; saved ")
        and line.endswith("unused, finality is committee)")
        for line in lines
    ), result.output
    assert "  unreadable: evm chains have no light client" in lines
    assert "gone (grandpa, relayer): chain no longer configured" in lines
