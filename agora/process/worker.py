"""The worker process: runs the user's ``fn`` on batches handed over by the pool.

A worker serves one batch at a time. The pipe carries small control messages (below);
batch data travels through the worker's two shared-memory slots (``shm.py``), or right
after its message on the pipe when shared memory cannot hold it (``transport.py``). The
worker runs only ``fn``: it never sees checkpoints, the DLQ or sinks.

Protocol (first byte of every message is the opcode)::

    main -> worker   RUN(seq, nbytes)        input is in the input slot
                     RUN_INLINE(seq, nbytes) input follows as nbytes raw bytes (shared
                                             memory could not hold it)
                     SLOTS(paths, sizes)     the main process replaced a slot (it grew)
                     STOP                    exit cleanly
    worker -> main   READY(pid)              fn unpickled, slots mapped
                     OK(seq, nbytes, via)    result is in the output slot (VIA_SLOT), or
                                             follows as nbytes raw bytes because it did
                                             not fit (VIA_PIPE_TOO_BIG) or shared memory
                                             could not hold it (VIA_PIPE_SHM_FULL)
                     ERR(seq, kind, ...)     fn raised / bad result / codec failure
                     MEMORY(seq)             fn raised MemoryError; the worker now exits
                     INIT_ERROR(stage, ...)  fn could not be unpickled, or the slots not
                                             mapped; the worker exits

Isolation: the worker starts its own session (so killing its process group also kills
anything ``fn`` spawned), ignores SIGINT (Ctrl-C is the main process's business), and
dies with the main process (a watchdog thread sees the pipe hang up), so a main process
killed with SIGKILL leaves no worker behind.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import threading
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, NoReturn

import pyarrow as pa

from agora.process.shm import MappedSlot, ShmFull, SlotTooSmall
from agora.process.transport import (
    decode_arrow,
    decode_inline,
    decode_rows,
    encode_rows,
    put_arrow,
    put_rows,
    recv_raw,
    send_raw,
    serialize_arrow,
)

__all__ = ["EXIT_MEMORY_ERROR", "WorkerSpec", "worker_main"]

OP_RUN = 1
OP_SLOTS = 2
OP_STOP = 3
OP_RUN_INLINE = 4
OP_READY = 10
OP_OK = 11
OP_ERR = 12
OP_MEMORY = 13
OP_INIT_ERROR = 14

RUN = struct.Struct("<Bqq")  # op, seq, nbytes
OK = struct.Struct("<BqqB")  # op, seq, nbytes, via
READY = struct.Struct("<Bq")  # op, pid
MEMORY = struct.Struct("<Bq")  # op, seq
STOP = bytes([OP_STOP])

# How a result travelled (the OK message's last field).
VIA_SLOT = 0
VIA_PIPE_TOO_BIG = 1  # bigger than the output slot: the main process grows the slot
VIA_PIPE_SHM_FULL = 2  # the slot's space could not be reserved: counted as a fallback

LANE_ROWS = "rows"
LANE_ARROW = "arrow"

#: Exit status of a worker that hit MemoryError in ``fn``: its heap may be exhausted or
#: fragmented, so it leaves and the pool treats the batch like one that killed its worker.
EXIT_MEMORY_ERROR = 87

#: Poll period of the watchdog's parent check; a hang-up of the main process's pipe end
#: wakes it at once, so this only bounds the fallback (the forkserver dying first).
_WATCHDOG_INTERVAL_S = 0.5


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs at start (pickled once per worker, not per batch)."""

    lane: str
    fn_bytes: bytes
    in_path: str
    in_capacity: int
    out_path: str
    out_capacity: int


def encode_message(*fields: Any) -> bytes:
    """A rarely sent message (ERR, SLOTS, INIT_ERROR): opcode byte + pickled fields."""
    return bytes([fields[0]]) + pickle.dumps(fields[1:], protocol=5)


def decode_message(data: bytes) -> tuple[Any, ...]:
    fields: tuple[Any, ...] = pickle.loads(memoryview(data)[1:])
    return fields


def worker_main(conn: Connection, spec: WorkerSpec) -> None:
    """Entry point of a worker process (the pool's ``Process`` target)."""
    _isolate(conn)
    stage = "fn"
    try:
        fn = pickle.loads(spec.fn_bytes)
        stage = "slots"
        slots = _Slots(spec)
    except BaseException as exc:  # noqa: BLE001 - any start-up failure is reported
        detail = "".join(traceback.format_exception(exc))
        conn.send_bytes(
            encode_message(OP_INIT_ERROR, stage, f"{type(exc).__name__}: {exc}", detail)
        )
        return
    conn.send_bytes(READY.pack(OP_READY, os.getpid()))
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the main process closed the pipe: nothing more will come
        op = message[0]
        if op == OP_RUN:
            _, seq, nbytes = RUN.unpack(message)
            _run_one(conn, slots, spec.lane, fn, seq, nbytes, None)
        elif op == OP_RUN_INLINE:
            _, seq, nbytes = RUN.unpack(message)
            try:
                data = recv_raw(conn, nbytes)
            except (EOFError, OSError):
                return
            _run_one(conn, slots, spec.lane, fn, seq, nbytes, data)
        elif op == OP_SLOTS:
            slots.remap(*decode_message(message))
        elif op == OP_STOP:
            return


