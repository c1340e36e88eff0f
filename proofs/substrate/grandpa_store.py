"""A GRANDPA light client: from a trusted authority set, follow finality and authority-set
changes along one chain of standard Substrate headers.

The store holds the authority set (ed25519 keys and weights) and set id that finalize the blocks
after its finalized block, that block (hash, number, header bytes), and the one authority-set
change signalled but not yet enacted, if any. ``import_justification`` takes a justification and
the headers from the finalized block's child up to the justification's target; it hashes the
headers itself (blake2-256 of the exact bytes), so a header chain cannot lie about its links.

Rules, from Substrate's ``sc-consensus-grandpa`` (``authorities.rs``: pending changes, the limit
honest voters never vote past; ``warp_proof.rs``: each set proves its last block),
``pallet-grandpa`` (``schedule_change``: ``ChangePending``; changes enacted in ``on_finalize``),
smoldot (``chain/blocks_tree``: ``TooFarAhead``, the set id after each block) and
``pallet-bridge-grandpa`` (``try_enact_authority_change``: forced changes refused there):

* A ``ScheduledChange`` signalled in block N with delay d is enacted at block E = N + d (d = 0:
  the signalling block itself). E is the last block the current set finalizes: its justification
  is signed by the current set under the current set id, and every block after E is finalized by
  the announced set under set id + 1. So E must be finalized by a justification for exactly E:
  an import whose headers pass E and whose target lies beyond it is refused
  (AuthoritySetChangeError), however well signed. Honest voters of the old set never vote past E;
  their signatures over a later block are what a retired, possibly bribed, set could sell.
* One pending change at a time. ``pallet-grandpa`` refuses to schedule a change while one is
  pending, so a header announcing a change while one is pending (or two in one header, or a new
  one in the block that enacts the pending one) does not come from an honest runtime: refused.
  Substrate's client keeps the first and ignores the rest; we would rather stop than guess.
* A ``ForcedChange`` signalled in block N with delay d is followed only once the set we trust
  has finalized N: a justification of the current set whose target is N or a descendant proves
  that this set saw the change and built on it (smoldot also applies forced changes on finality,
  not on import). From then on it is pending like a scheduled change, with one difference:
  Substrate enacts a forced change at the import of E = N + d, and its voters then switch sets
  without the old set finalizing E (``authorities.rs``: forced changes "do not lead to
  justifications which light clients can follow"). So the old set may finalize up to E, and a
  justification of the announced set (set id + 1) for a block past E is accepted when the
  headers link it through E to N. ``median_last_finalized`` does not matter here: the new set's
  justification must still descend from our finalized block.
  A forced change whose block the trusted set has *not* finalized is refused
  (ForcedChangeError): that is the case forced changes exist for (the old set stalled), and
  nothing but block authors' word links the new set to the old one; following it would let
  them, rather than the finality set, choose our next set. The way on is either a justification
  of the current set for a block from N to E (import it first), or operator action, as
  ``pallet-bridge-grandpa`` requires governance: a new store from a trusted checkpoint after the
  change (``GrandpaLightClient(header=..., authorities=..., set_id=...)``). A checkpoint header
  that announces a forced change is trusted like any checkpoint, so its change is pending.
* ``OnDisabled``, ``Pause`` and ``Resume`` are decoded strictly and otherwise ignored: they tell
  voters whether to vote, not which set may sign. Substrate's own justification check counts a
  disabled authority, and a paused set simply produces no justifications.
* A justification must finalize a block above the finalized one (StaleFinalityError) whose header
  chain starts at the finalized block's child and links by parent hashes and consecutive numbers
  to the justification's target (HashMismatchError).

Every check runs before the state changes: a refused import leaves the store as it was.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from proofs.errors import HashMismatchError, MalformedEncodingError, ProofError, QuorumError
from proofs.substrate.digest import (
    ForcedChange,
    ScheduledChange,
    decode_digest,
    grandpa_logs,
)
from proofs.substrate.grandpa import (
    FinalizedBlock,
    GrandpaJustification,
    decode_justification,
    verify_grandpa_justification,
)
from proofs.substrate.header import SubstrateHeader, decode_header, header_hash
from proofs.substrate.scale import U32_MAX, U64_MAX

__all__ = [
    "AuthoritySetChangeError",
    "ForcedChangeError",
    "GrandpaImport",
    "GrandpaLightClient",
    "GrandpaStatus",
    "PendingAuthorityChange",
    "StaleFinalityError",
]

_PUBLIC_KEY_LEN = 32
_STATE_VERSION = 1

# (ed25519 public key, weight) pairs, in the order the chain lists them.
Authorities: TypeAlias = tuple[tuple[bytes, int], ...]


class StaleFinalityError(ProofError):
    """The justification finalizes nothing new: its target is at or below the finalized block."""


class AuthoritySetChangeError(ProofError):
    """Headers announce or enact an authority-set change in a way the light client refuses: a
    justification past an unfinalized enactment block, a second pending change, or an unusable
    announced set."""


class ForcedChangeError(AuthoritySetChangeError):
    """A justification passes the enactment of a forced change whose announcing block the trusted
    set never finalized: nothing links the new set to the old one. Import a justification of the
    current set for a block from the announcement to the enactment first, or re-bootstrap the
    store from a trusted checkpoint after the change."""


@dataclass(frozen=True, slots=True)
class PendingAuthorityChange:
    """A change signalled in block ``signal_number``, enacted ``delay`` blocks later; ``forced``
    for a ``ForcedChange`` (the announced set may finalize past the enactment block)."""

    next_authorities: Authorities
    signal_number: int
    delay: int
    forced: bool = False

    @property
    def enactment_number(self) -> int:
        """The last block the current set finalizes; the next set takes over after it."""
        return self.signal_number + self.delay


@dataclass(frozen=True, slots=True)
class GrandpaStatus:
    set_id: int
    authority_count: int
    total_weight: int
    finalized_hash: bytes
    finalized_number: int
    pending_enactment_number: int | None


@dataclass(frozen=True, slots=True)
class GrandpaImport:
    """What an accepted import changed: the new finalized block, and the set in force after it."""

    finalized: FinalizedBlock
    set_id: int
    set_changed: bool
    pending_change: PendingAuthorityChange | None


@dataclass(frozen=True, slots=True)
class _State:
    authorities: Authorities
    set_id: int
    header: bytes
    hash: bytes
    number: int
    pending_change: PendingAuthorityChange | None


@dataclass(frozen=True, slots=True)
class _Link:
    raw: bytes
    hash: bytes
    header: SubstrateHeader


def _to_hex(value: bytes) -> str:
    return "0x" + value.hex()


def _authority_set(
    authorities: Iterable[tuple[bytes, int]], *, what: str, error: type[ProofError]
) -> Authorities:
    """Validate an authority list: non-empty, 32-byte keys, each once, u64 weights above zero
    whose sum is a u64 too (the bounds of Substrate's ``VoterSet``)."""
    checked: list[tuple[bytes, int]] = []
    seen: set[bytes] = set()
    total = 0
    for key, weight in authorities:
        if not isinstance(key, bytes) or len(key) != _PUBLIC_KEY_LEN:
            raise error(f"{what}: authority key {key!r} is not a 32-byte ed25519 public key")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 < weight <= U64_MAX:
            raise error(f"{what}: authority {key.hex()} has weight {weight!r}; need 1..2^64-1")
        if key in seen:
            raise error(f"{what}: authority {key.hex()} is listed twice")
        seen.add(key)
        total += weight
        checked.append((key, weight))
    if not checked:
        raise error(f"{what} is empty; it could finalize nothing")
    if total > U64_MAX:
        raise error(f"{what}: total weight {total} overflows a u64")
    return tuple(checked)


def _same_set(first: Authorities, second: Authorities) -> bool:
    # A voter set is a mapping from key to weight; the order of the list does not matter.
    return sorted(first) == sorted(second)


def _change_in(header: SubstrateHeader, block_hash: bytes) -> PendingAuthorityChange | None:
    """The one change (scheduled or forced) ``header`` announces, validated; refuses two."""
    where = f"header #{header.number} {_to_hex(block_hash)}"
    changes: list[PendingAuthorityChange] = []
    for log in grandpa_logs(decode_digest(header.digest)):
        if isinstance(log, ForcedChange):
            change, forced = log.change, True
        elif isinstance(log, ScheduledChange):
            change, forced = log, False
        else:
            continue
        changes.append(
            PendingAuthorityChange(
                next_authorities=change.next_authorities,
                signal_number=header.number,
                delay=change.delay,
                forced=forced,
            )
        )
    if not changes:
        return None
    if len(changes) > 1:
        raise AuthoritySetChangeError(
            f"{where} announces {len(changes)} authority-set changes; a runtime schedules one "
            "at a time"
        )
    announced = changes[0]
    authorities = _authority_set(
        announced.next_authorities,
        what=f"the authority set announced in {where}",
        error=AuthoritySetChangeError,
    )
    if announced.enactment_number > U32_MAX:
        raise AuthoritySetChangeError(
            f"{where} schedules a change {announced.delay} blocks later, past block number 2^32-1"
        )
    return dataclasses.replace(announced, next_authorities=authorities)


def _check_pending(pending: PendingAuthorityChange, number: int) -> PendingAuthorityChange:
    """Validate a pending change handed in with a checkpoint; returns it normalized."""
    authorities = _authority_set(
        pending.next_authorities,
        what="the pending change's authority set",
        error=AuthoritySetChangeError,
    )
    signal, delay = pending.signal_number, pending.delay
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (signal, delay)):
        raise MalformedEncodingError(f"pending change numbers {signal!r}, {delay!r} must be ints")
    if not 0 <= signal <= number or delay < 0:
        raise AuthoritySetChangeError(
            f"a pending change must be signalled at or before the finalized block #{number}, "
            f"got signal #{signal} with delay {delay}"
        )
    if not isinstance(pending.forced, bool):
        raise MalformedEncodingError(f"pending change forced flag {pending.forced!r} is not a bool")
    pending = PendingAuthorityChange(
        next_authorities=authorities, signal_number=signal, delay=delay, forced=pending.forced
    )
    if pending.enactment_number <= number:
        raise AuthoritySetChangeError(
            f"the pending change signalled at #{pending.signal_number} was enacted at "
            f"#{pending.enactment_number}, not after the finalized block #{number}: give the "
            "authority set and set id in force after it instead"
        )
    if pending.enactment_number > U32_MAX:
        raise AuthoritySetChangeError(
            f"the pending change is enacted at #{pending.enactment_number}, past 2^32-1"
        )
    return pending


