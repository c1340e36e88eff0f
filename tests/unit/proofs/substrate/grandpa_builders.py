"""SCALE encoders for test evidence: standard and Avail headers, GRANDPA justifications and
consensus logs, and small signed chains to build them from."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey

from proofs.hashing import blake2_256
from proofs.substrate import AncestryHeader, decode_header, precommit_message
from proofs.substrate.scale import encode_compact
from tests.unit.proofs.substrate.ss58 import ss58_decode
from tests.vectors import vectors_dir


def hx(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))


def encode_header(
    parent_hash: bytes,
    number: int,
    state_root: bytes = b"\x11" * 32,
    extrinsics_root: bytes = b"\x22" * 32,
    digest_items: tuple[bytes, ...] = (),
) -> bytes:
    return (
        parent_hash
        + encode_compact(number)
        + state_root
        + extrinsics_root
        + encode_compact(len(digest_items))
        + b"".join(digest_items)
    )


def pre_runtime_item(engine: bytes, payload: bytes) -> bytes:
    return b"\x06" + engine + encode_compact(len(payload)) + payload


def encode_avail_header(header: dict[str, Any]) -> bytes:
    """Avail's header: the standard fields, then ``extension`` (HeaderExtension::V3, index 2)."""
    digest = [hx(item) for item in header["digest"]["logs"]]
    v3 = header["extension"]["V3"]
    lookup, commitment = v3["appLookup"], v3["commitment"]
    if lookup["index"]:
        raise NotImplementedError("the vectors carry no app lookup entries; encode them if needed")
    extension = (
        b"\x02"
        + encode_compact(lookup["size"])
        + encode_compact(0)
        + encode_compact(commitment["rows"])
        + encode_compact(commitment["cols"])
        + encode_compact(len(commitment["commitment"]))
        + bytes(commitment["commitment"])
        + hx(commitment["dataRoot"])
    )
    return (
        encode_header(
            hx(header["parentHash"]),
            int(header["number"]),
            hx(header["stateRoot"]),
            hx(header["extrinsicsRoot"]),
            tuple(digest),
        )
        + extension
    )


def avail_ancestry(header: dict[str, Any]) -> AncestryHeader:
    return AncestryHeader(
        hash=blake2_256(encode_avail_header(header)),
        parent_hash=hx(header["parentHash"]),
        number=int(header["number"]),
    )


def load_substrate_vector(name: str) -> Any:
    return json.loads((vectors_dir() / "substrate" / name).read_text())


@dataclass(frozen=True)
class Vote:
    target_hash: bytes
    target_number: int
    signature: bytes
    authority_id: bytes


def encode_justification(
    round_number: int,
    target_hash: bytes,
    target_number: int,
    votes: list[Vote],
    headers: list[bytes],
) -> bytes:
    return b"".join(
        [
            round_number.to_bytes(8, "little"),
            target_hash,
            target_number.to_bytes(4, "little"),
            encode_compact(len(votes)),
            *(
                v.target_hash + v.target_number.to_bytes(4, "little") + v.signature + v.authority_id
                for v in votes
            ),
            encode_compact(len(headers)),
            *headers,
        ]
    )


def signing_keys(count: int, salt: int = 0) -> list[SigningKey]:
    return [SigningKey(blake2_256(bytes([salt]) + i.to_bytes(4, "little"))) for i in range(count)]


def sign_vote(
    key: SigningKey, target_hash: bytes, target_number: int, round_number: int, set_id: int
) -> Vote:
    message = precommit_message(target_hash, target_number, round_number, set_id)
    return Vote(target_hash, target_number, key.sign(message).signature, bytes(key.verify_key))


@dataclass(frozen=True)
class SignedFork:
    """A commit target T (#100) with a child A (#101) and grandchild B (#102), and three of four
    authorities voting for T, A and B: exactly the weight needed (3 * 3 > 4 * 2), and every
    header and every vote needed for it."""

    keys: list[SigningKey]
    authorities: list[tuple[bytes, int]]
    set_id: int
    round_number: int
    target_hash: bytes
    target_number: int
    headers: list[bytes]
    votes: list[Vote]

    def encoded(self) -> bytes:
        return encode_justification(
            self.round_number, self.target_hash, self.target_number, self.votes, self.headers
        )