class _Slots:
    """The worker's mappings of its input (read-only) and output slots."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.input = MappedSlot(spec.in_path, spec.in_capacity, writable=False)
        self.output = MappedSlot(spec.out_path, spec.out_capacity, writable=True)

    def remap(self, in_path: str, in_capacity: int, out_path: str, out_capacity: int) -> None:
        if in_path != self.input.path:
            self.input.close()
            self.input = MappedSlot(in_path, in_capacity, writable=False)
        if out_path != self.output.path:
            self.output.close()
            self.output = MappedSlot(out_path, out_capacity, writable=True)


def _run_one(
    conn: Connection, slots: _Slots, lane: str, fn: Any, seq: int, nbytes: int,
    inline: pa.Buffer | None,
) -> None:
    try:
        if inline is not None:
            arg = decode_inline(lane, inline)
        elif lane == LANE_ARROW:
            arg = decode_arrow(slots.input.arrow_payload(nbytes))
        else:
            arg = decode_rows(slots.input.payload(nbytes))
    except MemoryError:
        _die_of_memory(conn, seq)
    except BaseException as exc:  # noqa: BLE001
        _send_error(conn, seq, "decode", exc)
        return
    try:
        result = fn(arg)
    except MemoryError:
        _die_of_memory(conn, seq)
    except BaseException as exc:  # noqa: BLE001 - SystemExit in fn is a failed batch too
        _send_error(conn, seq, "raised", exc)
        return
    problem = _check_result(lane, arg, result)
    del arg  # drop views into the input slot before the next batch overwrites it
    if problem is not None:
        conn.send_bytes(encode_message(OP_ERR, seq, "result", problem, ""))
        return
    try:
        _send_result(conn, slots.output, lane, seq, result)
    except MemoryError:
        _die_of_memory(conn, seq)
    except BaseException as exc:  # noqa: BLE001
        _send_error(conn, seq, "encode", exc)


def _check_result(lane: str, arg: Any, result: Any) -> str | None:
    if lane == LANE_ARROW:
        if not isinstance(result, pa.RecordBatch):
            return (
                f"fn returned {type(result).__name__}; it must return a pyarrow.RecordBatch"
            )
        if result.num_rows != arg.num_rows:
            return (
                f"fn returned {result.num_rows} rows for {arg.num_rows} input rows; the "
                "row count must match: an Arrow process transform must preserve the row count"
            )
        return None
    if not isinstance(result, list | tuple):
        return (
            f"fn returned {type(result).__name__}; it must return a list with one result "
            "per record (None drops a record)"
        )
    if len(result) != len(arg):
        return (
            f"fn returned {len(result)} results for {len(arg)} records; input and output "
            "lengths must match: return exactly one result per record (None drops a record)"
        )
    return None


def _send_result(conn: Connection, out: MappedSlot, lane: str, seq: int, result: Any) -> None:
    """Put the result in the output slot, or send it over the pipe when it does not fit
    or the slot's space cannot be reserved — never write an unreserved page (SIGBUS)."""
    data: Any = None
    try:
        if lane == LANE_ARROW:
            nbytes = put_arrow(out, result)
        else:
            data = encode_rows(list(result))
            nbytes = put_rows(out, data)
    except (SlotTooSmall, ShmFull) as exc:
        via = VIA_PIPE_SHM_FULL if isinstance(exc, ShmFull) else VIA_PIPE_TOO_BIG
        if data is None:
            data = serialize_arrow(result)
        size = memoryview(data).nbytes
        conn.send_bytes(OK.pack(OP_OK, seq, size, via))
        send_raw(conn, data)
        return
    # Header last: only a fully written payload ever carries this dispatch's seq.
    out.write_header(seq, nbytes)
    conn.send_bytes(OK.pack(OP_OK, seq, nbytes, VIA_SLOT))


def _send_error(conn: Connection, seq: int, kind: str, exc: BaseException) -> None:
    try:
        summary = f"{type(exc).__name__}: {exc}"
        detail = "".join(traceback.format_exception(exc))
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails is still reported
        summary, detail = f"{type(exc).__name__} (its message could not be rendered)", ""
    conn.send_bytes(encode_message(OP_ERR, seq, kind, summary, detail))


def _die_of_memory(conn: Connection, seq: int) -> NoReturn:
    try:
        conn.send_bytes(MEMORY.pack(OP_MEMORY, seq))
    finally:
        os._exit(EXIT_MEMORY_ERROR)


def _isolate(conn: Connection) -> None:
    """Own session and process group; no SIGINT; die with the main process."""
    try:
        os.setsid()
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the forkserver is our parent
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        _kill_own_group()
    threading.Thread(
        target=_watchdog, args=(conn.fileno(), parent), name="agora-watchdog", daemon=True
    ).start()


def _watchdog(fd: int, parent: int) -> None:
    """Kill this worker's group once the main process is gone, even while fn runs.

    The forkserver (our parent) outlives a killed main process as long as any worker
    lives, so parent death alone is not enough: the reliable signal is the main
    process's end of our pipe hanging up (POLLRDHUP), which needs no read and so does
    not compete with the serving loop for messages.
    """
    hangup = getattr(select, "POLLRDHUP", 0) | select.POLLHUP
    poller = select.poll()
    poller.register(fd, hangup)
    while True:
        try:
            events = poller.poll(_WATCHDOG_INTERVAL_S * 1000)
        except OSError:
            events = []
        if any(mask & hangup for _, mask in events) or os.getppid() != parent:
            _kill_own_group()


def _kill_own_group() -> NoReturn:
    # Our process group holds this worker and whatever fn spawned. Only signal the group
    # when we lead it: otherwise it is the group of whoever started us.
    if os.getpgid(0) == os.getpid():
        os.killpg(0, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
    os._exit(1)  # pragma: no cover - SIGKILL above does not return
