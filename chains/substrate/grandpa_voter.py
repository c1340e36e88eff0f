"""A development GRANDPA voter set for a local chopsticks chain, in the spirit of anvil: the
real protocol, with keys that happen to be public.

N ed25519 authorities derived from a public seed are installed on the chain, and an
authority-set change to a second derived set is scheduled through the runtime. The voters
follow the chain's new blocks and sign a real GRANDPA commit (a precommit of every voter of the
set in force, one round per justification, the set's id) for every ``every``-th block and always
for the block that enacts the change. They serve what they signed over a JSON-RPC WebSocket
(loopback unless told otherwise) the way a node does (``grandpa_proveFinality``), plus two dev
methods.

What chopsticks 1.5.1 does with the runtime's GRANDPA state (measured on the Kusama fixture,
spec version 1000000; ``tests/integration/test_grandpa_voter.py`` re-checks it):

* This runtime keeps the authority list at the well-known key ``:grandpa_authorities``
  (``VersionedAuthorityList``: version byte 1, then ``Vec<(key, u64)>``); its metadata has no
  ``Grandpa.Authorities``. ``dev_setStorage`` there changes what ``GrandpaApi_grandpa_authorities``
  answers. ``Grandpa.CurrentSetId`` is a u64 storage value and takes a write the same way.
* A ``Grandpa.PendingChange`` written with ``scheduled_at`` = the next block is taken up by the
  runtime's ``on_finalize``: in block ``scheduled_at`` it deposits
  ``ConsensusLog::ScheduledChange`` (the ``FRNK`` log, with the written set and delay) into
  ``System.Digest``, and ``delay`` blocks later it enacts the change (``:grandpa_authorities``
  becomes the new set, ``PendingChange`` is removed, an event is deposited). ``CurrentSetId`` is
  left alone, as ``pallet-grandpa`` does: it counts changes when they are scheduled (in
  ``on_new_session``), not when they are enacted.
* But the header chopsticks builds never carries that log. ``block-builder.js`` makes the header
  from the parent's digest (pre-runtime slots bumped) and its own extrinsics root, and ignores
  the header the runtime's ``BlockBuilder_finalize_block`` returns; so the announcement exists
  only in state, and the state root is zero. No header on such a chain can announce a change.
* ``Grandpa`` has no ``schedule_change`` call to reach through ``Sudo`` (only
  ``report_equivocation*`` and ``note_stalled``, which leads to a forced change), and any log a
  call made the runtime deposit would be dropped the same way.

So the change is scheduled through ``Grandpa.PendingChange``, and the voters install the set
and schedule the change in one step, in the block the light client starts from: the checkpoint
(``dev_grandpaCheckpoint``) carries the change pending at that block, exactly as
``GrandpaLightClient`` takes one from ``Grandpa.PendingChange`` in storage. From there the client
follows the change by the protocol's own rules: the enactment block must be finalized by the old
set, every later block only by the new set under the next set id. A client bootstrapped before
the change was scheduled cannot learn of it on chopsticks (it would on a real node, from the
header digest): start clients from the checkpoint the voters serve.

Served methods (JSON-RPC 2.0 over WebSocket; 127.0.0.1 unless ``run_voters`` is given a host, as
``relayer-dev grandpa-voters`` does in a container):

* ``grandpa_proveFinality(block_number)``: SCALE ``FinalityProof`` as 0x-hex (``finality_proof``
  module), chosen as ``sc-consensus-grandpa``'s ``prove_finality`` chooses: for a block of a past
  set, the justification of that set's last block; otherwise the latest justification;
  ``unknown_headers`` from the requested block's child to the justified block. null when no
  justification covers the block yet.
* ``dev_grandpaCheckpoint()``: the bootstrap checkpoint (JSON, ``GrandpaCheckpoint.to_json``).
* ``dev_grandpaStatus()``: ``{"justified": latest justified block | null, "set_id": the set
  after it, "round": last round, "enactment": e | null, "seen": highest block followed}``.
* ``dev_grandpaSetLie(mode)``: tests only: from now on serve forged proofs (``LIES``), or
  ``"honest"`` again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import structlog
import websockets
from nacl.signing import SigningKey
from websockets.asyncio.server import ServerConnection, serve
from websockets.sync.client import connect as sync_connect

from chains.localnode import free_port, log_tail, stop_process
from chains.substrate.finality_proof import (
    FinalityProof,
    GrandpaCheckpoint,
    encode_finality_proof,
)
from chains.substrate.rpc import SubstrateRpc
from chains.substrate.storage_keys import plain_storage_key
from proofs.hashing import blake2_256
from proofs.substrate.grandpa import precommit_message
from proofs.substrate.grandpa_store import PendingAuthorityChange
from proofs.substrate.scale import encode_compact
from relayer.log import configure_logging

__all__ = [
    "AUTHORITIES_KEY",
    "DEFAULT_SEED",
    "LIES",
    "GrandpaVoterError",
    "GrandpaVoterProcess",
    "InstalledVoters",
    "VoterSchedule",
    "run_voters",
    "start_grandpa_voter",
    "voter_keys",
]

#: the well-known key of the authority list (``sp_consensus_grandpa::GRANDPA_AUTHORITIES_KEY``)
AUTHORITIES_KEY = b":grandpa_authorities"
_AUTHORITIES_VERSION = b"\x01"
_CURRENT_SET_ID_KEY = plain_storage_key("Grandpa", "CurrentSetId")
_PENDING_CHANGE_KEY = plain_storage_key("Grandpa", "PendingChange")
#: a public seed: anyone can sign for these voters, as anyone can for //Alice
DEFAULT_SEED = "xrelayer dev grandpa"
#: the ways ``dev_grandpaSetLie`` can make the voters lie
LIES = ("honest", "flip-signature", "outside-key", "old-set", "phantom-block")

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0
_START_ATTEMPTS = 3


class GrandpaVoterError(RuntimeError):
    """The voter process did not start, or a request to it failed."""


def voter_keys(seed: str, set_index: int, count: int) -> list[SigningKey]:
    """The ``count`` ed25519 keys of the ``set_index``-th dev set: blake2-256 of the seed, the
    set index and the voter index. Public on purpose: these keys are for local chains only."""
    return [
        SigningKey(
            blake2_256(
                seed.encode() + set_index.to_bytes(4, "little") + index.to_bytes(4, "little")
            )
        )
        for index in range(count)
    ]


def _authority_list(keys: Sequence[SigningKey]) -> tuple[tuple[bytes, int], ...]:
    return tuple((bytes(key.verify_key), 1) for key in keys)


def _encode_authorities(authorities: Sequence[tuple[bytes, int]]) -> bytes:
    return encode_compact(len(authorities)) + b"".join(
        key + weight.to_bytes(8, "little") for key, weight in authorities
    )


@dataclass(frozen=True, slots=True)
class VoterSchedule:
    """How many voters, which set id they start with, and the change: to a set of
    ``next_voters`` keys, signalled in the first block after installation and enacted
    ``change_delay`` blocks later (None: no change). A justification is made for every
    ``every``-th block after the checkpoint, and always for the enactment block."""

    voters: int = 4
    next_voters: int = 4
    set_id: int = 0
    change_delay: int | None = 4
    every: int = 1
    seed: str = DEFAULT_SEED

    def __post_init__(self) -> None:
        if self.voters < 1 or self.next_voters < 1 or self.every < 1:
            raise ValueError("voters, next_voters and every must be at least 1")
        if self.change_delay is not None and self.change_delay < 1:
            # delay 0 enacts in the checkpoint block itself: nothing left to follow.
            raise ValueError("change_delay must be at least 1 (or None for no change)")


@dataclass(frozen=True, slots=True)
class InstalledVoters:
    """What ``run_voters`` reports once the voters serve: the checkpoint block they built (where
    a light client starts) and the block that enacts their set change (None: no change)."""

    checkpoint: int
    enactment: int | None


@dataclass(frozen=True, slots=True)
class _Justified:
    number: int
    hash: bytes
    round: int
    set_index: int


@dataclass
class _Voters:
    """The voters' state inside the voter process."""

    schedule: VoterSchedule
    sets: list[list[SigningKey]] = field(default_factory=list, repr=False)
    checkpoint_number: int = 0
    checkpoint_json: dict[str, Any] = field(default_factory=dict)
    enactment: int | None = None
    headers: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # number: (hash, scale)
    justified: dict[int, _Justified] = field(default_factory=dict)
    latest: int | None = None
    round: int = 0
    seen: int = 0
    lie: str = "honest"

    def set_for(self, number: int) -> int:
        """Which set finalizes ``number``: the first up to and including the enactment."""
        return 0 if self.enactment is None or number <= self.enactment else 1

    def set_id(self, set_index: int) -> int:
        return self.schedule.set_id + set_index

    def note_block(self, number: int, block_hash: bytes, header: bytes) -> None:
        self.headers[number] = (block_hash, header)
        self.seen = max(self.seen, number)
        due = (number - self.checkpoint_number) % self.schedule.every == 0
        if due or number == self.enactment:
            self.round += 1
            self.justified[number] = _Justified(
                number=number, hash=block_hash, round=self.round, set_index=self.set_for(number)
            )
            self.latest = number

    # -- serving --------------------------------------------------------------------------

    def prove_finality(self, block: int) -> str | None:
        if block <= self.checkpoint_number or self.latest is None:
            return None
        # A block of the first set, once its last block is justified: that justification
        # (the one a client must import before any later one). Otherwise the latest.
        chosen = self.justified[self.latest]
        if self.enactment is not None and block <= self.enactment:
            chosen = self.justified.get(self.enactment, chosen)
        if chosen.number < block:
            return None
        headers = tuple(self.headers[n][1] for n in range(block + 1, chosen.number + 1))
        proof = self._proof(chosen, headers)
        return "0x" + encode_finality_proof(proof).hex()

    def _proof(self, chosen: _Justified, headers: tuple[bytes, ...]) -> FinalityProof:
        keys = list(self.sets[chosen.set_index])
        set_id = self.set_id(chosen.set_index)
        target_hash = chosen.hash
        if self.lie == "outside-key":
            keys[-1] = SigningKey(blake2_256(b"outside the set" + self.schedule.seed.encode()))
        elif self.lie == "old-set":
            keys, set_id = list(self.sets[0]), self.set_id(0)
        elif self.lie == "phantom-block":
            # A block the chain never produced, at a height it did: signed by the right set.
            target_hash = blake2_256(b"phantom" + chosen.number.to_bytes(4, "little"))
            headers = ()
        precommits: list[bytes] = []
        for key in keys:
            message = precommit_message(target_hash, chosen.number, chosen.round, set_id)
            signature = bytearray(key.sign(message).signature)
            if self.lie == "flip-signature" and not precommits:
                signature[0] ^= 0x01
            precommits.append(
                target_hash
                + chosen.number.to_bytes(4, "little")
                + bytes(signature)
                + bytes(key.verify_key)
            )
        justification = b"".join(
            (
                chosen.round.to_bytes(8, "little"),
                target_hash,
                chosen.number.to_bytes(4, "little"),
                encode_compact(len(precommits)),
                *precommits,
                encode_compact(0),  # votes_ancestries: every precommit is for the target
            )
        )
        return FinalityProof(
            block=target_hash, justification=justification, unknown_headers=headers
        )

    def status(self) -> dict[str, Any]:
        set_index = 0 if self.latest is None else self.set_for(self.latest + 1)
        return {
            "justified": self.latest,
            "set_id": self.set_id(set_index),
            "round": self.round,
            "enactment": self.enactment,
            "seen": self.seen,
        }


