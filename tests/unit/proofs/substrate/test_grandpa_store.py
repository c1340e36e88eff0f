"""proofs.substrate.grandpa_store: a light client following two authority-set changes signed by
real (test-generated) ed25519 keys, every way to lead it astray, and the digest decoding under it.

The change sequence: a checkpoint at #10 trusts set A (set id 5). #11 schedules set B with delay
3, so #14 is A's last block; #16 schedules set C with delay 0, so #16 is B's last block.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from proofs import (
    HashMismatchError,
    MalformedEncodingError,
    ProofError,
    QuorumError,
    SignatureError,
)
from proofs.hashing import blake2_256
from proofs.substrate import (
    AuthoritySetChangeError,
    DigestItem,
    DigestItemKind,
    FinalizedBlock,
    ForcedChange,
    ForcedChangeError,
    GrandpaLightClient,
    GrandpaStatus,
    PendingAuthorityChange,
    ScheduledChange,
    StaleFinalityError,
    decode_digest,
    decode_grandpa_log,
    decode_header,
    grandpa_logs,
)
from proofs.substrate.digest import OnDisabled, Pause, Resume
from proofs.substrate.scale import encode_compact
from tests.unit.proofs.substrate.grandpa_builders import (
    authority_list,
    block_header,
    encode_justification,
    forced_change_log,
    frnk,
    grow_chain,
    hx,
    justify,
    load_substrate_vector,
    on_disabled_log,
    pause_log,
    pre_runtime_item,
    resume_log,
    scheduled_change_log,
    sign_vote,
    signing_keys,
)

KEYS_A = signing_keys(4, salt=1)
KEYS_B = signing_keys(5, salt=2)
KEYS_C = signing_keys(3, salt=3)
SET_A, SET_B, SET_C = authority_list(KEYS_A), authority_list(KEYS_B), authority_list(KEYS_C)
OUTSIDER = signing_keys(1, salt=4)[0]

CHECKPOINT = block_header(blake2_256(b"block 9"), 10)


@functools.cache
def _chain() -> dict[int, bytes]:
    return grow_chain(
        CHECKPOINT,
        10,
        {11: (frnk(scheduled_change_log(SET_B, 3)),), 16: (frnk(scheduled_change_log(SET_C, 0)),)},
    )


def _headers(first: int, last: int, chain: dict[int, bytes] | None = None) -> list[bytes]:
    chain = _chain() if chain is None else chain
    return [chain[n] for n in range(first, last + 1)]


def _store(authorities: Sequence[tuple[bytes, int]] = tuple(SET_A)) -> GrandpaLightClient:
    return GrandpaLightClient(header=CHECKPOINT, authorities=authorities, set_id=5)


def _advance(
    store: GrandpaLightClient,
    target: int,
    keys: Sequence[SigningKey],
    set_id: int,
    chain: dict[int, bytes] | None = None,
) -> None:
    chain = _chain() if chain is None else chain
    store.import_justification(
        justify(chain[target], keys, set_id),
        _headers(store.finalized.number + 1, target, chain),
    )


def _refused(
    store: GrandpaLightClient,
    error: type[ProofError],
    justification: bytes,
    headers: Sequence[bytes],
) -> ProofError:
    """Import expecting ``error``, and check that the store is exactly as it was."""
    before = store.to_bytes()
    with pytest.raises(error) as caught:
        store.import_justification(justification, headers)
    assert store.to_bytes() == before
    return caught.value


def _hash(number: int) -> bytes:
    return blake2_256(_chain()[number])


# ---------------------------------------------------------------- following set changes


def test_follows_a_delayed_change_then_an_immediate_one() -> None:
    store = _store()
    assert store.status() == GrandpaStatus(
        set_id=5,
        authority_count=4,
        total_weight=4,
        finalized_hash=blake2_256(CHECKPOINT),
        finalized_number=10,
        pending_enactment_number=None,
    )

    # #12 by A: the change signalled at #11 is now pending, enacted at #14.
    result = store.import_justification(justify(_chain()[12], KEYS_A, 5), _headers(11, 12))
    assert result.finalized == FinalizedBlock(hash=_hash(12), number=12)
    assert (result.set_id, result.set_changed) == (5, False)
    assert result.pending_change == PendingAuthorityChange(
        next_authorities=tuple(SET_B), signal_number=11, delay=3
    )
    assert store.status().pending_enactment_number == 14

    # #14, the enactment block, is A's last: A signs it under set 5, and B takes over.
    result = store.import_justification(justify(_chain()[14], KEYS_A[:3], 5), _headers(13, 14))
    assert (result.set_id, result.set_changed, result.pending_change) == (6, True, None)
    assert store.authorities == tuple(SET_B)

    # #16 signals C with delay 0: B finalizes #16 itself, and C takes over after it.
    result = store.import_justification(justify(_chain()[16], KEYS_B[:4], 6), _headers(15, 16))
    assert (result.set_id, result.set_changed) == (7, True)

    # C finalizes several blocks at once.
    result = store.import_justification(justify(_chain()[20], KEYS_C, 7), _headers(17, 20))
    assert (result.set_id, result.set_changed) == (7, False)
    assert store.status() == GrandpaStatus(
        set_id=7,
        authority_count=3,
        total_weight=3,
        finalized_hash=_hash(20),
        finalized_number=20,
        pending_enactment_number=None,
    )
    assert store.finalized_header == _chain()[20]


def test_signal_and_enactment_can_be_finalized_in_one_import() -> None:
    store = _store()
    _advance(store, 14, KEYS_A, 5)
    assert (store.set_id, store.authorities, store.pending_change) == (6, tuple(SET_B), None)


def test_justification_by_the_old_set_after_the_change_is_refused() -> None:
    store = _store()
    _advance(store, 14, KEYS_A, 5)
    # A's keys are no longer the set, under either set id.
    for set_id in (5, 6):
        _refused(store, SignatureError, justify(_chain()[15], KEYS_A, set_id), _headers(15, 15))
    # B's keys under A's set id do not verify either.
    _refused(store, SignatureError, justify(_chain()[15], KEYS_B, 5), _headers(15, 15))
    _advance(store, 15, KEYS_B, 6)


def test_justification_skipping_the_enactment_block_is_refused() -> None:
    store = _store()
    # Signal and enactment inside one header chain, target beyond the enactment.
    error = _refused(
        store, AuthoritySetChangeError, justify(_chain()[15], KEYS_A, 5), _headers(11, 15)
    )
    assert "#14" in str(error)
    # The change already pending from an earlier import.
    _advance(store, 12, KEYS_A, 5)
    _refused(store, AuthoritySetChangeError, justify(_chain()[15], KEYS_A, 5), _headers(13, 15))
    # A delay-0 change: #16 must be finalized by B before C's blocks.
    _advance(store, 14, KEYS_A, 5)
    _refused(store, AuthoritySetChangeError, justify(_chain()[17], KEYS_B, 6), _headers(15, 17))


# ---------------------------------------------------------------- forged and wrong justifications


def test_wrong_set_id_is_refused() -> None:
    store = _store()
    for set_id in (4, 6):
        _refused(store, SignatureError, justify(_chain()[12], KEYS_A, set_id), _headers(11, 12))


def test_duplicate_voter_is_refused() -> None:
    store = _store()
    target = _chain()[12]
    again = sign_vote(KEYS_A[0], _hash(12), 12, 1, 5)
    _refused(
        store, SignatureError, justify(target, KEYS_A[:3], 5, extra_votes=[again]), _headers(11, 12)
    )


def test_voter_outside_the_set_is_refused() -> None:
    store = _store()
    outsider = sign_vote(OUTSIDER, _hash(12), 12, 1, 5)
    _refused(
        store,
        SignatureError,
        justify(_chain()[12], KEYS_A, 5, extra_votes=[outsider]),
        _headers(11, 12),
    )


def test_weight_just_below_two_thirds_is_refused_and_the_threshold_accepted() -> None:
    # Four equal voters: two is half, three is the threshold.
    store = _store()
    _refused(store, QuorumError, justify(_chain()[12], KEYS_A[:2], 5), _headers(11, 12))
    _advance(store, 12, KEYS_A[:3], 5)

    # Weights 34 + 33 + 32 + 1 = 100: 66 is just below 2/3, 67 is exactly the threshold.
    store = _store(authority_list(KEYS_A, [34, 33, 32, 1]))
    below = [KEYS_A[0], KEYS_A[2]]
    _refused(store, QuorumError, justify(_chain()[12], below, 5), _headers(11, 12))
    _advance(store, 12, KEYS_A[:2], 5)

    # Weights 33 * 3 = 99: exactly 2/3 (66) is not more than 2/3.
    store = _store(authority_list(KEYS_A[:3], [33, 33, 33]))
    _refused(store, QuorumError, justify(_chain()[12], KEYS_A[:2], 5), _headers(11, 12))


# ---------------------------------------------------------------- header chains


def test_ancestry_gap_is_refused() -> None:
    store = _store()
    justification = justify(_chain()[13], KEYS_A, 5)
    for headers in ([_chain()[11], _chain()[13]], _headers(12, 13), [_chain()[13]], []):
        _refused(store, HashMismatchError, justification, headers)


def test_header_whose_number_does_not_follow_its_parent_is_refused() -> None:
    store = _store()
    liar = block_header(blake2_256(CHECKPOINT), 12)
    _refused(store, HashMismatchError, justify(liar, KEYS_A, 5), [liar])


def test_chain_not_descending_from_the_finalized_block_is_refused() -> None:
    store = _store()
    # A sibling of the checkpoint, and its children.
    sibling = block_header(blake2_256(b"block 9"), 10, fork=b"other")
    fork = grow_chain(sibling, 2, fork=b"other")
    _refused(store, HashMismatchError, justify(fork[12], KEYS_A, 5), _headers(11, 12, fork))
    # A branch off an ancestor of the finalized block (#11), past its height.
    _advance(store, 12, KEYS_A, 5)
    branch = grow_chain(_chain()[11], 2, fork=b"branch")
    error = _refused(
        store, HashMismatchError, justify(branch[13], KEYS_A, 5), _headers(12, 13, branch)
    )
    assert "does not descend from the finalized block" in str(error)


def test_justification_not_ending_the_header_chain_is_refused() -> None:
    store = _store()
    _refused(store, HashMismatchError, justify(_chain()[12], KEYS_A, 5), _headers(11, 13))
    _refused(store, HashMismatchError, justify(_chain()[13], KEYS_A, 5), _headers(11, 12))
    # Signed over #12's hash with #13's number.
    votes = [sign_vote(key, _hash(12), 13, 1, 5) for key in KEYS_A]
    liar = encode_justification(1, _hash(12), 13, votes, [])
    _refused(store, HashMismatchError, liar, _headers(11, 13))


def test_justification_at_or_below_the_finalized_block_is_refused() -> None:
    store = _store()
    _advance(store, 12, KEYS_A, 5)
    for target in (11, 12):
        _refused(
            store, StaleFinalityError, justify(_chain()[target], KEYS_A, 5), _headers(11, target)
        )
    sibling = grow_chain(_chain()[11], 1, fork=b"sibling")[12]
    error = _refused(store, StaleFinalityError, justify(sibling, KEYS_A, 5), [sibling])
    assert "conflicting finality" in str(error)


def test_malformed_justification_or_header_is_refused() -> None:
    store = _store()
    justification = justify(_chain()[12], KEYS_A, 5)
    _refused(store, MalformedEncodingError, justification + b"\x00", _headers(11, 12))
    _refused(store, MalformedEncodingError, justification, [_chain()[11], _chain()[12] + b"\x00"])


# ---------------------------------------------------------------- authority-set change rules


@functools.cache
def _forced_chain() -> dict[int, bytes]:
    """#12 announces a forced change to set B with delay 1: it takes effect at #13."""
    return grow_chain(CHECKPOINT, 6, {12: (frnk(forced_change_log(10, SET_B, 1)),)})


