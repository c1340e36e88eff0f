"""The relayer's exception tree. Each class names one domain; messages say what to do next.

``retryable`` tells the retry policy whether waiting and trying again can help.
"""

from __future__ import annotations


class RelayerError(Exception):
    retryable = False


class ConfigError(RelayerError):
    """The configuration is invalid or unsafe; the message names the table and key."""


class StoreError(RelayerError):
    """The ledger refused an operation (an illegal state transition, a corrupt row)."""


class UnknownChainError(RelayerError):
    """A message or config names a chain, domain or plugin that is not configured."""


class ChainError(RelayerError):
    """A chain endpoint failed or answered something we cannot use."""


class TransientChainError(ChainError):
    """Timeouts, refused connections, rate limits, nonce races: worth retrying after a pause."""

    retryable = True


class PermanentChainError(ChainError):
    """A revert, an invalid transaction, a wrong chain id: trying again will not help."""


class EvidenceRejectedError(RelayerError):
    """An observation's evidence did not verify; the message is recorded as rejected."""
