"""Batch transport between the main process and its workers: codecs and the two lanes.

A batch normally crosses in a worker's shared-memory slots (``shm.py``): the main
process writes it into the worker's *input* slot, the worker writes its result into its
*output* slot, and the pipe between them carries only small control messages — one
memcpy each way. When a slot's space cannot be reserved (a full or too small
``/dev/shm``), that one batch or result crosses *inline*, as bytes over the worker's
pipe instead: slower (the bytes are copied through the kernel in 64 KiB pieces), but it
needs no shared memory at all. The writer of a slot fills the payload first and the
header last, and the reader checks the header's ``seq`` against the dispatch it expects:
a slot that a killed worker left half-written can never be read back as a result.

Codecs: the row lane pickles ``list`` payloads (protocol 5); the Arrow lane writes one
Arrow IPC stream per batch and reads it back zero-copy (a ``RecordBatch`` is never
pickled: pickling a slice ships its whole parent buffer).
"""

from __future__ import annotations

import os
import pickle
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from agora.process.shm import HEADER_SIZE, MappedSlot, SlotTooSmall

__all__ = [
    "ArrowTransport",
    "RowTransport",
    "Transport",
    "arrow_ipc_size",
    "copy_out_arrow",
    "decode_arrow",
    "decode_inline",
    "decode_rows",
    "encode_rows",
    "put_arrow",
    "put_rows",
    "recv_raw",
    "send_raw",
    "serialize_arrow",
    "write_arrow_into",
]

_PICKLE_PROTOCOL = 5
# Built once: ``ipc.new_stream`` without options re-reads two environment variables and
# builds fresh options on every call, a measurable share of a small batch's hop.
_WRITE_OPTIONS = ipc.IpcWriteOptions()
_EOS_BYTES = 8  # the end-of-stream marker a stream writer appends on close


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
        with ipc.RecordBatchStreamWriter(sink, batch.schema, options=_WRITE_OPTIONS) as writer:
            writer.write_batch(batch)
    except OSError as exc:
        if "out of bounds" not in str(exc):
            raise
        raise SlotTooSmall(arrow_ipc_size(batch)) from None
    return int(sink.tell())


def arrow_ipc_size(batch: pa.RecordBatch) -> int:
    """Exact size of ``batch`` as an IPC stream, computed without copying any data.

    A stream is the schema message, the batch message and the end marker. The first two
    parts' sizes are fixed per schema, so the schema's share is learnt once — checked
    against a full dry-run write before it is trusted — and then each batch only asks
    for its own message size. Dictionary columns add dictionary messages: those batches
    always take the dry run.
    """
    schema = batch.schema
    learnt = _STREAM_OVERHEAD.get()
    if learnt is not None and learnt[0].equals(schema, check_metadata=True):
        return int(ipc.get_record_batch_size(batch)) + learnt[1]
    exact = _dry_run_size(batch)
    if not _has_dictionary(schema):
        overhead = len(schema.serialize()) + _EOS_BYTES
        if exact == int(ipc.get_record_batch_size(batch)) + overhead:
            _STREAM_OVERHEAD.set((schema, overhead))
    return exact


def _dry_run_size(batch: pa.RecordBatch) -> int:
    sink = pa.MockOutputStream()
    with ipc.RecordBatchStreamWriter(sink, batch.schema, options=_WRITE_OPTIONS) as writer:
        writer.write_batch(batch)
    return int(sink.size())


def _has_dictionary(schema: pa.Schema) -> bool:
    def walk(dtype: pa.DataType) -> bool:
        if pa.types.is_dictionary(dtype):
            return True
        return any(walk(dtype.field(i).type) for i in range(dtype.num_fields))
    return any(walk(field.type) for field in schema)


class _LastSchema:
    """The last schema whose stream overhead was learnt, per process (one value: a lane
    carries one schema almost always; a change just costs one dry run)."""

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: tuple[pa.Schema, int] | None = None

    def get(self) -> tuple[pa.Schema, int] | None:
        return self._value

    def set(self, value: tuple[pa.Schema, int]) -> None:
        self._value = value  # one reference swap: safe if two threads learn at once


_STREAM_OVERHEAD = _LastSchema()


def serialize_arrow(batch: pa.RecordBatch) -> pa.Buffer:
    """``batch`` as IPC stream bytes in fresh memory (the inline fallback)."""
    sink = pa.BufferOutputStream()
    with ipc.RecordBatchStreamWriter(sink, batch.schema, options=_WRITE_OPTIONS) as writer:
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


