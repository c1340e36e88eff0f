"""The operator commands that read the ledger (status, explain, clear) and the config commands
(check, default, schema)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from chains.evm.config import EvmChainConfig
from chains.substrate.config import SubstrateChainConfig
from relayer.cli import main
from relayer.config import config_schema
from relayer.store import Ledger, ObservedRow, State
from tests.conformance.fake.config import FakeChainConfig
from tests.unit.relayer.test_config import A5, A6, A7, BASE, DEV_ENV, FIRST_DEPLOYMENT

EXAMPLE = Path(__file__).resolve().parents[3] / "config.toml"

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
    assert any(
        line.startswith("  unreadable: saved sync-committee state does not load") for line in lines
    ), result.output
    assert "gone (grandpa, relayer): chain no longer configured" in lines


# --- config default and config schema ----------------------------------------------------------


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=DEV_ENV)
    assert result.exit_code == 0, result.output
    return result.output


def _uncommented(text: str) -> str:
    """``text`` with each commented-out ``key = value`` line restored: the keys a file shows but
    leaves out (at their default)."""
    lines = []
    for line in text.splitlines():
        match = re.fullmatch(r"(\s*)#\s?(\s*[A-Za-z_][\w-]*\s*=.*)", line)
        restored = line
        if match:
            try:
                tomllib.loads(match.group(2))
            except tomllib.TOMLDecodeError:
                pass
            else:
                restored = match.group(1) + match.group(2)
        lines.append(restored)
    return "\n".join(lines)


def _keys(text: str) -> dict[str, set[str]]:
    """The keys shown for each kind of table: [relayer], [[chains]] by type, their committee,
    [[attesters]]."""
    doc = tomllib.loads(_uncommented(text))
    keys: dict[str, set[str]] = {"relayer": set(doc.get("relayer", {}))}
    for chain in doc["chains"]:
        keys.setdefault(f"chains of type {chain['type']}", set()).update(chain)
        keys.setdefault("chains.committee", set()).update(chain.get("committee", {}))
    for attester in doc.get("attesters", []):
        keys.setdefault("attesters", set()).update(attester)
    return keys


def test_config_default_shows_the_same_keys_as_the_example_config() -> None:
    skeleton = _invoke("config", "default")
    assert _keys(skeleton) == _keys(EXAMPLE.read_text())


def test_config_default_marks_every_key_required_or_with_its_default() -> None:
    skeleton = _invoke("config", "default")
    keys = [line for line in _uncommented(skeleton).splitlines() if re.match(r"\s*[\w-]+ = ", line)]
    assert len(keys) > 40
    for line in keys:
        assert re.search(r" # \[(Required|Default: .+)\]$", line), line
    assert 'database = "relayer.db"                  # [Default: "relayer.db"]' in skeleton
    assert 'type = "substrate"' in skeleton
    assert '[Required unless finality = "confirmations"]' in skeleton


# The values an operator writes in place of the skeleton's [Required] placeholders: by table
# ([[chains]] by position: the skeleton lists the installed plugins in name order).
FILL: dict[str, dict[str, str]] = {
    "chains 0": {
        "name": '"chain-a"',
        "domain": "1000",
        "chain_id": "31337",
        "rpc": '"http://127.0.0.1:8545"',
        "gateway": f'"{FIRST_DEPLOYMENT}"',
        "type": '"evm"',
    },
    "chains 1": {
        "name": '"dot-a"',
        "domain": "3000",
        "rpc": '"ws://127.0.0.1:9944"',
        "system_chain": '"dot-a"',
        "type": '"substrate"',
    },
    "committee": {"attesters": f"[{A5}, {A6}, {A7}]", "threshold": "2"},
    "attesters": {
        "name": '"att-1"',
        "key": '{ env = "ATTESTER_KEY_1" }',
        "origins": '["chain-a", "dot-a"]',
    },
}


def _filled(skeleton: str) -> str:
    table, chains, lines = "relayer", -1, []
    for line in skeleton.splitlines():
        header = line.split("#")[0].strip()
        if header == "[[chains]]":
            chains += 1
            table = f"chains {chains}"
        elif header == "[chains.committee]":
            table = "committee"
        elif header == "[[attesters]]":
            table = "attesters"
        match = re.fullmatch(r"(\s*)([\w-]+) = (.*?)(\s+# \[Required\])", line)
        if match:
            indent, key, _, marker = match.groups()
            assert key in FILL[table], f"{table}: teach this test a value for {key}"
            line = f"{indent}{key} = {FILL[table][key]}{marker}"  # noqa: PLW2901
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_config_default_filled_in_passes_config_check(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(_filled(_invoke("config", "default")))
    output = _invoke("config", "check", "-c", str(path))
    assert "ok (2 chains)" in output


def test_config_default_placeholders_never_pass_unfilled(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(_invoke("config", "default"))
    result = CliRunner().invoke(main, ["config", "check", "-c", str(path)], env=DEV_ENV)
    assert result.exit_code != 0
    for key in ("chains[0].name", "chains[0].rpc", "chains[0].gateway", "chains[1].system_chain"):
        assert f"{key}: " in result.output
    assert "attesters[0].key.env: " in result.output
    assert "committee.attesters: " in result.output


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(_invoke("config", "schema"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def _schema_errors(schema: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_config_schema_accepts_the_example_and_the_filled_default() -> None:
    schema = _schema()
    assert _schema_errors(schema, tomllib.loads(EXAMPLE.read_text())) == []
    filled = tomllib.loads(_filled(_invoke("config", "default")))
    assert _schema_errors(schema, filled) == []


def test_config_schema_tells_chain_tables_apart_by_type() -> None:
    schema = _schema()
    items = schema["properties"]["chains"]["items"]
    assert items["discriminator"]["propertyName"] == "type"
    assert set(items["discriminator"]["mapping"]) == {"evm", "substrate"}
    evm = schema["$defs"]["EvmChain"]
    assert evm["properties"]["type"]["const"] == "evm"
    assert evm["additionalProperties"] is False
    assert {"name", "domain", "chain_id", "gateway"} <= set(evm["required"])
    assert "Gateway contract" in evm["properties"]["gateway"]["description"]


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        # (1000.0 is an integer to JSON Schema: only the loader tells it from 1000.)
        (0, "domain", "1000"),
        (0, "start_block", True),
        (0, "chain_id", 0),
        (2, "dev", "yes"),
        (0, "gatway", "0x00"),
        (0, "type", "cosmos"),
    ],
)
def test_config_schema_refuses_what_the_loader_refuses(table: int, key: str, value: Any) -> None:
    doc = tomllib.loads(EXAMPLE.read_text())
    doc["chains"][table][key] = value
    assert _schema_errors(_schema(), doc) != []


def test_config_schema_has_a_chain_table_per_plugin() -> None:
    models: dict[str, type[BaseModel]] = {
        "evm": EvmChainConfig,
        "substrate": SubstrateChainConfig,
        "fake": FakeChainConfig,
    }
    schema = config_schema(models)
    mapping = schema["properties"]["chains"]["items"]["discriminator"]["mapping"]
    assert mapping == {
        "evm": "#/$defs/EvmChain",
        "fake": "#/$defs/FakeChain",
        "substrate": "#/$defs/SubstrateChain",
    }
    assert "max_span" in schema["$defs"]["FakeChain"]["properties"]