def _checkpoint_state(
    header: bytes,
    authorities: Iterable[tuple[bytes, int]],
    set_id: int,
    pending_change: PendingAuthorityChange | None,
) -> _State:
    header = bytes(header)
    decoded = decode_header(header)
    block_hash = header_hash(header)
    checked = _authority_set(authorities, what="the trusted authority set", error=QuorumError)
    if isinstance(set_id, bool) or not isinstance(set_id, int) or not 0 <= set_id <= U64_MAX:
        raise MalformedEncodingError(f"set id {set_id!r} is not a u64")
    if pending_change is not None:
        pending_change = _check_pending(pending_change, decoded.number)
    # The finalized header's own signal is part of the state: a delay-0 change means the given
    # set must be the announced one; a later enactment means the change is pending.
    change = _change_in(decoded, block_hash)
    if change is not None and change.delay == 0:
        if not _same_set(change.next_authorities, checked):
            raise AuthoritySetChangeError(
                f"the finalized header #{decoded.number} {_to_hex(block_hash)} enacts a change to "
                f"a set of {len(change.next_authorities)} authorities that is not the given set: "
                "give the set (and set id) in force after this block"
            )
        if pending_change is not None:
            raise AuthoritySetChangeError(
                f"the finalized header #{decoded.number} enacts its own change; no other change "
                "can be pending after it"
            )
    elif change is not None:
        signalled = change
        if pending_change is not None and (
            pending_change.enactment_number != signalled.enactment_number
            or pending_change.forced != signalled.forced
            or not _same_set(pending_change.next_authorities, signalled.next_authorities)
        ):
            raise AuthoritySetChangeError(
                f"the finalized header #{decoded.number} signals a change enacted at "
                f"#{signalled.enactment_number}, which differs from the pending change given "
                f"(enacted at #{pending_change.enactment_number})"
            )
        pending_change = signalled
    return _State(
        authorities=checked,
        set_id=set_id,
        header=header,
        hash=block_hash,
        number=decoded.number,
        pending_change=pending_change,
    )


