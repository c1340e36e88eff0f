"""The config's types are strict: every field of every table refuses a value of the wrong TOML
type, naming its key, and a quoted number is a number only where it came from ``${VAR}``.

The fields are found by walking the models, so a field added later is tested without a test
being written for it.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from chains.evm.config import EvmChainConfig
from chains.substrate.config import SubstrateChainConfig
from relayer.config import (
    AttesterConfig,
    ChainConfig,
    Committee,
    Config,
    RelayerSettings,
    load_config,
)
from relayer.errors import ConfigError
from tests.conformance.fake.config import FakeChainConfig

PLUGINS: dict[str, type[BaseModel]] = {
    "evm": EvmChainConfig,
    "substrate": SubstrateChainConfig,
    "fake": FakeChainConfig,
}
ATTESTERS = [
    "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
    "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
    "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
]
COMMITTEE = {"attesters": ATTESTERS, "threshold": 2}

# One chain of each family, every table the schema has; each test changes one value.
DOC: dict[str, Any] = {
    "relayer": {"log_level": "info"},
    "chains": [
        {
            "name": "chain-a",
            "type": "evm",
            "domain": 1000,
            "chain_id": 31337,
            "rpc": "http://127.0.0.1:8545",
            "gateway": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "submitter_key": {"env": "RELAYER_KEY_CHAIN_A"},
            "sync_committee": {
                "beacon_api": "http://127.0.0.1:5052",
                "trusted_block_root": "0x" + "11" * 32,
            },
            "committee": COMMITTEE,
        },
        {
            "name": "dot-a",
            "type": "substrate",
            "domain": 3000,
            "rpc": "ws://127.0.0.1:9944",
            "system_chain": "dot-a",
            "submitter_key": {"keystore": "dot.json", "password_env": "DOT_PASSWORD"},
            "grandpa": {"prover": "ws://127.0.0.1:9945", "checkpoint": "checkpoint.json"},
            "committee": COMMITTEE,
        },
        {
            "name": "fake-a",
            "type": "fake",
            "domain": 4000,
            "rpc": "http://127.0.0.1:7000",
            "network": "fake-a",
            "submitter_key": {"env": "RELAYER_KEY_FAKE_A"},
            "committee": COMMITTEE,
        },
    ],
    "attesters": [
        {
            "name": "att-1",
            "key": {"env": "ATTESTER_KEY_1"},
            "origins": ["chain-a"],
            "rpc": {"chain-a": "http://127.0.0.1:8545"},
        }
    ],
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    assert isinstance(value, dict), value
    return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"


def _toml(doc: Mapping[str, Any]) -> str:
    lines = ["[relayer]", *(f"{k} = {_toml_value(v)}" for k, v in doc["relayer"].items())]
    for section in ("chains", "attesters"):
        for table in doc[section]:
            lines += ["", f"[[{section}]]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def _load(tmp_path: Path, doc: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(_toml(doc), encoding="utf-8")
    return load_config(path, plugin_models=PLUGINS, env=env or {})


def _refusal(tmp_path: Path, doc: Mapping[str, Any], env: Mapping[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, doc, env)
    message = str(info.value)
    assert "input_value" not in message and "pydantic" not in message
    return message


def _with(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(DOC))
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return doc


# --- the fields, found by walking the models ---------------------------------------------------

Kind = Literal["int", "float", "bool", "str", "array", "table", "confirmations"]

#: values of the wrong TOML type for a field of each kind; the first three are the issue's
WRONG: dict[Kind, tuple[Any, ...]] = {
    "int": ("1000", 1000.0, True),
    "float": ("1.5", True, [1.5]),
    "bool": ("true", 1, "yes"),
    "str": (1, True, 1.5, ["x"]),
    "array": ("x", 1, {"a": 1}),
    "table": ("x", 1, ["x"]),
    "confirmations": ("2", 2.0, True),
}


def _kind(annotation: Any) -> Kind:
    if annotation == EvmChainConfig.model_fields["confirmations"].annotation:
        return "confirmations"  # int | "finalized"
    origin = get_origin(annotation)
    if origin is Annotated:
        return _kind(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        assert len(members) == 1, annotation
        return _kind(members[0])
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if annotation in (str, Path) or origin is Literal:
        return "str"
    if origin in (tuple, list):
        return "array"
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "table"
    raise AssertionError(f"no kind for {annotation!r}: teach this test the new field type")


def _table_annotation(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _fields(
    model: type[BaseModel], path: tuple[str | int, ...], where: str
) -> Iterator[tuple[tuple[str | int, ...], str, Kind, Any]]:
    """Every field below ``model``: its path in DOC, its rendered key, its kind, its annotation."""
    for name, field in model.model_fields.items():
        if model is ChainConfig and name == "plugin":
            continue
        yield (*path, name), f"{where}.{name}", _kind(field.annotation), field.annotation
        nested = _table_annotation(field.annotation)
        if nested is not None:
            yield from _fields(nested, (*path, name), f"{where}.{name}")


def _all_fields() -> list[tuple[tuple[str | int, ...], str, Kind, Any]]:
    found = list(_fields(RelayerSettings, ("relayer",), "relayer"))
    for i, table in enumerate(DOC["chains"]):
        where = f'chains[name="{table["name"]}"]'
        found += _fields(ChainConfig, ("chains", i), where)
        found += _fields(PLUGINS[table["type"]], ("chains", i), where)
    found += _fields(AttesterConfig, ("attesters", 0), 'attesters[name="att-1"]')
    return found


FIELDS = _all_fields()
WRONG_CASES = [
    pytest.param(path, where, value, id=f"{where}={value!r}")
    for path, where, kind, _ in FIELDS
    for value in WRONG[kind]
]


def test_the_walk_covers_every_model() -> None:
    walked = {where.rsplit(".", 1)[0].split(".", 1)[-1] for _, where, _, _ in FIELDS}
    assert {"committee", "submitter_key", "key"} <= walked
    models: list[type[BaseModel]] = [RelayerSettings, Committee, AttesterConfig, *PLUGINS.values()]
    for model in models:
        for name in model.model_fields:
            assert any(where.endswith(f".{name}") for _, where, _, _ in FIELDS), name


def test_the_document_loads_as_it_is(tmp_path: Path) -> None:
    config = _load(tmp_path, DOC)
    assert [chain.type for chain in config.chains] == ["evm", "substrate", "fake"]


@pytest.mark.parametrize(("path", "where", "value"), WRONG_CASES)
def test_a_value_of_the_wrong_type_is_refused_naming_its_key(
    tmp_path: Path, path: tuple[str | int, ...], where: str, value: Any
) -> None:
    message = _refusal(tmp_path, _with(path, value))
    if path[-1] == "name" and path[0] != "relayer":
        # A table whose name is refused is named by its index; a chain's, also in the origins
        # of the attester that names it.
        where = f"{path[0]}[{path[1]}].name"
    else:
        assert "1 problem:" in message, message
    assert f"\n  - {where}: " in message, message


def test_the_issues_examples_are_refused_with_what_to_write(tmp_path: Path) -> None:
    message = _refusal(tmp_path, _with(("chains", 0, "domain"), "1000"))
    assert 'chains[name="chain-a"].domain: must be an integer, not a string (write numbers' in (
        message
    )
    message = _refusal(tmp_path, _with(("chains", 0, "domain"), 1000.0))
    assert "domain: must be an integer, not a float (write integers without a fraction)" in message
    message = _refusal(tmp_path, _with(("chains", 0, "start_block"), True))
    assert 'chains[name="chain-a"].start_block: must be an integer, not a boolean' in message
    message = _refusal(tmp_path, _with(("chains", 0, "committee", "threshold"), "2"))
    assert 'chains[name="chain-a"].committee.threshold: must be an integer, not a string' in message


# --- ${VAR}: the one place a string may be a number ---------------------------------------------

SCALARS = [
    pytest.param(path, kind, id=where)
    for path, where, kind, _ in FIELDS
    if kind in ("int", "float", "bool", "confirmations")
]


def _valid(path: tuple[str | int, ...], kind: Kind) -> Any:
    node: Any = DOC
    for part in path:
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            node = None
            break
    if node is not None:
        return node
    return {"int": 7, "float": 2.5, "bool": True, "confirmations": 3}[kind]


def _attribute(config: Config, path: tuple[str | int, ...]) -> Any:
    if path[0] == "relayer":
        return getattr(config.relayer, str(path[1]))
    assert path[0] == "chains"
    chain = config.chains[int(path[1])]
    node: Any = chain if path[2] in ChainConfig.model_fields else chain.plugin
    for part in path[2:]:
        node = getattr(node, str(part))
    return node


@pytest.mark.parametrize(("path", "kind"), SCALARS)
def test_a_number_or_boolean_from_a_variable_is_accepted(
    tmp_path: Path, path: tuple[str | int, ...], kind: Kind
) -> None:
    value = _valid(path, kind)
    if path[-1] == "tip":
        value = 5  # at most max_tip
    if path[-1] == "quorum":
        value = 1  # at most the number of rpc endpoints (one in the example)
    config = _load(tmp_path, _with(path, "${VALUE}"), {"VALUE": _toml_value(value)})
    assert _attribute(config, path) == value
    config = _load(tmp_path, _with(path, f"${{UNSET:-{_toml_value(value)}}}"))
    assert _attribute(config, path) == value


def test_an_integral_variable_is_accepted_for_a_float(tmp_path: Path) -> None:
    config = _load(tmp_path, _with(("chains", 0, "max_fee_gwei"), "${FEE}"), {"FEE": "30"})
    assert config.chains[0].plugin_config(EvmChainConfig).max_fee_gwei == 30.0


def test_a_variable_in_an_array_is_read_as_a_number(tmp_path: Path) -> None:
    doc = _with(("chains", 1, "remark_with_event_call"), ["${PALLET}", 7])
    config = _load(tmp_path, doc, {"PALLET": "1"})
    assert config.chains[1].plugin_config(SubstrateChainConfig).remark_with_event_call == (1, 7)


def test_a_variable_that_spells_no_number_is_refused_naming_the_key(tmp_path: Path) -> None:
    message = _refusal(tmp_path, _with(("chains", 0, "domain"), "${DOMAIN}"), {"DOMAIN": "ten"})
    assert (
        'chains[name="chain-a"].domain: must be an integer; the value of its ${...} variable is '
        "not one" in message
    )
    assert "ten" not in message


def test_a_variable_spelling_a_refused_number_is_refused_for_its_value(tmp_path: Path) -> None:
    message = _refusal(tmp_path, _with(("chains", 0, "domain"), "${DOMAIN}"), {"DOMAIN": "-1"})
    assert 'chains[name="chain-a"].domain: Input should be greater than or equal to 0' in message


def test_a_variable_of_digits_stays_a_string_where_a_string_is_expected(tmp_path: Path) -> None:
    doc = _with(("chains", 1, "system_chain"), "${SYSTEM_CHAIN}")
    config = _load(tmp_path, doc, {"SYSTEM_CHAIN": "42"})
    assert config.chains[1].plugin_config(SubstrateChainConfig).system_chain == "42"


def test_a_variable_is_not_read_as_a_number_where_a_string_is_refused(tmp_path: Path) -> None:
    # The endpoint's own complaint, not "must be a string" about the number it also spells.
    message = _refusal(tmp_path, _with(("relayer", "health"), "${HEALTH}"), {"HEALTH": "9464"})
    assert "relayer.health: must be host:port" in message


def test_a_toml_date_is_refused_naming_its_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(_toml(DOC).replace('name = "att-1"', "name = 2024-01-01"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"attesters\[0\]\.name: is a TOML date or time"):
        load_config(path, plugin_models=PLUGINS, env={})
