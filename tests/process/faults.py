"""Transforms for the process-lane tests, each named for what it does (and when it fails).

They live in an importable module because workers unpickle them by reference. Row-lane
fault injectors look at the records: a record with ``"poison": True`` triggers the
fault, so a test decides per batch what happens.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

# ------------------------------------------------------------------ row lane


def double_values(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "value": row["value"] * 2} for row in rows]


def drop_odd_values(rows: list[dict[str, Any]]) -> list[Any]:
    return [row if row["value"] % 2 == 0 else None for row in rows]


def tag_with_worker_pid(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "pid": os.getpid()} for row in rows]


def sleep_as_told(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sleeps ``rows[0]["sleep"]`` seconds, then tags rows with the worker pid."""
    time.sleep(rows[0].get("sleep", 0))
    return tag_with_worker_pid(rows)


def raise_value_error(rows: list[Any]) -> list[Any]:
    raise ValueError(f"bad record {rows[0]!r}")


def exit_via_sys_exit(rows: list[Any]) -> list[Any]:
    raise SystemExit(4)


def return_one_too_few(rows: list[Any]) -> list[Any]:
    return rows[:-1]


def return_a_dict(rows: list[Any]) -> Any:
    return {"rows": rows}


def return_unpicklable(rows: list[Any]) -> list[Any]:
    return [threading.Lock() for _ in rows]


def _is_poisoned(rows: list[dict[str, Any]]) -> bool:
    return any(isinstance(row, dict) and row.get("poison") for row in rows)


def sigkill_self_on_poison(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if _is_poisoned(rows):
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(rows[0].get("sleep", 0))
    return tag_with_worker_pid(rows)


def segfault_on_poison(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if _is_poisoned(rows):
        ctypes.string_at(0)
    time.sleep(rows[0].get("sleep", 0))
    return rows


def os_exit_on_poison(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if _is_poisoned(rows):
        os._exit(3)
    return rows


def memory_error_on_poison(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if _is_poisoned(rows):
        raise MemoryError("simulated allocation failure")
    return rows


def sigkill_self_always(rows: list[Any]) -> list[Any]:
    os.kill(os.getpid(), signal.SIGKILL)
    return rows  # pragma: no cover


class KillWorkerOnce:
    """SIGKILLs its worker the first time it sees a poisoned batch (remembered in
    ``marker_dir``), then behaves: models a crash that a re-run does not repeat."""

    def __init__(self, marker_dir: str) -> None:
        self.marker_dir = marker_dir

    def __call__(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        marker = os.path.join(self.marker_dir, f"seen-{rows[0]['id']}")
        if _is_poisoned(rows) and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return rows


class SpawnGrandchildAndHang:
    """Starts ``sleep 300`` (a grandchild of the pool), writes its pid, then hangs."""

    def __init__(self, pid_file: str) -> None:
        self.pid_file = pid_file

    def __call__(self, rows: list[Any]) -> list[Any]:
        child = subprocess.Popen(["sleep", "300"])
        with open(self.pid_file + ".tmp", "w") as fh:
            fh.write(str(child.pid))
        os.replace(self.pid_file + ".tmp", self.pid_file)
        time.sleep(300)
        return rows  # pragma: no cover


def _explode_on_load() -> Any:
    raise ImportError("this object cannot be rebuilt in another process")


class LoadsNowhere:
    """Picklable, but unpickling it raises: stands for a fn (or record) that cannot be
    rebuilt in a worker, e.g. one defined in an interactive session."""

    def __reduce__(self) -> Any:
        return (_explode_on_load, ())

    def __call__(self, rows: list[Any]) -> list[Any]:
        return rows  # pragma: no cover


# ------------------------------------------------------------------ Arrow lane


def arrow_identity(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch


def arrow_add_doubled(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch.append_column("doubled", pc.multiply(batch.column("x"), pa.scalar(2.0)))


def arrow_widen_eightfold(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A result far bigger than its input (and than the first output slot)."""
    out = batch
    for i in range(8):
        out = out.append_column(f"x{i}", pc.add(batch.column("x"), pa.scalar(float(i))))
    return out


def arrow_drop_first_row(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch.slice(1)


def arrow_return_table(batch: pa.RecordBatch) -> Any:
    return pa.Table.from_batches([batch])


def arrow_sleep_as_told(batch: pa.RecordBatch) -> pa.RecordBatch:
    time.sleep(batch.column("sleep")[0].as_py())
    return batch


def arrow_segfault_on_poison(batch: pa.RecordBatch) -> pa.RecordBatch:
    if pc.any(batch.column("poison")).as_py():
        ctypes.string_at(0)
    return batch


def _load_unless(marker: str) -> Any:
    if os.path.exists(marker):
        raise ImportError("fn's module is gone")
    return sleep_as_told


class LoadableUntil:
    """Loads (as :func:`sleep_as_told`) in workers until ``marker`` exists: a fn whose
    module disappears mid-run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (_load_unless, (self.marker,))

    def __call__(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sleep_as_told(rows)  # pragma: no cover - replaced on load


def _load_slowly() -> Any:
    time.sleep(30)
    return double_values  # pragma: no cover


class LoadsForever:
    """Unpickling it blocks: a worker that never reports ready."""

    def __reduce__(self) -> Any:
        return (_load_slowly, ())

    def __call__(self, rows: list[Any]) -> list[Any]:
        return rows  # pragma: no cover


# ------------------------------------------------------------------ shared memory


def _refuse_shm_reservations_here() -> None:
    """From now on, every shared-memory reservation in this (worker) process fails the
    way a full /dev/shm does."""
    import errno

    from agora.process import shm

    def full(fd: int, offset: int, length: int, directory: str) -> None:
        raise shm.ShmFull(directory, length, errno.ENOSPC)

    shm.reserve = full  # type: ignore[assignment]


def double_values_with_shm_full(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Doubles ``value`` in a worker whose shared memory is full (results cannot use it)."""
    _refuse_shm_reservations_here()
    return double_values(rows)


def arrow_add_doubled_with_shm_full(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``arrow_add_doubled`` in a worker whose shared memory is full."""
    _refuse_shm_reservations_here()
    return arrow_add_doubled(batch)


# ------------------------------------------------------------------ start-up probes


def report_pyarrow_inherited(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tags rows with the worker pid and whether the worker inherited pyarrow from the
    process it was forked from (True) or had to import it itself (False)."""
    from agora.process import census

    inherited = census.inherited("pyarrow")
    return [{**row, "pid": os.getpid(), "pyarrow_inherited": inherited} for row in rows]


def arrow_tag_with_worker_pid(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch.append_column("pid", pa.array([os.getpid()] * batch.num_rows, pa.int64()))
