"""Where attesters publish signatures and the relayer collects them.

The store is not trusted: the relayer recovers every signer itself and counts only distinct
committee members over the digest it computed. ``CheckpointStore`` is the seam for other
backends (MQTT, object storage); ``DirectoryCheckpointStore`` is the embedded one, a directory
per origin domain and block, one file per attester holding its signatures over every message of
that block. Per block rather than per message: an attester pays one durable write for a whole
block, and the relayer reads a block once for all of its messages.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import msgspec

__all__ = ["Attestation", "CheckpointStore", "DirectoryCheckpointStore"]


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


# msgpack, not JSON: the entries are mostly bytes, which JSON would carry as base64.
_SUFFIX = ".msgpack"
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_BlockFile)


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
        messages = []
        for att in attestations:
            if (att.origin_domain, att.origin_block_hash, att.signer) != (
                origin_domain,
                block_hash,
                signer,
            ):
                # The file keeps these once: an odd one out would be published as something
                # its signature does not cover.
                raise ValueError(
                    f"attestation of message 0x{att.message_id.hex()} is for domain "
                    f"{att.origin_domain}, block 0x{att.origin_block_hash.hex()}, signer "
                    f"0x{att.signer.hex()}; put_block was called for domain {origin_domain}, "
                    f"block 0x{block_hash.hex()}, signer 0x{signer.hex()}"
                )
            messages.append(_Signed(att.message_id, att.destination_domain, att.signature))
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
