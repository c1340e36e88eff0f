"""Endpoint health shared by every role in the process: an outage is logged once when it
starts (``chain.unavailable``) and once when it ends (``chain.recovered``), however many
watchers and submitters hit it in between.
"""

from __future__ import annotations

import time
from typing import Any

from relayer.retry import describe_error

__all__ = ["HEALTH", "EndpointHealth"]


class EndpointHealth:
    def __init__(self) -> None:
        self._down_since: dict[tuple[str, str], float] = {}
        self._seen: set[tuple[str, str]] = set()

    def failed(self, log: Any, chain: str, endpoint: str, error: BaseException | str) -> None:
        key = (chain, endpoint)
        self._seen.add(key)
        if key not in self._down_since:
            self._down_since[key] = time.monotonic()
            # describe_error: an endpoint's URL in an error text may carry its API key.
            text = describe_error(error) if isinstance(error, BaseException) else error
            log.warning("chain.unavailable", chain=chain, endpoint=endpoint, error=text)

    def succeeded(self, log: Any, chain: str, endpoint: str) -> None:
        self._seen.add((chain, endpoint))
        since = self._down_since.pop((chain, endpoint), None)
        if since is not None:
            log.info(
                "chain.recovered",
                chain=chain,
                endpoint=endpoint,
                down_s=round(time.monotonic() - since, 1),
            )

    def endpoints(self) -> list[tuple[str, str, bool]]:
        """(chain, endpoint, up) for every endpoint used so far."""
        return [(c, e, (c, e) not in self._down_since) for c, e in sorted(self._seen)]

    def is_down(self, chain: str, endpoint: str) -> bool:
        return (chain, endpoint) in self._down_since


HEALTH = EndpointHealth()