def test_forced_change_finalized_by_the_trusted_set_is_followed() -> None:
    forced = _forced_chain()
    store = _store()
    _advance(store, 12, KEYS_A, 5, forced)
    assert store.pending_change == PendingAuthorityChange(
        next_authorities=tuple(SET_B), signal_number=12, delay=1, forced=True
    )
    # Set A saw the change; its voters switch at #13 without finalizing it, so set B's
    # justification for a later block, linked through #13 to #12, hands over.
    result = store.import_justification(justify(forced[15], KEYS_B, 6), _headers(13, 15, forced))
    assert (result.set_id, result.set_changed, result.pending_change) == (6, True, None)
    assert (store.set_id, store.authorities, store.finalized.number) == (6, tuple(SET_B), 15)
    _advance(store, 16, KEYS_B, 6, forced)


def test_forced_change_enactment_block_may_still_be_finalized_by_the_old_set() -> None:
    forced = _forced_chain()
    store = _store()
    _advance(store, 12, KEYS_A, 5, forced)
    # The old set may not sign past the enactment block: from there on set B signs.
    _refused(store, SignatureError, justify(forced[14], KEYS_A, 5), _headers(13, 14, forced))
    result = store.import_justification(justify(forced[13], KEYS_A, 5), [forced[13]])
    assert (result.set_id, result.set_changed) == (6, True)
    _advance(store, 14, KEYS_B, 6, forced)


