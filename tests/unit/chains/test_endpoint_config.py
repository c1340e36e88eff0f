"""`rpc = "url"` or `rpc = [...]` with `quorum`, in both chain families' config tables."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from chains.endpoints import urls_of
from chains.evm.config import EvmChainConfig
from chains.substrate.config import SubstrateChainConfig

_EVM = {"chain_id": 1, "gateway": "0x" + "11" * 20}
_SUBSTRATE = {"system_chain": "dot-a"}
_FAMILIES = [
    pytest.param(EvmChainConfig, _EVM, "http", id="evm"),
    pytest.param(SubstrateChainConfig, _SUBSTRATE, "ws", id="substrate"),
]


@pytest.mark.parametrize(("model", "base", "scheme"), _FAMILIES)
def test_one_url_or_a_list_of_them(
    model: type[BaseModel], base: dict[str, Any], scheme: str
) -> None:
    one = model.model_validate({**base, "rpc": f"{scheme}://a:1"})
    assert one.rpc == f"{scheme}://a:1" and urls_of(one.rpc) == (f"{scheme}://a:1",)  # type: ignore[attr-defined]
    assert one.quorum == 1  # type: ignore[attr-defined]
    urls = [f"{scheme}://a:1", f"{scheme}://b:2/KEY"]
    two = model.model_validate({**base, "rpc": urls, "quorum": 2})
    assert two.rpc == urls[0] and urls_of(two.rpc) == tuple(urls)  # type: ignore[attr-defined]
    assert two.model_dump(mode="json")["rpc"] == urls


@pytest.mark.parametrize(("model", "base", "scheme"), _FAMILIES)
@pytest.mark.parametrize(
    ("rpc", "quorum", "refusal"),
    [
        ([], 1, "non-empty list"),
        ([1], 1, "endpoint URL"),
        (7, 1, "endpoint URL"),
        (["{s}://a:1", "{s}://a:1"], 1, "lists one endpoint twice"),
        (["{s}://a:1"], 2, "quorum = 2 needs at least 2 rpc endpoints"),
        (["{s}://a:1"], 0, "greater than or equal to 1"),
        (["{s}://a:1"], "1", "valid integer"),
        (["{s}://a:1"], 1.0, "valid integer"),
        (["{s}://a:1"], True, "valid integer"),
        (["{s}://a:1", "ftp://user:SECRETKEY@b"], 1, "URL with a host"),
    ],
)
def test_wrong_endpoints_or_quorum_are_refused(
    model: type[BaseModel],
    base: dict[str, Any],
    scheme: str,
    rpc: Any,
    quorum: Any,
    refusal: str,
) -> None:
    if isinstance(rpc, list):
        rpc = [u.format(s=scheme) if isinstance(u, str) else u for u in rpc]
    with pytest.raises(ValidationError) as info:
        model.model_validate({**base, "rpc": rpc, "quorum": quorum})
    errors = info.value.errors()
    assert any(refusal in e["msg"] for e in errors), errors
    assert not any("SECRETKEY" in e["msg"] for e in errors)
