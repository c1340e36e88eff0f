"""A tiny fake chain as a process: ``python -m tests.conformance.fake.node --port N``.

It keeps hash-linked blocks (``blocks.Header``) in memory and serves them as plain JSON over
HTTP on 127.0.0.1, bytes as 0x-hex. Accounts are ed25519 keys with nonces; a transaction is a
dispatch (one wire-format message from this chain's domain, sent by its signer) or a delivery
(messages to this domain; a message id delivered once is refused ever after, as the EVM
Gateway does). With automine on (the default) every accepted transaction is mined at once, in
a block of its own. With ``--port 0`` the node picks a free port; either way it prints
``{"port": N}`` on one line of stdout when it listens, and nothing else there.

Everything is also served under ``/liar/``: the same API, except that while a lie is switched
on (``POST /control/lie``) the blocks holding dispatches are altered but still well-formed:
``body`` changes one byte of each dispatched message (the body no longer matches the header's
tx root), ``header`` also rewrites the header's tx root to match (the header no longer hashes
to the block hash it is served with), ``mixed`` picks one of the two per block.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from proofs.errors import MalformedEncodingError
from relayer.message import Message, MessageFormatError
from tests.conformance.fake.blocks import (
    Header,
    Tx,
    TxKind,
    decode_deliveries,
    decode_tx,
)
from tests.conformance.fake.keys import signature_valid
from tests.conformance.fake.merkle import tree_root

__all__ = ["LIE_MODES", "FakeChain", "main"]

LIE_MODES = ("off", "body", "header", "mixed")
# Longest a client may hold /head open waiting for a new block.
_LONGEST_WAIT_S = 30.0
_MOST_BLOCKS = 1024


@dataclass(frozen=True, slots=True)
class Block:
    header: Header
    hash: bytes
    txs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Receipt:
    block: int
    index: int
    #: per delivered message: None when delivered, else why not (empty for a dispatch)
    errors: tuple[str | None, ...]


@dataclass(slots=True)
class _Pooled:
    tx: Tx
    raw: bytes
    hash: bytes


class RefusalError(Exception):
    """A transaction the node will not take. ``code`` is the API's word for it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class FakeChain:
    network: str
    domain: int
    automine: bool = True
    lie: str = "off"
    blocks: list[Block] = field(default_factory=list)
    pool: dict[bytes, _Pooled] = field(default_factory=dict)
    slots: dict[tuple[bytes, int], bytes] = field(default_factory=dict)
    nonces: dict[bytes, int] = field(default_factory=dict)
    receipts: dict[bytes, Receipt] = field(default_factory=dict)
    delivered: dict[bytes, int] = field(default_factory=dict)
    new_head: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._append(())

    @property
    def head(self) -> Block:
        return self.blocks[-1]

    def _append(self, txs: tuple[bytes, ...]) -> None:
        parent = self.blocks[-1].hash if self.blocks else bytes(32)
        header = Header(
            number=len(self.blocks), parent=parent, tx_count=len(txs), tx_root=tree_root(txs)
        )
        self.blocks.append(Block(header=header, hash=header.hash, txs=txs))
        # Wake every long poll at once; the next ones wait on a fresh event.
        self.new_head.set()
        self.new_head = asyncio.Event()

    # --- accounts and the pool -----------------------------------------------------------------

    def pending_nonce(self, sender: bytes) -> int:
        """The next nonce counting this account's pooled transactions without a gap."""
        nonce = self.nonces.get(sender, 0)
        while (sender, nonce) in self.slots:
            nonce += 1
        return nonce

    def submit(self, raw: bytes) -> bytes:
        try:
            tx = decode_tx(raw)
        except MalformedEncodingError as exc:
            raise RefusalError("malformed", str(exc)) from None
        tx_hash = tx.hash
        if tx_hash in self.pool:
            raise RefusalError("already_known", "the transaction is in the pool already")
        if tx.nonce < self.nonces.get(tx.sender, 0):
            raise RefusalError("nonce_used", f"nonce {tx.nonce} is used")
        if not signature_valid(tx):
            raise RefusalError("bad_signature", "the signature does not verify")
        self._check_payload(tx)
        slot = (tx.sender, tx.nonce)
        holder = self.slots.get(slot)
        if holder is not None:
            if self.pool[holder].tx.fee >= tx.fee:
                raise RefusalError(
                    "fee_too_low",
                    f"a transaction with fee {self.pool[holder].tx.fee} holds nonce {tx.nonce}",
                )
            del self.pool[holder]
        self.pool[tx_hash] = _Pooled(tx=tx, raw=raw, hash=tx_hash)
        self.slots[slot] = tx_hash
        if self.automine:
            self.mine(1)
        return tx_hash

    def _check_payload(self, tx: Tx) -> None:
        if tx.kind is TxKind.DISPATCH:
            try:
                message = Message.decode(tx.payload)
            except MessageFormatError as exc:
                raise RefusalError("bad_dispatch", str(exc)) from None
            if message.origin != self.domain:
                raise RefusalError("bad_dispatch", f"origin {message.origin}, not {self.domain}")
            if message.sender != tx.sender:
                raise RefusalError("bad_dispatch", "the message's sender is not the signer")
        else:
            try:
                decode_deliveries(tx.payload)
            except MalformedEncodingError as exc:
                raise RefusalError("malformed", str(exc)) from None

    def entry_error(self, message_id: bytes, raw: bytes) -> str | None:
        """Why delivering this message now fails, or None."""
        try:
            message = Message.decode(raw)
        except MessageFormatError as exc:
            return f"malformed message: {exc}"
        if message.id != message_id:
            return "the message does not hash to its id"
        if message.destination != self.domain:
            return f"addressed to domain {message.destination}, not {self.domain}"
        if self.delivered.get(message_id):
            return "replay: the message is delivered already"
        return None

    # --- blocks --------------------------------------------------------------------------------

    def mine(self, count: int) -> None:
        for _ in range(count):
            included: list[_Pooled] = []
            nonces = dict(self.nonces)
            progressed = True
            while progressed:
                progressed = False
                for pooled in list(self.pool.values()):
                    if pooled.tx.nonce == nonces.get(pooled.tx.sender, 0):
                        included.append(pooled)
                        nonces[pooled.tx.sender] = pooled.tx.nonce + 1
                        del self.pool[pooled.hash]
                        del self.slots[(pooled.tx.sender, pooled.tx.nonce)]
                        progressed = True
            self.nonces = nonces
            number = len(self.blocks)
            for index, pooled in enumerate(included):
                self.receipts[pooled.hash] = Receipt(number, index, self._execute(pooled.tx))
            self._append(tuple(p.raw for p in included))

    def _execute(self, tx: Tx) -> tuple[str | None, ...]:
        if tx.kind is TxKind.DISPATCH:
            return ()
        errors = []
        for message_id, raw in decode_deliveries(tx.payload):
            error = self.entry_error(message_id, raw)
            if error is None:
                self.delivered[message_id] = self.delivered.get(message_id, 0) + 1
            errors.append(error)
        return tuple(errors)

    def served(self, block: Block, *, liar: bool) -> dict[str, Any]:
        header, txs = block.header, block.txs
        mode = self.lie if liar else "off"
        if mode == "mixed":
            # By the block's own hash, not its height: a kit that mines the same number of
            # blocks per message would otherwise meet one kind of lie only.
            mode = "body" if block.hash[0] & 1 else "header"
        if mode != "off" and any(decode_tx(raw).kind is TxKind.DISPATCH for raw in txs):
            txs = tuple(_forged(raw) for raw in txs)
            if mode == "header":
                header = Header(header.number, header.parent, header.tx_count, tree_root(txs))
        return {
            "number": header.number,
            "hash": _hex(block.hash),
            "header": _hex(header.encode()),
            "txs": [_hex(raw) for raw in txs],
        }


