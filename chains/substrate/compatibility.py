"""Is this node the chain the config describes? One check for the reader and the submitter.

The verifier decodes extrinsics with runtime facts from the config, never from an endpoint, so
a node must serve the configured ``system_chain`` and a runtime whose call indices and signed
extensions are those facts. A mismatch is the operator's to fix (the wrong node, or a runtime
upgrade the config has not caught up with): the error says exactly what to write.
"""

from __future__ import annotations

from chains.substrate.config import SubstrateChainConfig
from chains.substrate.extrinsic import SigningContext, UnsupportedExtensionError, extra_layout
from chains.substrate.rpc import SubstrateRpc
from relayer.errors import PermanentChainError

__all__ = ["IncompatibleNodeError", "check_node"]


class IncompatibleNodeError(PermanentChainError):
    """What retrying cannot fix, only the operator: the endpoint serves another chain, the
    runtime is not the one the config describes, or a remark format this build cannot read."""


async def check_node(
    rpc: SubstrateRpc, *, chain: str, endpoint: str, config: SubstrateChainConfig
) -> tuple[int, SigningContext]:
    """The runtime's spec version and signing facts, once they match the config. Raises
    ``IncompatibleNodeError`` naming what differs and what to write."""
    name = await rpc.system_chain()
    if name != config.system_chain:
        raise IncompatibleNodeError(
            f"chain `{chain}`: endpoint {endpoint} serves system_chain {name!r}, "
            f"the config says {config.system_chain!r}; point rpc at the right node"
        )
    runtime = await rpc.runtime()
    signing = runtime.signing
    try:
        layout = tuple(field.value for field in extra_layout(signing))
    except UnsupportedExtensionError as exc:
        raise IncompatibleNodeError(
            f"chain `{chain}`: {exc}; this relayer cannot read this runtime's "
            "extrinsics (upgrade the relayer)"
        ) from exc
    if (
        signing.remark_with_event != config.remark_with_event_call
        or signing.batch_all != config.batch_all_call
        or layout != config.signed_extra
    ):
        batch_all = list(signing.batch_all) if signing.batch_all else "none"
        raise IncompatibleNodeError(
            f"chain `{chain}`: the runtime's calls or signed extensions differ from "
            f"the config; write remark_with_event_call = {list(signing.remark_with_event)}, "
            f"batch_all_call = {batch_all}, signed_extra = {list(layout)} "
            "(after checking the runtime upgrade is the one you expect)"
        )
    return runtime.spec_version, signing
