"""``relayer devnet`` (what ``make demo`` runs) and ``relayer send``, for local EVM chains.

The devnet starts two anvil chains on free loopback ports, deploys a Gateway (committee of
anvil accounts #5-#7, threshold 2) and a TestRecipient on each, starts three attesters and the
daemon as real processes with the example config, sends messages both ways, waits for every
one to be delivered, prints one summary line and stops everything it started.

The keys here are anvil's public development keys, known to everyone: they are passed to the
processes through the environment variables the example config names, never written anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import rlp
from eth_abi.abi import encode as abi_encode
from eth_account import Account

from chains.evm.anvil import REPO_ROOT, AnvilNode, start_anvil
from chains.evm.config import EvmChainConfig
from chains.evm.evidence import DISPATCH_TOPIC
from chains.evm.rpc import EvmRpc
from proofs.hashing import keccak256
from relayer.config import Config, load_config

__all__ = ["run_devnet", "send_messages"]

# anvil's well-known development keys (mnemonic "test test ... junk"), accounts #0-#7.
DEV_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
)
DEPLOYER, SUBMITTER_A, SUBMITTER_B, SENDER_A, SENDER_B = 0, 1, 2, 3, 4
ATTESTERS = (5, 6, 7)
ARTIFACTS = Path(__file__).resolve().parent / "contracts" / "artifacts"
_SEND_SELECTOR = keccak256(b"send(uint32,bytes32,bytes)")[:4]


def _address(index: int) -> str:
    return str(Account.from_key(DEV_KEYS[index]).address)


def _created_address(sender: str, nonce: int) -> str:
    return "0x" + keccak256(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:].hex()


def _artifact(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ARTIFACTS / f"{name}.json").read_text())
    return data


async def _wait_receipt(rpc: EvmRpc, tx_hash: bytes, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = await rpc.receipt(tx_hash)
        if receipt is not None and receipt.get("blockNumber"):
            return receipt
        await asyncio.sleep(0.1)
    raise RuntimeError(f"transaction 0x{tx_hash.hex()} was not mined within {timeout:.0f}s")


async def _sign_and_send(
    rpc: EvmRpc, key: str, chain_id: int, txs: Sequence[dict[str, Any]]
) -> list[bytes]:
    account = Account.from_key(key)
    nonce = await rpc.nonce(account.address, "pending")
    latest = await rpc.block("latest")
    assert latest is not None
    base = int(latest["baseFeePerGas"], 16)
    raws = []
    for offset, tx in enumerate(txs):
        signed = account.sign_transaction(
            {
                "type": 2,
                "chainId": chain_id,
                "nonce": nonce + offset,
                "value": 0,
                "maxFeePerGas": 4 * base + 10**9,
                "maxPriorityFeePerGas": 10**9,
                **tx,
            }
        )
        raws.append(bytes(signed.raw_transaction))
    hashes: list[bytes] = []
    for start in range(0, len(raws), 100):
        chunk = raws[start : start + 100]
        results = await rpc.batch([("eth_sendRawTransaction", ["0x" + r.hex()]) for r in chunk])
        hashes.extend(bytes.fromhex(h[2:]) for h in results)
    return hashes


async def _deploy(node: AnvilNode, domain: int) -> tuple[str, str]:
    rpc = EvmRpc(node.url)
    try:
        gateway = _artifact("Gateway")
        recipient = _artifact("TestRecipient")
        attesters = [_address(i) for i in ATTESTERS]
        ctor = abi_encode(["uint32", "address[]", "uint256"], [domain, attesters, 2])
        deployer = _address(DEPLOYER)
        first = await rpc.nonce(deployer, "pending")
        hashes = await _sign_and_send(
            rpc,
            DEV_KEYS[DEPLOYER],
            node.chain_id,
            [
                {"data": bytes.fromhex(gateway["bytecode"][2:]) + ctor, "gas": 3_000_000},
                {"data": bytes.fromhex(recipient["bytecode"][2:]), "gas": 1_000_000},
            ],
        )
        for tx_hash in hashes:
            receipt = await _wait_receipt(rpc, tx_hash)
            if int(receipt["status"], 16) != 1:
                raise RuntimeError(f"deployment on chain {node.chain_id} reverted")
        return _created_address(deployer, first), _created_address(deployer, first + 1)
    finally:
        await rpc.close()


def _send_calldata(destination: int, recipient: str, body: bytes) -> bytes:
    word = bytes.fromhex(recipient[2:]).rjust(32, b"\x00")
    return _SEND_SELECTOR + abi_encode(["uint32", "bytes32", "bytes"], [destination, word, body])


async def _send(
    rpc: EvmRpc,
    key: str,
    origin: EvmChainConfig,
    destination: int,
    recipient: str,
    bodies: list[bytes],
) -> list[tuple[bytes, float]]:
    """Send messages as fast as the node takes them; (message id, send time) per message."""
    sent_at = time.time()
    hashes = await _sign_and_send(
        rpc,
        key,
        origin.chain_id,
        [
            {
                "to": origin.gateway,
                "data": _send_calldata(destination, recipient, b),
                "gas": 200_000,
            }
            for b in bodies
        ],
    )
    out: list[tuple[bytes, float]] = []
    for tx_hash in hashes:
        receipt = await _wait_receipt(rpc, tx_hash, timeout=120)
        if int(receipt["status"], 16) != 1:
            raise RuntimeError(f"send transaction 0x{tx_hash.hex()} reverted")
        out.extend(
            (bytes.fromhex(entry["topics"][1][2:]), sent_at)
            for entry in receipt["logs"]
            if bytes.fromhex(entry["topics"][0][2:]) == DISPATCH_TOPIC
        )
    return out


async def send_messages(
    config: Config,
    origin: str,
    destination: str,
    recipient: str,
    body: bytes,
    count: int,
    key_env: str,
) -> list[bytes]:
    """``relayer send``: ``count`` messages from ``origin`` to ``destination``."""
    key = os.environ.get(key_env)
    if not key:
        raise SystemExit(f"environment variable {key_env} (the sender key) is not set")
    origin_chain = config.chain(origin)
    dest_chain = config.chain(destination)
    plugin_cfg = origin_chain.plugin
    assert isinstance(plugin_cfg, EvmChainConfig)
    rpc = EvmRpc(plugin_cfg.rpc)
    try:
        sent = await _send(rpc, key, plugin_cfg, dest_chain.domain, recipient, [body] * count)
    finally:
        await rpc.close()
    return [mid for mid, _ in sent]


# --- the devnet ----------------------------------------------------------------------------------


class _Processes:
    """Every process the devnet started, stopped in reverse order, by the pid it recorded."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.anvils: list[AnvilNode] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        handle = log.open("wb")
        proc = subprocess.Popen(  # noqa: S603  (our own CLI, fixed args)
            args, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT
        )
        handle.close()
        self.procs.append((name, proc))

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode} (see its log)")

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()
        while self.anvils:
            self.anvils.pop().stop()