def _forged(raw: bytes) -> bytes:
    """The dispatch with the last byte of its message changed (still a well-formed
    transaction; its signature no longer verifies, which no reader checks)."""
    tx = decode_tx(raw)
    if tx.kind is not TxKind.DISPATCH:
        return raw
    payload = tx.payload[:-1] + bytes([tx.payload[-1] ^ 0x01])
    return Tx(tx.kind, tx.sender, tx.nonce, tx.fee, payload, tx.signature).encode()


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _unhex(value: object) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise web.HTTPBadRequest(text="expected a 0x-hex string")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise web.HTTPBadRequest(text="expected a 0x-hex string") from None


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body is not JSON") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="the body is not a JSON object")
    return data


def _routes(chain: FakeChain, prefix: str, *, liar: bool) -> list[web.RouteDef]:
    async def info(request: web.Request) -> web.Response:
        return web.json_response({"network": chain.network, "domain": chain.domain})

    async def head(request: web.Request) -> web.Response:
        above = request.query.get("above")
        if above is not None and chain.head.header.number <= int(above):
            wait = min(float(request.query.get("wait", "0")), _LONGEST_WAIT_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await chain.new_head.wait()
        return web.json_response(
            {"number": chain.head.header.number, "hash": _hex(chain.head.hash)}
        )

    async def block(request: web.Request) -> web.Response:
        number = int(request.match_info["number"])
        if not 0 <= number < len(chain.blocks):
            return _error(404, "unknown_block", f"no block #{number}")
        found = chain.blocks[number]
        if request.query.get("hash_only"):
            return web.json_response({"number": number, "hash": _hex(found.hash)})
        return web.json_response(chain.served(found, liar=liar))

    async def blocks(request: web.Request) -> web.Response:
        start, end = int(request.query["start"]), int(request.query["end"])
        end = min(end, start + _MOST_BLOCKS - 1, len(chain.blocks) - 1)
        return web.json_response(
            {"blocks": [chain.served(chain.blocks[n], liar=liar) for n in range(start, end + 1)]}
        )

    async def submit(request: web.Request) -> web.Response:
        raw = _unhex((await _body(request)).get("tx"))
        try:
            tx_hash = chain.submit(raw)
        except RefusalError as exc:
            return _error(400, exc.code, str(exc))
        return web.json_response({"hash": _hex(tx_hash)})

    async def tx(request: web.Request) -> web.Response:
        tx_hash = _unhex(request.match_info["hash"])
        receipt = chain.receipts.get(tx_hash)
        if receipt is not None:
            return web.json_response(
                {
                    "status": "included",
                    "block": receipt.block,
                    "block_hash": _hex(chain.blocks[receipt.block].hash),
                    "index": receipt.index,
                    "errors": list(receipt.errors),
                }
            )
        if tx_hash in chain.pool:
            return web.json_response({"status": "pending"})
        return _error(404, "unknown_tx", "no such transaction")

    async def account(request: web.Request) -> web.Response:
        sender = _unhex(request.match_info["address"])
        return web.json_response(
            {"nonce": chain.pending_nonce(sender), "mined": chain.nonces.get(sender, 0)}
        )

    async def delivered(request: web.Request) -> web.Response:
        ids = [_unhex(value) for value in (await _body(request)).get("ids", [])]
        return web.json_response({"counts": [chain.delivered.get(mid, 0) for mid in ids]})

    async def simulate(request: web.Request) -> web.Response:
        entries = (await _body(request)).get("deliveries", [])
        errors = [chain.entry_error(_unhex(e["id"]), _unhex(e["message"])) for e in entries]
        return web.json_response({"errors": errors})

    async def mine(request: web.Request) -> web.Response:
        chain.mine(int((await _body(request)).get("count", 1)))
        return web.json_response({"number": chain.head.header.number})

    async def automine(request: web.Request) -> web.Response:
        chain.automine = bool((await _body(request))["on"])
        if chain.automine and chain.pool:
            chain.mine(1)
        return web.json_response({"automine": chain.automine})

    async def lie(request: web.Request) -> web.Response:
        mode = (await _body(request))["mode"]
        if mode not in LIE_MODES:
            return _error(400, "bad_mode", f"mode is one of {', '.join(LIE_MODES)}")
        chain.lie = mode
        return web.json_response({"lie": mode})

    return [
        web.get(prefix + "/info", info),
        web.get(prefix + "/head", head),
        web.get(prefix + "/block/{number:\\d+}", block),
        web.get(prefix + "/blocks", blocks),
        web.post(prefix + "/tx", submit),
        web.get(prefix + "/tx/{hash}", tx),
        web.get(prefix + "/account/{address}", account),
        web.post(prefix + "/delivered", delivered),
        web.post(prefix + "/simulate", simulate),
        web.post(prefix + "/control/mine", mine),
        web.post(prefix + "/control/automine", automine),
        web.post(prefix + "/control/lie", lie),
    ]


def application(chain: FakeChain) -> web.Application:
    app = web.Application()
    app.add_routes(_routes(chain, "", liar=False))
    app.add_routes(_routes(chain, "/liar", liar=True))
    return app


async def serve(port: int, *, network: str, domain: int) -> None:
    chain = FakeChain(network=network, domain=domain)
    runner = web.AppRunner(application(chain), access_log=None)
    await runner.setup()
    # Our own socket, so that port 0 gives a port nobody can take between choosing and binding.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    await web.SockSite(runner, sock).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sys.stdout.write(json.dumps({"port": sock.getsockname()[1]}) + "\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        sock.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True, help="0: any free port")
    parser.add_argument("--network", default="fake-devnet")
    parser.add_argument("--domain", type=int, default=7000)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, network=args.network, domain=args.domain))


if __name__ == "__main__":
    main()
