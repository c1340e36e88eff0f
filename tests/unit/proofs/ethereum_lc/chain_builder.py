"""A small minimal-preset beacon chain made up for the tests: test-generated BLS keys, states and
block bodies shaped like the real ones (so generalized indices and branch depths are the real
ones), headers, bootstraps and signed updates in beacon-API JSON.

Nothing here uses ``proofs.ethereum_lc``'s SSZ, Merkle, signing or BLS code: roots and branches
come from remerkleable, fork schedules and domains are worked out here from the config, and
signatures are made with pyblst's group operations (secret-key scalar times hash-to-G2), which
the client's verification (a pairing check) does not share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from hashlib import sha256
from typing import Any

import pyblst
from py_ecc.bls.g2_primitives import G1_to_pubkey
from py_ecc.optimized_bls12_381 import G1

from tests.unit.proofs.ethereum_lc.reference_ssz import (
    BeaconBlockHeader,
    Checkpoint,
    ExecutionPayloadHeaderCapella,
    ExecutionPayloadHeaderDeneb,
    ForkData,
    SigningData,
    beacon_state_standin,
    block_body_standin,
    branch,
    light_client_types,
    sync_committee_type,
    to_json,
)

SLOTS_PER_EPOCH = 8
SLOTS_PER_PERIOD = 8 * 8
COMMITTEE_SIZE = 32
GENESIS_VALIDATORS_ROOT = sha256(b"light client test chain").digest()
_CURVE_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
_DST = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
_DOMAIN_SYNC_COMMITTEE = bytes.fromhex("07000000")
_FORKS = ("altair", "bellatrix", "capella", "deneb", "electra", "fulu")
_VERSIONS = {"phase0": 0x00000001} | {name: (i + 1) << 24 | 1 for i, name in enumerate(_FORKS)}
INFINITY_PUBKEY = b"\xc0" + bytes(47)


def config(*, electra_epoch: int, deneb_epoch: int = 0, capella_epoch: int = 0) -> dict[str, Any]:
    """A config.yaml as YAML would parse it (versions are integers): Altair and Bellatrix from
    genesis, the later forks at the epochs given, Fulu never."""
    out: dict[str, Any] = {"PRESET_BASE": "minimal", "GENESIS_FORK_VERSION": _VERSIONS["phase0"]}
    epochs = {
        "altair": 0,
        "bellatrix": 0,
        "capella": capella_epoch,
        "deneb": deneb_epoch,
        "electra": electra_epoch,
        "fulu": 2**64 - 1,
    }
    for name in _FORKS:
        out[f"{name.upper()}_FORK_VERSION"] = _VERSIONS[name]
        out[f"{name.upper()}_FORK_EPOCH"] = epochs[name]
    return out


@dataclass(frozen=True)
class Committee:
    secrets: tuple[int, ...]
    pubkeys: tuple[bytes, ...]
    view: Any

    def sign(self, message: bytes, participation: Sequence[bool]) -> bytes:
        """The aggregate signature of the participating members: (sum of their keys) * H(m)."""
        secret = sum(s for s, bit in zip(self.secrets, participation, strict=True) if bit)
        point = pyblst.BlstP2Element.hash_to_group(message, _DST)
        return bytes(point.scalar_mul(secret % _CURVE_ORDER).compress())


@cache
def _g1() -> Any:
    return pyblst.BlstP1Element.uncompress(G1_to_pubkey(G1))


@cache
def committee(seed: int, *, infinity_at: int | None = None) -> Committee:
    secrets = []
    points = []
    for index in range(COMMITTEE_SIZE):
        digest = sha256(f"committee {seed} member {index}".encode()).digest()
        secret = 0 if index == infinity_at else int.from_bytes(digest, "big") % _CURVE_ORDER
        secrets.append(secret)
        points.append(_g1().scalar_mul(secret))
    total = points[0]
    for point in points[1:]:
        total = total + point
    pubkeys = tuple(bytes(p.compress()) for p in points)
    view = sync_committee_type(COMMITTEE_SIZE)(
        pubkeys=list(pubkeys), aggregate_pubkey=bytes(total.compress())
    )
    return Committee(secrets=tuple(secrets), pubkeys=pubkeys, view=view)


def _filler(label: str, slot: int) -> bytes:
    return sha256(f"{label} {slot}".encode()).digest()


@dataclass(frozen=True)
class Block:
    header: Any  # the fork's remerkleable LightClientHeader
    root: bytes
    block_hash: bytes


class TestChain:
    """Forks by epoch from ``config``; blocks, states and light-client data on demand."""

    __test__ = False  # not a pytest class

    def __init__(self, chain_config: dict[str, Any]) -> None:
        self.config = chain_config

    def fork_at(self, slot: int) -> str:
        epoch = slot // SLOTS_PER_EPOCH
        current = "phase0"
        for name in _FORKS:
            if epoch >= self.config[f"{name.upper()}_FORK_EPOCH"]:
                current = name
        return current

    def version_at(self, slot: int) -> bytes:
        fork = self.fork_at(slot)
        key = "GENESIS_FORK_VERSION" if fork == "phase0" else f"{fork.upper()}_FORK_VERSION"
        return int(self.config[key]).to_bytes(4, "big")

    @staticmethod
    def _beacon(slot: int, state_root: bytes, body_root: bytes) -> Any:
        return BeaconBlockHeader(
            slot=slot,
            proposer_index=slot % 7,
            parent_root=_filler("parent", slot),
            state_root=state_root,
            body_root=body_root,
        )

    def block(
        self,
        slot: int,
        state_root: bytes,
        *,
        data_fork: str | None = None,
    ) -> Block:
        """A block at ``slot`` committing to ``state_root``, as ``data_fork``'s header."""
        fork = self.fork_at(slot)
        shape = data_fork or fork
        header_type = light_client_types(shape, COMMITTEE_SIZE)["LightClientHeader"]
        block_hash = _filler("block hash", slot)
        if fork in ("altair", "bellatrix"):
            # Before Capella a light-client header has no execution part; the body is opaque.
            beacon = self._beacon(slot, state_root, _filler("body", slot))
            header = header_type(beacon=beacon)  # in Capella form, execution stays zero
            return Block(header=header, root=bytes(beacon.hash_tree_root()), block_hash=block_hash)
        fields: dict[str, Any] = {
            "parent_hash": _filler("block hash", slot - 1),
            "fee_recipient": b"\x11" * 20,
            "state_root": _filler("execution state", slot),
            "receipts_root": _filler("receipts", slot),
            "prev_randao": _filler("randao", slot),
            "block_number": 1000 + slot,
            "gas_limit": 30_000_000,
            "gas_used": 21_000 * slot,
            "timestamp": 1_700_000_000 + 6 * slot,
            "extra_data": b"lc test",
            "base_fee_per_gas": 7 * 10**9 + slot,
            "block_hash": block_hash,
            "transactions_root": _filler("transactions", slot),
            "withdrawals_root": _filler("withdrawals", slot),
        }
        if fork == "capella":
            execution = ExecutionPayloadHeaderCapella(**fields)
            as_data = execution
            if shape != "capella":
                # Deneb-form data for a Capella block: the blob fields are there, and zero.
                as_data = ExecutionPayloadHeaderDeneb(**fields, blob_gas_used=0, excess_blob_gas=0)
        else:
            execution = ExecutionPayloadHeaderDeneb(
                **fields, blob_gas_used=131072, excess_blob_gas=slot
            )
            as_data = execution
        body = block_body_standin(fork)(execution_payload=execution)
        beacon = self._beacon(slot, state_root, bytes(body.hash_tree_root()))
        header = header_type(
            beacon=beacon, execution=as_data, execution_branch=branch(body, _EXECUTION_GINDEX)
        )
        return Block(header=header, root=bytes(beacon.hash_tree_root()), block_hash=block_hash)

    def state(
        self,
        slot: int,
        *,
        current: Committee,
        next_committee: Committee,
        finalized_root: bytes,
        state_fork: str | None = None,
    ) -> Any:
        fork = state_fork or self.fork_at(slot)
        state_type = beacon_state_standin(fork, COMMITTEE_SIZE)
        values: dict[str, Any] = {
            name: _filler(name, slot) for name in state_type.fields() if name.startswith("field_")
        }
        return state_type(
            **values,
            finalized_checkpoint=Checkpoint(epoch=slot // SLOTS_PER_EPOCH, root=finalized_root),
            current_sync_committee=current.view,
            next_sync_committee=next_committee.view,
        )

    def bootstrap(
        self,
        slot: int,
        current: Committee,
        next_committee: Committee,
        *,
        state_fork: str | None = None,
        data_fork: str | None = None,
        pad_branch: bytes | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        """(bootstrap JSON, trusted block root). ``state_fork`` builds the state in another
        fork's shape; ``pad_branch`` prepends that node to the committee branch."""
        fork = data_fork or self.fork_at(slot)
        state = self.state(
            slot,
            current=current,
            next_committee=next_committee,
            finalized_root=_filler("finalized", slot),
            state_fork=state_fork,
        )
        block = self.block(slot, bytes(state.hash_tree_root()), data_fork=fork)
        proof = branch(state, gindices(state_fork or self.fork_at(slot))["current"])
        if pad_branch is not None:
            proof = [pad_branch, *proof]
        bootstrap_type = light_client_types(fork, COMMITTEE_SIZE)["LightClientBootstrap"]
        value = bootstrap_type(
            header=block.header,
            current_sync_committee=current.view,
            current_sync_committee_branch=proof,
        )
        return {"version": fork, "data": to_json(value)}, block.root

    def update(
        self,
        *,
        attested_slot: int,
        finalized_slot: int,
        signature_slot: int,
        signers: Committee,
        current: Committee,
        next_committee: Committee,
        participation: Sequence[bool] | None = None,
        sign_version: bytes | None = None,
        genesis_validators_root: bytes = GENESIS_VALIDATORS_ROOT,
        data_fork: str | None = None,
        state_fork: str | None = None,
        pad_branches: bytes | None = None,
    ) -> tuple[dict[str, Any], Block, Block]:
        """(update JSON, attested block, finalized block): the attested state holds ``current``
        and ``next_committee`` and the finalized block's root; ``signers`` sign at
        ``signature_slot`` with the version of the fork at the slot before it unless
        ``sign_version`` says otherwise."""
        fork = data_fork or self.fork_at(attested_slot)
        finalized = self.block(finalized_slot, _filler("state", finalized_slot), data_fork=fork)
        state_shape = state_fork or self.fork_at(attested_slot)
        state = self.state(
            attested_slot,
            current=current,
            next_committee=next_committee,
            finalized_root=finalized.root,
            state_fork=state_shape,
        )
        attested = self.block(attested_slot, bytes(state.hash_tree_root()), data_fork=fork)
        indices = gindices(state_shape)
        next_branch = branch(state, indices["next"])
        finality_branch = branch(state, indices["finalized"])
        if pad_branches is not None:
            next_branch = [pad_branches, *next_branch]
            finality_branch = [pad_branches, *finality_branch]
        bits = list(participation) if participation is not None else [True] * COMMITTEE_SIZE
        version = sign_version or self.version_at(max(signature_slot, 1) - 1)
        fork_data_root = bytes(
            ForkData(
                current_version=version, genesis_validators_root=genesis_validators_root
            ).hash_tree_root()
        )
        domain = _DOMAIN_SYNC_COMMITTEE + fork_data_root[:28]
        signing_root = bytes(SigningData(object_root=attested.root, domain=domain).hash_tree_root())
        types = light_client_types(fork, COMMITTEE_SIZE)
        aggregate_type = types["LightClientUpdate"].fields()["sync_aggregate"]
        value = types["LightClientUpdate"](
            attested_header=attested.header,
            next_sync_committee=next_committee.view,
            next_sync_committee_branch=next_branch,
            finalized_header=finalized.header,
            finality_branch=finality_branch,
            sync_aggregate=aggregate_type(
                sync_committee_bits=aggregate_type.fields()["sync_committee_bits"](*bits),
                sync_committee_signature=signers.sign(signing_root, bits),
            ),
            signature_slot=signature_slot,
        )
        return {"version": fork, "data": to_json(value)}, attested, finalized


_EXECUTION_GINDEX = 16 + 9  # BeaconBlockBody has 12..16 fields: 16 leaves, payload at 9


def gindices(fork: str) -> dict[str, int]:
    """Generalized indices worked out from the state stand-in's shape (field count, positions)
    rather than copied from the client's constants."""
    state_type = beacon_state_standin(fork, COMMITTEE_SIZE)
    names = list(state_type.fields())
    width = 1 << (len(names) - 1).bit_length()
    checkpoint = width + names.index("finalized_checkpoint")
    return {
        "current": width + names.index("current_sync_committee"),
        "next": width + names.index("next_sync_committee"),
        "finalized": checkpoint * 2 + 1,  # Checkpoint(epoch, root): root is the right leaf
    }
