"""Input identity: the fingerprint a file checkpoint carries, and the resume-time check."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from agora.errors import CheckpointError
from agora.sources._builtin import START_OVER, bad_checkpoint

__all__ = [
    "FollowingHash",
    "PrefixHash",
    "TextIdentity",
    "parquet_identity",
    "parse_text_identity",
    "split_identity",
    "verify_parquet",
    "verify_text_prefix",
]

#: Bytes hashed per read while verifying a prefix: big enough that the loop is pure
#: hashing/IO, small enough that memory stays flat on any file size.
VERIFY_CHUNK = 1 << 20

_HASH = "sha256"  # hardware-accelerated on current CPUs (≈1.5 GB/s), and collision-proof


class PrefixHash:
    """A running SHA-256 of a file's bytes from offset 0, fed as a source consumes them."""

    __slots__ = ("_hash", "consumed")

    def __init__(self) -> None:
        self._hash = hashlib.new(_HASH)
        self.consumed = 0

    def update(self, data: bytes) -> None:
        self._hash.update(data)
        self.consumed += len(data)

    def copy(self) -> PrefixHash:
        twin = PrefixHash.__new__(PrefixHash)
        twin._hash = self._hash.copy()
        twin.consumed = self.consumed
        return twin

    def identity(self) -> dict[str, Any]:
        """The JSON value a checkpoint stores under ``"input"``."""
        return {"consumed": self.consumed, _HASH: self._hash.hexdigest()}


@dataclass(frozen=True)
class TextIdentity:
    """A validated ``"input"`` checkpoint field: the first ``consumed`` bytes hash to ``digest``."""

    consumed: int
    digest: str


def _legacy(source_name: str, path: str) -> CheckpointError:
    return CheckpointError(
        f"source {source_name!r}: the checkpoint for {path!r} does not identify the input it "
        f"was taken on (it was written by an older version of agora), so resuming could "
        f"silently skip or repeat records if the file changed since; it is not trusted — "
        f"{START_OVER}"
    )


def split_identity(
    source_name: str, path: str, value: Any, expected: str
) -> tuple[dict[str, Any], Any]:
    """``(position fields, raw "input" field)`` of a checkpoint value.

    A mapping without ``"input"`` is a checkpoint from before inputs were fingerprinted:
    refused (fail closed) with instructions, never trusted.
    """
    if not isinstance(value, Mapping):
        raise bad_checkpoint(source_name, value, expected)
    if "input" not in value:
        raise _legacy(source_name, path)
    fields = {k: v for k, v in value.items() if k != "input"}
    return fields, value["input"]


def parse_text_identity(source_name: str, value: Any, raw: Any) -> TextIdentity:
    expected = f'an "input" field {{"consumed": <int >= 0>, "{_HASH}": <hex digest>}}'
    if not isinstance(raw, Mapping) or set(raw) != {"consumed", _HASH}:
        raise bad_checkpoint(source_name, value, expected)
    consumed, digest = raw["consumed"], raw[_HASH]
    if (
        not isinstance(consumed, int) or isinstance(consumed, bool) or consumed < 0
        or not isinstance(digest, str) or len(digest) != 64
    ):
        raise bad_checkpoint(source_name, value, expected)
    return TextIdentity(consumed, digest)


def verify_text_prefix(
    source_name: str, path: str, fh: IO[bytes], identity: TextIdentity, resume_at: int
) -> PrefixHash:
    """Check that ``fh`` still starts with the bytes the checkpoint consumed; return the
    running hash at ``resume_at`` (``<= identity.consumed``) for the read that follows.

    Growth is allowed only as an append after the consumed prefix: the prefix must hash
    the same, and if it does not end a line, the appended bytes must start a new one (else
    the last consumed line itself was extended). Cost: one sequential read and SHA-256 of
    the prefix (≈1.5 GB/s when the file is in the page cache). Raises ``CheckpointError``
    naming the file, what differs, and how to start over.
    """
    size = os.fstat(fh.fileno()).st_size
    where = f"source {source_name!r}: cannot resume over {path!r}"
    if size < identity.consumed:
        raise CheckpointError(
            f"{where}: the checkpoint covers its first {identity.consumed} bytes but the file "
            f"now has {size}; it was truncated or replaced since the checkpoint was taken — "
            f"restore the original file, or {START_OVER}"
        )
    running = PrefixHash()
    fh.seek(0)
    at_resume: PrefixHash | None = running.copy() if resume_at == 0 else None
    last = b""
    while running.consumed < identity.consumed:
        stop = resume_at if running.consumed < resume_at else identity.consumed
        chunk = fh.read(min(VERIFY_CHUNK, stop - running.consumed))
        if not chunk:  # the file shrank while we read it
            break
        running.update(chunk)
        last = chunk[-1:]
        if running.consumed == resume_at:
            at_resume = running.copy()
    if running.consumed != identity.consumed or running.identity()[_HASH] != identity.digest:
        raise CheckpointError(
            f"{where}: its first {identity.consumed} bytes (the part the checkpoint already "
            f"consumed) differ from the file the checkpoint was taken on; it was replaced or "
            f"edited — only appending after the consumed part is allowed. Restore the "
            f"original file, or {START_OVER}"
        )
    if size > identity.consumed and identity.consumed > 0 and last != b"\n":
        following = fh.read(1)
        if following not in (b"\n", b"\r"):
            raise CheckpointError(
                f"{where}: the last line the checkpoint consumed (it had no line end) was "
                f"extended since — appended data must start on a new line. Restore the "
                f"original file, or {START_OVER}"
            )
    assert at_resume is not None, "resume_at must not be past the consumed prefix"
    fh.seek(resume_at)
    return at_resume


