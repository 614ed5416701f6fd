"""Batch transport between the main process and its workers: shared-memory slots and codecs.

A *slot* is a file in ``/dev/shm`` (a tmpfs, so it is RAM) that both sides map. The main
process creates, grows and unlinks every slot; a worker only maps the paths it is told.
Each worker owns two: an *input* slot the main process writes a batch into, and an
*output* slot the worker writes its result into. The pipe between them then carries
only small control messages, so a batch crosses the boundary in one memcpy each way.

Slot layout: a 64-byte header, then the payload (64-byte aligned, as Arrow likes)::

    [magic u32][pad u32][seq i64][nbytes i64] ... padding to 64 ... [payload ...]

The writer of a slot fills the payload first and the header last, and the reader checks
the header's ``seq`` against the dispatch it expects: a slot that a killed worker left
half-written can never be read back as a result.

Codecs: the row lane pickles ``list`` payloads (protocol 5); the Arrow lane writes one
Arrow IPC stream per batch and reads it back zero-copy (a ``RecordBatch`` is never
pickled: pickling a slice ships its whole parent buffer).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import re
import struct
import tempfile
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

__all__ = [
    "HEADER_SIZE",
    "SHM_DIR",
    "SLOT_PREFIX",
    "ArrowTransport",
    "MappedSlot",
    "RowTransport",
    "Slot",
    "SlotTooSmall",
    "Transport",
    "arrow_ipc_size",
    "copy_out_arrow",
    "decode_arrow",
    "decode_rows",
    "encode_rows",
    "grown_capacity",
    "leftover_slot_paths",
    "serialize_arrow",
    "sweep_stale_slots",
    "write_arrow_into",
]

#: tmpfs when the OS has one (Linux); elsewhere a temp dir, which the page cache keeps hot.
SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
#: Every slot is named ``agora-slot-<creator pid>-<random>``, so slots of a crashed run
#: can be recognised (dead creator pid) and swept.
SLOT_PREFIX = "agora-slot-"
_SLOT_NAME = re.compile(rf"^{SLOT_PREFIX}(\d+)-[0-9a-f]+$")

HEADER_SIZE = 64
_HEADER = struct.Struct("<IIqq")
_MAGIC = 0x41474F52  # "AGOR"
#: Slots start at 1 MiB (a 10k-row batch of 8 columns is ~0.6 MB) and grow by doubling;
#: tmpfs only spends RAM on pages actually touched, so a roomy slot costs nothing extra.
_MIN_CAPACITY = 1 << 20
_PICKLE_PROTOCOL = 5


class SlotTooSmall(Exception):
    """A payload of ``required`` bytes does not fit the slot; grow it or send inline."""

    def __init__(self, required: int) -> None:
        super().__init__(f"payload needs {required} bytes")
        self.required = required


def _round_capacity(nbytes: int) -> int:
    capacity = _MIN_CAPACITY
    while capacity < nbytes + HEADER_SIZE:
        capacity *= 2
    return capacity


class MappedSlot:
    """A mapping of one slot file. ``writable`` maps it read-write, else read-only.

    Used as-is by workers (which never create or unlink slots) and as the base of
    :class:`Slot` in the main process.
    """

    def __init__(self, path: str, capacity: int, *, writable: bool) -> None:
        self.path = path
        self.capacity = capacity
        fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        try:
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            self._mm: mmap.mmap | None = mmap.mmap(fd, capacity, prot=prot)
        finally:
            os.close(fd)
        self.view = memoryview(self._mm)
        # pyarrow wraps the whole mapping once; payload windows are slices of it.
        self.buffer = pa.py_buffer(self.view)

    def payload(self, nbytes: int) -> memoryview:
        """The first ``nbytes`` of payload (a view; valid while the slot is mapped)."""
        return self.view[HEADER_SIZE : HEADER_SIZE + nbytes]

    def arrow_payload(self, nbytes: int) -> pa.Buffer:
        return self.buffer.slice(HEADER_SIZE, nbytes)

    def write_header(self, seq: int, nbytes: int) -> None:
        _HEADER.pack_into(self.view, 0, _MAGIC, 0, seq, nbytes)

    def read_header(self) -> tuple[int, int]:
        """``(seq, nbytes)``; ``(-1, -1)`` when the header was never written."""
        magic, _pad, seq, nbytes = _HEADER.unpack_from(self.view, 0)
        if magic != _MAGIC:
            return -1, -1
        return seq, nbytes

    def close(self) -> None:
        """Unmap. A caller may still hold a zero-copy view of the payload (a user's
        ``fn`` keeping its input batch); then the mapping lives until that view dies."""
        mm, self._mm = self._mm, None
        if mm is None:
            return
        self.buffer = None  # type: ignore[assignment]
        with contextlib.suppress(BufferError):
            self.view.release()
            mm.close()


class Slot(MappedSlot):
    """A slot created and owned by the main process (read-write, unlinked on release)."""

    def __init__(self, capacity: int) -> None:
        capacity = _round_capacity(capacity)
        path = os.path.join(SHM_DIR, f"{SLOT_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:16]}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, capacity)
        finally:
            os.close(fd)
        try:
            super().__init__(path, capacity, writable=True)
        except BaseException:
            os.unlink(path)
            raise
        self.write_header(-1, 0)

    @property
    def payload_capacity(self) -> int:
        return self.capacity - HEADER_SIZE

    def release(self) -> None:
        """Unlink the file and unmap. Idempotent. Processes that still map it (a worker
        being killed) keep their pages until they exit; nothing is left in /dev/shm."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.close()


