"""The dev beacon chain: one beacon block per anvil block, a seed-derived sync committee that
rotates every period, and the light-client objects (bootstrap, updates) built from them, honest
or, on request, lying in one of the ways a light client must catch.

Mapping (minimal preset, Electra from genesis):

- anvil block N is the beacon block at slot ``first_slot + N`` (no skipped slots after it;
  ``first_slot`` defaults to 0, and a devnet sets it to reach the first committee change
  sooner, as if anvil had joined a beacon chain already running, as at the Merge); its body
  commits to an execution payload header carrying anvil's block N fields (block hash, parent
  hash, state and receipts roots, number, timestamp, ...), and its state root commits to the
  finalized checkpoint and the current and next sync committees at the Electra gindices;
- 8 slots an epoch, 8 epochs a sync committee period: the committee changes every 64 blocks
  (at slots 64, 128, ...);
- the block at slot ``s - finality_lag`` is final in the state at slot ``s`` (the checkpoint's
  root is that block's root, its epoch that slot's epoch: finality moves every slot, not every
  epoch, so a devnet sees it move at its block rate); while there is no block at
  ``s - finality_lag`` (or it is slot 0), the finalized checkpoint is the genesis one (zero
  root, slot 0), and an update's finalized header is then the empty one, as the spec has it;
- genesis time is anvil block 0's timestamp minus ``first_slot`` seconds (one second a slot),
  so that wall-clock slots match block numbers on a chain mining a block a second;
- the sync committee of slot ``s + 1``'s period signs block ``s``: an update's attested header
  is at most the head's parent and its signature slot is at most the head.

Not modelled: proposer signatures, attestations, validators and balances (zero leaves in the
state), skipped slots, forks of the beacon chain.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from remerkleable.basic import uint64, uint256
from remerkleable.byte_arrays import ByteList, Bytes32, Bytes48, Bytes96, ByteVector

from chains.evm.beacon_dev_bls import (
    DevSecretKey,
    aggregate_pubkeys,
    aggregate_signatures,
    derive_keys,
)
from chains.evm.beacon_dev_ssz import (
    BYTES_PER_LOGS_BLOOM,
    CURRENT_SYNC_COMMITTEE_GINDEX,
    EXECUTION_PAYLOAD_GINDEX,
    FINALIZED_ROOT_GINDEX,
    NEXT_SYNC_COMMITTEE_GINDEX,
    SYNC_COMMITTEE_SIZE,
    BeaconBlockHeader,
    Bytes20,
    Checkpoint,
    DevBeaconBlockBody,
    DevBeaconState,
    ExecutionPayloadHeader,
    Fork,
    LightClientBootstrap,
    LightClientFinalityUpdate,
    LightClientHeader,
    LightClientOptimisticUpdate,
    LightClientUpdate,
    SyncAggregate,
    SyncCommittee,
    Transactions,
    Withdrawal,
    Withdrawals,
    branch,
)

__all__ = [
    "DEFAULT_FINALITY_LAG",
    "DEFAULT_SEED",
    "DOMAIN_SYNC_COMMITTEE",
    "FORK_VERSIONS",
    "SLOTS_PER_EPOCH",
    "SLOTS_PER_PERIOD",
    "DevBeaconBlock",
    "DevBeaconChain",
    "LieMode",
    "execution_header_from_rpc",
    "spec_config",
]

SLOTS_PER_EPOCH = 8
EPOCHS_PER_SYNC_COMMITTEE_PERIOD = 8
SLOTS_PER_PERIOD = SLOTS_PER_EPOCH * EPOCHS_PER_SYNC_COMMITTEE_PERIOD
SECONDS_PER_SLOT = 1
VALIDATOR_COUNT = 2 * SYNC_COMMITTEE_SIZE
# Two epochs, as on Ethereum; `relayer devnet` may ask for less to finalize sooner.
DEFAULT_FINALITY_LAG = 2 * SLOTS_PER_EPOCH
DEFAULT_SEED = b"xrelayer dev beacon"

# The minimal preset's fork versions, every fork at epoch 0: Electra from genesis.
FORK_VERSIONS = {
    "GENESIS": bytes.fromhex("00000001"),
    "ALTAIR": bytes.fromhex("01000001"),
    "BELLATRIX": bytes.fromhex("02000001"),
    "CAPELLA": bytes.fromhex("03000001"),
    "DENEB": bytes.fromhex("04000001"),
    "ELECTRA": bytes.fromhex("05000001"),
}
DOMAIN_SYNC_COMMITTEE = bytes.fromhex("07000000")
_MIN_SYNC_COMMITTEE_PARTICIPANTS = 1
_ZERO = bytes(32)
_UPDATE_CACHE_LIMIT = 512


class LieMode(enum.StrEnum):
    """How the server lies in the updates it serves (bootstraps stay honest).

    - ``forged-block``: attested and finalized headers of blocks anvil never produced (their
      execution block hash and receipts root are made up), with real branches and a full,
      valid committee signature: only a check against the origin chain catches it;
    - ``minority``: signed by 21 of the 32 members, one short of the 2/3 a light client needs
      to accept finality (the signature itself is valid);
    - ``wrong-finality-branch``: the attested header itself claimed final, with the honest
      finality branch, which proves a different (older) root under the attested state;
    - ``wrong-committee``: signed by all members of the next period's committee, not the one
      in force at the signature slot.
    """

    HONEST = "honest"
    FORGED_BLOCK = "forged-block"
    MINORITY = "minority"
    WRONG_FINALITY_BRANCH = "wrong-finality-branch"
    WRONG_COMMITTEE = "wrong-committee"


def spec_config(finality_lag: int) -> dict[str, str]:
    """What ``/eth/v1/config/spec`` serves: the consensus config (as a spec test's config.yaml
    names its keys) and the preset values a light client needs, as strings."""
    config = {
        "PRESET_BASE": "minimal",
        "CONFIG_NAME": "xrelayer-dev",
        "SECONDS_PER_SLOT": str(SECONDS_PER_SLOT),
        "SLOTS_PER_EPOCH": str(SLOTS_PER_EPOCH),
        "EPOCHS_PER_SYNC_COMMITTEE_PERIOD": str(EPOCHS_PER_SYNC_COMMITTEE_PERIOD),
        "SYNC_COMMITTEE_SIZE": str(SYNC_COMMITTEE_SIZE),
        "MIN_SYNC_COMMITTEE_PARTICIPANTS": str(_MIN_SYNC_COMMITTEE_PARTICIPANTS),
        "UPDATE_TIMEOUT": str(SLOTS_PER_PERIOD),
        "DOMAIN_SYNC_COMMITTEE": "0x" + DOMAIN_SYNC_COMMITTEE.hex(),
        "DEV_FINALITY_LAG_SLOTS": str(finality_lag),
    }
    for fork, version in FORK_VERSIONS.items():
        config[f"{fork}_FORK_VERSION"] = "0x" + version.hex()
        if fork != "GENESIS":
            config[f"{fork}_FORK_EPOCH"] = "0"
    return config


def _hex(value: str) -> bytes:
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


def _quantity(block: Mapping[str, Any], key: str) -> int:
    value = block.get(key)
    return int(value, 16) if value else 0


def execution_header_from_rpc(block: Mapping[str, Any], raw_transactions: Sequence[bytes]) -> Any:
    """The Deneb/Electra ``ExecutionPayloadHeader`` of an ``eth_getBlockByNumber`` answer, with
    the SSZ roots of its transactions (EIP-2718 envelopes, as ``eth_getRawTransactionByHash``
    gives them) and withdrawals."""
    withdrawals = Withdrawals(
        *(
            Withdrawal(
                index=int(w["index"], 16),
                validator_index=int(w["validatorIndex"], 16),
                address=Bytes20(_hex(w["address"])),
                amount=int(w["amount"], 16),
            )
            for w in block.get("withdrawals") or ()
        )
    )
    transactions = Transactions(*(ByteList[2**30](raw) for raw in raw_transactions))
    return ExecutionPayloadHeader(
        parent_hash=Bytes32(_hex(block["parentHash"])),
        fee_recipient=Bytes20(_hex(block["miner"])),
        state_root=Bytes32(_hex(block["stateRoot"])),
        receipts_root=Bytes32(_hex(block["receiptsRoot"])),
        logs_bloom=ByteVector[BYTES_PER_LOGS_BLOOM](_hex(block["logsBloom"])),
        prev_randao=Bytes32(_hex(block.get("mixHash") or "0x" + _ZERO.hex())),
        block_number=uint64(int(block["number"], 16)),
        gas_limit=uint64(_quantity(block, "gasLimit")),
        gas_used=uint64(_quantity(block, "gasUsed")),
        timestamp=uint64(_quantity(block, "timestamp")),
        extra_data=ByteList[32](_hex(block.get("extraData") or "0x")),
        base_fee_per_gas=uint256(_quantity(block, "baseFeePerGas")),
        block_hash=Bytes32(_hex(block["hash"])),
        transactions_root=Bytes32(transactions.hash_tree_root()),
        withdrawals_root=Bytes32(withdrawals.hash_tree_root()),
        blob_gas_used=uint64(_quantity(block, "blobGasUsed")),
        excess_blob_gas=uint64(_quantity(block, "excessBlobGas")),
    )


@dataclass(frozen=True, slots=True)
class DevBeaconBlock:
    """A beacon block of the dev chain: its header, the state it commits to, and the light-client
    header (beacon header, execution header, execution branch) built from them."""

    slot: int
    root: bytes
    header: Any  # BeaconBlockHeader
    state: Any  # DevBeaconState
    light_client_header: Any  # LightClientHeader

    @property
    def execution_block_hash(self) -> bytes:
        return bytes(self.light_client_header.execution.block_hash)


@dataclass(frozen=True, slots=True)
class _Committee:
    period: int
    members: tuple[DevSecretKey, ...]
    value: Any  # SyncCommittee


class DevBeaconChain:
    """The beacon chain that follows one anvil chain. Not thread-safe: the server serialises
    calls. Blocks are appended in order (slot = first_slot + anvil block number) and dropped
    from the top when anvil's chain changes under them."""

    def __init__(
        self,
        *,
        seed: bytes = DEFAULT_SEED,
        finality_lag: int = DEFAULT_FINALITY_LAG,
        first_slot: int = 0,
    ):
        if first_slot < 0:
            raise ValueError(f"first slot {first_slot} is negative")
        self.first_slot = first_slot
        # The finalized header of a period's best update must stay in that period (a light
        # client without the next committee only takes finality from its own period).
        if not 1 <= finality_lag <= SLOTS_PER_PERIOD - 2:
            raise ValueError(
                f"finality lag {finality_lag} is outside 1..{SLOTS_PER_PERIOD - 2} slots"
            )
        self.finality_lag = finality_lag
        self.genesis_validators_root = hashlib.sha256(
            b"xrelayer dev beacon genesis_validators_root" + seed
        ).digest()
        self._seed = seed
        self._validators = derive_keys(seed, VALIDATOR_COUNT)
        self._committees: dict[int, _Committee] = {}
        self._blocks: list[DevBeaconBlock] = []
        self._by_root: dict[bytes, int] = {}
        self._updates: dict[tuple[LieMode, bytes], Any] = {}
        fork_data_root = hashlib.sha256(
            FORK_VERSIONS["ELECTRA"].ljust(32, b"\x00") + self.genesis_validators_root
        ).digest()
        # compute_domain: every fork is at epoch 0, so every signature slot signs as Electra.
        self.sync_committee_domain = DOMAIN_SYNC_COMMITTEE + fork_data_root[:28]

    # --- the chain -------------------------------------------------------------------------

    @property
    def head_slot(self) -> int:
        """The slot of the newest block; ``first_slot - 1`` before anvil's block 0."""
        return self.first_slot + len(self._blocks) - 1

    @property
    def genesis_time(self) -> int:
        anvil_genesis = int(self._blocks[0].light_client_header.execution.timestamp)
        return anvil_genesis - self.first_slot * SECONDS_PER_SLOT

    @property
    def head_number(self) -> int:
        """The anvil block number of the newest block; -1 before anvil's block 0."""
        return len(self._blocks) - 1

    def block_by_number(self, number: int) -> DevBeaconBlock:
        """The beacon block of anvil's block ``number``."""
        return self.block(self.first_slot + number)

    def truncate_numbers(self, number: int) -> None:
        """Drop the blocks of anvil blocks ``number`` and above (anvil replaced them)."""
        self.truncate(self.first_slot + number)

    def has_block(self, slot: int) -> bool:
        return self.first_slot <= slot <= self.head_slot

    def block(self, slot: int) -> DevBeaconBlock:
        if not self.has_block(slot):
            raise IndexError(f"no block at slot {slot}")
        return self._blocks[slot - self.first_slot]

    def block_by_root(self, root: bytes) -> DevBeaconBlock | None:
        slot = self._by_root.get(root)
        return None if slot is None else self.block(slot)

    def finalized_slot(self, slot: int) -> int:
        """The slot of the finalized checkpoint in the state at ``slot`` (0: genesis)."""
        candidate = slot - self.finality_lag
        return candidate if candidate > 0 and candidate >= self.first_slot else 0

    def append(self, execution: Any) -> DevBeaconBlock:
        """The beacon block for the next anvil block (``execution``: its payload header)."""
        number = len(self._blocks)
        if int(execution.block_number) != number:
            raise ValueError(f"anvil block {int(execution.block_number)} is not block {number}")
        slot = self.first_slot + number
        parent_root = self._blocks[-1].root if self._blocks else _ZERO
        finalized = self.finalized_slot(slot)
        finalized_root = self.block(finalized).root if finalized > 0 else _ZERO
        block = self._build(slot, execution, parent_root, finalized_root)
        self._blocks.append(block)
        self._by_root[block.root] = slot
        return block

    def truncate(self, slot: int) -> None:
        """Drop the blocks at ``slot`` and above (anvil replaced them)."""
        index = max(0, slot - self.first_slot)
        for block in self._blocks[index:]:
            del self._by_root[block.root]
        del self._blocks[index:]

    def committee(self, period: int) -> _Committee:
        """Period ``period``'s 32 members: the validators ranked by sha256(seed, period, index)."""
        cached = self._committees.get(period)
        if cached is not None:
            return cached

        def rank(index: int) -> bytes:
            return hashlib.sha256(
                self._seed
                + b"committee"
                + period.to_bytes(8, "little")
                + index.to_bytes(8, "little")
            ).digest()

        chosen = sorted(range(VALIDATOR_COUNT), key=rank)[:SYNC_COMMITTEE_SIZE]
        members = tuple(self._validators[i] for i in chosen)
        pubkeys = [m.pubkey for m in members]
        value = SyncCommittee(
            pubkeys=[Bytes48(k) for k in pubkeys],
            aggregate_pubkey=Bytes48(aggregate_pubkeys(pubkeys)),
        )
        committee = _Committee(period=period, members=members, value=value)
        self._committees[period] = committee
        return committee

    def _build(
        self, slot: int, execution: Any, parent_root: bytes, finalized_root: bytes
    ) -> DevBeaconBlock:
        period = slot // SLOTS_PER_PERIOD
        state = DevBeaconState(
            genesis_time=uint64(
                int(execution.timestamp) - self.first_slot * SECONDS_PER_SLOT
                if slot == self.first_slot
                else self.genesis_time
            ),
            genesis_validators_root=Bytes32(self.genesis_validators_root),
            slot=uint64(slot),
            fork=Fork(
                previous_version=FORK_VERSIONS["ELECTRA"],
                current_version=FORK_VERSIONS["ELECTRA"],
                epoch=uint64(0),
            ),
            finalized_checkpoint=Checkpoint(
                epoch=uint64(self.finalized_slot(slot) // SLOTS_PER_EPOCH),
                root=Bytes32(finalized_root),
            ),
            current_sync_committee=self.committee(period).value,
            next_sync_committee=self.committee(period + 1).value,
        )
        body = DevBeaconBlockBody(execution_payload=execution)
        header = BeaconBlockHeader(
            slot=uint64(slot),
            proposer_index=uint64(slot % VALIDATOR_COUNT),
            parent_root=Bytes32(parent_root),
            state_root=Bytes32(state.hash_tree_root()),
            body_root=Bytes32(body.hash_tree_root()),
        )
        light_client_header = LightClientHeader(
            beacon=header,
            execution=execution,
            execution_branch=[Bytes32(n) for n in branch(body, EXECUTION_PAYLOAD_GINDEX)],
        )
        return DevBeaconBlock(
            slot=slot,
            root=bytes(header.hash_tree_root()),
            header=header,
            state=state,
            light_client_header=light_client_header,
        )

    # --- light-client objects --------------------------------------------------------------

    def bootstrap(self, root: bytes) -> Any | None:
        """The ``LightClientBootstrap`` for the block with beacon root ``root`` (None: unknown)."""
        block = self.block_by_root(root)
        if block is None:
            return None
        return LightClientBootstrap(
            header=block.light_client_header,
            current_sync_committee=block.state.current_sync_committee,
            current_sync_committee_branch=[
                Bytes32(n) for n in branch(block.state, CURRENT_SYNC_COMMITTEE_GINDEX)
            ],
        )

    def period_update(self, period: int, mode: LieMode) -> Any | None:
        """The best ``LightClientUpdate`` of ``period`` so far: attested as late in the period as
        the chain allows while still signed inside it (so a client that knows only this
        period's committee can take it); None before the period has a signed block."""
        attested = min(self.head_slot - 1, (period + 1) * SLOTS_PER_PERIOD - 2)
        if period < 0 or attested < max(period * SLOTS_PER_PERIOD, self.first_slot):
            return None
        return self.update(attested, mode)

    def latest_update(self, mode: LieMode) -> Any | None:
        """The update attesting the head's parent, signed at the head; None before two blocks."""
        if self.head_slot - 1 < self.first_slot:
            return None
        return self.update(self.head_slot - 1, mode)

    def finality_update(self, mode: LieMode) -> Any | None:
        update = self.latest_update(mode)
        if update is None:
            return None
        return LightClientFinalityUpdate(
            attested_header=update.attested_header,
            finalized_header=update.finalized_header,
            finality_branch=update.finality_branch,
            sync_aggregate=update.sync_aggregate,
            signature_slot=update.signature_slot,
        )

    def optimistic_update(self, mode: LieMode) -> Any | None:
        update = self.latest_update(mode)
        if update is None:
            return None
        return LightClientOptimisticUpdate(
            attested_header=update.attested_header,
            sync_aggregate=update.sync_aggregate,
            signature_slot=update.signature_slot,
        )

    def update(self, attested_slot: int, mode: LieMode) -> Any:
        """The ``LightClientUpdate`` attesting ``attested_slot``, signed at the next slot."""
        key = (mode, self.block(attested_slot).root)
        cached = self._updates.get(key)
        if cached is None:
            cached = self._make_update(attested_slot, mode)
            if len(self._updates) >= _UPDATE_CACHE_LIMIT:
                self._updates.pop(next(iter(self._updates)))
            self._updates[key] = cached
        return cached

    def _make_update(self, attested_slot: int, mode: LieMode) -> Any:
        attested = self.block(attested_slot)
        finalized_slot = self.finalized_slot(attested_slot)
        finalized = self.block(finalized_slot) if finalized_slot > 0 else None
        if mode is LieMode.FORGED_BLOCK:
            attested, finalized = self._forge(attested, finalized)
        finalized_header = (
            finalized.light_client_header if finalized is not None else LightClientHeader()
        )
        if mode is LieMode.WRONG_FINALITY_BRANCH:
            finalized_header = attested.light_client_header
        signature_slot = attested_slot + 1
        signing_period = signature_slot // SLOTS_PER_PERIOD
        if mode is LieMode.WRONG_COMMITTEE:
            signing_period += 1
        members = self.committee(signing_period).members
        count = len(members)
        if mode is LieMode.MINORITY:
            # The most members that still fall short of 2/3 (21 of 32).
            count = (2 * len(members) - 1) // 3
        signing_root = hashlib.sha256(attested.root + self.sync_committee_domain).digest()
        signature = aggregate_signatures(m.sign(signing_root) for m in members[:count])
        return LightClientUpdate(
            attested_header=attested.light_client_header,
            next_sync_committee=attested.state.next_sync_committee,
            next_sync_committee_branch=[
                Bytes32(n) for n in branch(attested.state, NEXT_SYNC_COMMITTEE_GINDEX)
            ],
            finalized_header=finalized_header,
            finality_branch=[Bytes32(n) for n in branch(attested.state, FINALIZED_ROOT_GINDEX)],
            sync_aggregate=SyncAggregate(
                sync_committee_bits=[i < count for i in range(len(members))],
                sync_committee_signature=Bytes96(signature),
            ),
            signature_slot=uint64(signature_slot),
        )

    def _forge(
        self, attested: DevBeaconBlock, finalized: DevBeaconBlock | None
    ) -> tuple[DevBeaconBlock, DevBeaconBlock | None]:
        """Blocks at the same slots whose execution headers anvil never produced, chained and
        committed to exactly as honest ones are."""

        def forged_execution(block: DevBeaconBlock) -> Any:
            execution = block.light_client_header.execution.copy()
            execution.block_hash = Bytes32(
                hashlib.sha256(b"forged block" + block.execution_block_hash).digest()
            )
            execution.receipts_root = Bytes32(
                hashlib.sha256(b"forged receipts" + bytes(execution.receipts_root)).digest()
            )
            return execution

        def parent_root(block: DevBeaconBlock) -> bytes:
            return bytes(block.header.parent_root)

        def finalized_root(block: DevBeaconBlock) -> bytes:
            return bytes(block.state.finalized_checkpoint.root)

        forged_finalized = None
        if finalized is not None:
            forged_finalized = self._build(
                finalized.slot,
                forged_execution(finalized),
                parent_root(finalized),
                finalized_root(finalized),
            )
        forged_attested = self._build(
            attested.slot,
            forged_execution(attested),
            parent_root(attested),
            forged_finalized.root if forged_finalized is not None else _ZERO,
        )
        return forged_attested, forged_finalized
