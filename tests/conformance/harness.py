"""What the conformance kit needs of a chain family: one running chain it can drive.

A family passes the kit by providing a ``ChainHarness`` for a chain of its own (a real local
node for a real family) and registering its plugin under the ``relayer.chains`` entry-point
group. The kit then drives the family only through ``relayer.plugin`` (``reader``, ``verify``,
``load_signer``, ``submitter``) and ``relayer.follower``, as the daemon does.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from relayer.config import ChainConfig
from relayer.keys import KeyRef
from relayer.plugin import Delivery

__all__ = ["ORIGIN_DOMAIN", "PEER_DOMAIN", "ChainHarness"]

#: the domain of the harness's chain (messages it sends carry it as their origin)
ORIGIN_DOMAIN = 7000
#: the domain messages sent from the harness's chain are addressed to, and that deliveries to
#: it come from (no chain of that domain runs: the kit needs none)
PEER_DOMAIN = 7001


class ChainHarness(Protocol):
    """One running chain. Every endpoint it hands out is on 127.0.0.1; ``close()`` stops every
    process it started."""

    #: the family's plugin kind (``type`` of its ``[[chains]]`` tables)
    kind: str

    def chain(self) -> ChainConfig:
        """The chain as a decoded ``[[chains]]`` table (name ``kit-<kind>``, domain
        ``ORIGIN_DOMAIN``, ``finality = "confirmations"``), its endpoint behind a proxy that
        ``drop()`` and ``restore()`` control."""
        ...

    def lying_chain(self) -> AbstractAsyncContextManager[ChainConfig]:
        """The same chain behind an endpoint that, while the context is open, alters what it
        serves of blocks holding messages (a message's bytes, or the block body they are
        proven against) while keeping its answers well-formed: a family's evidence checks
        must refuse every such block."""
        ...

    def drop(self) -> None:
        """Cut every connection through ``chain()``'s endpoint and refuse new ones."""
        ...

    def restore(self) -> None:
        """Accept connections again after ``drop()``."""
        ...

    async def send(self, count: int) -> list[bytes]:
        """Send ``count`` messages from this chain to ``PEER_DOMAIN`` and make them final
        (confirm, finalize) before returning their ids, in order."""
        ...

    async def advance(self) -> None:
        """Make the chain's newest blocks final without sending anything (mine or finalize
        blocks as the family needs), so a reader's confirmed head passes them."""
        ...

    def submitter_key(self) -> KeyRef:
        """A key reference (resolvable with the process environment as the kit sets it up)
        for an account that may deliver to this chain."""
        ...

    def key_env(self) -> dict[str, str]:
        """The environment ``submitter_key()`` is resolved in."""
        ...

    def deliveries(self, count: int) -> list[Delivery]:
        """``count`` deliveries of fresh messages from ``PEER_DOMAIN`` to this chain, each with
        whatever attestation the chain's destination checks (signatures of its committee)."""
        ...

    async def delivered(self, message_ids: Sequence[bytes]) -> list[int]:
        """How many times the chain shows each message delivered (the exactly-once check),
        read from the chain itself, not from a submitter."""
        ...

    def close(self) -> None: ...