def _link_headers(state: _State, headers: Sequence[bytes]) -> list[_Link]:
    """Decode and hash ``headers``; each must be the child of the one before, the first the
    child of the finalized block."""
    if not headers:
        raise HashMismatchError(
            f"no headers link the finalized block #{state.number} {_to_hex(state.hash)} to the "
            "justification's target"
        )
    links: list[_Link] = []
    parent_hash, parent_number = state.hash, state.number
    for item in headers:
        raw = bytes(item)
        header = decode_header(raw)
        if header.parent_hash != parent_hash:
            if not links:
                raise HashMismatchError(
                    f"header #{header.number} names parent {_to_hex(header.parent_hash)}, but the "
                    f"finalized block is #{state.number} {_to_hex(state.hash)}: the chain does "
                    "not descend from the finalized block"
                )
            raise HashMismatchError(
                f"header #{header.number} names parent {_to_hex(header.parent_hash)}, but the "
                f"header before it (#{parent_number}) hashes to {_to_hex(parent_hash)}: the "
                "header chain has a gap"
            )
        if header.number != parent_number + 1:
            raise HashMismatchError(
                f"header {_to_hex(header_hash(raw))} is the child of #{parent_number} by its "
                f"parent hash but claims number #{header.number}"
            )
        link = _Link(raw=raw, hash=header_hash(raw), header=header)
        links.append(link)
        parent_hash, parent_number = link.hash, header.number
    return links


