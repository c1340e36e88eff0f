"""The next nonce of one sending account, as a submitter hands nonces out.

Every chain family with account nonces keeps the same small state: read once from the chain,
counted up locally as transactions are signed (so that several are in flight at consecutive
nonces), re-read after a gap or a restart, and given back when a transaction was taken but
never signed or recorded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

__all__ = ["NonceCounter"]


class NonceCounter:
    __slots__ = ("next",)

    def __init__(self) -> None:
        #: the nonce the next transaction takes; None until read from the chain
        self.next: int | None = None

    def resynced(self, on_chain: int, at_least: int = 0) -> int:
        """Count on from what the chain says, or from ``at_least`` if that is higher."""
        self.next = max(on_chain, at_least)
        return self.next

    async def take(self, resync: Callable[[], Awaitable[int]]) -> int:
        """The next nonce, reading it with ``resync`` first if it was never read. Does not
        suspend when it is known: signing a batch then needs no turn of the event loop."""
        if self.next is None:
            await resync()
        assert self.next is not None  # resync() set it
        nonce = self.next
        self.next += 1
        return nonce

    def release(self, nonce: int) -> None:
        """A nonce taken but never sent: hand it out again (only the latest one can be)."""
        if self.next == nonce + 1:
            self.next = nonce
