"""A development beacon-API server for a local anvil chain: the light-client endpoints of a
minimal-preset Electra beacon chain whose blocks are anvil's blocks and whose sync committee is
made of seed-derived BLS keys (public by design, like anvil's accounts).

Run it as its own process::

    python -m chains.evm.beacon_dev --rpc http://127.0.0.1:8545 --port 5052 \
        [--finality-lag 16] [--first-slot 0] [--seed TEXT] [--mode honest]

or from Python with ``start_beacon_dev(rpc_url)``, whose ``stop()`` ends the process group.
The slot, period and finality mapping is ``chains.evm.beacon_dev_chain``'s docstring.

Endpoints (JSON only, Electra forms, ``{"version": "electra", "data": ...}``):

- ``GET /eth/v1/beacon/genesis``: genesis_time (anvil block 0's timestamp minus
  ``first_slot`` seconds), genesis_validators_root (derived from the seed), genesis_fork_version;
- ``GET /eth/v1/config/spec``: fork versions and epochs, preset sizes, the finality lag;
- ``GET /eth/v1/beacon/headers/{head|finalized|genesis|<slot>|<0x root>}``: a bootstrap's
  trusted block root is ``.../headers/finalized``'s ``data.root`` (proposer signatures are not
  produced: the header's signature is the point at infinity);
- ``GET /eth/v1/beacon/light_client/bootstrap/{block_root}``, ``.../updates?start_period=&count=``
  (an array of ``{"version", "data"}``), ``.../finality_update``, ``.../optimistic_update``;
- ``GET /dev/v1/mode`` and ``POST /dev/v1/mode`` with ``{"mode": "<LieMode value>"}``: switch
  how updates are built from now on (``LieMode`` in ``beacon_dev_chain``: honest or one lie).

Slots follow anvil's blocks, not the clock: the wall-clock slot (``(now - genesis_time) //
SECONDS_PER_SLOT``, one second a slot) tracks the head only while anvil mines a block a second
(the devnet's ``--block-time 1``); after ``anvil_mine`` or under instant mining the chain runs
ahead of it, so a light client here should take its current slot from ``headers/head``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import structlog

from chains.evm.beacon_dev_chain import (
    DEFAULT_FINALITY_LAG,
    DEFAULT_SEED,
    FORK_VERSIONS,
    SLOTS_PER_EPOCH,
    DevBeaconChain,
    LieMode,
    execution_header_from_rpc,
    spec_config,
)
from chains.evm.beacon_dev_ssz import to_json
from chains.localnode import free_port, log_tail, loopback_rpc, stop_process
from relayer.log import configure_logging

__all__ = [
    "BeaconDevError",
    "BeaconDevNode",
    "BeaconDevService",
    "LieMode",
    "main",
    "start_beacon_dev",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
_VERSION = "electra"
_MAX_REQUEST_LIGHT_CLIENT_UPDATES = 128
_POLL_INTERVAL_S = 0.2
_RPC_TIMEOUT_S = 5.0
# Blocks appended per lock hold while catching up, so requests are answered meanwhile.
_CATCH_UP_CHUNK = 32
_INFINITY_SIGNATURE = bytes([0xC0]) + bytes(95)
_START_TIMEOUT_S = 30.0
_START_ATTEMPTS = 3
_STOP_TIMEOUT_S = 10.0


class BeaconDevError(RuntimeError):
    """The dev beacon server did not start, or anvil did not answer it."""


class _NotFoundError(Exception):
    pass


class _BadRequestError(Exception):
    pass


def _rpc_batch(url: str, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
    """Several JSON-RPC calls in one HTTP request; answers in call order."""
    if not calls:
        return []
    payload = json.dumps(
        [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
    )
    request = urllib.request.Request(  # noqa: S310  (http to loopback, built here)
        url, data=payload.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=_RPC_TIMEOUT_S) as response:  # noqa: S310
        answers = {a["id"]: a for a in json.load(response)}
    out = []
    for i, (method, _) in enumerate(calls):
        answer = answers[i]
        if "error" in answer:
            raise BeaconDevError(f"{method}: {answer['error']}")
        out.append(answer["result"])
    return out


class BeaconDevService:
    """The chain, the anvil follower and the request handling, minus the HTTP plumbing.

    One lock serialises the follower's appends and the requests (building an update signs with
    32 keys: a few tens of milliseconds, paid once per attested block and mode, then cached).
    """

    def __init__(
        self,
        rpc_url: str,
        *,
        seed: bytes = DEFAULT_SEED,
        finality_lag: int = DEFAULT_FINALITY_LAG,
        first_slot: int = 0,
        mode: LieMode = LieMode.HONEST,
    ) -> None:
        self.rpc_url = rpc_url
        self.chain = DevBeaconChain(seed=seed, finality_lag=finality_lag, first_slot=first_slot)
        self.mode = mode
        self.lock = threading.Lock()
        self._stopped = threading.Event()
        self.log = structlog.get_logger().bind(endpoint=rpc_url)

    # --- following anvil -------------------------------------------------------------------

    def _rpc(self, method: str, params: Sequence[Any]) -> Any:
        return loopback_rpc(self.rpc_url, method, params, _RPC_TIMEOUT_S, error=BeaconDevError)

    def sync_once(self) -> int:
        """Catch up with anvil's head (dropping blocks anvil replaced); the new head's anvil
        block number."""
        latest = int(self._rpc("eth_blockNumber", []), 16)
        with self.lock:
            head = self.chain.head_number
        # Walk down from our head to the newest block anvil still has (evm_revert, anvil_reset).
        replaced = head
        while head >= 0:
            with self.lock:
                ours = self.chain.block_by_number(head).execution_block_hash
            theirs = self._rpc("eth_getBlockByNumber", [hex(head), False])
            if theirs is not None and bytes.fromhex(theirs["hash"][2:]) == ours:
                break
            head -= 1
        if head < replaced:
            with self.lock:
                self.chain.truncate_numbers(head + 1)
            self.log.warning("beacon_dev.reorged", block=head + 1)
        number = head + 1
        while number <= latest and not self._stopped.is_set():
            built = []
            for n in range(number, min(latest, number + _CATCH_UP_CHUNK - 1) + 1):
                block = self._rpc("eth_getBlockByNumber", [hex(n), False])
                if block is None:
                    break
                raws = _rpc_batch(
                    self.rpc_url,
                    [("eth_getRawTransactionByHash", [h]) for h in block["transactions"]],
                )
                built.append(
                    (block, execution_header_from_rpc(block, [bytes.fromhex(r[2:]) for r in raws]))
                )
            if not built:
                break
            with self.lock:
                for block, execution in built:
                    top = self.chain.head_number
                    if top >= 0 and bytes.fromhex(block["parentHash"][2:]) != (
                        self.chain.block_by_number(top).execution_block_hash
                    ):
                        # anvil reorganised while we read: the next round walks back.
                        return self.chain.head_number
                    self.chain.append(execution)
                number = self.chain.head_number + 1
        with self.lock:
            return self.chain.head_number

    def follow(self) -> None:
        """Poll anvil until ``stop()``; an outage is reported once and its end once."""
        down = False
        while not self._stopped.is_set():
            try:
                self.sync_once()
            except (OSError, urllib.error.URLError, BeaconDevError, ValueError) as exc:
                if not down:
                    self.log.warning("chain.unavailable", error=str(exc))
                down = True
            else:
                if down:
                    self.log.info("chain.recovered")
                down = False
            self._stopped.wait(_POLL_INTERVAL_S)

    def stop(self) -> None:
        self._stopped.set()

    # --- requests --------------------------------------------------------------------------

    def get(self, path: str, query: Mapping[str, str]) -> Any:
        """The JSON answer to a GET; raises ``_NotFoundError`` / ``_BadRequestError``."""
        parts = [p for p in path.split("/") if p]
        with self.lock:
            if self.chain.head_number < 0:
                raise _NotFoundError("no block from anvil yet")
            if parts == ["eth", "v1", "beacon", "genesis"]:
                return {
                    "data": {
                        "genesis_time": str(self.chain.genesis_time),
                        "genesis_validators_root": _hex(self.chain.genesis_validators_root),
                        "genesis_fork_version": _hex(FORK_VERSIONS["GENESIS"]),
                    }
                }
            if parts == ["eth", "v1", "config", "spec"]:
                return {"data": spec_config(self.chain.finality_lag)}
            if parts[:4] == ["eth", "v1", "beacon", "headers"] and len(parts) == 5:
                return self._header(parts[4])
            if parts[:4] == ["eth", "v1", "beacon", "light_client"]:
                return self._light_client(parts[4:], query)
            if parts == ["dev", "v1", "mode"]:
                return self._mode_answer()
        raise _NotFoundError(f"no route {path}")

    def post(self, path: str, body: Any) -> Any:
        if path.rstrip("/") != "/dev/v1/mode":
            raise _NotFoundError(f"no route {path}")
        if not isinstance(body, dict) or "mode" not in body:
            raise _BadRequestError('expected {"mode": "<mode>"}')
        try:
            mode = LieMode(body["mode"])
        except ValueError:
            raise _BadRequestError(
                f"unknown mode {body['mode']!r}; one of {[m.value for m in LieMode]}"
            ) from None
        with self.lock:
            self.mode = mode
            self.log.warning("beacon_dev.mode_changed", mode=mode.value)
            return self._mode_answer()

    def _mode_answer(self) -> Any:
        return {
            "data": {
                "mode": self.mode.value,
                "modes": [m.value for m in LieMode],
                "finality_lag_slots": str(self.chain.finality_lag),
                "first_slot": str(self.chain.first_slot),
                "head_slot": str(self.chain.head_slot),
            }
        }

    def _header(self, block_id: str) -> Any:
        chain = self.chain
        # The genesis checkpoint (slot 0) stands for the first block when anvil joined later.
        finalized = max(chain.finalized_slot(chain.head_slot), chain.first_slot)
        if block_id == "head":
            block = chain.block(chain.head_slot)
        elif block_id == "genesis":
            block = chain.block(chain.first_slot)
        elif block_id == "finalized":
            block = chain.block(finalized)
        elif block_id.startswith("0x"):
            found = chain.block_by_root(_unhex(block_id))
            if found is None:
                raise _NotFoundError(f"no block with root {block_id}")
            block = found
        elif block_id.isdigit() and chain.has_block(int(block_id)):
            block = chain.block(int(block_id))
        else:
            raise _NotFoundError(f"no block {block_id}")
        return {
            "execution_optimistic": False,
            "finalized": block.slot <= finalized,
            "data": {
                "root": _hex(block.root),
                "canonical": True,
                "header": {
                    "message": to_json(block.header),
                    "signature": _hex(_INFINITY_SIGNATURE),
                },
            },
        }

    def _light_client(self, parts: list[str], query: Mapping[str, str]) -> Any:
        chain, mode = self.chain, self.mode
        if len(parts) == 2 and parts[0] == "bootstrap":
            bootstrap = chain.bootstrap(_unhex(parts[1]))
            if bootstrap is None:
                raise _NotFoundError(f"no bootstrap for block root {parts[1]}")
            return _versioned(bootstrap)
        if parts == ["updates"]:
            try:
                start, count = int(query["start_period"]), int(query["count"])
            except (KeyError, ValueError):
                raise _BadRequestError("start_period and count are required integers") from None
            if start < 0 or count < 1:
                raise _BadRequestError("start_period must be >= 0 and count >= 1")
            out = []
            for period in range(start, start + min(count, _MAX_REQUEST_LIGHT_CLIENT_UPDATES)):
                update = chain.period_update(period, mode)
                if update is None:
                    break
                out.append(_versioned(update))
            return out
        if parts == ["finality_update"]:
            return _versioned_or_404(chain.finality_update(mode), "finality update")
        if parts == ["optimistic_update"]:
            return _versioned_or_404(chain.optimistic_update(mode), "optimistic update")
        raise _NotFoundError("no such light_client route")


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _unhex(text: str) -> bytes:
    try:
        data = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise _BadRequestError(f"{text!r} is not hex") from None
    if len(data) != 32:
        raise _BadRequestError(f"{text!r} is not a 32-byte root")
    return data


def _versioned(value: Any) -> dict[str, Any]:
    return {"version": _VERSION, "data": to_json(value)}


def _versioned_or_404(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        raise _NotFoundError(f"no {what} yet (the chain needs two blocks)")
    return _versioned(value)


def _handler(service: BeaconDevService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
            self._answer(lambda: service.get(url.path, query))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""

            def run() -> Any:
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    raise _BadRequestError("body is not JSON") from None
                return service.post(urllib.parse.urlsplit(self.path).path, body)

            self._answer(run)

        def _answer(self, produce: Any) -> None:
            try:
                status, answer = 200, produce()
            except _NotFoundError as exc:
                status, answer = 404, {"code": 404, "message": str(exc)}
            except _BadRequestError as exc:
                status, answer = 400, {"code": 400, "message": str(exc)}
            except Exception as exc:  # a bug: answered with a 500 and logged; the server lives on
                service.log.exception("beacon_dev.request_failed", path=self.path)
                status, answer = 500, {"code": 500, "message": f"{type(exc).__name__}: {exc}"}
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if status == 200 and isinstance(answer, dict) and "version" in answer:
                self.send_header("Eth-Consensus-Version", _VERSION)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request would drown the devnet's output

    return Handler


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m chains.evm.beacon_dev", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rpc", required=True, help="anvil's HTTP JSON-RPC URL")
    parser.add_argument("--port", type=int, required=True, help="port to serve on (127.0.0.1)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--finality-lag",
        type=int,
        default=DEFAULT_FINALITY_LAG,
        help=f"slots from a block to its finality [Default: {DEFAULT_FINALITY_LAG}]",
    )
    parser.add_argument(
        "--first-slot",
        type=int,
        default=0,
        help="the slot of anvil's block 0 (48: first committee change 16 blocks in) [Default: 0]",
    )
    parser.add_argument(
        "--seed", default=DEFAULT_SEED.decode(), help="seed of the committee keys (public)"
    )
    parser.add_argument("--mode", default=LieMode.HONEST.value, choices=[m.value for m in LieMode])
    args = parser.parse_args(argv)
    configure_logging()
    service = BeaconDevService(
        args.rpc,
        seed=args.seed.encode(),
        finality_lag=args.finality_lag,
        first_slot=args.first_slot,
        mode=LieMode(args.mode),
    )
    server = ThreadingHTTPServer((args.host, args.port), _handler(service))
    server.daemon_threads = True
    follower = threading.Thread(target=service.follow, name="beacon-dev-follow", daemon=True)
    follower.start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    service.log.info(
        "beacon_dev.serving",
        url=f"http://{args.host}:{args.port}",
        finality_lag=args.finality_lag,
        first_slot=args.first_slot,
        slots_per_epoch=SLOTS_PER_EPOCH,
        mode=args.mode,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()
        server.server_close()


# --- the process handle --------------------------------------------------------------------


@dataclass
class BeaconDevNode:
    """A running dev beacon server process; ``stop()`` ends its process group (idempotent)."""

    url: str
    port: int
    rpc_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    def get(self, path: str, timeout: float = 10.0) -> Any:
        """GET ``path`` (``/eth/v1/...``) and decode the JSON answer; HTTP errors raise."""
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:  # noqa: S310
            return json.load(response)

    def set_mode(self, mode: LieMode | str, timeout: float = 10.0) -> None:
        """Switch how the server builds updates (``LieMode``), effective for the next request."""
        request = urllib.request.Request(  # noqa: S310  (http to loopback, built here)
            self.url + "/dev/v1/mode",
            data=json.dumps({"mode": LieMode(mode).value}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310
            pass

    def log_tail(self, limit: int = 4000) -> str:
        return log_tail(self.log_path, limit)

    def stop(self, timeout: float = _STOP_TIMEOUT_S) -> None:
        stop_process(self.process, self._log, group=True, timeout=timeout)
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> BeaconDevNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_beacon_dev(
    rpc_url: str,
    *,
    finality_lag: int = DEFAULT_FINALITY_LAG,
    first_slot: int = 0,
    seed: bytes = DEFAULT_SEED,
    mode: LieMode = LieMode.HONEST,
    timeout: float = _START_TIMEOUT_S,
) -> BeaconDevNode:
    """Start the server for anvil at ``rpc_url`` on a free 127.0.0.1 port; return once it
    serves the genesis. Raises ``BeaconDevError`` if it does not (its output in the message)."""
    last_error = ""
    for _ in range(_START_ATTEMPTS):
        node = _spawn(rpc_url, finality_lag, first_slot, seed, mode)
        try:
            _wait_ready(node, timeout)
        except BeaconDevError as exc:
            last_error = f"{exc}\n--- beacon_dev output ---\n{node.log_tail()}"
            node.stop()
            continue
        except BaseException:
            node.stop()
            raise
        return node
    raise BeaconDevError(f"the dev beacon server for {rpc_url} did not start: {last_error}")


def _spawn(
    rpc_url: str, finality_lag: int, first_slot: int, seed: bytes, mode: LieMode
) -> BeaconDevNode:
    port = free_port()
    fd, log_name = tempfile.mkstemp(prefix=f"beacon-dev-{port}-", suffix=".log")
    log = os.fdopen(fd, "wb")
    args = [
        sys.executable,
        "-m",
        "chains.evm.beacon_dev",
        "--rpc",
        rpc_url,
        "--port",
        str(port),
        "--finality-lag",
        str(finality_lag),
        "--first-slot",
        str(first_slot),
        "--seed",
        seed.decode(),
        "--mode",
        mode.value,
    ]
    process = subprocess.Popen(  # noqa: S603  (our own module, fixed args)
        args,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    return BeaconDevNode(
        url=f"http://127.0.0.1:{port}",
        port=port,
        rpc_url=rpc_url,
        process=process,
        log_path=Path(log_name),
        _log=log,
    )


def _wait_ready(node: BeaconDevNode, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = node.process.poll()
        if code is not None:
            raise BeaconDevError(f"the server exited with code {code}")
        try:
            node.get("/eth/v1/beacon/genesis", timeout=1.0)
        except (OSError, urllib.error.URLError, ValueError):
            time.sleep(0.1)
            continue
        return
    raise BeaconDevError(f"no answer to /eth/v1/beacon/genesis on {node.url} within {timeout:g} s")


if __name__ == "__main__":
    main()