def grown_capacity(required_payload: int) -> int:
    """The slot capacity to allocate for a payload of ``required_payload`` bytes."""
    return _round_capacity(required_payload + required_payload // 4)


# ---------------------------------------------------------------------------- codecs


def encode_rows(records: Any) -> bytes:
    """Pickle a row-lane payload (the records in, or ``fn``'s results out)."""
    return pickle.dumps(records, protocol=_PICKLE_PROTOCOL)


def decode_rows(data: Any) -> Any:
    return pickle.loads(data)


def write_arrow_into(target: memoryview, batch: pa.RecordBatch) -> int:
    """Write ``batch`` as one Arrow IPC stream into ``target``; return the bytes used.

    Raises :class:`SlotTooSmall` (with the exact size needed) when it does not fit.
    """
    # FixedSizeBufferWriter requires a *mutable* pyarrow buffer: wrapping a writable
    # memoryview keeps it so (slicing a pyarrow buffer would not).
    sink = pa.FixedSizeBufferWriter(pa.py_buffer(target))
    try:
        with ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
    except OSError as exc:
        if "out of bounds" not in str(exc):
            raise
        raise SlotTooSmall(arrow_ipc_size(batch)) from None
    return sink.tell()


def arrow_ipc_size(batch: pa.RecordBatch) -> int:
    """Exact size of ``batch`` as an IPC stream, computed without copying any data."""
    sink = pa.MockOutputStream()
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.size()


def serialize_arrow(batch: pa.RecordBatch) -> pa.Buffer:
    """``batch`` as IPC stream bytes in fresh memory (the inline fallback)."""
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def decode_arrow(data: pa.Buffer) -> pa.RecordBatch:
    """Read the single batch of an IPC stream zero-copy (the batch views ``data``)."""
    reader = ipc.open_stream(data)
    batch = reader.read_next_batch()
    return batch


def copy_out_arrow(data: pa.Buffer) -> pa.RecordBatch:
    """Read a batch out of a slot into memory the caller owns (one memcpy).

    The slot is reused for the next batch, so a result must never keep views into it.
    """
    owned = pa.allocate_buffer(data.size)
    memoryview(owned)[:] = memoryview(data)
    return decode_arrow(owned)


# ---------------------------------------------------------------------------- lanes


class Transport:
    """How one lane moves a batch into a worker's input slot and a result back out.

    ``payload`` is what the pool keeps for a batch until it is resolved (so it can be
    re-run after a worker death): pickled bytes for rows, the ``RecordBatch`` for Arrow.
    """

    lane: str

    def write_input(self, slot: Slot, payload: Any) -> int:
        """Write ``payload`` into ``slot``; return its size. Raises :class:`SlotTooSmall`."""
        raise NotImplementedError

    def read_output(self, slot: MappedSlot, nbytes: int) -> Any:
        """Decode a result from ``slot`` into memory that outlives the slot's reuse."""
        raise NotImplementedError

    def read_inline(self, data: bytes) -> Any:
        """Decode a result that came over the pipe (it did not fit the output slot)."""
        raise NotImplementedError


class RowTransport(Transport):
    lane = "rows"

    def write_input(self, slot: Slot, payload: bytes) -> int:
        if len(payload) > slot.payload_capacity:
            raise SlotTooSmall(len(payload))
        slot.payload(len(payload))[:] = payload
        return len(payload)

    def read_output(self, slot: MappedSlot, nbytes: int) -> Any:
        return decode_rows(slot.payload(nbytes))  # unpickling copies: no view survives

    def read_inline(self, data: bytes) -> Any:
        return decode_rows(data)


class ArrowTransport(Transport):
    lane = "arrow"

    def write_input(self, slot: Slot, payload: pa.RecordBatch) -> int:
        return write_arrow_into(slot.view[HEADER_SIZE:], payload)

    def read_output(self, slot: MappedSlot, nbytes: int) -> pa.RecordBatch:
        return copy_out_arrow(slot.arrow_payload(nbytes))

    def read_inline(self, data: bytes) -> pa.RecordBatch:
        return decode_arrow(pa.py_buffer(data))


# ---------------------------------------------------------------------------- hygiene


def leftover_slot_paths(creator_pid: int | None = None) -> list[str]:
    """Slot files in :data:`SHM_DIR`, optionally only those created by ``creator_pid``."""
    found = []
    for name in os.listdir(SHM_DIR):
        match = _SLOT_NAME.match(name)
        if match and (creator_pid is None or int(match.group(1)) == creator_pid):
            found.append(os.path.join(SHM_DIR, name))
    return found


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_slots() -> int:
    """Unlink slots whose creator process is gone (a run killed with SIGKILL); return
    how many were removed. Slots of live processes are never touched."""
    removed = 0
    for path in leftover_slot_paths():
        match = _SLOT_NAME.match(os.path.basename(path))
        if match is None or _pid_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(path)
            removed += 1
    return removed
