"""Input identity: the fingerprint a file checkpoint carries, and the resume-time check."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from agora.errors import CheckpointError
from agora.sources._builtin import START_OVER, bad_checkpoint

__all__ = [
    "EndsIdentity",
    "FollowingHash",
    "PrefixHash",
    "SharedPrefixHash",
    "TextIdentity",
    "ends_identity",
    "hash_prefix",
    "parquet_identity",
    "parse_any_text_identity",
    "parse_text_identity",
    "split_identity",
    "verify_ends",
    "verify_parquet",
    "verify_text_prefix",
]

#: Bytes hashed per read while verifying a prefix: big enough that the loop is pure
#: hashing/IO, small enough that memory stays flat on any file size.
VERIFY_CHUNK = 1 << 20

_HASH = "sha256"  # hardware-accelerated on current CPUs (≈1.5 GB/s), and collision-proof

#: Bytes hashed at each end of the consumed prefix by the ends check: a few pages, so the
#: check costs two small reads whatever the file size, yet covers the header and the
#: first rows, and the rows just before the resume point, whole.
ENDS_WINDOW = 64 << 10


class PrefixHash:
    """A running SHA-256 of a file's bytes from offset 0, fed as a source consumes them.

    ``hashing=False`` only counts the bytes (``consumed``), for a source whose checkpoint
    identifies its input by its ends instead (``ends_identity``); ``identity()`` then
    must not be called. Not thread-safe: a hash fed on one thread while another takes
    fingerprints must be :meth:`shared`."""

    __slots__ = ("_hash", "_on", "consumed")

    def __init__(self, *, hashing: bool = True, consumed: int = 0) -> None:
        self._hash = hashlib.new(_HASH)
        self._on = hashing
        self.consumed = consumed

    def update(self, data: bytes) -> None:
        if self._on:
            self._hash.update(data)
        self.consumed += len(data)

    def copy(self) -> PrefixHash:
        twin = PrefixHash.__new__(PrefixHash)
        twin._hash, twin._on, twin.consumed = self._hash.copy(), self._on, self.consumed
        return twin

    def identity(self) -> dict[str, Any]:
        """The JSON value a checkpoint stores under ``"input"``."""
        assert self._on, "a byte counter has no hash"
        return {"consumed": self.consumed, _HASH: self._hash.hexdigest()}

    def shared(self) -> SharedPrefixHash:
        """This hash, continued as one that a thread may feed while another reads it."""
        twin = SharedPrefixHash.__new__(SharedPrefixHash)
        twin._hash, twin._on, twin.consumed = self._hash.copy(), self._on, self.consumed
        twin._lock = threading.Lock()
        return twin


class SharedPrefixHash(PrefixHash):
    """A :class:`PrefixHash` whose count and hash are updated and read together, for a
    hash fed on one thread (pyarrow reads a CSV screen on its own) while another takes
    fingerprints: one must never name the bytes before a chunk with the hash after it."""

    __slots__ = ("_lock",)
    _lock: threading.Lock

    def update(self, data: bytes) -> None:
        with self._lock:
            super().update(data)

    def copy(self) -> PrefixHash:
        with self._lock:
            return super().copy()

    def identity(self) -> dict[str, Any]:
        with self._lock:
            return super().identity()


@dataclass(frozen=True)
class TextIdentity:
    """A validated ``"input"`` checkpoint field: the first ``consumed`` bytes hash to ``digest``."""

    consumed: int
    digest: str


@dataclass(frozen=True)
class EndsIdentity:
    """A validated ends-check ``"input"`` field: the file had at least ``consumed`` bytes,
    the first ``ENDS_WINDOW`` of them hashed to ``head`` and the last to ``tail``."""

    consumed: int
    head: str
    tail: str


def _window_hash(fd: int, start: int, end: int) -> str:
    data = os.pread(fd, end - start, start) if end > start else b""
    return hashlib.new(_HASH, data).hexdigest()


def ends_identity(fd: int | None, consumed: int, head: str | None = None) -> dict[str, Any]:
    """The ends-check ``"input"`` value after ``consumed`` bytes of the file open as ``fd``:
    ``{"consumed", "head_sha256", "tail_sha256"}``. Reads at most two windows with
    ``pread`` (the reader's position does not move); ``head`` reuses a head already hashed
    once ``consumed`` covers the whole window."""
    window = min(ENDS_WINDOW, consumed)
    if fd is None:  # nothing read yet (or the file is closed at position 0)
        assert consumed == 0, "the ends of a consumed prefix need the open file"
        return {"consumed": 0, "head_" + _HASH: _EMPTY, "tail_" + _HASH: _EMPTY}
    if head is None or window < ENDS_WINDOW:
        head = _window_hash(fd, 0, window)
    return {"consumed": consumed, "head_" + _HASH: head,
            "tail_" + _HASH: _window_hash(fd, consumed - window, consumed)}


_EMPTY = hashlib.new(_HASH, b"").hexdigest()


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


def parse_any_text_identity(
    source_name: str, value: Any, raw: Any
) -> TextIdentity | EndsIdentity:
    """A whole-prefix fingerprint (``TextIdentity``) or an ends-check one (``EndsIdentity``)."""
    keys = {"consumed", "head_" + _HASH, "tail_" + _HASH}
    if not isinstance(raw, Mapping) or set(raw) != keys:
        return parse_text_identity(source_name, value, raw)
    consumed, head, tail = raw["consumed"], raw["head_" + _HASH], raw["tail_" + _HASH]
    if (
        not isinstance(consumed, int) or isinstance(consumed, bool) or consumed < 0
        or not all(isinstance(h, str) and len(h) == 64 for h in (head, tail))
    ):
        raise bad_checkpoint(source_name, value, f'an "input" field {{"consumed": <int >= 0>, '
                                                 f'"head_{_HASH}": <hex>, "tail_{_HASH}": <hex>}}')
    return EndsIdentity(consumed, head, tail)


def _where(source_name: str, path: str) -> str:
    return f"source {source_name!r}: cannot resume over {path!r}"


def _check_size(source_name: str, path: str, size: int, consumed: int) -> None:
    if size < consumed:
        raise CheckpointError(
            f"{_where(source_name, path)}: the checkpoint covers its first {consumed} bytes "
            f"but the file now has {size}; it was truncated or replaced since the checkpoint "
            f"was taken — restore the original file, or {START_OVER}"
        )


def _changed(source_name: str, path: str, consumed: int, what: str) -> CheckpointError:
    return CheckpointError(
        f"{_where(source_name, path)}: its first {consumed} bytes (the part the checkpoint "
        f"already consumed) differ from the file the checkpoint was taken on{what}; it was "
        f"replaced or edited — only appending after the consumed part is allowed. Restore "
        f"the original file, or {START_OVER}"
    )


def _check_line_continues(
    source_name: str, path: str, fd: int, size: int, consumed: int
) -> None:
    """If the consumed prefix does not end a line, appended bytes must start a new one."""
    if size > consumed > 0 and os.pread(fd, 1, consumed - 1) != b"\n":
        if os.pread(fd, 1, consumed) not in (b"\n", b"\r"):
            raise CheckpointError(
                f"{_where(source_name, path)}: the last line the checkpoint consumed (it had "
                f"no line end) was extended since — appended data must start on a new line. "
                f"Restore the original file, or {START_OVER}"
            )


def verify_ends(source_name: str, path: str, fh: IO[bytes], identity: EndsIdentity) -> None:
    """The ends check: the file still has the consumed bytes, their first and last
    ``ENDS_WINDOW`` bytes hash as recorded, and an unfinished last line was not extended.

    Cost: two reads of ``ENDS_WINDOW`` bytes, whatever the file size. It catches a file
    truncated, replaced or rewritten (its header, first rows or the rows before the resume
    point change, or their offsets move), and an extended last line; it cannot see an edit
    that keeps the length of the consumed part and leaves both windows alone — the whole-
    prefix check (``verify_text_prefix``) does, at the cost of reading the whole prefix.
    """
    fd = fh.fileno()
    size = os.fstat(fd).st_size
    _check_size(source_name, path, size, identity.consumed)
    now = ends_identity(fd, identity.consumed)
    if now["head_" + _HASH] != identity.head:
        raise _changed(source_name, path, identity.consumed, " (its start differs)")
    if now["tail_" + _HASH] != identity.tail:
        raise _changed(source_name, path, identity.consumed,
                       " (the bytes just before the resume point differ)")
    _check_line_continues(source_name, path, fd, size, identity.consumed)


def hash_prefix(fh: IO[bytes], end: int) -> PrefixHash:
    """The running hash of the first ``end`` bytes of ``fh`` (read with ``pread``)."""
    running = PrefixHash()
    fd = fh.fileno()
    while running.consumed < end:
        chunk = os.pread(fd, min(VERIFY_CHUNK, end - running.consumed), running.consumed)
        if not chunk:
            break
        running.update(chunk)
    return running


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
    _check_size(source_name, path, size, identity.consumed)
    running = PrefixHash()
    fh.seek(0)
    at_resume: PrefixHash | None = running.copy() if resume_at == 0 else None
    while running.consumed < identity.consumed:
        stop = resume_at if running.consumed < resume_at else identity.consumed
        chunk = fh.read(min(VERIFY_CHUNK, stop - running.consumed))
        if not chunk:  # the file shrank while we read it
            break
        running.update(chunk)
        if running.consumed == resume_at:
            at_resume = running.copy()
    if running.consumed != identity.consumed or running.identity()[_HASH] != identity.digest:
        raise _changed(source_name, path, identity.consumed, "")
    _check_line_continues(source_name, path, fh.fileno(), size, identity.consumed)
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