# -- Parquet --------------------------------------------------------------------------

_PARQUET_TAIL = 8  # 4-byte little-endian footer length + b"PAR1"


def parquet_identity(source_name: str, path: str, fh: IO[bytes]) -> dict[str, Any]:
    """``{"size", "footer_sha256"}`` of a Parquet file: its size and the hash of its footer
    (the file metadata: schema, row groups with their offsets, sizes and statistics)."""
    size = os.fstat(fh.fileno()).st_size
    if size < 12:
        return {"size": size, "footer_" + _HASH: ""}  # not Parquet; opening it will say so
    fh.seek(size - _PARQUET_TAIL)
    tail = fh.read(_PARQUET_TAIL)
    length = int.from_bytes(tail[:4], "little")
    start = max(0, size - _PARQUET_TAIL - length)
    fh.seek(start)
    footer = fh.read(size - start)
    return {"size": size, "footer_" + _HASH: hashlib.new(_HASH, footer).hexdigest()}


def verify_parquet(
    source_name: str, path: str, value: Any, recorded: Any, now: dict[str, Any]
) -> None:
    """Refuse to resume when the Parquet file's size or footer differ from the checkpoint's."""
    if not isinstance(recorded, Mapping) or set(recorded) != set(now):
        raise bad_checkpoint(
            source_name, value, f'an "input" field {{"size": <int>, "footer_{_HASH}": <hex>}}'
        )
    if dict(recorded) != now:
        what = (
            f"its size changed from {recorded['size']} to {now['size']} bytes"
            if recorded["size"] != now["size"]
            else "its footer (schema and row-group metadata) changed"
        )
        raise CheckpointError(
            f"source {source_name!r}: cannot resume over {path!r}: {what} since the checkpoint "
            f"was taken — the file was replaced or rewritten. Restore the original file, or "
            f"{START_OVER}"
        )


class FollowingHash:
    """The fingerprint of a file that is read by position, for checkpoints at any of them.

    ``current`` follows the records as they are read (``commit``: from memory when their
    bytes are all there, else from the file with ``pread``, which never moves the reader).
    ``at(byte)`` gives the hash of the first ``byte`` bytes: ``current`` itself, or — for a
    position inside the last batch — a copy started from the hash at that batch's start.
    """

    __slots__ = ("_fd", "batch", "boundary", "current", "final")

    def __init__(self, current: PrefixHash | None = None) -> None:
        self.current = current if current is not None else PrefixHash()
        self.batch = self.current.copy()  # the hash at the start of the last batch
        self.boundary = self.current.copy()  # the hash after the last emitted unit
        self.final: dict[str, Any] | None = None  # kept when the file is closed
        self._fd: int | None = None

    def attach(self, fd: int | None) -> None:
        self._fd = fd

    def identity_at(self, byte: int) -> dict[str, Any]:
        if byte == self.current.consumed:  # the usual case: right after the last record
            return self.current.identity()
        if self.final is not None and byte == self.final["consumed"]:
            return self.final
        return self.at(byte).identity()

    def at(self, byte: int) -> PrefixHash:
        if byte >= self.current.consumed:
            self._pread_into(self.current, byte)
            return self.current
        hasher = self.batch.copy()
        assert hasher.consumed <= byte, "a checkpoint position before the last batch"
        self._pread_into(hasher, byte)
        return hasher

    def commit(self, start: int, end: int, parts: list[bytes]) -> None:
        """The reader moved past a record occupying bytes ``start``..``end``."""
        hasher = self.current
        if hasher.consumed >= end:
            return  # re-read (the header on a resume): already covered
        if hasher.consumed == start and sum(map(len, parts)) == end - start:
            for part in parts:
                hasher.update(part)
        else:
            self._pread_into(hasher, end)

    def mark_unit_end(self, byte: int, *, batch: bool) -> None:
        """A unit ending at ``byte`` was emitted (a batch, or a single record)."""
        if batch:
            self.batch = self.boundary
        self.boundary = self.at(byte).copy()

    def close(self, byte: int) -> None:
        """Keep the fingerprint at ``byte`` (the last position) for after the file closes."""
        self.final = self.at(byte).identity()
        self._fd = None

    def _pread_into(self, hasher: PrefixHash, byte: int) -> None:
        if hasher.consumed >= byte:
            return
        assert self._fd is not None, "the file is closed"
        while hasher.consumed < byte:
            chunk = os.pread(self._fd, min(VERIFY_CHUNK, byte - hasher.consumed), hasher.consumed)
            if not chunk:
                break
            hasher.update(chunk)