def signed_fork(set_id: int = 7, round_number: int = 42) -> SignedFork:
    keys = signing_keys(4)
    target_hash = blake2_256(b"block 100")
    header_a = encode_header(target_hash, 101, digest_items=(pre_runtime_item(b"BABE", b"a"),))
    hash_a = blake2_256(header_a)
    header_b = encode_header(hash_a, 102)
    hash_b = blake2_256(header_b)
    targets = [(target_hash, 100), (hash_a, 101), (hash_b, 102)]
    votes = [
        sign_vote(key, h, n, round_number, set_id)
        for key, (h, n) in zip(keys, targets, strict=False)
    ]
    return SignedFork(
        keys=keys,
        authorities=[(bytes(k.verify_key), 1) for k in keys],
        set_id=set_id,
        round_number=round_number,
        target_hash=target_hash,
        target_number=100,
        headers=[header_a, header_b],
        votes=votes,
    )


def avail_authorities(vector: dict[str, Any]) -> list[tuple[bytes, int]]:
    return [(ss58_decode(a), 1) for a in vector["validator_set"]["validator_set"]]


# ---------------------------------------------------------------- header chains with GRANDPA logs


def consensus_item(engine: bytes, payload: bytes) -> bytes:
    return b"\x04" + engine + encode_compact(len(payload)) + payload


def seal_item(engine: bytes, payload: bytes) -> bytes:
    return b"\x05" + engine + encode_compact(len(payload)) + payload


def encode_authorities(authorities: Sequence[tuple[bytes, int]]) -> bytes:
    return encode_compact(len(authorities)) + b"".join(
        key + weight.to_bytes(8, "little") for key, weight in authorities
    )


def scheduled_change_log(authorities: Sequence[tuple[bytes, int]], delay: int) -> bytes:
    return b"\x01" + encode_authorities(authorities) + delay.to_bytes(4, "little")


def forced_change_log(median: int, authorities: Sequence[tuple[bytes, int]], delay: int) -> bytes:
    return (
        b"\x02"
        + median.to_bytes(4, "little")
        + encode_authorities(authorities)
        + delay.to_bytes(4, "little")
    )


def on_disabled_log(index: int) -> bytes:
    return b"\x03" + index.to_bytes(8, "little")


def pause_log(delay: int) -> bytes:
    return b"\x04" + delay.to_bytes(4, "little")


def resume_log(delay: int) -> bytes:
    return b"\x05" + delay.to_bytes(4, "little")


def frnk(log: bytes) -> bytes:
    """A ``DigestItem::Consensus(b"FRNK", log)``."""
    return consensus_item(b"FRNK", log)


def authority_list(
    keys: Sequence[SigningKey], weights: Sequence[int] | None = None
) -> list[tuple[bytes, int]]:
    weights = [1] * len(keys) if weights is None else weights
    return [(bytes(key.verify_key), weight) for key, weight in zip(keys, weights, strict=True)]


def block_header(
    parent_hash: bytes, number: int, extra: tuple[bytes, ...] = (), fork: bytes = b""
) -> bytes:
    """A header shaped like a BABE chain's: a pre-runtime item, ``extra`` items, a seal.
    ``fork`` changes the state root so that siblings at one height differ."""
    return encode_header(
        parent_hash,
        number,
        state_root=blake2_256(b"state" + fork + number.to_bytes(4, "little")),
        digest_items=(
            pre_runtime_item(b"BABE", number.to_bytes(4, "little")),
            *extra,
            seal_item(b"BABE", b"seal" + fork),
        ),
    )


def grow_chain(
    parent: bytes,
    count: int,
    digests: Mapping[int, tuple[bytes, ...]] | None = None,
    fork: bytes = b"",
) -> dict[int, bytes]:
    """``count`` headers after the SCALE header ``parent``, by number; ``digests`` adds items
    to the headers of the given numbers."""
    digests = digests or {}
    chain: dict[int, bytes] = {}
    parent_hash, number = blake2_256(parent), decode_header(parent).number
    for _ in range(count):
        number += 1
        header = block_header(parent_hash, number, digests.get(number, ()), fork)
        chain[number] = header
        parent_hash = blake2_256(header)
    return chain


def justify(
    target: bytes,
    keys: Sequence[SigningKey],
    set_id: int,
    round_number: int = 1,
    extra_votes: Sequence[Vote] = (),
    ancestries: Sequence[bytes] = (),
) -> bytes:
    """A justification for the SCALE header ``target``: each key precommits to it."""
    target_hash, target_number = blake2_256(target), decode_header(target).number
    votes = [sign_vote(key, target_hash, target_number, round_number, set_id) for key in keys]
    return encode_justification(
        round_number, target_hash, target_number, [*votes, *extra_votes], list(ancestries)
    )