def test_forced_change_the_trusted_set_never_finalized_is_refused() -> None:
    forced = _forced_chain()
    store = _store()
    _advance(store, 11, KEYS_A, 5, forced)
    # The stalled-chain case forced changes exist for: only block authors link set B to set A.
    for keys, set_id in ((KEYS_B, 6), (KEYS_A, 5)):
        error = _refused(
            store, ForcedChangeError, justify(forced[15], keys, set_id), _headers(12, 15, forced)
        )
        assert "re-bootstrap" in str(error) and "#12" in str(error)
    # Set A finalizing the announcing block (or the enactment block) is the way on.
    _advance(store, 12, KEYS_A, 5, forced)
    _advance(store, 15, KEYS_B, 6, forced)
    # A forced change is an AuthoritySetChangeError too, for callers that catch the family.
    assert issubclass(ForcedChangeError, AuthoritySetChangeError)


def test_second_forced_change_in_one_import_needs_its_own_finality() -> None:
    # #12 forces set B from #13; #14 (set B's era) forces set C from #15.
    chain = grow_chain(
        CHECKPOINT,
        6,
        {
            12: (frnk(forced_change_log(10, SET_B, 1)),),
            14: (frnk(forced_change_log(12, SET_C, 1)),),
        },
    )
    store = _store()
    _advance(store, 12, KEYS_A, 5, chain)
    # Set B may not hand over to set C in the same import: it has not finalized #14 yet.
    for keys, set_id in ((KEYS_C, 7), (KEYS_B, 6)):
        _refused(
            store, ForcedChangeError, justify(chain[16], keys, set_id), _headers(13, 16, chain)
        )
    # Set B finalizing #15, the block where C takes over, is its last justification.
    result = store.import_justification(justify(chain[15], KEYS_B, 6), _headers(13, 15, chain))
    assert (result.set_id, store.authorities) == (7, tuple(SET_C))
    _advance(store, 16, KEYS_C, 7, chain)