@dataclass(frozen=True, slots=True)
class _Plan:
    """What an import's headers mean for the sets: who must sign, and the state after."""

    signer: Authorities
    signer_set_id: int
    authorities: Authorities
    set_id: int
    pending_change: PendingAuthorityChange | None
    set_changed: bool


def _next_set_id(set_id: int) -> int:
    if set_id == U64_MAX:
        raise AuthoritySetChangeError(f"set id {set_id} cannot be incremented")
    return set_id + 1


def _plan_import(state: _State, links: Sequence[_Link]) -> _Plan:
    """Follow the changes the headers announce and enact (module docstring's rules)."""
    authorities, set_id, pending = state.authorities, state.set_id, state.pending_change
    handed_over = False
    last = len(links) - 1
    for index, link in enumerate(links):
        number = link.header.number
        change = _change_in(link.header, link.hash)
        if change is not None:
            if pending is not None:
                raise AuthoritySetChangeError(
                    f"header #{number} {_to_hex(link.hash)} announces an authority-set change "
                    f"while the change signalled at #{pending.signal_number} (enacted at "
                    f"#{pending.enactment_number}) is pending; a runtime schedules one change "
                    "at a time"
                )
            pending = change
        if pending is None or pending.enactment_number != number:
            continue
        if index == last:
            # The justification's target is the set's last block: it signs, the next takes over.
            return _Plan(
                signer=authorities,
                signer_set_id=set_id,
                authorities=pending.next_authorities,
                set_id=_next_set_id(set_id),
                pending_change=None,
                set_changed=True,
            )
        target = links[last].header.number
        if not pending.forced:
            raise AuthoritySetChangeError(
                f"the justification finalizes #{target}, past #{number} "
                f"{_to_hex(link.hash)} where the change signalled at #{pending.signal_number} "
                f"is enacted: set {set_id} may finalize no block after #{number}, so "
                f"import the justification for #{number} first"
            )
        if pending.signal_number > state.number:
            # Announced after our finalized block: the set we trust has not finalized it.
            raise ForcedChangeError(
                f"the justification finalizes #{target}, past #{number} where the forced "
                f"authority-set change announced in #{pending.signal_number} takes effect, but "
                f"set {set_id} has not finalized #{pending.signal_number}: nothing links the "
                f"announced set to it. Import a justification of set {set_id} for a block from "
                f"#{pending.signal_number} to #{number} first; if that set never finalized one "
                "(a stalled chain, what forced changes are for), re-bootstrap from a trusted "
                "checkpoint after the change"
            )
        # Substrate's voters switch at the import of the enactment block: the announced set
        # signs from here on.
        authorities, set_id, pending = pending.next_authorities, _next_set_id(set_id), None
        handed_over = True
    return _Plan(
        signer=authorities,
        signer_set_id=set_id,
        authorities=authorities,
        set_id=set_id,
        pending_change=pending,
        set_changed=handed_over,
    )


