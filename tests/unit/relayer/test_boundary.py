"""The plugin boundary holds: ``relayer/`` names no chain family and speaks no family's dialect.

A second chain family must fit without touching ``relayer/``, so the core may not import a
concrete chain, web3, an Ethereum RPC method name, a gwei setting, a node's error text, or read
a plugin's settings by ``getattr``. Whole-line ``#`` comments may mention them (to say why);
code, docstrings and end-of-line comments may not.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

RELAYER = Path(__file__).resolve().parents[3] / "relayer"

FORBIDDEN = {
    "a concrete chain import": re.compile(r"^\s*(from|import)\s+chains\b"),
    "a web3 import": re.compile(r"^\s*(from|import)\s+web3\b"),
    "an Ethereum RPC method name": re.compile(r"[\"']eth_[A-Za-z]"),
    "a gwei setting": re.compile(r"_gwei\b", re.IGNORECASE),
    "an Ethereum node error text": re.compile(
        r"nonce too low|transaction underpriced|replacement transaction|already known"
        r"|transaction already imported|insufficient funds|execution reverted|max fee per gas"
        r"|header not found",
        re.IGNORECASE,
    ),
    "a getattr read of a plugin": re.compile(r"getattr\([^)]*plugin", re.IGNORECASE),
}


def _code_lines(path: Path) -> list[tuple[int, str]]:
    return [
        (number, line)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize("what", sorted(FORBIDDEN))
def test_relayer_holds_nothing_of_a_chain_family(what: str) -> None:
    pattern = FORBIDDEN[what]
    found = [
        f"{path.relative_to(RELAYER.parent)}:{number}: {line.strip()}"
        for path in sorted(RELAYER.rglob("*.py"))
        for number, line in _code_lines(path)
        if pattern.search(line)
    ]
    assert not found, f"{what} in relayer/:\n" + "\n".join(found)


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    # A scan that can never fail protects nothing: each pattern must catch its example.
    examples = {
        "a concrete chain import": "from chains.evm.rpc import EvmRpc",
        "a web3 import": "import web3",
        "an Ethereum RPC method name": 'await rpc.request("eth_call", tx)',
        "a gwei setting": "fee = plugin.max_fee_gwei",
        "an Ethereum node error text": 'if "Nonce too low" in text:',
        "a getattr read of a plugin": 'getattr(chain.plugin, "batch_size", 40)',
    }
    assert set(examples) == set(FORBIDDEN)
    for what, line in examples.items():
        assert FORBIDDEN[what].search(line), what
    source = tmp_path / "m.py"
    source.write_text("# nonce too low is the node's way of saying it\nx = 1\n")
    error_text = FORBIDDEN["an Ethereum node error text"]
    assert not any(error_text.search(line) for _, line in _code_lines(source))
