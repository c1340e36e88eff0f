"""The Altair light-client sync protocol: a store bootstrapped from a trusted block root that
follows the chain through sync-committee updates, as the consensus specs'
``sync-protocol.md`` (Altair, with Capella's execution headers, Deneb's blob fields and
Electra's deeper state gindices) defines it.

Each public method either applies its input whole or raises and leaves the store as it was: the
new state is built on a copy and swapped in only after every check passed. Checks run in the
spec's order; a failure raises the error of the check that failed:

* ``InvalidSignature``: the aggregate signature (for the fork at ``signature_slot - 1``);
* ``InvalidFinalityProof``: the finality branch, or the finalized header it proves;
* ``InvalidNextSyncCommitteeProof``: the next-committee branch, or a contradiction with the
  next committee already known;
* ``InvalidUpdate``: everything else (participation, slot order, periods, relevance, the
  attested header's execution branch, undecodable JSON or SSZ).

Each committee's keys are decompressed once, on first use, and kept beside the store (not in its
serialized form), which is what makes all but the first update of a period cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from proofs.ethereum_lc.bls import BlsBackend, default_backend
from proofs.ethereum_lc.codec import (
    EXECUTION_BRANCH_DEPTH,
    committee_to_json,
    header_to_json,
    parse_bootstrap,
    parse_committee,
    parse_header,
    parse_update,
    update_to_json,
)
from proofs.ethereum_lc.errors import (
    InvalidBootstrap,
    InvalidFinalityProof,
    InvalidNextSyncCommitteeProof,
    InvalidSignature,
    InvalidUpdate,
    LightClientDecodeError,
    LightClientError,
)
from proofs.ethereum_lc.signing import compute_domain, compute_signing_root
from proofs.ethereum_lc.spec import (
    DOMAIN_SYNC_COMMITTEE,
    EXECUTION_PAYLOAD_GINDEX,
    ChainSpec,
)
from proofs.ethereum_lc.ssz import is_valid_merkle_branch, is_valid_normalized_merkle_branch
from proofs.ethereum_lc.types import (
    LightClientHeader,
    LightClientUpdate,
    SyncCommittee,
    default_committee_root,
)

__all__ = ["STORE_FORMAT", "LightClientStore"]

# Tag of the serialized form (``to_json``); bump it when the layout changes.
STORE_FORMAT = "ethereum-lc-store/1"
_GENESIS_SLOT = 0
_ZERO_ROOT = bytes(32)


@dataclass(slots=True)
class _State:
    """The spec's ``LightClientStore`` fields; replaced whole, never mutated in place."""

    finalized_header: LightClientHeader
    current_sync_committee: SyncCommittee
    next_sync_committee: SyncCommittee | None
    best_valid_update: LightClientUpdate | None
    optimistic_header: LightClientHeader
    previous_max_active_participants: int
    current_max_active_participants: int


def _hx(value: bytes) -> str:
    return "0x" + value.hex()


