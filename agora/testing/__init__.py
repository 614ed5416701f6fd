"""Testing toolkit for Agora jobs: fault injectors, a flaky sink, no-orphan/no-leak checks.

A public submodule — ``import agora.testing`` — usable from any test runner: it never
imports pytest, and nothing else in ``agora`` imports it. Every worker-side transform is a
top-level class of an importable module, so a process pool can unpickle it. See
``docs/testing.md`` for an example and what each helper guarantees.
"""

from __future__ import annotations

from agora.testing.calibrate import calibrate_iterations
from agora.testing.faults import (
    Chain,
    DropOn,
    ExitWorkerOn,
    Identity,
    InjectedFault,
    KillWorkerOn,
    RaiseOn,
    SegfaultOn,
    ShortResultOn,
    SleepyTransform,
    WaitForFile,
    record_ids,
)
from agora.testing.handshake import wait_for_path, wait_until, wait_until_async
from agora.testing.processes import (
    assert_no_processes_left,
    assert_no_shm_slots,
    assert_no_worker_processes,
    leftover_shm_slots,
    shm_slot_dir,
    worker_processes,
)
from agora.testing.sinks import FlakySink

__all__ = [
    "Chain",
    "DropOn",
    "ExitWorkerOn",
    "FlakySink",
    "Identity",
    "InjectedFault",
    "KillWorkerOn",
    "RaiseOn",
    "SegfaultOn",
    "ShortResultOn",
    "SleepyTransform",
    "WaitForFile",
    "assert_no_processes_left",
    "assert_no_shm_slots",
    "assert_no_worker_processes",
    "calibrate_iterations",
    "leftover_shm_slots",
    "record_ids",
    "shm_slot_dir",
    "wait_for_path",
    "wait_until",
    "wait_until_async",
    "worker_processes",
]
