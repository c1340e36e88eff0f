"""Where each notice goes: ``<prefix>/v1/<origin-domain>/observations``, ``.../attestations``,
``.../attestation-batches`` and ``.../attestation-requests``.

The ``v1`` level versions the scheme (the payloads carry their own version): a future layout
lives beside this one on the same broker. The origin domain is a level of its own so that a
worker can take one origin (``relayer/v1/1000/observations``) or all (``relayer/v1/+/...``).
A shared subscription (``$share/<group>/<filter>``) splits a filter's messages among the group's
members; both bus implementations give these words the same meaning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from relayer.bus.payloads import (
    AttestationBatchNotice,
    AttestationNotice,
    AttestationRequest,
    Notice,
    ObservationNotice,
)

__all__ = ["SCHEME_VERSION", "Topics", "check_group"]

SCHEME_VERSION: Final = "v1"

# Stored in topic names on the broker: renaming one is a new scheme version.
_KIND_LEVEL: Final[dict[type[Notice], str]] = {
    ObservationNotice: "observations",
    AttestationNotice: "attestations",
    # A level of its own, not "attestations": a subscription, and the check that a payload
    # belongs on its topic (bus.inbox.admit), are per kind.
    AttestationBatchNotice: "attestation-batches",
    AttestationRequest: "attestation-requests",
}
_LEVEL_KIND: Final = {level: kind for kind, level in _KIND_LEVEL.items()}
_GROUP = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_PREFIX_LEVEL = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DOMAIN = re.compile(r"0|[1-9][0-9]{0,9}")


def check_group(group: str) -> str:
    """``group`` if it can name a shared subscription; else ``ValueError``."""
    if not _GROUP.fullmatch(group):
        raise ValueError(
            f"shared-subscription group {group!r} must be 1 to 64 of [A-Za-z0-9_.-] "
            "(no '/', '+' or '#')"
        )
    return group


def _domain(domain: int) -> int:
    if isinstance(domain, bool) or not isinstance(domain, int) or not 0 <= domain < 2**32:
        raise ValueError(f"origin domain {domain!r} is not a u32")
    return domain


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic names under one prefix (a deployment, or a test's own corner of a broker)."""

    prefix: str = "relayer"

    def __post_init__(self) -> None:
        levels = self.prefix.split("/")
        if not all(_PREFIX_LEVEL.fullmatch(level) for level in levels):
            raise ValueError(
                f"topic prefix {self.prefix!r} must be '/'-separated levels of [A-Za-z0-9_.-] "
                "(no wildcards, no empty level, not starting with '$')"
            )

    def topic(self, kind: type[Notice], origin_domain: int) -> str:
        return f"{self.prefix}/{SCHEME_VERSION}/{_domain(origin_domain)}/{_KIND_LEVEL[kind]}"

    def for_notice(self, notice: Notice) -> str:
        return self.topic(type(notice), notice.origin_domain)

    def filters(
        self, kind: type[Notice], origins: Iterable[int] | None = None, group: str | None = None
    ) -> tuple[str, ...]:
        """The subscription filters for ``kind`` from ``origins`` (None: every origin), shared
        by ``group`` if one is given."""
        level = _KIND_LEVEL[kind]
        domains = ["+"] if origins is None else [str(_domain(d)) for d in sorted(set(origins))]
        if not domains:
            raise ValueError("origins is empty: give None for every origin, or some domains")
        share = f"$share/{check_group(group)}/" if group is not None else ""
        return tuple(f"{share}{self.prefix}/{SCHEME_VERSION}/{d}/{level}" for d in domains)

    def parse(self, topic: str) -> tuple[type[Notice], int] | None:
        """``(kind, origin_domain)`` of a topic of this scheme, or None for any other topic."""
        head, sep, rest = topic.partition(f"{self.prefix}/{SCHEME_VERSION}/")
        if head or not sep:
            return None
        domain, _, level = rest.partition("/")
        kind = _LEVEL_KIND.get(level)
        if kind is None or not _DOMAIN.fullmatch(domain) or int(domain) >= 2**32:
            return None
        return kind, int(domain)