# ---------------------------------------------------------------------------- slots


def put_rows(slot: MappedSlot, data: bytes | memoryview) -> int:
    """Copy pickled ``data`` into ``slot`` (space reserved first); return its size.

    Raises :class:`SlotTooSmall` or :class:`~agora.process.shm.ShmFull`; either way
    nothing was written."""
    nbytes = len(data)
    if nbytes > slot.payload_capacity:
        raise SlotTooSmall(nbytes)
    slot.reserve(nbytes)
    slot.payload(nbytes)[:] = data
    return nbytes


def put_arrow(slot: MappedSlot, batch: pa.RecordBatch) -> int:
    """Write ``batch`` as IPC into ``slot`` (space reserved first); return its size.

    Raises :class:`SlotTooSmall` or :class:`~agora.process.shm.ShmFull`; either way
    nothing was written."""
    nbytes = arrow_ipc_size(batch)  # metadata only: no data is copied to size it
    if nbytes > slot.payload_capacity:
        raise SlotTooSmall(nbytes)
    slot.reserve(nbytes)
    # The window is exactly the reserved bytes, so the writer can never touch a page
    # that was not reserved.
    return write_arrow_into(slot.view[HEADER_SIZE : HEADER_SIZE + nbytes], batch)


def send_raw(conn: Connection, data: Any) -> None:
    """Write ``data`` to ``conn``'s descriptor as is, right after a framed message that
    announced its size. The receiver reads it with :func:`recv_raw` straight into one
    buffer — framing it as a message would copy it in and out of a growing buffer."""
    view = memoryview(data).cast("B")
    fd = conn.fileno()
    while view:
        view = view[os.write(fd, view) :]


def recv_raw(conn: Connection, nbytes: int) -> pa.Buffer:
    """Read exactly ``nbytes`` sent by :func:`send_raw` into a fresh buffer the caller
    owns. Raises ``EOFError`` when the other side hangs up first."""
    buffer = pa.allocate_buffer(nbytes)
    view = memoryview(buffer)
    fd = conn.fileno()
    done = 0
    while done < nbytes:
        got = os.readv(fd, [view[done:]])
        if got == 0:
            raise EOFError(f"the pipe closed after {done} of {nbytes} bytes")
        done += got
    return buffer


def decode_inline(lane: str, data: Any) -> Any:
    """Decode a batch or result that crossed over the pipe (bytes the caller owns)."""
    if lane == "arrow":
        return decode_arrow(data if isinstance(data, pa.Buffer) else pa.py_buffer(data))
    return decode_rows(data)


# ---------------------------------------------------------------------------- lanes


class Transport:
    """How one lane moves a batch into a worker's input slot and a result back out.

    ``payload`` is what the pool keeps for a batch until it is resolved (so it can be
    re-run after a worker death): pickled bytes for rows, the ``RecordBatch`` for Arrow.
    """

    lane: str

    def write_input(self, slot: MappedSlot, payload: Any) -> int:
        """Write ``payload`` into ``slot``; return its size. Raises :class:`SlotTooSmall`
        or :class:`~agora.process.shm.ShmFull` (nothing written)."""
        raise NotImplementedError

    def inline_input(self, payload: Any) -> Any:
        """``payload`` as bytes for the pipe (when shared memory cannot hold it)."""
        raise NotImplementedError

    def read_output(self, slot: MappedSlot, nbytes: int) -> Any:
        """Decode a result from ``slot`` into memory that outlives the slot's reuse."""
        raise NotImplementedError

    def read_inline(self, data: bytes) -> Any:
        """Decode a result that came over the pipe."""
        return decode_inline(self.lane, data)


class RowTransport(Transport):
    lane = "rows"

    def write_input(self, slot: MappedSlot, payload: bytes) -> int:
        return put_rows(slot, payload)

    def inline_input(self, payload: bytes) -> bytes:
        return payload

    def read_output(self, slot: MappedSlot, nbytes: int) -> Any:
        return decode_rows(slot.payload(nbytes))  # unpickling copies: no view survives


class ArrowTransport(Transport):
    lane = "arrow"

    def write_input(self, slot: MappedSlot, payload: pa.RecordBatch) -> int:
        return put_arrow(slot, payload)

    def inline_input(self, payload: pa.RecordBatch) -> pa.Buffer:
        return serialize_arrow(payload)

    def read_output(self, slot: MappedSlot, nbytes: int) -> pa.RecordBatch:
        return copy_out_arrow(slot.arrow_payload(nbytes))