class GrandpaLightClient:
    """Trusted GRANDPA state for one chain, advanced only by verified justifications.

    Build it from a checkpoint the operator trusts: the finalized ``header`` (SCALE bytes), the
    ``authorities`` (ed25519 key, weight) and ``set_id`` that finalize the blocks after it, and
    a ``pending_change`` signalled before the checkpoint and enacted after it, if there is one
    (``Grandpa.PendingChange`` in the chain's storage). A change the checkpoint header itself
    signals is read from its digest.

    Raises QuorumError for an unusable authority set, AuthoritySetChangeError when the pending
    change or the header's own signal contradicts the given set, and MalformedEncodingError for
    a header or set id that does not decode.
    """

    __slots__ = ("_state",)

    def __init__(
        self,
        *,
        header: bytes,
        authorities: Iterable[tuple[bytes, int]],
        set_id: int,
        pending_change: PendingAuthorityChange | None = None,
    ) -> None:
        self._state = _checkpoint_state(header, authorities, set_id, pending_change)

    # ------------------------------------------------------------------ state

    @property
    def set_id(self) -> int:
        """The id of the set that finalizes the blocks after the finalized block."""
        return self._state.set_id

    @property
    def authorities(self) -> Authorities:
        return self._state.authorities

    @property
    def finalized(self) -> FinalizedBlock:
        return FinalizedBlock(hash=self._state.hash, number=self._state.number)

    @property
    def finalized_header(self) -> bytes:
        """The finalized block's SCALE header, whose blake2-256 is ``finalized.hash``."""
        return self._state.header

    @property
    def pending_change(self) -> PendingAuthorityChange | None:
        return self._state.pending_change

    def status(self) -> GrandpaStatus:
        state = self._state
        return GrandpaStatus(
            set_id=state.set_id,
            authority_count=len(state.authorities),
            total_weight=sum(weight for _, weight in state.authorities),
            finalized_hash=state.hash,
            finalized_number=state.number,
            pending_enactment_number=(
                None if state.pending_change is None else state.pending_change.enactment_number
            ),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GrandpaLightClient):
            return NotImplemented
        return self._state == other._state

    __hash__ = None  # type: ignore[assignment]  # mutable: imports replace the state

    def __repr__(self) -> str:
        state = self._state
        return (
            f"GrandpaLightClient(set_id={state.set_id}, authorities={len(state.authorities)}, "
            f"finalized=#{state.number} {_to_hex(state.hash)})"
        )

    # ------------------------------------------------------------------ import

    def import_justification(
        self, justification: bytes | GrandpaJustification, headers: Sequence[bytes]
    ) -> GrandpaImport:
        """Verify ``justification`` against the current set and finalize its target.

        ``justification`` is SCALE bytes (ancestry headers in the standard layout) or an already
        decoded one; ``headers`` are the SCALE headers from the finalized block's child up to
        and including the target, in order.

        Raises StaleFinalityError for a target at or below the finalized block;
        HashMismatchError when the headers do not link the finalized block to the target;
        AuthoritySetChangeError / ForcedChangeError for the set-change rules in the module
        docstring; SignatureError, QuorumError and MalformedEncodingError from the
        justification itself (``verify_grandpa_justification``).
        """
        state = self._state
        decoded = (
            justification
            if isinstance(justification, GrandpaJustification)
            else decode_justification(justification)
        )
        target = f"#{decoded.target_number} {_to_hex(decoded.target_hash)}"
        if decoded.target_number <= state.number:
            conflict = (
                " (a different block at the finalized height: conflicting finality)"
                if decoded.target_number == state.number and decoded.target_hash != state.hash
                else ""
            )
            raise StaleFinalityError(
                f"the justification finalizes {target}, not above the finalized block "
                f"#{state.number} {_to_hex(state.hash)}{conflict}"
            )
        links = _link_headers(state, headers)
        last = links[-1]
        if last.hash != decoded.target_hash or last.header.number != decoded.target_number:
            raise HashMismatchError(
                f"the justification finalizes {target}, but the header chain ends at "
                f"#{last.header.number} {_to_hex(last.hash)}"
            )
        plan = _plan_import(state, links)
        # Signatures last: they are the expensive part.
        finalized = verify_grandpa_justification(
            decoded, set_id=plan.signer_set_id, authorities=plan.signer
        )
        self._state = _State(
            authorities=plan.authorities,
            set_id=plan.set_id,
            header=last.raw,
            hash=last.hash,
            number=last.header.number,
            pending_change=plan.pending_change,
        )
        return GrandpaImport(
            finalized=finalized,
            set_id=plan.set_id,
            set_changed=plan.set_changed,
            pending_change=plan.pending_change,
        )

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, object]:
        """The state as a JSON-able mapping (hex strings for bytes); ``from_dict`` reads it."""
        state = self._state
        pending = state.pending_change
        return {
            "version": _STATE_VERSION,
            "set_id": state.set_id,
            "authorities": _authorities_to_json(state.authorities),
            "finalized": {
                "hash": _to_hex(state.hash),
                "number": state.number,
                "header": _to_hex(state.header),
            },
            "pending_change": None
            if pending is None
            else {
                "next_authorities": _authorities_to_json(pending.next_authorities),
                "signal_number": pending.signal_number,
                "delay": pending.delay,
                "forced": pending.forced,
            },
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON of ``to_dict``: equal states give equal bytes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> GrandpaLightClient:
        """Rebuild a store from ``to_dict``'s mapping, re-checking every invariant.

        Raises MalformedEncodingError for a mapping of the wrong shape, HashMismatchError when
        the recorded hash or number disagree with the recorded header, and what the
        constructor raises.
        """
        _exact_keys(data, {"version", "set_id", "authorities", "finalized", "pending_change"}, "")
        if _int(data, "version", "") != _STATE_VERSION:
            raise MalformedEncodingError(
                f"GRANDPA store state version {data['version']!r} is not {_STATE_VERSION}"
            )
        finalized = _mapping(data, "finalized", "")
        _exact_keys(finalized, {"hash", "number", "header"}, "finalized.")
        pending_raw = data["pending_change"]
        pending = None
        if pending_raw is not None:
            pending_map = _mapping(data, "pending_change", "")
            # States written before forced changes were followed have no "forced" key.
            keys = {"next_authorities", "signal_number", "delay"}
            _exact_keys(pending_map, keys | ({"forced"} & set(pending_map)), "pending_change.")
            forced = pending_map.get("forced", False)
            if not isinstance(forced, bool):
                raise MalformedEncodingError(
                    "GRANDPA store state pending_change.forced must be a bool"
                )
            pending = PendingAuthorityChange(
                next_authorities=_authorities_from_json(
                    pending_map["next_authorities"], "pending_change.next_authorities"
                ),
                signal_number=_int(pending_map, "signal_number", "pending_change."),
                delay=_int(pending_map, "delay", "pending_change."),
                forced=forced,
            )
        store = cls(
            header=_hex(finalized["header"], "finalized.header"),
            authorities=_authorities_from_json(data["authorities"], "authorities"),
            set_id=_int(data, "set_id", ""),
            pending_change=pending,
        )
        recorded = FinalizedBlock(
            hash=_hex(finalized["hash"], "finalized.hash"),
            number=_int(finalized, "number", "finalized."),
        )
        if recorded != store.finalized:
            raise HashMismatchError(
                f"stored state records finalized block #{recorded.number} "
                f"{_to_hex(recorded.hash)} but its header is #{store.finalized.number} "
                f"{_to_hex(store.finalized.hash)}"
            )
        return store

    @classmethod
    def from_bytes(cls, data: bytes) -> GrandpaLightClient:
        try:
            parsed = json.loads(data.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedEncodingError(f"GRANDPA store state is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise MalformedEncodingError("GRANDPA store state must be a JSON object")
        return cls.from_dict(parsed)


# ---------------------------------------------------------------------- JSON helpers


def _authorities_to_json(authorities: Authorities) -> list[list[object]]:
    return [[_to_hex(key), weight] for key, weight in authorities]


def _exact_keys(data: Mapping[str, object], keys: set[str], where: str) -> None:
    if set(data) != keys:
        raise MalformedEncodingError(
            f"GRANDPA store state {where or 'root'}: keys {sorted(data)} are not {sorted(keys)}"
        )


def _mapping(data: Mapping[str, object], key: str, where: str) -> Mapping[str, object]:
    value = data[key]
    if not isinstance(value, dict):
        raise MalformedEncodingError(f"GRANDPA store state {where}{key} must be an object")
    return value


def _int(data: Mapping[str, object], key: str, where: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEncodingError(f"GRANDPA store state {where}{key} must be an integer")
    return value


def _hex(value: object, where: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise MalformedEncodingError(f"GRANDPA store state {where} must be a 0x-hex string")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise MalformedEncodingError(f"GRANDPA store state {where} is not hex") from None


def _authorities_from_json(value: object, where: str) -> Authorities:
    if not isinstance(value, list):
        raise MalformedEncodingError(f"GRANDPA store state {where} must be a list")
    pairs: list[tuple[bytes, int]] = []
    for index, item in enumerate(value):
        if not isinstance(item, list) or len(item) != 2:
            raise MalformedEncodingError(
                f"GRANDPA store state {where}[{index}] must be [key, weight]"
            )
        weight = item[1]
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise MalformedEncodingError(
                f"GRANDPA store state {where}[{index}] weight must be an integer"
            )
        pairs.append((_hex(item[0], f"{where}[{index}]"), weight))
    return tuple(pairs)
