"""Moving one batch into a worker and its result back out: slots, their growth, the pipe fallback."""

from __future__ import annotations

import contextlib
import errno
import logging
from typing import Any

from agora.process.handles import PoolMetrics, Registry, Ticket, WorkerHandle
from agora.process.shm import ShmFull, Slot, SlotTooSmall, grown_capacity
from agora.process.transport import Transport, send_raw
from agora.process.worker import (
    OP_RUN,
    OP_RUN_INLINE,
    OP_SLOTS,
    RUN,
    VIA_PIPE_SHM_FULL,
    VIA_PIPE_TOO_BIG,
    encode_message,
)

__all__ = ["Courier"]

log = logging.getLogger("agora.process")


class Courier:
    """Carries batches to workers and results back for one pool (the *in slot* and *out
    slot* arrows of the pool's diagram).

    A payload goes through the worker's shared-memory slot; a slot too small is replaced
    by a bigger one; when shared memory cannot hold the payload at all it crosses over the
    pipe instead, and the pool's metrics count the fallback (the first one is logged with
    the fix). Slot capacity only grows, so a new generation starts with slots as big as
    the largest batch and result seen so far.
    """

    def __init__(
        self, *, name: str, transport: Transport, metrics: PoolMetrics, registry: Registry
    ) -> None:
        self.name = name
        self.transport = transport
        self.metrics = metrics
        self.registry = registry
        self.shm_dir = ""  # resolved by WorkerPool.start(): $AGORA_SHM_DIR or /dev/shm
        self.slot_capacity = [0, 0]  # input, output: grows to the largest batch seen
        self._warned_shm = False

    def load(self, worker: WorkerHandle, ticket: Ticket) -> tuple[int, Any]:
        """Write ``ticket``'s batch into ``worker``'s input slot, growing the slot if
        needed. Returns ``(nbytes, inline)``: ``inline`` is None when the batch is in the
        slot, else the encoded batch that must follow over the pipe. Raises whatever
        encoding the batch raises (the batch then fails)."""
        inline: Any = None
        try:
            try:
                nbytes = self.transport.write_input(worker.in_slot, ticket.payload)
            except SlotTooSmall as exc:
                self.grow(worker, 0, exc.required)
                nbytes = self.transport.write_input(worker.in_slot, ticket.payload)
        except ShmFull as exc:
            inline = self.transport.inline_input(ticket.payload)
            nbytes = memoryview(inline).nbytes
            self.note_fallback(exc, "in", ticket.batch_index)
        return nbytes, inline

    def post(self, worker: WorkerHandle, seq: int, nbytes: int, inline: Any) -> None:
        """Tell ``worker`` to run dispatch ``seq`` on the batch :meth:`load` prepared
        (announcing replaced slots first)."""
        if inline is None:
            worker.in_slot.write_header(seq, nbytes)
        self.metrics.transport_bytes_in += nbytes
        # A dead worker's pipe raises here; its death is processed from the sentinel, and
        # this batch is then re-run like any batch in flight on it.
        with contextlib.suppress(OSError):
            if worker.slots_dirty:
                worker.conn.send_bytes(
                    encode_message(
                        OP_SLOTS,
                        worker.in_slot.path,
                        worker.in_slot.capacity,
                        worker.out_slot.path,
                        worker.out_slot.capacity,
                    )
                )
                worker.slots_dirty = False
            if inline is None:
                worker.conn.send_bytes(RUN.pack(OP_RUN, seq, nbytes))
            else:
                # The worker is idle and blocked reading its pipe, so this returns as
                # fast as the kernel copies the bytes.
                worker.conn.send_bytes(RUN.pack(OP_RUN_INLINE, seq, nbytes))
                send_raw(worker.conn, inline)

    def unload(
        self, worker: WorkerHandle, ticket: Ticket, seq: int, nbytes: int, via: int, data: Any
    ) -> Any:
        """Read the result of dispatch ``seq``: from the output slot (``data`` is None)
        or from the bytes that came over the pipe. Raises if it cannot be read back."""
        if data is None:
            if worker.out_slot.read_header() != (seq, nbytes):
                raise RuntimeError("result slot header does not match the reply")
            return self.transport.read_output(worker.out_slot, nbytes)
        result = self.transport.read_inline(data)
        full: ShmFull | None = None
        if via == VIA_PIPE_SHM_FULL:
            full = ShmFull(self.shm_dir, nbytes, errno.ENOSPC)
        elif via == VIA_PIPE_TOO_BIG:
            try:
                self.grow(worker, 1, nbytes)
            except ShmFull as exc:  # a bigger slot could not be held either
                full = exc
        if full is not None:
            self.note_fallback(full, "out", ticket.batch_index)
        return result

    def note_fallback(self, exc: ShmFull, direction: str, batch_index: int) -> None:
        """Count a batch (``in``) or result (``out``) that took the pipe because shared
        memory could not hold it; the first one of a pool is logged with the fix."""
        if direction == "in":
            self.metrics.shm_fallbacks_in += 1
        else:
            self.metrics.shm_fallbacks_out += 1
        if not self._warned_shm:
            self._warned_shm = True
            log.warning(
                "process middleware %r: batch %d %s over the worker's pipe: %s. The run "
                "goes on (slower); the summary counts these as shm_fallbacks_in/_out.",
                self.name,
                batch_index,
                "was sent" if direction == "in" else "came back",
                exc,
            )

    def grow(self, worker: WorkerHandle, which: int, required: int) -> None:
        """Replace a worker's input (0) or output (1) slot with a bigger one, its first
        ``required`` payload bytes already reserved. Raises :class:`ShmFull` (and keeps
        the old slot) when shared memory cannot hold them."""
        old = worker.in_slot if which == 0 else worker.out_slot
        new = Slot(grown_capacity(required), self.shm_dir)
        try:
            new.reserve(required)
        except ShmFull:
            new.release()
            raise
        self.registry.slots.add(new)
        if which == 0:
            worker.in_slot = new
        else:
            worker.out_slot = new
        old.release()
        self.registry.slots.discard(old)
        self.slot_capacity[which] = max(self.slot_capacity[which], new.capacity)
        worker.slots_dirty = True