def test_forced_change_with_delay_zero_is_enacted_by_its_own_justification() -> None:
    forced = grow_chain(CHECKPOINT, 3, {12: (frnk(forced_change_log(10, SET_B, 0)),)})
    store = _store()
    _refused(store, ForcedChangeError, justify(forced[13], KEYS_B, 6), _headers(11, 13, forced))
    result = store.import_justification(justify(forced[12], KEYS_A, 5), _headers(11, 12, forced))
    assert (result.set_id, result.set_changed) == (6, True)
    _advance(store, 13, KEYS_B, 6, forced)


def test_forced_pending_change_survives_persistence() -> None:
    forced = _forced_chain()
    store = _store()
    _advance(store, 12, KEYS_A, 5, forced)
    restored = GrandpaLightClient.from_bytes(store.to_bytes())
    assert restored == store and restored.pending_change is not None
    assert restored.pending_change.forced
    # A state saved before forced changes were followed (no "forced" key) still loads.
    plain = _store()
    _advance(plain, 12, KEYS_A, 5)
    old = plain.to_dict()
    pending = old["pending_change"]
    assert isinstance(pending, dict)
    del pending["forced"]
    assert GrandpaLightClient.from_dict(old) == plain
    pending["forced"] = "yes"
    with pytest.raises(MalformedEncodingError):
        GrandpaLightClient.from_dict(old)


