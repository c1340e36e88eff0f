"""relayer.follower's ``on_reorg`` hook: told of a reorg deeper than finality before the cursor
rewinds, so that the relayer can orphan what the rescan does not find again
(``Ledger.orphan_above``). Driven by test_follower.py's scripted chain."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from relayer.follower import Follower, LedgerCursor, orphan_on_reorg
from relayer.plugin import Observation, Span
from relayer.store import Cursor, Ledger, ObservedRow, State
from tests.unit.relayer.test_follower import Log, ScriptedChain, Sink, _drain, _hash


class Hook:
    """Records each call and where the cursor stood when it came."""

    def __init__(self, ledger: Ledger, *, fail: int = 0) -> None:
        self.ledger = ledger
        self.calls: list[tuple[str, int, bytes, bytes | None]] = []
        self.cursors: list[Cursor | None] = []
        self.fail = fail

    async def __call__(self, chain: str, fork: int, old: bytes, new: bytes | None) -> None:
        self.calls.append((chain, fork, old, new))
        self.cursors.append(self.ledger.get_cursor("memory", "test"))
        if self.fail:
            self.fail -= 1
            raise RuntimeError("ledger unavailable")


def _follower(ledger: Ledger, chain: ScriptedChain, hook: Hook | None) -> Follower:
    cursor = LedgerCursor(ledger, "memory", "test", start_block=chain.start_block)
    return Follower(chain="memory", reader=chain, cursor=cursor, log=Log(), on_reorg=hook)


async def test_the_hook_hears_of_a_deep_reorg_before_the_cursor_rewinds(tmp_path: Path) -> None:
    chain = ScriptedChain(head=12, with_messages={3, 6, 8})
    with Ledger.open(tmp_path / "l.db") as ledger:
        hook = Hook(ledger)
        follower = _follower(ledger, chain, hook)
        await _drain(follower, Sink())
        assert hook.calls == [], "no reorg, no call"
        for n in range(7, 13):
            chain.forks[n] = "other"

        await _drain(follower, Sink())

        # Block 6 is the highest both chains share; the cursor stood at 10.
        assert hook.calls == [("memory", 6, _hash("main", 10), _hash("other", 10))]
        assert hook.cursors == [Cursor(block_number=10, block_hash=_hash("main", 10))]
        cursor = ledger.get_cursor("memory", "test")
        assert cursor == Cursor(block_number=10, block_hash=_hash("other", 10))


async def test_a_failing_hook_leaves_the_cursor_and_the_reorg_is_found_again(
    tmp_path: Path,
) -> None:
    chain = ScriptedChain(head=12, with_messages={3})
    with Ledger.open(tmp_path / "l.db") as ledger:
        hook = Hook(ledger, fail=1)
        follower = _follower(ledger, chain, hook)
        await _drain(follower, Sink())
        for n in range(7, 13):
            chain.forks[n] = "other"

        with pytest.raises(RuntimeError, match="ledger unavailable"):
            await follower.step(Sink())
        assert ledger.get_cursor("memory", "test") == Cursor(10, _hash("main", 10))

        await _drain(follower, Sink())
        # Block 4 (a span end) is the highest remembered block both chains share.
        assert [fork for _, fork, _, _ in hook.calls] == [4, 4]
        assert ledger.get_cursor("memory", "test") == Cursor(10, _hash("other", 10))


class MovingChain(ScriptedChain):
    """A chain whose message ``b"moves"`` is in block 8 of the main fork and in block 9 of the
    other: the same message, re-included one block later."""

    async def read(self, start: int, end: int, *, after: bytes) -> Span:
        span = await super().read(start, end, after=after)
        observations = [
            Observation(
                origin_chain=o.origin_chain,
                message=b"moves" if o.message in (b"main:8", b"other:9") else o.message,
                block_number=o.block_number,
                block_hash=o.block_hash,
                evidence=o.evidence,
            )
            for o in span.observations
        ]
        return Span(observations=observations, blocks=span.blocks, end_hash=span.end_hash)


def _id(message: bytes) -> bytes:
    return hashlib.sha256(message).digest()


class LedgerSink:
    """What the relayer's core does with observations, as far as the ledger goes."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def __call__(self, observations: Sequence[Observation]) -> None:
        self.ledger.record_observed_many(
            [
                ObservedRow(
                    id=_id(o.message),
                    origin_chain="memory",
                    destination_chain="dest",
                    route="memory->dest",
                    nonce=o.block_number,
                    message=o.message,
                    block_number=o.block_number,
                    block_hash=o.block_hash,
                    evidence=b"e",
                )
                for o in observations
            ],
            [None] * len(observations),
        )


