"""The operator's configuration reference (``docs/config.md``), generated from the config's JSON
schema so that it cannot drift from what ``relayer config check`` accepts.

Run ``python -m relayer.config_reference > docs/config.md`` after changing a config model;
``tests/unit/relayer/test_config_reference.py`` fails while the committed file is stale.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from relayer.config import config_schema, installed_chain_models

__all__ = ["config_reference"]

_HEADER = """\
# Configuration reference

Generated from the config's JSON schema (`relayer config schema`) by
`python -m relayer.config_reference > docs/config.md`: do not edit by hand.
`relayer config default` prints the same keys as a commented TOML skeleton, and
`relayer config check -c FILE` validates a file (including the checks across tables that a
schema cannot express). String values may use `${VAR}` and `${VAR:-default}`; a number may come
from `${VAR}` only.
"""

Schema = Mapping[str, Any]


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _describe_type(node: Schema, tables: Mapping[str, str]) -> str:
    """A short human type: ``integer >= 0``, ``"finalized"``, ``[chains.committee]``, ..."""
    if "$ref" in node:
        name = _ref_name(node["$ref"])
        return f"`{tables[name]}`" if name in tables else name
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(value)}`" for value in node["enum"])
    for combinator in ("anyOf", "oneOf"):
        if combinator in node:
            options = [o for o in node[combinator] if o.get("type") != "null"]
            return " or ".join(_describe_type(option, tables) for option in options)
    kind = node.get("type")
    if kind == "array" and "prefixItems" in node:
        parts = ", ".join(_describe_type(item, tables) for item in node["prefixItems"])
        return f"[{parts}]"
    if kind == "array":
        return f"list of {_describe_type(node.get('items', {}), tables)}"
    if kind == "object":
        values = node.get("additionalProperties")
        if isinstance(values, Mapping):
            return f"table of name = {_describe_type(values, tables)}"
        return "table"
    text = str(kind) if kind is not None else "any"
    bounds = [
        (f">= {node['minimum']}" if "minimum" in node else ""),
        (f"> {node['exclusiveMinimum']}" if "exclusiveMinimum" in node else ""),
        (f"<= {node['maximum']}" if "maximum" in node else ""),
        (f"< {node['exclusiveMaximum']}" if "exclusiveMaximum" in node else ""),
        (f"at least {node['minItems']} item(s)" if "minItems" in node else ""),
    ]
    shown = ", ".join(bound for bound in bounds if bound)
    return f"{text} ({shown})" if shown else text


def _one_line(text: str) -> str:
    return " ".join(text.replace("``", "`").split())


def _keys(model: Schema, tables: Mapping[str, str], skip: Sequence[str] = ()) -> list[str]:
    required = set(model.get("required", ()))
    lines = []
    for name, node in model.get("properties", {}).items():
        if name in skip:
            continue
        if name in required:
            status = "required"
        elif node.get("default") is None:
            status = "optional"
        else:
            status = f"default `{json.dumps(node['default'])}`"
        description = _one_line(node.get("description", ""))
        lines.append(f"- **`{name}`** ({_describe_type(node, tables)}; {status}): {description}")
    return lines


def _nested_tables(model: Schema, defs: Mapping[str, Schema]) -> list[tuple[str, str]]:
    """``(key, definition name)`` of the sub-tables a table's keys hold."""
    found = []
    for name, node in model.get("properties", {}).items():
        options = [node, *node.get("anyOf", ()), *node.get("oneOf", ())]
        for option in options:
            ref = option.get("$ref")
            if ref is not None and _ref_name(ref) in defs and _ref_name(ref) != "KeyRef":
                found.append((name, _ref_name(ref)))
                break
    return found


def config_reference(schema: Schema) -> str:
    """The Markdown reference of the config file described by ``schema``."""
    defs: Mapping[str, Schema] = schema["$defs"]
    chain_defs = [
        _ref_name(option["$ref"])
        for option in schema["properties"]["chains"]["items"].get(
            "oneOf", [schema["properties"]["chains"]["items"]]
        )
    ]
    # Keys every chain table has, in the first table's order: described once.
    shared = [
        name
        for name in defs[chain_defs[0]]["properties"]
        if all(name in defs[d]["properties"] for d in chain_defs)
    ]
    tables = {"KeyRef": "key reference", "RelayerSettings": "[relayer]"}
    for chain_def in chain_defs:
        for key, nested in _nested_tables(defs[chain_def], defs):
            tables[nested] = f"[chains.{key}]"
    tables["AttesterConfig"] = "[[attesters]]"
    tables.update({"MqttSettings": "[bus.mqtt]", "MqttTls": "[bus.mqtt.tls]"})

    out = [_HEADER]
    out += ["## `[relayer]`", "", _one_line(defs["RelayerSettings"].get("description", "")), ""]
    out += [*_keys(defs["RelayerSettings"], tables), ""]
    out += ["## `[[chains]]`", "", "One table per chain. Every chain has these keys:", ""]
    first = defs[chain_defs[0]]
    out += [*_keys({**first, "properties": {k: first["properties"][k] for k in shared}}, tables)]
    out.append("")
    described: set[str] = set()
    for chain_def in chain_defs:
        model = defs[chain_def]
        kind = model["properties"]["type"].get("const", chain_def)
        out += [f"### `type = {json.dumps(kind)}`", "", _one_line(model.get("description", "")), ""]
        out += [*_keys(model, tables, skip=shared), ""]
        for _key, nested in _nested_tables(model, defs):
            if nested in described:
                continue
            described.add(nested)
            out += [f"#### `{tables[nested]}`", "", _one_line(defs[nested].get("description", ""))]
            out += ["", *_keys(defs[nested], tables), ""]
    out += ["## `[[attesters]]`", "", _one_line(defs["AttesterConfig"].get("description", "")), ""]
    out += [*_keys(defs["AttesterConfig"], tables), ""]
    if "BusSettings" in defs:
        out += ["## `[bus]`", "", _one_line(defs["BusSettings"].get("description", "")), ""]
        out += [*_keys(defs["BusSettings"], tables), ""]
        for name, title in (("MqttSettings", "[bus.mqtt]"), ("MqttTls", "[bus.mqtt.tls]")):
            if name in defs:
                out += [f"### `{title}`", "", _one_line(defs[name].get("description", "")), ""]
                out += [*_keys(defs[name], tables), ""]
    if "RouteSettings" in defs:
        out += ['## `[routes."origin->destination"]`', ""]
        out += [_one_line(defs["RouteSettings"].get("description", "")), ""]
        out += [*_keys(defs["RouteSettings"], tables), ""]
    if "KeyRef" in defs:
        out += ["## Key references", "", _one_line(defs["KeyRef"].get("description", "")), ""]
        out += [*_keys(defs["KeyRef"], tables), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def main() -> None:
    sys.stdout.write(config_reference(config_schema(installed_chain_models())))


if __name__ == "__main__":
    main()