def test_second_pending_change_is_refused() -> None:
    store = _store()
    # Within one header chain.
    double = grow_chain(
        CHECKPOINT,
        3,
        {11: (frnk(scheduled_change_log(SET_B, 5)),), 13: (frnk(scheduled_change_log(SET_C, 1)),)},
    )
    _refused(
        store, AuthoritySetChangeError, justify(double[13], KEYS_A, 5), _headers(11, 13, double)
    )
    # Across imports: a change pending in the store, a new one on top of #12.
    _advance(store, 12, KEYS_A, 5)
    late = grow_chain(_chain()[12], 1, {13: (frnk(scheduled_change_log(SET_C, 0)),)}, b"late")
    error = _refused(store, AuthoritySetChangeError, justify(late[13], KEYS_A, 5), [late[13]])
    assert "pending" in str(error)
    # A new change in the very block that enacts the pending one.
    at_enactment = grow_chain(_chain()[13], 1, {14: (frnk(scheduled_change_log(SET_C, 0)),)}, b"e")
    _advance(store, 13, KEYS_A, 5)
    _refused(
        store, AuthoritySetChangeError, justify(at_enactment[14], KEYS_A, 5), [at_enactment[14]]
    )


def test_two_changes_in_one_header_are_refused() -> None:
    store = _store()
    change_b, change_c = scheduled_change_log(SET_B, 0), scheduled_change_log(SET_C, 0)
    chain = grow_chain(CHECKPOINT, 1, {11: (frnk(change_b), frnk(change_c))})
    _refused(store, AuthoritySetChangeError, justify(chain[11], KEYS_A, 5), [chain[11]])


@pytest.mark.parametrize(
    "announced",
    [
        [],
        [(bytes(KEYS_B[0].verify_key), 0)],
        [(bytes(KEYS_B[0].verify_key), 1), (bytes(KEYS_B[0].verify_key), 1)],
        [(bytes(KEYS_B[0].verify_key), 2**64 - 1), (bytes(KEYS_B[1].verify_key), 1)],
    ],
    ids=["empty", "zero-weight", "duplicate", "weight-overflow"],
)
def test_announced_set_must_be_usable(announced: list[tuple[bytes, int]]) -> None:
    store = _store()
    chain = grow_chain(CHECKPOINT, 1, {11: (frnk(scheduled_change_log(announced, 0)),)})
    _refused(store, AuthoritySetChangeError, justify(chain[11], KEYS_A, 5), [chain[11]])


def test_disable_pause_resume_and_non_consensus_frnk_items_do_not_change_the_set() -> None:
    store = _store()
    garbage = b"\xff not a log"
    chain = grow_chain(
        CHECKPOINT,
        2,
        {
            11: (frnk(on_disabled_log(1)), frnk(pause_log(5))),
            12: (frnk(resume_log(2)), pre_runtime_item(b"FRNK", garbage)),
        },
    )
    result = store.import_justification(justify(chain[12], KEYS_A, 5), _headers(11, 12, chain))
    assert (result.set_id, result.set_changed, result.pending_change) == (5, False, None)
    assert store.authorities == tuple(SET_A)


@pytest.mark.parametrize(
    "log",
    [
        b"",
        b"\x00",
        b"\x06",
        b"\x01" + encode_compact(1) + b"\x01" * 32,
        pause_log(5) + b"\x00",
        scheduled_change_log(SET_B, 0)[:-1],
        forced_change_log(1, SET_B, 0)[:-2],
    ],
    ids=["empty", "variant-0", "variant-6", "truncated-set", "trailing", "short-delay", "short"],
)
def test_unreadable_grandpa_log_is_refused(log: bytes) -> None:
    store = _store()
    chain = grow_chain(CHECKPOINT, 1, {11: (frnk(log),)})
    _refused(store, MalformedEncodingError, justify(chain[11], KEYS_A, 5), [chain[11]])


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_enacting_its_own_change_must_be_given_the_new_set() -> None:
    enacting = block_header(blake2_256(b"block 9"), 10, (frnk(scheduled_change_log(SET_B, 0)),))
    with pytest.raises(AuthoritySetChangeError):
        GrandpaLightClient(header=enacting, authorities=SET_A, set_id=5)
    # The set's order does not matter; the set does.
    store = GrandpaLightClient(header=enacting, authorities=SET_B[::-1], set_id=6)
    assert store.pending_change is None
    with pytest.raises(AuthoritySetChangeError):
        GrandpaLightClient(
            header=enacting,
            authorities=SET_B,
            set_id=6,
            pending_change=PendingAuthorityChange(
                next_authorities=tuple(SET_C), signal_number=9, delay=5
            ),
        )


