"""The committed contract artifacts are exactly what the pinned compiler makes of the sources.

Recompiles chains/evm/contracts/*.sol with scripts/compile_contracts.js (solc from node_modules)
into a temporary directory and compares every file byte for byte, so a source edited without
recompiling, a hand-edited artifact or a compiler change is caught.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTRACTS = REPO / "chains" / "evm" / "contracts"
ARTIFACTS = CONTRACTS / "artifacts"
SCRIPT = REPO / "scripts" / "compile_contracts.js"


def _require_toolchain() -> str:
    node = shutil.which("node")
    missing = []
    if node is None:
        missing.append("node")
    if not (REPO / "node_modules" / "solc" / "package.json").is_file():
        missing.append("node_modules/solc (run `npm ci`)")
    if missing:
        reason = "cannot recompile contracts: missing " + ", ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert node is not None
    return node


def test_artifacts_match_a_fresh_compile(tmp_path: Path) -> None:
    node = _require_toolchain()
    result = subprocess.run(
        [node, str(SCRIPT), "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"compile failed:\n{result.stdout}\n{result.stderr}"

    fresh = sorted(p.name for p in tmp_path.glob("*.json"))
    committed = sorted(p.name for p in ARTIFACTS.glob("*.json"))
    assert fresh == committed, "artifact set differs: run `node scripts/compile_contracts.js`"
    for name in fresh:
        assert (tmp_path / name).read_bytes() == (ARTIFACTS / name).read_bytes(), (
            f"{name} is stale: run `node scripts/compile_contracts.js` and commit the result"
        )


def test_artifacts_cover_every_source_and_are_pinned() -> None:
    sources = {p.stem for p in CONTRACTS.glob("*.sol")}
    assert sources <= {p.stem for p in ARTIFACTS.glob("*.json")}
    package = json.loads((REPO / "package.json").read_text())
    solc_version = package["devDependencies"]["solc"]
    for path in ARTIFACTS.glob("*.json"):
        artifact = json.loads(path.read_text())
        assert artifact["contractName"] == path.stem
        assert artifact["compiler"]["version"].startswith(f"{solc_version}+commit.")
        assert artifact["compiler"]["settings"]["evmVersion"] == "cancun"
        assert artifact["compiler"]["settings"]["optimizer"] == {"enabled": True, "runs": 200}
        assert artifact["bytecode"].startswith("0x")
    for source in CONTRACTS.glob("*.sol"):
        assert f"pragma solidity {solc_version};" in source.read_text(), source.name
