"""relayer.follower: the generic watcher machinery, driven by a scripted chain reader.

The reader here is an in-memory chain (blocks with hashes and observations), which is what a
``ChainReader`` reports; the real families are exercised against real nodes in the
integration, e2e and conformance suites."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from proofs import ProofError
from relayer.follower import Follower, LedgerCursor, LedgerLightClient
from relayer.plugin import CursorView, Observation, Span
from relayer.store import Ledger


def _hash(fork: str, number: int) -> bytes:
    return hashlib.sha256(f"{fork}:{number}".encode()).digest()


class ScriptedChain:
    """Blocks 0..head; block n has hash ``_hash(fork_of(n), n)`` and one observation where
    ``n`` is in ``with_messages``."""

    endpoint = "memory://chain"
    start_block = 1
    poll_interval = 0.01
    max_span = 4
    depth = 2

    def __init__(self, head: int, with_messages: set[int]) -> None:
        self.head = head
        self.with_messages = with_messages
        self.forks: dict[int, str] = {}
        self.lie_at: int | None = None

    def fork_of(self, number: int) -> str:
        return self.forks.get(number, "main")

    async def background(self, cursor: CursorView) -> None:
        return None

    async def wait_for_head(self, timeout: float) -> None:
        return None

    async def confirmed_head(self) -> int:
        return self.head - self.depth

    async def hash_at(self, number: int) -> bytes | None:
        return _hash(self.fork_of(number), number) if 0 <= number <= self.head else None

    async def read(self, start: int, end: int, *, after: bytes) -> Span:
        if self.lie_at is not None and start <= self.lie_at <= end:
            raise ProofError(f"block {self.lie_at} does not hash to its hash")
        observations = [
            Observation(
                origin_chain="memory",
                message=f"{self.fork_of(n)}:{n}".encode(),
                block_number=n,
                block_hash=_hash(self.fork_of(n), n),
                evidence=b"",
            )
            for n in range(start, end + 1)
            if n in self.with_messages
        ]
        return Span(
            observations=observations,
            blocks=[(o.block_number, o.block_hash) for o in observations],
            end_hash=_hash(self.fork_of(end), end),
        )

    async def close(self) -> None:
        return None


class Sink:
    def __init__(self) -> None:
        self.seen: list[bytes] = []

    async def __call__(self, observations: Sequence[Observation]) -> None:
        self.seen.extend(o.message for o in observations)


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def bind(self, **_: Any) -> Log:
        return self

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.events.append((event, kw))


def _follower(ledger: Ledger, chain: ScriptedChain, log: Log | None = None) -> Follower:
    cursor = LedgerCursor(ledger, "memory", "test", start_block=chain.start_block)
    return Follower(chain="memory", reader=chain, cursor=cursor, log=log or Log())


async def _drain(follower: Follower, sink: Sink) -> None:
    while await follower.step(sink):
        pass


async def test_everything_final_is_handed_over_once_in_spans_and_the_cursor_follows(
    tmp_path: Path,
) -> None:
    chain = ScriptedChain(head=12, with_messages={2, 5, 9, 11})
    sink = Sink()
    with Ledger.open(tmp_path / "l.db") as ledger:
        follower = _follower(ledger, chain)
        await _drain(follower, sink)
        assert sink.seen == [b"main:2", b"main:5", b"main:9"]  # 11 is not final yet
        cursor = ledger.get_cursor("memory", "test")
        assert cursor is not None and cursor.block_number == 10
        assert cursor.block_hash == _hash("main", 10)
        chain.head = 14
        await _drain(follower, sink)
        assert sink.seen[-1] == b"main:11"
        assert len(sink.seen) == 4


async def test_a_restart_resumes_after_the_cursor(tmp_path: Path) -> None:
    chain = ScriptedChain(head=8, with_messages={2, 7})
    with Ledger.open(tmp_path / "l.db") as ledger:
        await _drain(_follower(ledger, chain), Sink())
        chain.head = 12
        later = Sink()
        await _drain(_follower(ledger, chain), later)  # a new process, the same ledger
        assert later.seen == [b"main:7"]


async def test_the_cursor_stays_when_the_sink_fails(tmp_path: Path) -> None:
    chain = ScriptedChain(head=8, with_messages={3})

    async def broken(observations: Sequence[Observation]) -> None:
        raise RuntimeError("disk full")

    with Ledger.open(tmp_path / "l.db") as ledger:
        follower = _follower(ledger, chain)
        with pytest.raises(RuntimeError):
            await follower.step(broken)
        assert ledger.get_cursor("memory", "test") is None
        sink = Sink()
        await _drain(follower, sink)
        assert sink.seen == [b"main:3"]


async def test_a_reorg_below_the_cursor_rewinds_to_the_fork_point_and_alarms(
    tmp_path: Path,
) -> None:
    chain = ScriptedChain(head=12, with_messages={3, 6, 8})
    log = Log()
    sink = Sink()
    with Ledger.open(tmp_path / "l.db") as ledger:
        follower = _follower(ledger, chain, log)
        await _drain(follower, sink)
        # Blocks from 7 on are replaced: deeper than the chain's depth, so an alarm.
        for n in range(7, 13):
            chain.forks[n] = "other"
        await _drain(follower, sink)
        alarms = [kw for event, kw in log.events if event == "chain.reorg_beyond_finality"]
        assert len(alarms) == 1
        assert alarms[0]["rescan_from"] == 7  # block 6 was remembered and is unchanged
        assert sink.seen == [b"main:3", b"main:6", b"main:8", b"other:8"]
        cursor = ledger.get_cursor("memory", "test")
        assert cursor is not None and cursor.block_hash == _hash("other", 10)


async def test_an_answer_that_does_not_verify_moves_nothing(tmp_path: Path) -> None:
    chain = ScriptedChain(head=10, with_messages={4})
    chain.lie_at = 4
    sink = Sink()
    with Ledger.open(tmp_path / "l.db") as ledger:
        follower = _follower(ledger, chain)
        with pytest.raises(ProofError):
            await follower.step(sink)
        assert ledger.get_cursor("memory", "test") is None
        chain.lie_at = None
        await _drain(follower, sink)
        assert sink.seen == [b"main:4"]


def test_a_ledger_light_client_hands_back_only_its_own_mode(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        state = LedgerLightClient(ledger, "dot-a", "relayer", "grandpa")
        assert state.load() is None
        state.save(b"set 7")
        assert state.load() == b"set 7"
        assert LedgerLightClient(ledger, "dot-a", "attester:a1", "grandpa").load() is None
        # the operator switched the chain to another light client: start from its checkpoint
        assert LedgerLightClient(ledger, "dot-a", "relayer", "other-mode").load() is None