class LightClientStore:
    """A sync-committee light client for one chain (``spec``).

    Build one with ``from_bootstrap`` (or ``from_json`` for a stored one); feed it
    ``process_update`` with beacon-API JSON updates (``decode_ssz`` turns SSZ into that form),
    call ``force_update`` when no finality arrives for a sync-committee period, and read
    ``finalized_header`` / ``optimistic_header``.
    """

    __slots__ = ("_bls", "_prepared", "_spec", "_state", "_trusted_block_root")

    def __init__(
        self,
        *,
        spec: ChainSpec,
        state: _State,
        trusted_block_root: bytes,
        bls: BlsBackend | None = None,
    ) -> None:
        self._spec = spec
        self._state = state
        self._trusted_block_root = trusted_block_root
        self._bls = bls if bls is not None else default_backend()
        self._prepared: dict[bytes, object] = {}

    # -------------------------------------------------------------------------- construction

    @classmethod
    def from_bootstrap(
        cls,
        bootstrap: Mapping[str, Any],
        trusted_block_root: bytes | str,
        spec: ChainSpec,
        *,
        bls: BlsBackend | None = None,
        current_slot: int | None = None,
        max_checkpoint_age_slots: int | None = None,
    ) -> LightClientStore:
        """``initialize_light_client_store``: trust ``bootstrap`` because its header hashes to
        ``trusted_block_root`` and its committee branch holds against that header's state.

        The checkpoint's age is checked only when ``max_checkpoint_age_slots`` is given (with
        ``current_slot``): a checkpoint older than the weak-subjectivity period could come from
        a chain its exited validators rebuilt. Raises InvalidBootstrap, or
        LightClientDecodeError for malformed JSON.
        """
        trusted = _root_bytes(trusted_block_root)
        parsed = parse_bootstrap(bootstrap, spec)
        header = parsed.header
        _check_header(header, spec, "bootstrap header", InvalidBootstrap)
        if header.beacon_root != trusted:
            raise InvalidBootstrap(
                f"bootstrap header (slot {header.slot}) hashes to {_hx(header.beacon_root)}, "
                f"not the trusted block root {_hx(trusted)}; the beacon node served another block"
            )
        gindex = spec.current_sync_committee_gindex_at_slot(header.slot)
        if not is_valid_normalized_merkle_branch(
            parsed.current_sync_committee.root,
            parsed.current_sync_committee_branch,
            gindex,
            header.beacon.state_root,
        ):
            raise InvalidBootstrap(
                f"current sync committee {_hx(parsed.current_sync_committee.root)} is not in the "
                f"state {_hx(header.beacon.state_root)} of slot {header.slot} "
                f"(branch of {len(parsed.current_sync_committee_branch)} for gindex {gindex})"
            )
        if max_checkpoint_age_slots is not None:
            if current_slot is None:
                raise ValueError("max_checkpoint_age_slots needs current_slot")
            age = current_slot - header.slot
            if age > max_checkpoint_age_slots:
                raise InvalidBootstrap(
                    f"checkpoint at slot {header.slot} is {age} slots old at slot {current_slot}, "
                    f"more than the {max_checkpoint_age_slots} allowed; bootstrap from a recent "
                    "finalized block root"
                )
        state = _State(
            finalized_header=header,
            current_sync_committee=parsed.current_sync_committee,
            next_sync_committee=None,
            best_valid_update=None,
            optimistic_header=header,
            previous_max_active_participants=0,
            current_max_active_participants=0,
        )
        return cls(spec=spec, state=state, trusted_block_root=trusted, bls=bls)

    def copy(self) -> LightClientStore:
        """An independent store in the same state, sharing the decompressed committees."""
        twin = LightClientStore(
            spec=self._spec,
            state=replace(self._state),
            trusted_block_root=self._trusted_block_root,
            bls=self._bls,
        )
        twin._prepared = dict(self._prepared)
        return twin

    # ------------------------------------------------------------------------------- reading

    @property
    def spec(self) -> ChainSpec:
        return self._spec

    @property
    def trusted_block_root(self) -> bytes:
        """The block root this store was bootstrapped from."""
        return self._trusted_block_root

    @property
    def finalized_header(self) -> LightClientHeader:
        return self._state.finalized_header

    @property
    def optimistic_header(self) -> LightClientHeader:
        return self._state.optimistic_header

    @property
    def current_sync_committee(self) -> SyncCommittee:
        return self._state.current_sync_committee

    @property
    def next_sync_committee(self) -> SyncCommittee | None:
        """``None`` until an update has proven it (the spec's ``SyncCommittee()``)."""
        return self._state.next_sync_committee

    @property
    def best_valid_update(self) -> LightClientUpdate | None:
        return self._state.best_valid_update

    @property
    def period(self) -> int:
        """The sync-committee period of the finalized header."""
        return self._spec.period_at_slot(self._state.finalized_header.slot)

    @property
    def previous_max_active_participants(self) -> int:
        return self._state.previous_max_active_participants

    @property
    def current_max_active_participants(self) -> int:
        return self._state.current_max_active_participants

    # ------------------------------------------------------------------------------ updating

    def process_update(self, update: Mapping[str, Any], current_slot: int) -> None:
        """``process_light_client_update`` for a beacon-API ``LightClientUpdate``,
        ``LightClientFinalityUpdate`` or ``LightClientOptimisticUpdate`` (told apart by their
        fields). ``current_slot`` is the wall-clock slot. Raises InvalidSignature,
        InvalidFinalityProof, InvalidNextSyncCommitteeProof or InvalidUpdate."""
        parsed = parse_update(update, self._spec)
        self._validate(parsed, current_slot)
        self._state = self._processed(parsed)
        self._prune_prepared()

    def force_update(self, current_slot: int) -> None:
        """``process_light_client_store_force_update``: once ``UPDATE_TIMEOUT`` slots pass
        without finality, adopt the best valid update seen, its attested header standing in for
        a finalized one if it finalized nothing new. Not safe in general (the spec's words:
        "use case dependent heuristics"); the caller decides when to call it."""
        state = self._state
        best = state.best_valid_update
        if best is None or current_slot <= state.finalized_header.slot + self._spec.update_timeout:
            return
        if best.finalized_slot <= state.finalized_header.slot:
            best = replace(best, finalized_header=best.attested_header)
        new = replace(state)
        self._apply(new, best)
        new.best_valid_update = None
        self._state = new
        self._prune_prepared()

    def warm_up(self) -> None:
        """Decompress the known committees now (the slow part of a period's first update), e.g.
        in a worker thread right after ``from_json``."""
        self._prepared_committee(self._state.current_sync_committee)
        if self._state.next_sync_committee is not None:
            self._prepared_committee(self._state.next_sync_committee)

    # ----------------------------------------------------------------------------- the rules

    def _validate(self, update: LightClientUpdate, current_slot: int) -> None:
        """``validate_light_client_update``."""
        spec = self._spec
        state = self._state
        participants = update.participants
        if participants < spec.min_sync_committee_participants:
            raise InvalidUpdate(
                f"{participants} sync committee participants; at least "
                f"{spec.min_sync_committee_participants} needed"
            )
        attested = update.attested_header
        _check_header(attested, spec, "attested header", InvalidUpdate)
        attested_slot = attested.slot
        finalized_slot = update.finalized_slot
        signature_slot = update.signature_slot
        if not current_slot >= signature_slot > attested_slot >= finalized_slot:
            raise InvalidUpdate(
                "slots out of order: need current slot >= signature slot > attested slot >= "
                f"finalized slot, got {current_slot} >= {signature_slot} > {attested_slot} >= "
                f"{finalized_slot}"
            )
        store_period = spec.period_at_slot(state.finalized_header.slot)
        signature_period = spec.period_at_slot(signature_slot)
        next_known = state.next_sync_committee is not None
        allowed = (store_period, store_period + 1) if next_known else (store_period,)
        if signature_period not in allowed:
            raise InvalidUpdate(
                f"signature slot {signature_slot} is in period {signature_period}; the store is "
                f"in period {store_period} and "
                + (
                    "knows the next committee, so accepts that period and the next"
                    if next_known
                    else "does not know the next committee yet, so accepts only that period"
                )
            )
        attested_period = spec.period_at_slot(attested_slot)
        has_next_committee = (
            not next_known and update.is_sync_committee_update() and attested_period == store_period
        )
        if not (attested_slot > state.finalized_header.slot or has_next_committee):
            raise InvalidUpdate(
                f"update attests slot {attested_slot}, not after the finalized slot "
                f"{state.finalized_header.slot}, and brings no next sync committee the store "
                "lacks; it has nothing new"
            )

        self._validate_finality(update)
        self._validate_next_committee(update, store_period, attested_period)

        committee = (
            state.current_sync_committee
            if signature_period == store_period
            else state.next_sync_committee
        )
        assert committee is not None  # signature_period == store_period + 1 needs it known
        fork = spec.signature_fork(signature_slot)
        domain = compute_domain(DOMAIN_SYNC_COMMITTEE, fork.version, spec.genesis_validators_root)
        signing_root = compute_signing_root(attested.beacon_root, domain)
        if not self._bls.fast_aggregate_verify(
            self._prepared_committee(committee),
            update.sync_committee_bits,
            signing_root,
            update.sync_committee_signature,
        ):
            raise InvalidSignature(
                f"sync committee signature over attested block {_hx(attested.beacon_root)} "
                f"(slot {attested_slot}) by {participants} of {len(update.sync_committee_bits)} "
                f"members of period {signature_period}'s committee {_hx(committee.root)} "
                f"does not verify with the {fork.name} fork version {_hx(fork.version)} "
                f"(signature slot {signature_slot})"
            )

    def _validate_finality(self, update: LightClientUpdate) -> None:
        attested = update.attested_header
        finalized = update.finalized_header
        if not update.is_finality_update():
            if finalized is not None:
                raise InvalidFinalityProof(
                    f"update carries finalized header slot {finalized.slot} "
                    f"{_hx(finalized.beacon_root)} but no finality branch"
                )
            return
        if update.finalized_slot == _GENESIS_SLOT:
            # The genesis checkpoint's root is recorded as zero in the state.
            if finalized is not None:
                raise InvalidFinalityProof(
                    "finalized header claims the genesis slot but is not the empty header"
                )
            leaf = _ZERO_ROOT
        else:
            assert finalized is not None  # a nonzero slot comes from a header
            _check_header(finalized, self._spec, "finalized header", InvalidFinalityProof)
            leaf = finalized.beacon_root
        gindex = self._spec.finalized_root_gindex_at_slot(attested.slot)
        if not is_valid_normalized_merkle_branch(
            leaf, update.finality_branch, gindex, attested.beacon.state_root
        ):
            raise InvalidFinalityProof(
                f"finality branch does not prove finalized root {_hx(leaf)} "
                f"(slot {update.finalized_slot}) at gindex {gindex} of attested state "
                f"{_hx(attested.beacon.state_root)} (slot {attested.slot}, branch of "
                f"{len(update.finality_branch)})"
            )

    def _validate_next_committee(
        self, update: LightClientUpdate, store_period: int, attested_period: int
    ) -> None:
        attested = update.attested_header
        committee = update.next_sync_committee
        if not update.is_sync_committee_update():
            if committee is not None:
                raise InvalidNextSyncCommitteeProof(
                    f"update carries next sync committee {_hx(committee.root)} without a branch"
                )
            return
        leaf = (
            committee.root
            if committee is not None
            else default_committee_root(self._spec.sync_committee_size)
        )
        known = self._state.next_sync_committee
        if attested_period == store_period and known is not None and leaf != known.root:
            raise InvalidNextSyncCommitteeProof(
                f"update's next sync committee {_hx(leaf)} for period {store_period + 1} "
                f"contradicts the one the store already proved, {_hx(known.root)}"
            )
        gindex = self._spec.next_sync_committee_gindex_at_slot(attested.slot)
        if not is_valid_normalized_merkle_branch(
            leaf, update.next_sync_committee_branch, gindex, attested.beacon.state_root
        ):
            raise InvalidNextSyncCommitteeProof(
                f"next sync committee {_hx(leaf)} is not in attested state "
                f"{_hx(attested.beacon.state_root)} (slot {attested.slot}) at gindex {gindex} "
                f"(branch of {len(update.next_sync_committee_branch)})"
            )

    def _processed(self, update: LightClientUpdate) -> _State:
        """The rest of ``process_light_client_update``, on a copy of the state."""
        spec = self._spec
        new = replace(self._state)
        if new.best_valid_update is None or _is_better_update(update, new.best_valid_update, spec):
            new.best_valid_update = update
        participants = update.participants
        new.current_max_active_participants = max(new.current_max_active_participants, participants)
        safety_threshold = (
            max(new.previous_max_active_participants, new.current_max_active_participants) // 2
        )
        if (
            participants > safety_threshold
            and update.attested_header.slot > new.optimistic_header.slot
        ):
            new.optimistic_header = update.attested_header
        finalizes_next_committee = (
            new.next_sync_committee is None
            and update.is_sync_committee_update()
            and update.is_finality_update()
            and spec.period_at_slot(update.finalized_slot)
            == spec.period_at_slot(update.attested_header.slot)
        )
        if participants * 3 >= len(update.sync_committee_bits) * 2 and (
            update.finalized_slot > new.finalized_header.slot or finalizes_next_committee
        ):
            self._apply(new, update)
            new.best_valid_update = None
        return new

    def _apply(self, new: _State, update: LightClientUpdate) -> None:
        """``apply_light_client_update`` on ``new`` (a copy the caller swaps in)."""
        spec = self._spec
        store_period = spec.period_at_slot(new.finalized_header.slot)
        finalized_period = spec.period_at_slot(update.finalized_slot)
        if new.next_sync_committee is None:
            if finalized_period != store_period:
                raise InvalidUpdate(
                    f"update finalizes period {finalized_period} but the store, in period "
                    f"{store_period}, does not know the next committee yet"
                )
            new.next_sync_committee = update.next_sync_committee
        elif finalized_period == store_period + 1:
            new.current_sync_committee = new.next_sync_committee
            new.next_sync_committee = update.next_sync_committee
            new.previous_max_active_participants = new.current_max_active_participants
            new.current_max_active_participants = 0
        if update.finalized_header is not None and update.finalized_slot > (
            new.finalized_header.slot
        ):
            new.finalized_header = update.finalized_header
            if new.finalized_header.slot > new.optimistic_header.slot:
                new.optimistic_header = new.finalized_header

    # ------------------------------------------------------------------ decompressed committees

    def _prepared_committee(self, committee: SyncCommittee) -> object:
        prepared = self._prepared.get(committee.root)
        if prepared is None:
            prepared = self._bls.prepare_committee(committee.pubkeys)
            self._prepared[committee.root] = prepared
        return prepared

    def _prune_prepared(self) -> None:
        keep = {self._state.current_sync_committee.root}
        if self._state.next_sync_committee is not None:
            keep.add(self._state.next_sync_committee.root)
        for root in [r for r in self._prepared if r not in keep]:
            del self._prepared[root]

    # ----------------------------------------------------------------------------- persisting

    def to_json(self) -> dict[str, Any]:
        """The store as a JSON-able mapping (strings, lists, dicts and ``None`` only), for
        ``from_json``. Decompressed keys are not included; they are rebuilt on first use."""
        state = self._state
        best = state.best_valid_update
        return {
            "format": STORE_FORMAT,
            "preset": self._spec.preset,
            "genesis_validators_root": _hx(self._spec.genesis_validators_root),
            "trusted_block_root": _hx(self._trusted_block_root),
            "finalized_header": header_to_json(state.finalized_header, "any"),
            "finalized_block_root": _hx(state.finalized_header.beacon_root),
            "optimistic_header": header_to_json(state.optimistic_header, "any"),
            "optimistic_block_root": _hx(state.optimistic_header.beacon_root),
            "current_sync_committee": committee_to_json(state.current_sync_committee),
            "current_sync_committee_root": _hx(state.current_sync_committee.root),
            "next_sync_committee": (
                None
                if state.next_sync_committee is None
                else committee_to_json(state.next_sync_committee)
            ),
            "next_sync_committee_root": (
                None if state.next_sync_committee is None else _hx(state.next_sync_committee.root)
            ),
            "best_valid_update": None if best is None else update_to_json(best, self._spec),
            "previous_max_active_participants": str(state.previous_max_active_participants),
            "current_max_active_participants": str(state.current_max_active_participants),
        }

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], spec: ChainSpec, *, bls: BlsBackend | None = None
    ) -> LightClientStore:
        """A store from ``to_json``'s output. The stored roots are recomputed and compared, so
        a corrupted row is refused rather than followed. Raises LightClientDecodeError (also
        when the state belongs to another chain than ``spec``)."""
        if not isinstance(data, Mapping) or data.get("format") != STORE_FORMAT:
            raise LightClientDecodeError(
                f"not a stored light-client state of format {STORE_FORMAT!r}"
            )
        if data.get("preset") != spec.preset or data.get("genesis_validators_root") != _hx(
            spec.genesis_validators_root
        ):
            raise LightClientDecodeError(
                f"stored light-client state is for preset {data.get('preset')!r}, genesis "
                f"validators root {data.get('genesis_validators_root')}; this chain is "
                f"{spec.preset!r}, {_hx(spec.genesis_validators_root)}"
            )
        finalized = parse_header(data.get("finalized_header"), "any", spec, "finalized_header")
        optimistic = parse_header(data.get("optimistic_header"), "any", spec, "optimistic_header")
        current = parse_committee(data.get("current_sync_committee"), spec, "current")
        raw_next = data.get("next_sync_committee")
        next_committee = None if raw_next is None else parse_committee(raw_next, spec, "next")
        _expect_root(data, "finalized_block_root", finalized.beacon_root)
        _expect_root(data, "optimistic_block_root", optimistic.beacon_root)
        _expect_root(data, "current_sync_committee_root", current.root)
        _expect_root(
            data,
            "next_sync_committee_root",
            None if next_committee is None else next_committee.root,
        )
        raw_best = data.get("best_valid_update")
        state = _State(
            finalized_header=finalized,
            current_sync_committee=current,
            next_sync_committee=next_committee,
            best_valid_update=None if raw_best is None else parse_update(raw_best, spec),
            optimistic_header=optimistic,
            previous_max_active_participants=_stored_int(data, "previous_max_active_participants"),
            current_max_active_participants=_stored_int(data, "current_max_active_participants"),
        )
        trusted = data.get("trusted_block_root")
        if not isinstance(trusted, str):
            raise LightClientDecodeError("stored trusted_block_root is missing")
        return cls(spec=spec, state=state, trusted_block_root=_root_bytes(trusted), bls=bls)