async def test_what_the_rescan_finds_again_comes_back_and_the_rest_stays_orphaned(
    tmp_path: Path,
) -> None:
    chain = MovingChain(head=12, with_messages={3, 7, 8, 9})
    with Ledger.open(tmp_path / "l.db") as ledger:

        async def orphan(chain_name: str, fork: int, old: bytes, new: bytes | None) -> None:
            ledger.orphan_above(chain_name, fork, reason=f"reorg above {fork}")

        cursor = LedgerCursor(ledger, "memory", "test", start_block=chain.start_block)
        follower = Follower(chain="memory", reader=chain, cursor=cursor, log=Log(), on_reorg=orphan)
        sink = LedgerSink(ledger)
        await _drain(follower, sink)
        assert set(ledger.states(map(_id, [b"main:3", b"main:7", b"moves", b"main:9"]))) == {
            _id(m) for m in [b"main:3", b"main:7", b"moves", b"main:9"]
        }
        for n in range(7, 13):
            chain.forks[n] = "other"
        chain.with_messages = {3, 9}  # the other fork holds "moves" (in 9) and nothing else

        await _drain(follower, sink)

        states = ledger.states(map(_id, [b"main:3", b"main:7", b"moves", b"main:9"]))
        assert states == {
            _id(b"main:3"): State.VERIFIED,  # below the fork
            _id(b"main:7"): State.ORPHANED,
            _id(b"moves"): State.VERIFIED,  # found again, in block 9
            _id(b"main:9"): State.ORPHANED,
        }
        moved = ledger.get(_id(b"moves"))
        assert moved is not None
        assert (moved.block_number, moved.block_hash) == (9, _hash("other", 9))
        steps = [h.to_state for h in ledger.history(_id(b"moves"))]
        assert steps == [
            State.OBSERVED,
            State.VERIFIED,
            State.ORPHANED,
            State.OBSERVED,
            State.VERIFIED,
        ]
        orphaned = ledger.get(_id(b"main:7"))
        assert orphaned is not None and orphaned.last_error is not None
        assert "reorg above 4" in orphaned.last_error  # block 4, a span end, is shared


async def test_the_relayers_hook_orphans_and_logs_what_it_orphaned(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as ledger:
        await LedgerSink(ledger)(
            [
                Observation(
                    origin_chain="memory",
                    message=b"m%d" % n,
                    block_number=n,
                    block_hash=_hash("main", n),
                    evidence=b"",
                )
                for n in (5, 6, 7)
            ]
        )
        log = Log()
        hook = orphan_on_reorg(ledger, log)

        await hook("memory", 5, _hash("main", 9), None)
        await hook("memory", 5, _hash("main", 9), None)  # nothing more: not logged again

        assert ledger.states([_id(b"m5"), _id(b"m6"), _id(b"m7")]) == {
            _id(b"m5"): State.VERIFIED,
            _id(b"m6"): State.ORPHANED,
            _id(b"m7"): State.ORPHANED,
        }
        assert log.events == [
            (
                "message.orphaned",
                {
                    "chain": "memory",
                    "block": 5,
                    "count": 2,
                    "message_ids": ["0x" + _id(b"m6").hex(), "0x" + _id(b"m7").hex()],
                },
            )
        ]
        record = ledger.get(_id(b"m6"))
        assert record is not None and record.last_error is not None
        assert "a reorg deeper than the finality of memory replaced its blocks above 5" in (
            record.last_error
        )
        assert f"was 0x{_hash('main', 9).hex()}, is gone now" in record.last_error


async def test_on_a_shared_ledger_the_hook_orphans_off_the_event_loop() -> None:
    class SharedLedger:
        shared = True

        def __init__(self) -> None:
            self.threads: list[str] = []

        def orphan_above(self, chain: str, block_number: int, *, reason: str) -> list[bytes]:
            self.threads.append(threading.current_thread().name)
            return []

    ledger = SharedLedger()
    log = Log()
    await orphan_on_reorg(ledger, log)("memory", 5, b"\x01" * 32, b"\x02" * 32)  # type: ignore[arg-type]
    assert ledger.threads and ledger.threads[0] != threading.current_thread().name
    assert log.events == []
