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
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rlp
from eth_abi.abi import encode as abi_encode
from eth_account import Account

from chains.evm.anvil import DEV_KEYS, REPO_ROOT, AnvilNode, start_anvil
from chains.evm.beacon_dev import start_beacon_dev
from chains.evm.config import EvmChainConfig
from chains.evm.evidence import DISPATCH_TOPIC
from chains.evm.rpc import EvmRpc
from chains.localnode import free_port
from proofs.hashing import keccak256
from relayer.config import ChainConfig, Config, load_config

if TYPE_CHECKING:
    from chains.substrate.devnet import SubstrateDevChain

__all__ = [
    "BEACON_FINALITY_LAG",
    "BEACON_FIRST_SLOT",
    "DEV_KEYS",
    "Deployment",
    "Devnet",
    "deploy_contracts",
    "deployment_address",
    "run_devnet",
    "send_messages",
]

DEPLOYER, SUBMITTER_A, SUBMITTER_B, SENDER_A, SENDER_B = 0, 1, 2, 3, 4
ATTESTERS = (5, 6, 7)
ARTIFACTS = Path(__file__).resolve().parent / "contracts" / "artifacts"
_SEND_SELECTOR = keccak256(b"send(uint32,bytes32,bytes)")[:4]
# The dev beacon server finalizes 2 slots (2 s with anvil's 1 s blocks) behind the head, as
# confirmations = 2 does, and starts at slot 48: a sync-committee period (64 slots) ends at
# block 16, so a demo crosses one. `relayer-dev beacon` defaults to the same.
BEACON_FINALITY_LAG = 2
BEACON_FIRST_SLOT = 48


def _address(index: int) -> str:
    return str(Account.from_key(DEV_KEYS[index]).address)


def _created_address(sender: str, nonce: int) -> str:
    return "0x" + keccak256(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:].hex()