# ---------------------------------------------------------------------------------- helpers


def _check_header(
    header: LightClientHeader, spec: ChainSpec, what: str, error: type[LightClientError]
) -> None:
    """``is_valid_light_client_header``: before Capella no execution part; from Capella on an
    execution header proven under the block body root; blob fields zero before Deneb."""
    slot = header.slot
    execution = header.execution
    fork = spec.fork_at_slot(slot).name
    if (
        execution is not None
        and not spec.has_blob_fields_at(slot)
        and (execution.blob_gas_used or execution.excess_blob_gas)
    ):
        raise error(
            f"{what} (slot {slot}, {fork}) has blob gas fields "
            f"({execution.blob_gas_used}, {execution.excess_blob_gas}) before Deneb"
        )
    if not spec.has_execution_at(slot):
        if (execution is not None and not execution.is_default()) or any(
            node != _ZERO_ROOT for node in header.execution_branch
        ):
            raise error(f"{what} (slot {slot}, {fork}) has an execution header before Capella")
        return
    if execution is None:
        raise error(
            f"{what} (slot {slot}, {fork}) has no execution header; from Capella on it must"
        )
    depth = EXECUTION_PAYLOAD_GINDEX.bit_length() - 1
    if len(header.execution_branch) != EXECUTION_BRANCH_DEPTH or not is_valid_merkle_branch(
        header.execution_root,
        header.execution_branch,
        depth,
        EXECUTION_PAYLOAD_GINDEX - (1 << depth),
        header.beacon.body_root,
    ):
        raise error(
            f"{what} (slot {slot}): execution header {_hx(header.execution_root)} (block "
            f"{execution.block_number} {_hx(execution.block_hash)}) is not in block body "
            f"{_hx(header.beacon.body_root)}"
        )