def test_checkpoint_signalling_a_delayed_change_keeps_it_pending() -> None:
    signalling = block_header(blake2_256(b"block 9"), 10, (frnk(scheduled_change_log(SET_B, 2)),))
    store = GrandpaLightClient(header=signalling, authorities=SET_A, set_id=5)
    assert store.pending_change == PendingAuthorityChange(
        next_authorities=tuple(SET_B), signal_number=10, delay=2
    )
    chain = grow_chain(signalling, 3)
    with pytest.raises(AuthoritySetChangeError):
        store.import_justification(justify(chain[13], KEYS_A, 5), _headers(11, 13, chain))
    _advance(store, 12, KEYS_A, 5, chain)
    assert store.set_id == 6
    # The same change given explicitly is accepted; a different one is not.
    same = PendingAuthorityChange(next_authorities=tuple(SET_B[::-1]), signal_number=10, delay=2)
    GrandpaLightClient(header=signalling, authorities=SET_A, set_id=5, pending_change=same)
    with pytest.raises(AuthoritySetChangeError):
        GrandpaLightClient(
            header=signalling,
            authorities=SET_A,
            set_id=5,
            pending_change=dataclasses.replace(same, delay=3),
        )


def test_checkpoint_with_a_change_pending_from_before_it() -> None:
    pending = PendingAuthorityChange(next_authorities=tuple(SET_C), signal_number=8, delay=4)
    store = GrandpaLightClient(
        header=CHECKPOINT, authorities=SET_A, set_id=5, pending_change=pending
    )
    assert store.status().pending_enactment_number == 12
    plain = grow_chain(CHECKPOINT, 3)
    with pytest.raises(AuthoritySetChangeError):
        store.import_justification(justify(plain[13], KEYS_A, 5), _headers(11, 13, plain))
    _advance(store, 12, KEYS_A, 5, plain)
    assert (store.set_id, store.authorities) == (6, tuple(SET_C))


@pytest.mark.parametrize(
    ("pending", "error"),
    [
        (PendingAuthorityChange(tuple(SET_B), signal_number=5, delay=5), AuthoritySetChangeError),
        (PendingAuthorityChange(tuple(SET_B), signal_number=11, delay=1), AuthoritySetChangeError),
        (PendingAuthorityChange((), signal_number=9, delay=5), AuthoritySetChangeError),
        (PendingAuthorityChange(tuple(SET_B), signal_number=9, delay=-1), AuthoritySetChangeError),
    ],
    ids=["already-enacted", "signalled-after-checkpoint", "empty-set", "negative-delay"],
)
def test_impossible_pending_change_is_refused(
    pending: PendingAuthorityChange, error: type[ProofError]
) -> None:
    with pytest.raises(error):
        GrandpaLightClient(header=CHECKPOINT, authorities=SET_A, set_id=5, pending_change=pending)


@pytest.mark.parametrize(
    ("authorities", "set_id", "error"),
    [
        ([], 5, QuorumError),
        ([(b"\x01" * 32, 0)], 5, QuorumError),
        ([(b"\x01" * 31, 1)], 5, QuorumError),
        (SET_A + SET_A[:1], 5, QuorumError),
        (SET_A, -1, MalformedEncodingError),
        (SET_A, 2**64, MalformedEncodingError),
    ],
)
def test_unusable_trusted_state_is_refused(
    authorities: list[tuple[bytes, int]], set_id: int, error: type[ProofError]
) -> None:
    with pytest.raises(error):
        GrandpaLightClient(header=CHECKPOINT, authorities=authorities, set_id=set_id)


