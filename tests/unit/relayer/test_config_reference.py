"""docs/config.md is what relayer.config_reference generates from the config's schema today:
a key added, removed or re-documented without regenerating it fails here."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from relayer.config import config_schema, installed_chain_models
from relayer.config_reference import config_reference

REPO = Path(__file__).resolve().parents[3]


def _project_models() -> dict[str, type[BaseModel]]:
    # The project's own chain plugins only: other tests install a fake family in process.
    return {k: v for k, v in installed_chain_models().items() if k in ("evm", "substrate")}


def test_the_committed_reference_is_current() -> None:
    generated = config_reference(config_schema(_project_models()))
    committed = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    assert committed == generated, (
        "docs/config.md is stale: run `.venv/bin/python -m relayer.config_reference > "
        "docs/config.md` and commit it"
    )


def test_every_key_of_every_table_is_described() -> None:
    schema = config_schema(_project_models())
    text = config_reference(schema)
    for name, model in schema["$defs"].items():
        for key in model.get("properties", {}):
            assert f"**`{key}`**" in text, f"{name}.{key} is missing from the reference"
