"""Where attesters publish signatures and the relayer collects them.

The store is not trusted: the relayer recovers every signer itself and counts only distinct
committee members over the digest it computed. ``CheckpointStore`` is the seam for other
backends (MQTT, object storage); ``DirectoryCheckpointStore`` is the embedded one, a directory
per origin domain and block, one file per attester holding its signatures over every message of
that block. Per block rather than per message: an attester pays one durable write for a whole
block, and the relayer reads a block once for all of its messages. ``prune`` removes the
directories of blocks that no kept message needs any more (retention).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec

__all__ = ["Attestation", "CheckpointPruneReport", "CheckpointStore", "DirectoryCheckpointStore"]


class Attestation(msgspec.Struct, frozen=True, kw_only=True):
    """One attester's signature over one message's digest for one destination."""

    signer: bytes
    signature: bytes
    origin_domain: int
    message_id: bytes
    origin_block_hash: bytes
    destination_domain: int


class CheckpointStore(Protocol):
    def put_block(
        self,
        origin_domain: int,
        block_hash: bytes,
        signer: bytes,
        attestations: Sequence[Attestation],
    ) -> None:
        """Publish ``signer``'s attestations of the messages of one origin block, replacing
        what it published for that block before: an attester that restarts re-scans the block
        and publishes the same again. Raises ``ValueError`` if an attestation names another
        domain, block or signer, ``OSError`` if the store cannot be written."""
        ...

    def get_block(self, origin_domain: int, block_hash: bytes) -> list[Attestation]:
        """Everything any attester published for the block; possibly garbage, always
        re-verified. What cannot be read or decoded is skipped; raises nothing for it."""
        ...


class _Signed(msgspec.Struct, frozen=True, array_like=True):
    """One message's entry in a block file. Stored: reordering the fields changes the format."""

    message_id: bytes
    destination_domain: int
    signature: bytes


class _BlockFile(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="format", tag="attestations.block.v1"
):
    """One attester's file for one block: what the block's attestations share, once. Stored:
    the tag names the format, so that a future one cannot be mistaken for this one."""

    signer: bytes
    origin_domain: int
    origin_block_hash: bytes
    messages: list[_Signed]


@dataclass(frozen=True, slots=True)
class CheckpointPruneReport:
    """What ``DirectoryCheckpointStore.prune`` removed (or, dry, would remove)."""

    blocks: int = 0  # block directories
    files: int = 0  # the attesters' files in them
    size: int = 0  # their bytes
    failed: int = 0  # block directories that could not be removed (a permission): left as they were


# msgpack, not JSON: the entries are mostly bytes, which JSON would carry as base64.
_SUFFIX = ".msgpack"
# Candidate blocks per question to ``prune``'s ``in_use`` (one ledger query each).
_PRUNE_ASK = 500
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_BlockFile)


def _entries(
    origin_domain: int,
    block_hash: bytes,
    signer: bytes,
    attestations: Sequence[Attestation],
    caller: str,
) -> list[_Signed]:
    """The block file's entries for ``attestations``, all of which must be ``signer``'s over
    ``block_hash`` of ``origin_domain``: the file keeps those once, so an odd one out would be
    published as something its signature does not cover (``ValueError``)."""
    entries = []
    for att in attestations:
        if (att.origin_domain, att.origin_block_hash, att.signer) != (
            origin_domain,
            block_hash,
            signer,
        ):
            raise ValueError(
                f"attestation of message 0x{att.message_id.hex()} is for domain "
                f"{att.origin_domain}, block 0x{att.origin_block_hash.hex()}, signer "
                f"0x{att.signer.hex()}; {caller} was called for domain {origin_domain}, "
                f"block 0x{block_hash.hex()}, signer 0x{signer.hex()}"
            )
        entries.append(_Signed(att.message_id, att.destination_domain, att.signature))
    return entries


class DirectoryCheckpointStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _dir(self, origin_domain: int, block_hash: bytes) -> Path:
        return self.root / str(origin_domain) / block_hash.hex()

    def put_block(
        self,
        origin_domain: int,
        block_hash: bytes,
        signer: bytes,
        attestations: Sequence[Attestation],
    ) -> None:
        messages = _entries(origin_domain, block_hash, signer, attestations, "put_block")
        self._write(origin_domain, block_hash, signer, messages)

    def merge_block(
        self,
        origin_domain: int,
        block_hash: bytes,
        signer: bytes,
        attestations: Sequence[Attestation],
    ) -> int:
        """Add ``signer``'s attestations of one origin block to what the store holds for it
        (the relayer's copy of what reaches it piecemeal, from the bus), keeping what is there;
        an entry already held is not added twice. Returns how many entries were new (nothing
        is written when none is). Raises ``ValueError`` as ``put_block`` does, ``OSError`` if
        the store cannot be read or written (an unreadable file is not taken for an absent
        one: that would drop what it holds). One writer per store: the read-merge-write is not
        atomic against another process merging into the same file."""
        arriving = _entries(origin_domain, block_hash, signer, attestations, "merge_block")
        target = self._dir(origin_domain, block_hash) / f"{signer.hex()}{_SUFFIX}"
        held: list[_Signed] = []
        try:
            old = _decoder.decode(target.read_bytes())
        except FileNotFoundError:
            pass  # none yet
        except msgspec.DecodeError:
            # Not a file this store wrote (writes are whole or nothing): replaced by what
            # arrives, which was verified.
            pass
        else:
            if (old.signer, old.origin_domain, old.origin_block_hash) == (
                signer,
                origin_domain,
                block_hash,
            ):
                held = list(old.messages)
        known = set(held)
        added: list[_Signed] = []
        for entry in arriving:
            if entry not in known:
                known.add(entry)
                added.append(entry)
        if added:
            self._write(origin_domain, block_hash, signer, held + added)
        return len(added)

    def _write(
        self, origin_domain: int, block_hash: bytes, signer: bytes, messages: list[_Signed]
    ) -> None:
        data = _encoder.encode(
            _BlockFile(
                signer=signer,
                origin_domain=origin_domain,
                origin_block_hash=block_hash,
                messages=messages,
            )
        )
        folder = self._dir(origin_domain, block_hash)
        grown = _make_dirs(folder)
        target = folder / f"{signer.hex()}{_SUFFIX}"
        # Write then rename: a reader never sees half a file, a crash never leaves one.
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        # The attester moves its cursor past the block once this returns and never publishes
        # it again, so the file must survive a power cut from here on. Its contents are synced;
        # its name is an entry in the block directory (and the block directory one in the
        # domain directory), which only an fsync of the directory makes durable.
        for directory in (folder, *grown):
            _fsync_dir(directory)

    def get_block(self, origin_domain: int, block_hash: bytes) -> list[Attestation]:
        folder = self._dir(origin_domain, block_hash)
        out: list[Attestation] = []
        try:
            paths = sorted(folder.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return out  # nobody has published for this block yet
        for path in paths:
            if path.name.startswith(".") or path.suffix != _SUFFIX:
                continue
            try:
                block = _decoder.decode(path.read_bytes())
            except (OSError, msgspec.DecodeError):
                continue  # unreadable or forged file: it simply does not count
            out.extend(
                Attestation(
                    signer=block.signer,
                    signature=entry.signature,
                    origin_domain=block.origin_domain,
                    message_id=entry.message_id,
                    origin_block_hash=block.origin_block_hash,
                    destination_domain=entry.destination_domain,
                )
                for entry in block.messages
            )
        return out

    def prune(
        self,
        older_than: float,
        *,
        in_use: Callable[[int, Sequence[bytes]], Collection[bytes]],
        domains: Collection[int] | None = None,
        dry_run: bool = False,
        stop: threading.Event | None = None,
    ) -> CheckpointPruneReport:
        """Remove the directories of origin blocks that nobody needs any more, and with them
        every attester's file for the block. A block directory goes when both hold:

        - none of its files (nor the directory itself) was written at or after
          ``older_than`` (a ``time.time()`` value): an attester that publishes a block again
          keeps it for another window;
        - ``in_use(domain, block_hashes)``, asked for up to 500 candidate blocks at a time,
          does not return it. The relayer answers with the blocks of which its ledger holds a
          message it keeps (``Ledger.blocks_kept``): so a block with a message that is not
          final never loses its files, and a block whose messages were all pruned loses them.

        A block the ledger holds no message of at all (one a reorg replaced, one whose
        messages another relayer serves, one the relayer has not reached yet) goes by the
        first rule alone, once its files are older than the window: a relayer that falls
        further behind its attesters than the retention window loses the attestations of the
        blocks it has not read yet (their messages then wait in ``verified``).

        Only the domains in ``domains`` are looked at (every domain when None). Anything that
        is not a block directory of this store's layout (a stray file, a name that is not a
        block hash, a directory inside a block's) is left alone, and so is a directory that
        gains a file while it is removed. ``dry_run`` counts and removes nothing; ``stop``,
        once set, ends the walk between two blocks. A block that cannot be removed (a
        permission, say) is counted in ``failed`` and left; raises ``OSError`` only when the
        store's root cannot be listed (an absent root holds nothing to prune)."""
        tally = _Tally()
        try:
            roots = sorted(os.scandir(self.root), key=lambda entry: entry.name)
        except FileNotFoundError:
            return tally.report()
        for domain_entry in roots:
            if not (domain_entry.name.isdigit() and domain_entry.is_dir(follow_symlinks=False)):
                continue
            domain = int(domain_entry.name)
            if domains is not None and domain not in domains:
                continue
            candidates: list[_StaleBlock] = []
            with os.scandir(domain_entry.path) as blocks:
                for entry in blocks:
                    if stop is not None and stop.is_set():
                        return tally.report()
                    stale = _stale_block(entry, older_than)
                    if stale is None:
                        continue
                    candidates.append(stale)
                    if len(candidates) == _PRUNE_ASK:
                        _prune_blocks(domain, candidates, in_use, dry_run, tally)
                        candidates = []
            if candidates and not (stop is not None and stop.is_set()):
                _prune_blocks(domain, candidates, in_use, dry_run, tally)
        return tally.report()


def _make_dirs(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing ancestors; return the directories that gained an
    entry, which must be synced for the new ones to survive a crash."""
    missing: list[Path] = []
    probe = folder
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    folder.mkdir(parents=True, exist_ok=True)
    # The domain directory gains an entry for (almost) every block; it is synced even when
    # another attester created the block directory first, since that attester may not have
    # synced it yet when this one returns and moves its cursor on.
    grown = {path.parent for path in missing} | {folder.parent}
    return sorted(grown, key=lambda path: len(path.parts), reverse=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class _StaleBlock:
    block_hash: bytes
    path: str
    files: tuple[tuple[str, int], ...]  # (path, size)


@dataclass(slots=True)
class _Tally:
    blocks: int = 0
    files: int = 0
    size: int = 0
    failed: int = 0

    def report(self) -> CheckpointPruneReport:
        return CheckpointPruneReport(
            blocks=self.blocks, files=self.files, size=self.size, failed=self.failed
        )


def _stale_block(entry: os.DirEntry[str], older_than: float) -> _StaleBlock | None:
    """The block directory at ``entry`` with its files, if it is one of this store's layout and
    nothing in it was written since ``older_than``."""
    try:
        block_hash = bytes.fromhex(entry.name)
    except ValueError:
        return None
    if block_hash.hex() != entry.name:
        return None  # not a name put_block writes (upper case, say): not ours to remove
    files: list[tuple[str, int]] = []
    try:
        if not entry.is_dir(follow_symlinks=False):
            return None
        if entry.stat(follow_symlinks=False).st_mtime >= older_than:
            return None
        with os.scandir(entry.path) as found:
            for item in found:
                if not item.is_file(follow_symlinks=False):
                    return None
                stat = item.stat(follow_symlinks=False)
                if stat.st_mtime >= older_than:
                    return None
                files.append((item.path, stat.st_size))
    except FileNotFoundError:
        return None  # removed meanwhile (another prune)
    return _StaleBlock(block_hash=block_hash, path=entry.path, files=tuple(files))


def _prune_blocks(
    domain: int,
    candidates: Sequence[_StaleBlock],
    in_use: Callable[[int, Sequence[bytes]], Collection[bytes]],
    dry_run: bool,
    tally: _Tally,
) -> None:
    needed = set(in_use(domain, [block.block_hash for block in candidates]))
    for block in candidates:
        if block.block_hash in needed:
            continue
        if not dry_run:
            try:
                for path, _ in block.files:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                os.rmdir(block.path)
            except FileNotFoundError:
                continue  # another prune got there first
            except OSError as exc:
                # A file written meanwhile: the attester published the block again; it stays.
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    tally.failed += 1
                continue
        tally.blocks += 1
        tally.files += len(block.files)
        tally.size += sum(size for _, size in block.files)
