"""Starting and retiring one worker process: its two slots, its pipe, its process group."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from agora.process.handles import Registry, WorkerHandle, kill_group
from agora.process.shm import Slot
from agora.process.startup import take_report
from agora.process.worker import WorkerSpec, worker_main

__all__ = ["retire_worker", "spawn_worker"]


def spawn_worker(
    ctx: Any,
    *,
    name: str,
    generation: int,
    lane: str,
    fn_bytes: bytes,
    capacities: tuple[int, int],
    shm_dir: str,
    registry: Registry,
) -> WorkerHandle:
    """Start one worker of ``generation`` with fresh input/output slots of at least
    ``capacities`` bytes, registered in ``registry`` so a finalizer can kill it.

    On failure (no room for the slots, the forkserver gone) nothing of it is left: its
    slots are released, its pipe closed, and the error propagates.
    """
    slots: list[Slot] = []
    conns: list[Any] = []
    try:
        for capacity in capacities:
            slots.append(Slot(capacity, shm_dir))
            registry.slots.add(slots[-1])
        in_slot, out_slot = slots
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        conns += [parent_conn, child_conn]
        spec = WorkerSpec(
            lane=lane,
            fn_bytes=fn_bytes,
            in_path=in_slot.path,
            in_capacity=in_slot.capacity,
            out_path=out_slot.path,
            out_capacity=out_slot.capacity,
        )
        process = ctx.Process(
            target=worker_main, args=(child_conn, spec), name=name, daemon=True
        )
        process.start()
    except BaseException:
        for slot in slots:
            slot.release()
            registry.slots.discard(slot)
        for conn in conns:
            conn.close()
        raise
    child_conn.close()
    worker = WorkerHandle(generation, process, parent_conn, in_slot, out_slot, process.pid)
    registry.pids.add(worker.pid)
    return worker


def retire_worker(
    worker: WorkerHandle, loop: asyncio.AbstractEventLoop, registry: Registry
) -> None:
    """Kill ``worker``'s process group, stop watching its pipe and sentinel on ``loop``,
    close its pipe and unlink its slots. Idempotent. Its process is left to be reaped."""
    if worker.retired:
        return
    worker.retired = True
    loop.remove_reader(worker.conn.fileno())
    with contextlib.suppress(ValueError, OSError):
        loop.remove_reader(worker.process.sentinel)
    kill_group(worker.pid)
    if not worker.ready:
        take_report(worker.pid)  # it may have died starting; nobody will ask now
    registry.pids.discard(worker.pid)
    worker.conn.close()
    for slot in (worker.in_slot, worker.out_slot):
        slot.release()
        registry.slots.discard(slot)
    if worker.ticket is not None and worker.ticket.timer is not None:
        worker.ticket.timer.cancel()
