"""What can go wrong on the bus, one class per case, each saying whether waiting can help.

None of these is worth stopping a role for: the ledger holds every message, the bus only carries
notices that make the other side act sooner, so a caller logs a ``BusUnavailableError`` and goes
on. ``BrokerRefusedError`` at start-up is the exception: the configuration is wrong.
"""

from __future__ import annotations

from typing import Literal

from relayer.errors import ConfigError, RelayerError

__all__ = [
    "BrokerRefusedError",
    "BusError",
    "BusUnavailableError",
    "DropReason",
    "PayloadError",
    "PayloadTooLargeError",
]

#: Why a payload taken off the wire was dropped (the ``reason`` of ``bus.payload_dropped``).
DropReason = Literal[
    "too_large",  # longer than the configured maximum
    "garbage",  # not a msgpack map with a ``format`` string
    "unknown_format",  # a ``format`` that is not one of ours
    "unsupported_version",  # one of our kinds, in a version this build does not read
    "invalid",  # our format and version, but a field is missing or out of range
    "wrong_topic",  # a valid notice on a topic of another kind or origin
]


class BusError(RelayerError):
    """A notice could not be carried."""


class BusUnavailableError(BusError):
    """No connection to the broker (or no acknowledgement) within the timeout. Worth retrying;
    nothing is lost either way: the ledger holds the message, consumers also poll it."""

    retryable = True


class BrokerRefusedError(BusError, ConfigError):
    """The broker refused the connection for a reason that retrying cannot fix (bad username or
    password, not authorised, banned, an untrusted certificate): fix the ``[bus]`` settings or
    the broker's."""


class PayloadError(BusError):
    """Bytes that are not a notice this build reads; ``reason`` says which way."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: DropReason = reason
        self.detail = detail


class PayloadTooLargeError(PayloadError):
    """A notice whose encoding exceeds the bus's maximum payload size. A publisher that meets it
    leaves the message to the ledger (consumers poll it), or raises the maximum on every
    process and on the broker together."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__("too_large", f"{size} bytes, more than the maximum of {limit}")
        self.size = size
        self.limit = limit