def deployment_address(nonce: int) -> str:
    """The address (lowercase hex) of the contract that the deployer, anvil account #0, creates
    with its transaction ``nonce``: on a fresh chain ``deploy_contracts`` puts the Gateway at
    ``deployment_address(0)``, the address the example config defaults to."""
    return _created_address(_address(DEPLOYER), nonce)


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


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where ``deploy_contracts`` put the contracts (lowercase hex addresses)."""

    gateway: str
    recipient: str


async def deploy_contracts(node: AnvilNode, domain: int) -> Deployment:
    """Deploy a Gateway for ``domain`` (committee: anvil accounts #5-#7, threshold 2) and a
    TestRecipient from account #0, and wait for both to be mined. Raises ``RuntimeError`` if a
    deployment reverts or is not mined within 30 s."""
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
        return Deployment(
            gateway=_created_address(deployer, first),
            recipient=_created_address(deployer, first + 1),
        )
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

_DELIVERED_SELECTOR = keccak256(b"delivered(bytes32)")[:4]
_DELIVERED_TOPIC = keccak256(b"Delivered(bytes32)")


class Devnet:
    """Two local chains with Gateways, and the attester and daemon processes around them.

    The demo, the end-to-end tests and the benchmarks drive the same object, so that what the
    demo shows is what the tests check. Every process it starts is recorded and stopped by
    ``stop()`` (also when a test fails half-way).
    """

    def __init__(
        self,
        *,
        config_path: Path,
        workdir: Path,
        block_time_a: float | None = 1,
        block_time_b: float | None = 1,
    ) -> None:
        self.config_path = config_path
        self.work = workdir
        self.work.mkdir(parents=True, exist_ok=True)
        self.block_times = (block_time_a, block_time_b)
        self.anvils: list[AnvilNode] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}
        self.recipients: dict[str, str] = {}
        # Substrate chains of the config (chopsticks), by chain name.
        self.substrate: dict[str, SubstrateDevChain] = {}
        # Dev finality sources (beacon servers, GRANDPA voters) for light-client chains, by
        # chain name: anything with a stop().
        self.finality_sources: dict[str, Any] = {}
        self._config: Config | None = None

    # --- chains ----------------------------------------------------------------------------------

    def start_chains(self) -> None:
        chain_a = start_anvil(31337, block_time=self.block_times[0])
        self.anvils.append(chain_a)
        chain_b = start_anvil(31338, block_time=self.block_times[1])
        self.anvils.append(chain_b)
        deployed_a = asyncio.run(deploy_contracts(chain_a, 1000))
        deployed_b = asyncio.run(deploy_contracts(chain_b, 2000))
        self.recipients["chain-a"] = deployed_a.recipient
        self.recipients["chain-b"] = deployed_b.recipient
        self.env = {
            **os.environ,
            "CHAIN_A_RPC": chain_a.url,
            "CHAIN_B_RPC": chain_b.url,
            "CHAIN_A_WS": chain_a.ws_url,
            "CHAIN_B_WS": chain_b.ws_url,
            "CHAIN_A_GATEWAY": deployed_a.gateway,
            "CHAIN_B_GATEWAY": deployed_b.gateway,
            "RELAYER_DATA_DIR": str(self.work),
            "RELAYER_HEALTH": f"127.0.0.1:{free_port()}",
            "RELAYER_KEY_CHAIN_A": DEV_KEYS[SUBMITTER_A],
            "RELAYER_KEY_CHAIN_B": DEV_KEYS[SUBMITTER_B],
            **{f"ATTESTER_KEY_{n + 1}": DEV_KEYS[i] for n, i in enumerate(ATTESTERS)},
        }
        anvils = {"chain-a": chain_a, "chain-b": chain_b}
        for chain in load_config(self.config_path, env=self.env).chains:
            if chain.type == "substrate":
                self._start_substrate(chain)
            elif chain.light_client_mode == "sync-committee" and chain.name in anvils:
                self._start_beacon(chain, anvils[chain.name])
        self._config = None

    def _start_beacon(self, chain: ChainConfig, node: AnvilNode) -> None:
        """A dev beacon server following ``node`` for a chain with ``trusted_block_root =
        "dev"``; its URL goes to ``<NAME>_BEACON``, as the example config reads it."""
        settings = chain.plugin_config(EvmChainConfig).sync_committee
        if settings is None or settings.trusted_block_root != "dev":
            return  # a real beacon node is the operator's to run
        beacon = start_beacon_dev(
            node.url, finality_lag=BEACON_FINALITY_LAG, first_slot=BEACON_FIRST_SLOT
        )
        self.finality_sources[chain.name] = beacon
        self.env[_env_name(chain.name, "BEACON")] = beacon.url

    def _start_substrate(self, chain: ChainConfig) -> None:
        """A chopsticks chain for a ``type = "substrate"`` table; its endpoint goes to
        ``<NAME>_RPC`` (``dot-a``: ``DOT_A_RPC``), as the example config reads it."""
        # The devnet spans chain families; the substrate side is loaded only when configured.
        from chains.substrate.config import SubstrateChainConfig  # noqa: PLC0415
        from chains.substrate.devnet import (  # noqa: PLC0415
            RECIPIENT_URI,
            SUBMITTER_URI,
            SubstrateDevChain,
            dev_voter_schedule,
        )
        from chains.substrate.keys import Sr25519Keypair  # noqa: PLC0415

        config = chain.plugin_config(SubstrateChainConfig)
        node = SubstrateDevChain(config.system_chain, chain.domain, config)
        self.substrate[chain.name] = node
        self.env[_env_name(chain.name, "RPC")] = node.ws_url
        dev_voters = config.grandpa is not None and config.grandpa.checkpoint == "dev"
        if chain.light_client_mode == "grandpa" and dev_voters:
            from chains.substrate.grandpa_voter import start_grandpa_voter  # noqa: PLC0415

            # Before any traffic: the voters install themselves and build the checkpoint
            # block; their set changes during the demo (chains.substrate.devnet).
            voters = start_grandpa_voter(
                node.ws_url,
                schedule=dev_voter_schedule(),
                log_path=self.work / f"grandpa-voters-{chain.name}.log",
            )
            self.finality_sources[chain.name] = voters
            self.env[_env_name(chain.name, "GRANDPA")] = voters.url
        if config.submitter_key is not None and config.submitter_key.env is not None:
            self.env[config.submitter_key.env] = SUBMITTER_URI
        recipient = Sr25519Keypair.from_uri(RECIPIENT_URI).public_key
        self.recipients[chain.name] = "0x" + recipient.hex()

    @property
    def chain_a(self) -> AnvilNode:
        return self.anvils[0]

    @property
    def chain_b(self) -> AnvilNode:
        return self.anvils[1]

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path, env=self.env)
        return self._config

    def evm(self, chain: str) -> EvmChainConfig:
        config = self.config.chain(chain).plugin
        assert isinstance(config, EvmChainConfig)
        return config

    # --- processes -------------------------------------------------------------------------------

    def spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> None:
        if name in self.procs and self.procs[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        env = {**self.env, **(extra_env or {})}
        with (self.work / f"{name}.log").open("ab") as handle:
            self.procs[name] = subprocess.Popen(  # noqa: S603  (our own CLI, fixed args)
                [sys.executable, "-m", "relayer.cli", *args],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )

    def start_attesters(self, names: Sequence[str] | None = None) -> None:
        for attester in self.config.attesters:
            if names is None or attester.name in names:
                self.spawn(
                    attester.name,
                    ["attest", "-c", str(self.config_path), "--name", attester.name],
                )

    def start_daemon(self, extra_env: dict[str, str] | None = None) -> None:
        self.spawn("relayer", ["start", "-c", str(self.config_path)], extra_env)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int | None:
        proc = self.procs.get(name)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
        return proc.wait(timeout=30)

    def check_alive(self, names: Sequence[str] | None = None) -> None:
        for name, proc in self.procs.items():
            if (names is None or name in names) and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode} (see its log)")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()
        while self.finality_sources:
            self.finality_sources.popitem()[1].stop()
        while self.anvils:
            self.anvils.pop().stop()
        while self.substrate:
            self.substrate.popitem()[1].stop()

    # --- traffic ---------------------------------------------------------------------------------

    async def send(
        self,
        origin: str,
        destination: str,
        count: int,
        *,
        sender: int | None = None,
        bodies: Sequence[bytes] | None = None,
    ) -> list[tuple[bytes, float]]:
        """``count`` messages (or one per body), sent as fast as the origin takes them:
        (id, send time) each."""
        if bodies is None:
            bodies = [f"message {i} {origin}->{destination}".encode() for i in range(count)]
        if origin in self.substrate:
            return await self.substrate[origin].send(
                self.config.chain(destination).domain,
                bytes.fromhex(self.recipients[destination][2:]),
                bodies,
            )
        if sender is None:
            sender = SENDER_A if origin == "chain-a" else SENDER_B
        key = DEV_KEYS[sender]
        cfg = self.evm(origin)
        rpc = EvmRpc(cfg.rpc)
        try:
            return await _send(
                rpc,
                key,
                cfg,
                self.config.chain(destination).domain,
                self.recipients[destination],
                list(bodies),
            )
        finally:
            await rpc.close()

    async def await_delivery(
        self,
        sent: dict[str, list[tuple[bytes, float]]],
        *,
        timeout: float,
        alive: Sequence[str] | None = (),
    ) -> dict[bytes, float]:
        """Poll each destination's ``delivered(id)`` until all are in or ``timeout``; the
        latency of each id as seen from outside (first poll that saw it delivered)."""
        pending = {dest: dict(items) for dest, items in sent.items()}
        latencies: dict[bytes, float] = {}
        rpcs = {name: EvmRpc(self.evm(name).rpc) for name in pending if name not in self.substrate}
        deadline = time.monotonic() + timeout
        try:
            while any(pending.values()) and time.monotonic() < deadline:
                self.check_alive(alive)
                for name, waiting in pending.items():
                    if not waiting:
                        continue
                    if name in self.substrate:
                        delivered = await self.substrate[name].deliveries()
                        now = time.time()
                        for mid in [m for m in waiting if delivered[m]]:
                            latencies[mid] = now - waiting.pop(mid)
                        continue
                    gateway = self.evm(name).gateway
                    ids = list(waiting)
                    results = await rpcs[name].batch(
                        [
                            (
                                "eth_call",
                                [
                                    {"to": gateway, "data": "0x" + (_DELIVERED_SELECTOR + i).hex()},
                                    "latest",
                                ],
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
            for rpc in rpcs.values():
                await rpc.close()
        return latencies

    async def delivered_events(self, chain: str) -> Counter[bytes]:
        """How many ``Delivered`` events each message id has on ``chain`` (exactly-once check)."""
        if chain in self.substrate:
            return await self.substrate[chain].deliveries()
        cfg = self.evm(chain)
        rpc = EvmRpc(cfg.rpc)
        try:
            head = await rpc.block_number()
            logs = await rpc.logs(0, head, cfg.gateway, ["0x" + _DELIVERED_TOPIC.hex()])
        finally:
            await rpc.close()
        return Counter(bytes.fromhex(entry["topics"][1][2:]) for entry in logs)

    def ledger_counts(self) -> dict[str, int]:
        from relayer.store import Ledger  # noqa: PLC0415

        totals: Counter[str] = Counter()
        with Ledger.open(self.config.relayer.database) as ledger:
            for (_, state), count in ledger.counts().items():
                totals[state.value] += count
        return dict(totals)


def _env_name(chain: str, what: str) -> str:
    """``dot-a``, ``RPC`` -> ``DOT_A_RPC``: the variables the example config reads."""
    return f"{chain.upper().replace('-', '_')}_{what}"


def evm_only_config(text: str) -> str:
    """The config ``text`` without its non-EVM ``[[chains]]`` tables and their names in the
    attesters' origins: for benchmarks and tests of the EVM path alone, which should not pay
    for (or depend on) a chopsticks chain."""
    blocks = re.split(r"(?m)^(?=\[\[)", text)
    dropped: list[str] = []
    kept: list[str] = []
    for block in blocks:
        kind = re.search(r'(?m)^type\s*=\s*"([^"]+)"', block)
        if block.startswith("[[chains]]") and kind is not None and kind.group(1) != "evm":
            named = re.search(r'(?m)^name\s*=\s*"([^"]+)"', block)
            if named is not None:
                dropped.append(named.group(1))
            continue
        kept.append(block)
    out = "".join(kept)
    for name in dropped:
        out = out.replace(f', "{name}"', "").replace(f'"{name}", ', "")
    return out


def committee_finality(text: str) -> str:
    """The config ``text`` with every chain's light-client ``finality`` set to "committee":
    for tests and benchmarks of the depth-based path (reorgs past the configured depth, manual
    mining), where a light client's own notion of final is not what is under test."""
    return re.sub(
        r'(?m)^finality = "(?!committee"|confirmations")[a-z0-9-]+"',
        'finality = "committee"',
        text,
    )


def _routes(config: Config, substrate: Sequence[str]) -> list[tuple[str, str]]:
    """Both ways between the first two EVM chains, and between the first EVM chain and each
    Substrate chain."""
    evm = [chain.name for chain in config.chains if chain.type == "evm"]
    routes = [(evm[0], evm[1]), (evm[1], evm[0])] if len(evm) >= 2 else []
    for name in substrate:
        routes += [(evm[0], name), (name, evm[0])]
    return routes


# Sender account (anvil dev key index) for messages from an EVM chain to a Substrate chain: not
# the one sending to the other EVM chain at the same time, so that their nonces never collide.
_SENDER_TO_SUBSTRATE = 8


def run_devnet(*, config_path: Path, messages: int, workdir: Path | None) -> int:
    """``relayer devnet``: returns the exit code; prints the summary as its last line."""
    work = workdir or Path(tempfile.mkdtemp(prefix="relayer-devnet-"))
    devnet = Devnet(config_path=config_path, workdir=work)
    try:
        print(f"devnet: work dir {work}", flush=True)
        devnet.start_chains()
        print(
            f"devnet: chains on {devnet.chain_a.url} and {devnet.chain_b.url}"
            + "".join(f", {name} on {node.ws_url}" for name, node in devnet.substrate.items())
            + ", gateways deployed",
            flush=True,
        )
        devnet.start_attesters()
        devnet.start_daemon()
        routes = _routes(devnet.config, list(devnet.substrate))

        async def traffic() -> tuple[dict[tuple[str, str], list[bytes]], dict[bytes, float]]:
            batches = await asyncio.gather(
                *(
                    devnet.send(
                        origin,
                        destination,
                        messages,
                        sender=_SENDER_TO_SUBSTRATE if destination in devnet.substrate else None,
                    )
                    for origin, destination in routes
                )
            )
            counts = [f"{len(b)} {o}->{d}" for (o, d), b in zip(routes, batches, strict=True)]
            print("devnet: sent " + ", ".join(counts), flush=True)
            sent: dict[str, list[tuple[bytes, float]]] = {}
            for (_, destination), batch in zip(routes, batches, strict=True):
                sent.setdefault(destination, []).extend(batch)
            latencies = await devnet.await_delivery(sent, timeout=300, alive=None)
            ids = {
                route: [mid for mid, _ in batch]
                for route, batch in zip(routes, batches, strict=True)
            }
            return ids, latencies

        ids, latencies = asyncio.run(traffic())
        events: Counter[bytes] = Counter()
        for name in {destination for _, destination in routes}:
            events += asyncio.run(devnet.delivered_events(name))
        rejected = devnet.ledger_counts().get("rejected", 0)
    except Exception as exc:  # noqa: BLE001  (report any failure loudly, then clean up)
        print(f"devnet: FAILED: {type(exc).__name__}: {exc} (logs in {work})", flush=True)
        return 1
    finally:
        devnet.stop()
    for (origin, destination), route_ids in ids.items():
        done = sum(1 for mid in route_ids if mid in latencies)
        print(f"demo: route {origin} -> {destination}: delivered {done}/{len(route_ids)}")
    return _report(sum(len(v) for v in ids.values()), latencies, events, rejected, work)


def _report(
    total: int, latencies: dict[bytes, float], events: Counter[bytes], rejected: int, work: Path
) -> int:
    values = sorted(latencies.values())
    p50 = statistics.median(values) if values else float("nan")
    worst = values[-1] if values else float("nan")
    doubled = sum(1 for n in events.values() if n > 1)
    if len(values) != total:
        print(f"devnet: FAILED: {total - len(values)} message(s) not delivered; logs in {work}")
    if doubled:
        print(f"devnet: FAILED: {doubled} message(s) delivered more than once")
    print(
        f"demo: delivered {len(values)}/{total}, rejected {rejected}, "
        f"latency p50 {p50:.1f}s max {worst:.1f}s",
        flush=True,
    )
    return 0 if len(values) == total and doubled == 0 and len(events) == total else 1