async def _install(rpc: SubstrateRpc, voters: _Voters) -> None:
    """Install the first set, schedule the change, build the checkpoint block."""
    schedule = voters.schedule
    voters.sets = [
        voter_keys(schedule.seed, 0, schedule.voters),
        voter_keys(schedule.seed, 1, schedule.next_voters),
    ]
    first = _authority_list(voters.sets[0])
    head = await rpc.header()
    if head is None:
        raise GrandpaVoterError("the chain has no head")
    signal_number = head.number + 1
    writes = [
        [
            "0x" + AUTHORITIES_KEY.hex(),
            "0x" + (_AUTHORITIES_VERSION + _encode_authorities(first)).hex(),
        ],
    ]
    pending = None
    if schedule.change_delay is None:
        writes.append(
            ["0x" + _CURRENT_SET_ID_KEY.hex(), "0x" + schedule.set_id.to_bytes(8, "little").hex()]
        )
    else:
        following = _authority_list(voters.sets[1])
        stored = (
            signal_number.to_bytes(4, "little")
            + schedule.change_delay.to_bytes(4, "little")
            + _encode_authorities(following)
            + b"\x00"  # forced: None
        )
        # pallet-grandpa counts a change when it schedules it (on_new_session), so the stored
        # id is already the next set's while the change is pending.
        writes += [
            ["0x" + _PENDING_CHANGE_KEY.hex(), "0x" + stored.hex()],
            [
                "0x" + _CURRENT_SET_ID_KEY.hex(),
                "0x" + (schedule.set_id + 1).to_bytes(8, "little").hex(),
            ],
        ]
        pending = PendingAuthorityChange(
            next_authorities=following, signal_number=signal_number, delay=schedule.change_delay
        )
        voters.enactment = signal_number + schedule.change_delay
    await rpc.request("dev_setStorage", [writes])
    block_hash = bytes.fromhex(str(await rpc.request("dev_newBlock")).removeprefix("0x"))
    header = await rpc.header(block_hash)
    if header is None or header.number != signal_number:
        raise GrandpaVoterError(f"dev_newBlock did not build block #{signal_number}")
    scale = header.scale()
    voters.checkpoint_number = signal_number
    voters.seen = signal_number
    voters.headers[signal_number] = (block_hash, scale)
    checkpoint = GrandpaCheckpoint(
        header=scale, authorities=first, set_id=schedule.set_id, pending_change=pending
    )
    voters.checkpoint_json = checkpoint.to_json(block_hash=block_hash, number=signal_number)