def _is_better_update(new: LightClientUpdate, old: LightClientUpdate, spec: ChainSpec) -> bool:
    """``is_better_update``: which of two valid updates to keep for ``force_update``."""
    size = len(new.sync_committee_bits)
    new_active = new.participants
    old_active = old.participants
    new_supermajority = new_active * 3 >= size * 2
    old_supermajority = old_active * 3 >= size * 2
    if new_supermajority != old_supermajority:
        return new_supermajority
    if not new_supermajority and new_active != old_active:
        return new_active > old_active

    def relevant_committee(update: LightClientUpdate) -> bool:
        return update.is_sync_committee_update() and spec.period_at_slot(
            update.attested_header.slot
        ) == spec.period_at_slot(update.signature_slot)

    if relevant_committee(new) != relevant_committee(old):
        return relevant_committee(new)
    new_finality = new.is_finality_update()
    if new_finality != old.is_finality_update():
        return new_finality

    def committee_finality(update: LightClientUpdate) -> bool:
        return spec.period_at_slot(update.finalized_slot) == spec.period_at_slot(
            update.attested_header.slot
        )

    if new_finality and committee_finality(new) != committee_finality(old):
        return committee_finality(new)
    if new_active != old_active:
        return new_active > old_active
    if new.attested_header.slot != old.attested_header.slot:
        return new.attested_header.slot < old.attested_header.slot
    return new.signature_slot < old.signature_slot


def _root_bytes(value: bytes | str) -> bytes:
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value.removeprefix("0x"))
        except ValueError:
            raise InvalidBootstrap(f"trusted block root {value!r} is not hex") from None
    if len(value) != 32:
        raise InvalidBootstrap(f"trusted block root must be 32 bytes, got {len(value)}")
    return bytes(value)


def _expect_root(data: Mapping[str, Any], key: str, actual: bytes | None) -> None:
    stored = data.get(key)
    expected = None if actual is None else _hx(actual)
    if stored != expected:
        raise LightClientDecodeError(
            f"stored light-client state is corrupt: {key} is {stored}, its content hashes to "
            f"{expected}"
        )


def _stored_int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        raise LightClientDecodeError(f"stored {key} must be a decimal string, got {value!r}")
    return int(value)