def test_forced_change_in_the_checkpoint_is_trusted_with_it() -> None:
    enacted = block_header(blake2_256(b"block 9"), 10, (frnk(forced_change_log(9, SET_B, 0)),))
    assert GrandpaLightClient(header=enacted, authorities=SET_B, set_id=6).set_id == 6
    with pytest.raises(AuthoritySetChangeError):
        GrandpaLightClient(header=enacted, authorities=SET_A, set_id=6)
    later = block_header(blake2_256(b"block 9"), 10, (frnk(forced_change_log(9, SET_B, 2)),))
    store = GrandpaLightClient(header=later, authorities=SET_A, set_id=5)
    assert store.pending_change is not None and store.pending_change.forced


def test_real_polkadot_header_as_checkpoint() -> None:
    vector = load_substrate_vector("extrinsics_root_sidecar/polkadot-21157800.json")
    header = hx(vector["header_scale"])
    store = GrandpaLightClient(header=header, authorities=SET_A, set_id=1)
    assert store.finalized == FinalizedBlock(hash=hx(vector["hash"]), number=21157800)
    items = decode_digest(decode_header(header).digest)
    assert [(i.kind, i.engine_id) for i in items] == [
        (DigestItemKind.PRE_RUNTIME, b"BABE"),
        (DigestItemKind.CONSENSUS, b"BEEF"),
        (DigestItemKind.SEAL, b"BABE"),
    ]
    # A consensus item of another engine (BEEFY's) is not a GRANDPA log.
    assert grandpa_logs(items) == ()
    child = grow_chain(header, 1)
    _advance(store, 21157801, KEYS_A, 1, child)


# ---------------------------------------------------------------- persistence


def test_state_round_trips_at_every_step_and_restored_stores_continue() -> None:
    store = _store()
    steps = [(12, KEYS_A, 5), (14, KEYS_A, 5), (16, KEYS_B, 6), (20, KEYS_C, 7)]
    for target, keys, set_id in steps:
        mapping = store.to_dict()
        restored = GrandpaLightClient.from_dict(json.loads(json.dumps(mapping)))
        assert restored == store
        assert GrandpaLightClient.from_bytes(store.to_bytes()) == store
        assert restored.to_bytes() == store.to_bytes()
        _advance(restored, target, keys, set_id)
        store = restored
    assert store.status().finalized_number == 20


def _state_after_12() -> dict[str, Any]:
    store = _store()
    _advance(store, 12, KEYS_A, 5)
    return store.to_dict()


def _tamper(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    state = _state_after_12()
    change(state)
    return state


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda s: s["finalized"].update(hash="0x" + "00" * 32), HashMismatchError),
        (lambda s: s["finalized"].update(number=13), HashMismatchError),
        (lambda s: s["finalized"].update(header="0x00"), MalformedEncodingError),
        (lambda s: s["finalized"].update(header="12ab"), MalformedEncodingError),
        (lambda s: s["finalized"].update(header="0xzz"), MalformedEncodingError),
        (lambda s: s.update(version=2), MalformedEncodingError),
        (lambda s: s.update(extra=1), MalformedEncodingError),
        (lambda s: s.update(set_id="5"), MalformedEncodingError),
        (lambda s: s.update(set_id=True), MalformedEncodingError),
        (lambda s: s["authorities"][0].__setitem__(1, "1"), MalformedEncodingError),
        (lambda s: s["authorities"].append(s["authorities"][0]), QuorumError),
        (lambda s: s["pending_change"].update(delay=1), AuthoritySetChangeError),
        (lambda s: s["pending_change"].pop("delay"), MalformedEncodingError),
    ],
)
def test_tampered_state_is_refused(
    change: Callable[[dict[str, Any]], None], error: type[ProofError]
) -> None:
    with pytest.raises(error):
        GrandpaLightClient.from_dict(_tamper(change))


@pytest.mark.parametrize("data", [b"\xff", b"[]", b"{", b"{}"])
def test_state_bytes_that_are_not_a_state_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedEncodingError):
        GrandpaLightClient.from_bytes(data)


# ---------------------------------------------------------------- digest decoding


def test_grandpa_logs_decode_to_what_was_encoded() -> None:
    assert decode_grandpa_log(scheduled_change_log(SET_B, 7)) == ScheduledChange(
        next_authorities=tuple(SET_B), delay=7
    )
    assert decode_grandpa_log(forced_change_log(9, SET_C, 2)) == ForcedChange(
        median_last_finalized=9, change=ScheduledChange(next_authorities=tuple(SET_C), delay=2)
    )
    assert decode_grandpa_log(on_disabled_log(2**40)) == OnDisabled(authority_index=2**40)
    assert decode_grandpa_log(pause_log(3)) == Pause(delay=3)
    assert decode_grandpa_log(resume_log(4)) == Resume(delay=4)