async def _follow(rpc: SubstrateRpc, voters: _Voters, log: Any) -> None:
    """Justify new blocks as the chain announces them (numbers it skips are fetched)."""
    async for head in rpc.finalized_heads():
        while voters.seen < head.number:
            number = voters.seen + 1
            found = await rpc.header_by_number(number)
            if found is None:
                break
            block_hash, header = found
            voters.note_block(number, block_hash, header.scale())
            justified = voters.justified.get(number)
            if justified is not None:
                set_id = voters.set_id(justified.set_index)
                log.info("block.justified", block=number, set_id=set_id, round=justified.round)
            if number == voters.enactment:
                await _check_enacted(rpc, voters, block_hash, log)


async def _check_enacted(rpc: SubstrateRpc, voters: _Voters, block_hash: bytes, log: Any) -> None:
    """The runtime must have enacted the change in this block, as the voters did: a chain that
    did not (a chopsticks that no longer runs on_finalize, a change overwritten by hand) would
    now disagree with the voters about who finalizes it."""
    stored = await rpc.request(
        "state_getStorage", ["0x" + AUTHORITIES_KEY.hex(), "0x" + block_hash.hex()]
    )
    expected = _AUTHORITIES_VERSION + _encode_authorities(_authority_list(voters.sets[1]))
    if stored != "0x" + expected.hex():
        log.warning("voters.chain_disagrees", block=voters.enactment, stored=stored)


