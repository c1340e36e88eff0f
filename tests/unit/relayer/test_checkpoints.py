"""relayer.checkpoints: one file per attester and origin block, replaced whole, read by anyone.

The store is untrusted, so reading must survive whatever lies in a block's directory; writing
must leave either the old file or the new one, never half of one, durably.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relayer import checkpoints
from relayer.checkpoints import Attestation, DirectoryCheckpointStore

DOMAIN = 1000
BLOCK = b"\xb1" * 32
OTHER_BLOCK = b"\xb2" * 32
SIGNER = b"\x51" * 20
OTHER_SIGNER = b"\x52" * 20


def attestation(
    n: int, *, signer: bytes = SIGNER, block: bytes = BLOCK, destination: int = 2000
) -> Attestation:
    return Attestation(
        signer=signer,
        signature=bytes([n % 256]) * 65,
        origin_domain=DOMAIN,
        message_id=n.to_bytes(32, "big"),
        origin_block_hash=block,
        destination_domain=destination,
    )


def batch(count: int, *, signer: bytes = SIGNER, block: bytes = BLOCK) -> list[Attestation]:
    return [attestation(n, signer=signer, block=block) for n in range(count)]


@pytest.fixture
def store(tmp_path: Path) -> DirectoryCheckpointStore:
    return DirectoryCheckpointStore(tmp_path / "checkpoints")


def block_dir(store: DirectoryCheckpointStore, block: bytes = BLOCK) -> Path:
    return store.root / str(DOMAIN) / block.hex()


def test_published_block_reads_back_as_the_same_attestations(
    store: DirectoryCheckpointStore,
) -> None:
    published = [*batch(3), attestation(7, destination=3000)]
    store.put_block(DOMAIN, BLOCK, SIGNER, published)
    assert store.get_block(DOMAIN, BLOCK) == published
    assert [p.name for p in block_dir(store).iterdir()] == [SIGNER.hex() + ".msgpack"]


def test_a_block_nobody_published_reads_as_empty(store: DirectoryCheckpointStore) -> None:
    assert store.get_block(DOMAIN, BLOCK) == []
    store.put_block(DOMAIN, BLOCK, SIGNER, batch(1))
    assert store.get_block(DOMAIN, OTHER_BLOCK) == []
    assert store.get_block(DOMAIN + 1, BLOCK) == []


def test_publishing_a_block_again_replaces_the_file_with_the_same_bytes(
    store: DirectoryCheckpointStore,
) -> None:
    # An attester that restarts re-scans the block and publishes exactly what it did before.
    store.put_block(DOMAIN, BLOCK, SIGNER, batch(5))
    path = block_dir(store) / (SIGNER.hex() + ".msgpack")
    first = path.read_bytes()
    store.put_block(DOMAIN, BLOCK, SIGNER, batch(5))
    assert path.read_bytes() == first
    assert list(block_dir(store).iterdir()) == [path]  # no temporary file left behind
    assert store.get_block(DOMAIN, BLOCK) == batch(5)


def test_two_signers_of_one_block_are_both_read(store: DirectoryCheckpointStore) -> None:
    mine = batch(3)
    theirs = batch(2, signer=OTHER_SIGNER)
    store.put_block(DOMAIN, BLOCK, SIGNER, mine)
    store.put_block(DOMAIN, BLOCK, OTHER_SIGNER, theirs)
    read = store.get_block(DOMAIN, BLOCK)
    assert sorted(read, key=lambda a: (a.signer, a.message_id)) == [*mine, *theirs]
    assert len(list(block_dir(store).iterdir())) == 2


def test_attestation_of_another_block_or_signer_is_refused_and_nothing_is_written(
    store: DirectoryCheckpointStore,
) -> None:
    # The file holds the block and signer once: the odd one out would be filed as something
    # it does not say.
    for odd in (attestation(9, block=OTHER_BLOCK), attestation(9, signer=OTHER_SIGNER)):
        with pytest.raises(ValueError, match="put_block was called for"):
            store.put_block(DOMAIN, BLOCK, SIGNER, [*batch(2), odd])
    assert store.get_block(DOMAIN, BLOCK) == []


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (OTHER_SIGNER.hex() + ".msgpack", b""),
        (OTHER_SIGNER.hex() + ".msgpack", b"\xc1 not msgpack"),
        (OTHER_SIGNER.hex() + ".msgpack", msgspec.msgpack.encode({"format": "nope"})),
        (
            OTHER_SIGNER.hex() + ".msgpack",
            msgspec.msgpack.encode(
                {
                    "format": "attestations.block.v1",
                    "signer": "not bytes",
                    "origin_domain": DOMAIN,
                    "origin_block_hash": BLOCK,
                    "messages": [],
                }
            ),
        ),
        (OTHER_SIGNER.hex() + ".msgpack", msgspec.msgpack.encode([[1, 2, 3]])),
        (OTHER_SIGNER.hex() + ".json", b"{}"),
    ],
    ids=["empty", "not-msgpack", "unknown-format", "wrong-type", "array", "old-json-file"],
)
def test_garbage_file_in_a_block_directory_is_skipped(
    store: DirectoryCheckpointStore, name: str, content: bytes
) -> None:
    store.put_block(DOMAIN, BLOCK, SIGNER, batch(2))
    (block_dir(store) / name).write_bytes(content)
    assert store.get_block(DOMAIN, BLOCK) == batch(2)


def test_half_written_temporary_file_and_stray_directory_are_skipped(
    store: DirectoryCheckpointStore,
) -> None:
    # What a writer killed between mkstemp and rename leaves behind.
    store.put_block(DOMAIN, BLOCK, SIGNER, batch(2))
    (block_dir(store) / ".tmp-abc123").write_bytes(b"\x82\xa6format")
    (block_dir(store) / "stray.msgpack").mkdir()
    assert store.get_block(DOMAIN, BLOCK) == batch(2)


def test_file_where_the_block_directory_should_be_reads_as_empty(
    store: DirectoryCheckpointStore,
) -> None:
    block_dir(store).parent.mkdir(parents=True)
    block_dir(store).write_bytes(b"not a directory")
    assert store.get_block(DOMAIN, BLOCK) == []


def test_a_thousand_attestations_take_little_more_than_their_bytes(
    store: DirectoryCheckpointStore,
) -> None:
    # 32-byte id + 65-byte signature + a small int each: the block fields are kept once and
    # bytes are not base64'd.
    store.put_block(DOMAIN, BLOCK, SIGNER, batch(1000))
    size = (block_dir(store) / (SIGNER.hex() + ".msgpack")).stat().st_size
    assert size < 1000 * (32 + 65 + 8) + 200


def test_publishing_syncs_the_file_and_every_directory_that_gained_an_entry(
    store: DirectoryCheckpointStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The attester moves its cursor past a block once put_block returns: after a power cut the
    # file must still be reachable by name, not only have its contents on disk.
    synced: list[Path] = []
    monkeypatch.setattr(checkpoints, "_fsync_dir", synced.append)
    store.root.mkdir()
    store.put_block(DOMAIN, BLOCK, SIGNER, batch(1))
    assert synced == [block_dir(store), block_dir(store).parent, store.root]
    synced.clear()
    store.put_block(DOMAIN, OTHER_BLOCK, SIGNER, batch(1, block=OTHER_BLOCK))
    assert synced == [block_dir(store, OTHER_BLOCK), store.root / str(DOMAIN)]
    synced.clear()
    # The block directory exists already (another attester made it): still synced, since
    # that attester may not have synced its parent yet.
    store.put_block(
        DOMAIN, OTHER_BLOCK, OTHER_SIGNER, batch(1, signer=OTHER_SIGNER, block=OTHER_BLOCK)
    )
    assert synced == [block_dir(store, OTHER_BLOCK), store.root / str(DOMAIN)]


_attestations = st.lists(
    st.builds(
        Attestation,
        signer=st.just(SIGNER),
        signature=st.binary(max_size=70),
        origin_domain=st.just(DOMAIN),
        message_id=st.binary(min_size=32, max_size=32),
        origin_block_hash=st.just(BLOCK),
        destination_domain=st.integers(min_value=0, max_value=2**32 - 1),
    ),
    max_size=20,
)


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(published=_attestations)
def test_any_published_block_reads_back_unchanged(
    store: DirectoryCheckpointStore, published: list[Attestation]
) -> None:
    store.put_block(DOMAIN, BLOCK, SIGNER, published)
    assert store.get_block(DOMAIN, BLOCK) == published


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300))
def test_any_bytes_in_a_block_file_never_raise(
    store: DirectoryCheckpointStore, content: bytes
) -> None:
    block_dir(store).mkdir(parents=True, exist_ok=True)
    (block_dir(store) / (OTHER_SIGNER.hex() + ".msgpack")).write_bytes(content)
    for att in store.get_block(DOMAIN, BLOCK):
        assert isinstance(att, Attestation)


# --- retention ----------------------------------------------------------------------------------

DAY = 86_400.0


def aged(
    store: DirectoryCheckpointStore, block: bytes, days: float, *, domain: int = DOMAIN
) -> Path:
    """Publish ``block`` and make everything in its directory ``days`` old."""
    att = msgspec.structs.replace(attestation(1, block=block), origin_domain=domain)
    store.put_block(domain, block, SIGNER, [att])
    folder = store.root / str(domain) / block.hex()
    when = time.time() - days * DAY
    for path in (*folder.iterdir(), folder):
        os.utime(path, (when, when))
    return folder


def nothing_in_use(domain: int, blocks: Sequence[bytes]) -> set[bytes]:
    return set()


def test_prune_removes_old_blocks_nobody_needs_and_keeps_the_rest(
    store: DirectoryCheckpointStore,
) -> None:
    old, needed, young = aged(store, BLOCK, 40), aged(store, OTHER_BLOCK, 40), b"\xb3" * 32
    aged(store, young, 1)
    asked: list[tuple[int, list[bytes]]] = []

    def in_use(domain: int, blocks: Sequence[bytes]) -> set[bytes]:
        asked.append((domain, list(blocks)))
        return {OTHER_BLOCK}

    report = store.prune(time.time() - 30 * DAY, in_use=in_use)

    assert not old.exists()
    assert needed.is_dir() and store.get_block(DOMAIN, OTHER_BLOCK) != []
    assert store.get_block(DOMAIN, young) != []
    assert (report.blocks, report.files, report.failed) == (1, 1, 0)
    assert report.size > 0
    # The young block is not even a candidate: the ledger is asked only about old ones.
    assert [(d, sorted(b)) for d, b in asked] == [(DOMAIN, sorted([BLOCK, OTHER_BLOCK]))]


def test_prune_keeps_a_block_an_attester_published_again_within_the_window(
    store: DirectoryCheckpointStore,
) -> None:
    folder = aged(store, BLOCK, 40)
    store.put_block(DOMAIN, BLOCK, OTHER_SIGNER, [attestation(1, signer=OTHER_SIGNER)])
    report = store.prune(time.time() - 30 * DAY, in_use=nothing_in_use)
    assert report.blocks == 0
    assert len(list(folder.iterdir())) == 2


def test_prune_leaves_alone_what_is_not_a_block_directory_of_its_own(
    store: DirectoryCheckpointStore,
) -> None:
    stray_dir = aged(store, OTHER_BLOCK, 40)
    (stray_dir / "inner").mkdir()
    other_domain = aged(store, BLOCK, 40, domain=77)
    domain_dir = store.root / str(DOMAIN)
    odd_names = [domain_dir / "not-hex", domain_dir / BLOCK.hex().upper(), store.root / "notes"]
    for path in odd_names:
        path.mkdir()
    (domain_dir / "README").write_text("hello")
    old = time.time() - 99 * DAY
    for path in [*odd_names, stray_dir / "inner", domain_dir / "README"]:
        os.utime(path, (old, old))

    report = store.prune(time.time() - 30 * DAY, in_use=nothing_in_use, domains={DOMAIN})

    assert report.blocks == 0
    assert stray_dir.is_dir() and other_domain.is_dir()
    assert all(path.exists() for path in odd_names)
    assert (domain_dir / "README").read_text() == "hello"


def test_prune_dry_run_counts_and_removes_nothing(store: DirectoryCheckpointStore) -> None:
    folders = [aged(store, bytes([n]) * 32, 40) for n in range(3)]
    report = store.prune(time.time() - 30 * DAY, in_use=nothing_in_use, dry_run=True)
    assert (report.blocks, report.files) == (3, 3)
    assert all(folder.is_dir() for folder in folders)
    assert store.prune(time.time() - 30 * DAY, in_use=nothing_in_use) == report


def test_prune_asks_about_blocks_a_bounded_number_at_a_time(
    store: DirectoryCheckpointStore,
) -> None:
    old = time.time() - 40 * DAY
    for n in range(1100):  # laid out by hand: put_block's fsyncs would take seconds
        folder = store.root / str(DOMAIN) / n.to_bytes(32, "big").hex()
        folder.mkdir(parents=True)
        (folder / f"{SIGNER.hex()}.msgpack").write_bytes(b"signed")
        for path in (*folder.iterdir(), folder):
            os.utime(path, (old, old))
    sizes: list[int] = []

    def in_use(domain: int, blocks: Sequence[bytes]) -> set[bytes]:
        sizes.append(len(blocks))
        return set(blocks[:1])

    report = store.prune(time.time() - 30 * DAY, in_use=in_use)
    assert sorted(sizes) == [100, 500, 500]
    assert report.blocks == 1100 - 3
    assert len(list((store.root / str(DOMAIN)).iterdir())) == 3


def test_prune_stops_between_blocks_when_told(store: DirectoryCheckpointStore) -> None:
    folder = aged(store, BLOCK, 40)
    stop = threading.Event()
    stop.set()
    report = store.prune(time.time() - 30 * DAY, in_use=nothing_in_use, stop=stop)
    assert report.blocks == 0 and folder.is_dir()


def test_prune_of_a_store_nobody_wrote_to_finds_nothing(tmp_path: Path) -> None:
    store = DirectoryCheckpointStore(tmp_path / "never-created")
    assert store.prune(time.time(), in_use=nothing_in_use).blocks == 0


# --- merge_block: the relayer's copy of what arrives piecemeal from the bus ----------------------


def test_merge_adds_what_is_new_and_keeps_what_is_there(store: DirectoryCheckpointStore) -> None:
    assert store.merge_block(DOMAIN, BLOCK, SIGNER, batch(3)) == 3
    # Again, with one more and in another order: only the new one is added.
    assert store.merge_block(DOMAIN, BLOCK, SIGNER, [attestation(5), *reversed(batch(3))]) == 1
    assert store.merge_block(DOMAIN, BLOCK, SIGNER, batch(2)) == 0
    assert sorted(store.get_block(DOMAIN, BLOCK), key=lambda a: a.message_id) == [
        *batch(3),
        attestation(5),
    ]
    # Another signer's entries go to its own file.
    assert store.merge_block(DOMAIN, BLOCK, OTHER_SIGNER, batch(1, signer=OTHER_SIGNER)) == 1
    assert len(store.get_block(DOMAIN, BLOCK)) == 5
    with pytest.raises(ValueError, match="merge_block was called for"):
        store.merge_block(DOMAIN, BLOCK, SIGNER, batch(1, signer=OTHER_SIGNER))


def test_merge_replaces_a_garbled_file_but_never_an_unreadable_one(
    store: DirectoryCheckpointStore,
) -> None:
    store.merge_block(DOMAIN, BLOCK, SIGNER, batch(2))
    target = block_dir(store) / f"{SIGNER.hex()}.msgpack"
    target.write_bytes(b"\xc1 not msgpack")
    assert store.merge_block(DOMAIN, BLOCK, SIGNER, [attestation(9)]) == 1
    assert store.get_block(DOMAIN, BLOCK) == [attestation(9)]
    # A file that cannot be read (here a directory in its place) is not taken for an absent
    # one, which would drop what it holds.
    target.unlink()
    target.mkdir()
    with pytest.raises(OSError):
        store.merge_block(DOMAIN, BLOCK, SIGNER, [attestation(10)])