async def _await_delivery(
    config: Config,
    sent: dict[str, list[tuple[bytes, float]]],
    procs: _Processes,
    timeout: float,
) -> dict[bytes, float]:
    """Poll each destination's ``delivered(id)``; latency per id as seen from outside."""
    selector = keccak256(b"delivered(bytes32)")[:4]
    pending = {dest: dict(items) for dest, items in sent.items()}
    latencies: dict[bytes, float] = {}
    rpcs = {}
    for name in pending:
        cfg = config.chain(name).plugin
        assert isinstance(cfg, EvmChainConfig)
        rpcs[name] = (EvmRpc(cfg.rpc), cfg.gateway)
    deadline = time.monotonic() + timeout
    try:
        while any(pending.values()) and time.monotonic() < deadline:
            procs.check_alive()
            for name, waiting in pending.items():
                if not waiting:
                    continue
                rpc, gateway = rpcs[name]
                ids = list(waiting)
                results = await rpc.batch(
                    [
                        (
                            "eth_call",
                            [{"to": gateway, "data": "0x" + (selector + i).hex()}, "latest"],
                        )
                        for i in ids
                    ]
                )
                now = time.time()
                for mid, value in zip(ids, results, strict=True):
                    if int(value, 16) == 1:
                        latencies[mid] = now - waiting.pop(mid)
            await asyncio.sleep(0.1)
    finally:
        for rpc, _ in rpcs.values():
            await rpc.close()
    return latencies