_INVALID_REQUEST = -32600
_METHOD_NOT_FOUND = -32601
_INVALID_PARAMS = -32602


class _MethodNotFoundError(KeyError):
    pass


async def _serve_connection(connection: ServerConnection, voters: _Voters) -> None:
    async for frame in connection:
        try:
            request = json.loads(frame)
        except ValueError:
            request = None
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            error = {"code": _INVALID_REQUEST, "message": "not a JSON-RPC request object"}
            await connection.send(json.dumps({"jsonrpc": "2.0", "id": None, "error": error}))
            continue
        request_id = request.get("id")
        try:
            result = _dispatch(voters, request["method"], list(request.get("params") or []))
            answer = {"jsonrpc": "2.0", "id": request_id, "result": result}
        except _MethodNotFoundError as exc:
            error = {"code": _METHOD_NOT_FOUND, "message": str(exc)}
            answer = {"jsonrpc": "2.0", "id": request_id, "error": error}
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            error = {"code": _INVALID_PARAMS, "message": repr(exc)}
            answer = {"jsonrpc": "2.0", "id": request_id, "error": error}
        await connection.send(json.dumps(answer))


def _dispatch(voters: _Voters, method: str, params: list[Any]) -> Any:
    if method == "grandpa_proveFinality":
        number = params[0]
        if isinstance(number, str):
            number = int(number, 0)
        return voters.prove_finality(int(number))
    if method == "dev_grandpaCheckpoint":
        return voters.checkpoint_json
    if method == "dev_grandpaStatus":
        return voters.status()
    if method == "dev_grandpaSetLie":
        if params[0] not in LIES:
            raise ValueError(f"unknown lie {params[0]!r}; one of {', '.join(LIES)}")
        voters.lie = params[0]
        return None
    raise _MethodNotFoundError(f"method {method} not found")