def test_digest_items_decode_in_order() -> None:
    digest = decode_header(_chain()[11]).digest
    assert decode_digest(digest) == (
        DigestItem(
            kind=DigestItemKind.PRE_RUNTIME, engine_id=b"BABE", payload=(11).to_bytes(4, "little")
        ),
        DigestItem(
            kind=DigestItemKind.CONSENSUS, engine_id=b"FRNK", payload=scheduled_change_log(SET_B, 3)
        ),
        DigestItem(kind=DigestItemKind.SEAL, engine_id=b"BABE", payload=b"seal"),
    )
    other = encode_compact(2) + b"\x00" + encode_compact(1) + b"x" + b"\x08"
    assert decode_digest(other) == (
        DigestItem(kind=DigestItemKind.OTHER, engine_id=None, payload=b"x"),
        DigestItem(kind=DigestItemKind.RUNTIME_ENVIRONMENT_UPDATED, engine_id=None, payload=b""),
    )


_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(st.binary(max_size=120))
def test_digest_decoder_accepts_exactly_what_the_header_decoder_accepts(data: bytes) -> None:
    prefix = b"\x00" * 32 + encode_compact(1) + b"\x00" * 64
    try:
        header = decode_header(prefix + data)
    except MalformedEncodingError:
        with pytest.raises(MalformedEncodingError):
            decode_digest(data)
    else:
        assert header.digest == data
        decode_digest(data)


@_SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_decode_as_a_grandpa_log_or_raise_malformed_encoding(data: bytes) -> None:
    with contextlib.suppress(MalformedEncodingError):
        decode_grandpa_log(data)


# ---------------------------------------------------------------- single-byte changes


@functools.cache
def _minimal() -> tuple[bytes, bytes, tuple[bytes, bytes]]:
    """A justification for #100 and the headers #99 (signalling a change) and #100 above a
    checkpoint at #98, where every byte counts: three of four votes (the least that is more
    than 2/3), on #100 and its descendants #101 and #102, whose headers carry the two votes
    that need them."""
    checkpoint = block_header(blake2_256(b"block 97"), 98)
    chain = grow_chain(checkpoint, 4, {99: (frnk(scheduled_change_log(SET_B, 10)),)})
    targets = [(blake2_256(chain[n]), n) for n in (100, 101, 102)]
    votes = [sign_vote(key, h, n, 3, 5) for key, (h, n) in zip(KEYS_A, targets, strict=False)]
    justification = encode_justification(3, targets[0][0], 100, votes, [chain[101], chain[102]])
    return checkpoint, justification, (chain[99], chain[100])


def _minimal_store() -> GrandpaLightClient:
    return GrandpaLightClient(header=_minimal()[0], authorities=SET_A, set_id=5)


def test_minimal_evidence_is_accepted() -> None:
    _, justification, headers = _minimal()
    store = _minimal_store()
    result = store.import_justification(justification, headers)
    assert result.finalized.number == 100
    assert store.status().pending_enactment_number == 109


@_SETTINGS
@given(st.data())
def test_any_single_byte_change_to_the_justification_or_a_header_is_refused(
    data: st.DataObject,
) -> None:
    # No byte is benign: the justification's bytes are signed, needed to reach the quorum, or
    # name the target the header chain must end at; each header's bytes feed its hash, which
    # its child (or, for the last, the signed target) pins, and #99's parent is the checkpoint.
    _, justification, headers = _minimal()
    blobs = [bytearray(justification), *(bytearray(h) for h in headers)]
    blob = blobs[data.draw(st.integers(0, len(blobs) - 1), label="blob")]
    blob[data.draw(st.integers(0, len(blob) - 1), label="offset")] ^= data.draw(
        st.integers(1, 255), label="xor"
    )
    store = _minimal_store()
    _refused(store, ProofError, bytes(blobs[0]), [bytes(h) for h in blobs[1:]])
    # Unchanged, the store still accepts the original.
    store.import_justification(justification, headers)