def _rejected(config: Config) -> int:
    from relayer.store import Ledger, State  # noqa: PLC0415

    with Ledger.open(config.relayer.database) as ledger:
        return sum(n for (_, state), n in ledger.counts().items() if state is State.REJECTED)


def run_devnet(*, config_path: Path, messages: int, workdir: Path | None) -> int:
    """Returns the process exit code; prints the summary as its last line."""
    work = workdir or Path(tempfile.mkdtemp(prefix="relayer-devnet-"))
    work.mkdir(parents=True, exist_ok=True)
    procs = _Processes()
    try:
        print(f"devnet: work dir {work}", flush=True)
        chain_a = start_anvil(31337, block_time=1)
        procs.anvils.append(chain_a)
        chain_b = start_anvil(31338, block_time=1)
        procs.anvils.append(chain_b)
        gateway_a, recipient_a = asyncio.run(_deploy(chain_a, 1000))
        gateway_b, recipient_b = asyncio.run(_deploy(chain_b, 2000))
        print(f"devnet: chains on {chain_a.url} and {chain_b.url}, gateways deployed", flush=True)
        env = {
            **os.environ,
            "CHAIN_A_RPC": chain_a.url,
            "CHAIN_B_RPC": chain_b.url,
            "CHAIN_A_GATEWAY": gateway_a,
            "CHAIN_B_GATEWAY": gateway_b,
            "RELAYER_DATA_DIR": str(work),
            "RELAYER_KEY_CHAIN_A": DEV_KEYS[SUBMITTER_A],
            "RELAYER_KEY_CHAIN_B": DEV_KEYS[SUBMITTER_B],
            **{f"ATTESTER_KEY_{n + 1}": DEV_KEYS[i] for n, i in enumerate(ATTESTERS)},
        }
        config = load_config(config_path, env=env)
        cli = [sys.executable, "-m", "relayer.cli"]
        for attester in config.attesters:
            procs.spawn(
                attester.name,
                [*cli, "attest", "-c", str(config_path), "--name", attester.name],
                env,
                work / f"{attester.name}.log",
            )
        procs.spawn("relayer", [*cli, "start", "-c", str(config_path)], env, work / "relayer.log")

        async def traffic() -> dict[bytes, float]:
            rpc_a, rpc_b = EvmRpc(chain_a.url), EvmRpc(chain_b.url)
            cfg_a, cfg_b = config.chain("chain-a").plugin, config.chain("chain-b").plugin
            assert isinstance(cfg_a, EvmChainConfig)
            assert isinstance(cfg_b, EvmChainConfig)
            try:
                bodies = [f"devnet message {i}".encode() for i in range(messages)]
                a_to_b, b_to_a = await asyncio.gather(
                    _send(rpc_a, DEV_KEYS[SENDER_A], cfg_a, 2000, recipient_b, bodies),
                    _send(rpc_b, DEV_KEYS[SENDER_B], cfg_b, 1000, recipient_a, bodies),
                )
            finally:
                await rpc_a.close()
                await rpc_b.close()
            print(f"devnet: sent {len(a_to_b)} A->B and {len(b_to_a)} B->A", flush=True)
            return await _await_delivery(
                config, {"chain-b": a_to_b, "chain-a": b_to_a}, procs, timeout=300
            )

        latencies = asyncio.run(traffic())
        total = 2 * messages
        rejected = _rejected(config)
        values = sorted(latencies.values())
        p50 = statistics.median(values) if values else float("nan")
        worst = values[-1] if values else float("nan")
        summary = (
            f"demo: delivered {len(values)}/{total}, rejected {rejected}, "
            f"latency p50 {p50:.1f}s max {worst:.1f}s"
        )
        if len(values) != total:
            print(f"devnet: FAILED: {total - len(values)} message(s) not delivered; logs in {work}")
        print(summary, flush=True)
        return 0 if len(values) == total else 1
    except Exception as exc:  # noqa: BLE001  (report any failure loudly, then clean up)
        print(f"devnet: FAILED: {type(exc).__name__}: {exc} (logs in {work})", flush=True)
        return 1
    finally:
        with contextlib.suppress(Exception):
            procs.stop()