async def run_voters(
    chain_ws: str,
    port: int,
    schedule: VoterSchedule,
    *,
    host: str = "127.0.0.1",
    on_ready: Callable[[InstalledVoters], None] | None = None,
) -> None:
    """Install the voters on the chain, then serve on ``host:port`` and follow the chain until
    cancelled. ``on_ready`` is called once they serve (the checkpoint built). Returns only when
    the chain's finalized-head stream ends, which means the chain is gone."""
    log = structlog.get_logger().bind(endpoint=chain_ws)
    voters = _Voters(schedule=schedule)
    async with SubstrateRpc.connect(chain_ws, chain="grandpa-dev", timeout=60.0) as rpc:
        await _install(rpc, voters)
        log.info(
            "voters.installed",
            block=voters.checkpoint_number,
            set_id=schedule.set_id,
            enactment=voters.enactment,
        )

        async def handler(connection: ServerConnection) -> None:
            with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                await _serve_connection(connection, voters)

        async with serve(handler, host, port):
            if on_ready is not None:
                on_ready(
                    InstalledVoters(checkpoint=voters.checkpoint_number, enactment=voters.enactment)
                )
            await _follow(rpc, voters, log)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chain-ws", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--voters", type=int, default=4)
    parser.add_argument("--next-voters", type=int, default=4)
    parser.add_argument("--set-id", type=int, default=0)
    parser.add_argument("--change-delay", type=int, default=4, help="0: no change")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--seed", default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    configure_logging(json=True)
    schedule = VoterSchedule(
        voters=args.voters,
        next_voters=args.next_voters,
        set_id=args.set_id,
        change_delay=args.change_delay or None,
        every=args.every,
        seed=args.seed,
    )

    def announce(_: InstalledVoters) -> None:
        # The line start_grandpa_voter waits for.
        print(json.dumps({"event": "voter.ready", "port": args.port}), flush=True)

    async def run() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            if task is not None:
                loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await run_voters(args.chain_ws, args.port, schedule, on_ready=announce)

    asyncio.run(run())
    return 0


# ---------------------------------------------------------------------------------- process


@dataclass
class GrandpaVoterProcess:
    """A running voter process; ``stop()`` ends it (idempotent)."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    def rpc(self, method: str, params: Sequence[Any] = (), timeout: float = 10.0) -> Any:
        """One JSON-RPC call over a fresh WebSocket (tests and readiness checks)."""
        try:
            with sync_connect(self.url, open_timeout=timeout) as ws:
                ws.send(
                    json.dumps(
                        {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
                    )
                )
                answer = json.loads(ws.recv(timeout=timeout))
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
            raise GrandpaVoterError(f"{method} to {self.url} failed: {exc!r}") from exc
        if "error" in answer:
            raise GrandpaVoterError(f"{method}: {answer['error']}")
        return answer["result"]

    def log_tail(self, limit: int = 4000) -> str:
        return log_tail(self.log_path, limit)

    def stop(self, timeout: float = _STOP_TIMEOUT_S) -> None:
        stop_process(self.process, self._log, group=False, timeout=timeout)

    def __enter__(self) -> GrandpaVoterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_grandpa_voter(
    chain_ws: str,
    *,
    schedule: VoterSchedule | None = None,
    log_path: Path,
    timeout: float = _START_TIMEOUT_S,
) -> GrandpaVoterProcess:
    """Spawn ``python -m chains.substrate.grandpa_voter`` against ``chain_ws`` on a free
    127.0.0.1 port and return once it serves (the voters installed, the checkpoint built).

    The chain must accept ``dev_setStorage`` and ``dev_newBlock`` (chopsticks). Writes the
    process's output to ``log_path``. Raises GrandpaVoterError if it does not start.
    """
    schedule = schedule or VoterSchedule()
    last = ""
    for _ in range(_START_ATTEMPTS):
        port = free_port()
        log = log_path.open("ab")
        process = subprocess.Popen(  # noqa: S603  (our own module, fixed args)
            [
                sys.executable,
                "-m",
                "chains.substrate.grandpa_voter",
                "--chain-ws",
                chain_ws,
                "--port",
                str(port),
                "--voters",
                str(schedule.voters),
                "--next-voters",
                str(schedule.next_voters),
                "--set-id",
                str(schedule.set_id),
                "--change-delay",
                str(schedule.change_delay or 0),
                "--every",
                str(schedule.every),
                "--seed",
                schedule.seed,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
        voter = GrandpaVoterProcess(
            url=f"ws://127.0.0.1:{port}", port=port, process=process, log_path=log_path, _log=log
        )
        try:
            _wait_ready(voter, timeout)
        except GrandpaVoterError as exc:
            last = f"{exc}\n--- voter output ---\n{voter.log_tail()}"
            voter.stop()
            continue
        except BaseException:
            voter.stop()
            raise
        return voter
    raise GrandpaVoterError(f"the GRANDPA dev voters did not start: {last}")


def _wait_ready(voter: GrandpaVoterProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = voter.process.poll()
        if code is not None:
            raise GrandpaVoterError(f"the voter process exited with code {code}")
        if '"voter.ready"' in voter.log_tail(100_000):
            return
        time.sleep(0.1)
    raise GrandpaVoterError(f"no voter.ready within {timeout:g} s")


if __name__ == "__main__":
    sys.exit(main())
