"""The checkpoint store write overlaps the next unit, never the flush it depends on: no
saved position names a record whose sink or DLQ write is not durable yet; saves reach the
store in order, one at a time; failures, Ctrl-C and cancellation with a save in flight
end cleanly. Positions are read back from the SQLite file, not from counters."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agora import (
    DataPlane,
    DeliveryConfig,
    MemorySink,
    Pipeline,
    SinkFanOut,
    SyncSQLiteCheckpointStore,
)
from agora.records import Checkpoint
from agora.runtime.delivery import CHECKPOINT_THREAD_PREFIX
from agora.testing import wait_until, wait_until_async
from tests.runtime.doubles import FlakySink, RecordingSource

KEY = "overlap"
#: Long enough for a wrong implementation to save past a held flush, short enough to keep
#: the file quick. Only ever used to wait for something that must NOT happen.
SETTLE_S = 0.3


class GatedSQLiteStore(SyncSQLiteCheckpointStore):
    """The SQLite store with a gate: save number ``hold_on`` waits for ``gate_open``; saves
    in ``fail_on`` raise ``OSError``. Records the value and thread of every save that
    reached the file, how many ran at once, and ``durable()`` at the start of each save."""

    def __init__(self, path: Path, *, hold_on: int | None = None, fail_on: frozenset[int] = frozenset(),
                 durable: Callable[[], int] | None = None) -> None:
        super().__init__(path)
        self.hold_on = hold_on
        self.fail_on = fail_on
        self.durable = durable
        self.entered = threading.Event()
        self.gate_open = threading.Event()
        self.calls = 0
        self.saved: list[Any] = []
        self.threads: set[str] = set()
        self.durable_at_save: list[tuple[Any, int]] = []
        self.active = 0
        self.max_active = 0

    def save(self, key: str, checkpoint: Checkpoint) -> None:
        self.calls += 1
        n = self.calls
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            self.threads.add(threading.current_thread().name)
            if self.durable is not None:
                self.durable_at_save.append((checkpoint.value, self.durable()))
            if n == self.hold_on:
                self.entered.set()
                assert self.gate_open.wait(10), "the test never opened the gate of the held save"
            if n in self.fail_on:
                raise OSError(f"checkpoint disk full on save {n}")
            super().save(key, checkpoint)
            self.saved.append(checkpoint.value)
        finally:
            self.active -= 1


class HeldFlushSink(FlakySink):
    """FlakySink whose flush number ``hold_on`` waits (without blocking the loop) until
    ``release`` is set; ``held`` is set when it starts waiting."""

    def __init__(self, *, hold_on: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.hold_on = hold_on
        self.flushes = 0
        self.held = threading.Event()
        self.release = threading.Event()

    async def flush(self) -> None:
        self.flushes += 1
        if self.flushes == self.hold_on:
            self.held.set()
            await wait_until_async(self.release.is_set, what="the test to release the flush")
        await super().flush()


class HeldDLQ(MemorySink):
    """A memory DLQ whose first ``write_batch`` or first non-empty ``flush`` (``hold``)
    waits until ``release``; ``durable`` counts the records its flushes covered."""

    def __init__(self, *, hold: str) -> None:
        super().__init__(name="held_dlq")
        self.hold = hold
        self.durable = 0
        self.held = threading.Event()
        self.release = threading.Event()

    async def _maybe_hold(self, what: str) -> None:
        if what == self.hold and not self.held.is_set():
            self.held.set()
            await wait_until_async(self.release.is_set, what="the test to release the DLQ")

    async def write_batch(self, records: Any) -> Any:
        await self._maybe_hold("write_batch")
        return await super().write_batch(records)

    async def flush(self) -> None:
        if len(self.records) > self.durable:
            await self._maybe_hold("flush")
        await super().flush()
        self.durable = len(self.records)


def stored(path: Path) -> Any:
    """The position in the store file right now, read through a separate connection."""
    with SyncSQLiteCheckpointStore(path, create=False) as reader:
        checkpoint = reader.load(KEY)
    return None if checkpoint is None else checkpoint.value


def one_record_units(n: int) -> RecordingSource:
    """Units of one record each, so a position equals the number of records before it."""
    return RecordingSource([[{"id": i}] for i in range(n)], plane=DataPlane.PYTHON_BATCHES)


def checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(CHECKPOINT_THREAD_PREFIX)]


class RunInThread:
    """``bound.run_sync()`` on a helper thread (no signal handlers there)."""

    def __init__(self, bound: Any) -> None:
        self.bound = bound
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._target, name="test-run")
        self.thread.start()

    def _target(self) -> None:
        try:
            self.bound.run_sync()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def join(self) -> None:
        self.thread.join(20)
        assert not self.thread.is_alive(), "the run did not end"


def test_the_store_is_saved_on_the_checkpoint_thread_and_every_save_covers_a_durable_prefix(
        tmp_path: Path) -> None:
    sink = FlakySink()
    store = GatedSQLiteStore(tmp_path / "ck.db", durable=lambda: sink.flushed_count)
    bound = Pipeline(one_record_units(30), id=KEY).build(
        sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1))
    summary = bound.run_sync()
    assert store.threads and all(t.startswith(CHECKPOINT_THREAD_PREFIX) for t in store.threads)
    assert store.saved == list(range(1, 31))  # every save, in order
    assert all(value <= durable for value, durable in store.durable_at_save)
    assert summary.checkpoint.saves == 30 and summary.last_checkpoint_value == 30 == stored(tmp_path / "ck.db")
    assert checkpoint_threads() == []


def test_no_checkpoint_covers_records_whose_sink_flush_is_held(tmp_path: Path) -> None:
    sink = HeldFlushSink(hold_on=3)
    store = GatedSQLiteStore(tmp_path / "ck.db", durable=lambda: sink.flushed_count)
    bound = Pipeline(one_record_units(8), id=KEY).build(
        sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1))
    run = RunInThread(bound)
    try:
        assert sink.held.wait(10)
        wait_until(lambda: store.saved == [1, 2], what="the saves before the held flush")
        assert len(sink.rows) == 3 and sink.flushed_count == 2  # record 3 written, not durable
        time.sleep(SETTLE_S)
        assert stored(tmp_path / "ck.db") == 2  # never 3 while its flush is held
    finally:
        sink.release.set()
        run.join()
    assert run.error is None
    assert stored(tmp_path / "ck.db") == 8
    assert all(value <= durable for value, durable in store.durable_at_save)


@pytest.mark.parametrize("hold", ["write_batch", "flush"])
def test_no_checkpoint_covers_a_dead_letter_whose_dlq_write_is_held(tmp_path: Path,
                                                                   hold: str) -> None:
    dlq = HeldDLQ(hold=hold)
    sink = FlakySink(fail=lambda r: r["id"] == 4)  # the 5th record goes to the DLQ
    store = GatedSQLiteStore(tmp_path / "ck.db", durable=lambda: dlq.durable)
    bound = Pipeline(one_record_units(10), id=KEY).build(
        sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1, dlq=dlq))
    run = RunInThread(bound)
    try:
        assert dlq.held.wait(10)
        wait_until(lambda: store.saved[-1:] == [4], what="the save before the dead letter")
        time.sleep(SETTLE_S)
        assert stored(tmp_path / "ck.db") == 4  # not past record 5 while its DLQ write is held
    finally:
        dlq.release.set()
        run.join()
    assert run.error is None
    assert stored(tmp_path / "ck.db") == 10 and len(dlq.records) == 1
    # Every save past the dead letter came after the DLQ had made it durable.
    assert all(durable == 1 for value, durable in store.durable_at_save if value >= 5)


def test_a_blocked_save_lets_the_next_unit_flow_and_saves_stay_in_order(tmp_path: Path) -> None:
    sink = FlakySink()
    store = GatedSQLiteStore(tmp_path / "ck.db", hold_on=2, durable=lambda: sink.flushed_count)
    bound = Pipeline(one_record_units(12), id=KEY).build(
        sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1))
    run = RunInThread(bound)
    try:
        assert store.entered.wait(10)
        # The next unit is written while position 2 is being saved...
        wait_until(lambda: len(sink.rows) == 3, what="the unit after the held save")
        time.sleep(SETTLE_S)
        # ...but no further: its commit waits for the save in flight, none overtakes it.
        assert len(sink.rows) == 3 and store.calls == 2
        assert stored(tmp_path / "ck.db") == 1
    finally:
        store.gate_open.set()
        run.join()
    assert run.error is None
    assert store.saved == list(range(1, 13)) and store.max_active == 1
    assert all(value <= durable for value, durable in store.durable_at_save)
    summary = bound.last_summary
    assert summary is not None and summary.checkpoint.saves == 12 and summary.checkpoint.failures == 0
    assert checkpoint_threads() == []


def test_a_save_in_flight_overlaps_one_unit_at_most(tmp_path: Path) -> None:
    """Between two saves (checkpoint_every=3), the unit after a held save is written but
    the one after it waits: a crash cannot re-deliver more than the interval plus one unit."""
    sink = FlakySink()
    store = GatedSQLiteStore(tmp_path / "ck.db", hold_on=1)
    bound = Pipeline(one_record_units(9), id=KEY).build(
        sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=3))
    run = RunInThread(bound)
    try:
        assert store.entered.wait(10)
        wait_until(lambda: len(sink.rows) == 4, what="the unit after the held save")
        time.sleep(SETTLE_S)
        assert len(sink.rows) == 4 and stored(tmp_path / "ck.db") is None
    finally:
        store.gate_open.set()
        run.join()
    assert run.error is None and store.saved == [3, 6, 9]


def test_a_failed_background_save_stops_a_fail_closed_run_with_the_store_s_error(
        tmp_path: Path) -> None:
    sink = FlakySink()
    store = GatedSQLiteStore(tmp_path / "ck.db", fail_on=frozenset({2}))
    bound = Pipeline(one_record_units(20), id=KEY).build(
        sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1))
    with pytest.raises(OSError, match="checkpoint disk full on save 2"):
        bound.run_sync()
    assert stored(tmp_path / "ck.db") == 1
    assert len(sink.rows) == 3  # stopped at the next unit's commit point
    summary = bound.last_summary
    assert summary is not None and summary.checkpoint.saves == 1
    assert summary.checkpoint.failures == 1 and summary.last_checkpoint_value == 1
    assert checkpoint_threads() == []


def test_a_failed_background_save_is_logged_and_the_run_goes_on_under_log_and_continue(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = GatedSQLiteStore(tmp_path / "ck.db", fail_on=frozenset({2}))
    bound = Pipeline(one_record_units(20), id=KEY).build(FlakySink(), delivery=DeliveryConfig(
        checkpoint=store, checkpoint_every=1, checkpoint_failure_policy="log_and_continue"))
    summary = bound.run_sync()
    assert stored(tmp_path / "ck.db") == 20
    assert store.saved == [1, *range(3, 21)]
    assert summary.checkpoint.saves == 19 and summary.checkpoint.failures == 1
    assert "checkpoint disk full on save 2" in caplog.text


def test_a_sink_flush_failure_with_concurrent_flushes_stops_the_run_before_any_save(
        tmp_path: Path) -> None:
    good, bad = FlakySink(name="good"), FlakySink(name="bad", fail_flush=True)
    store = GatedSQLiteStore(tmp_path / "ck.db")
    bound = Pipeline(one_record_units(5), id=KEY).fan_out(
        SinkFanOut([good, bad], sink_concurrency=2),
        delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1))
    with pytest.raises(OSError, match="bad flush failed"):
        bound.run_sync()
    assert store.calls == 0 and stored(tmp_path / "ck.db") is None
    assert "good.flush" in good.log  # the other sink's flush ran to its end too


@pytest.mark.timeout(30)
def test_ctrl_c_with_a_save_in_flight_waits_for_it_and_keeps_the_handled_prefix(
        tmp_path: Path) -> None:
    sink = FlakySink()
    store = GatedSQLiteStore(tmp_path / "ck.db", hold_on=2, durable=lambda: sink.flushed_count)
    bound = Pipeline(one_record_units(50), id=KEY).build(
        sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1))
    run_ended = threading.Event()
    ended_while_held: list[bool] = []

    def press_ctrl_c() -> None:
        assert store.entered.wait(10)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(SETTLE_S)
        ended_while_held.append(run_ended.is_set())
        store.gate_open.set()

    helper = threading.Thread(target=press_ctrl_c)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            bound.run_sync()
    finally:
        run_ended.set()
        store.gate_open.set()
        helper.join(10)
    assert ended_while_held == [False]  # the run could not end under the save in flight
    summary = bound.last_summary
    assert summary is not None and summary.outcome == "interrupted"
    assert 2 in store.saved and len(sink.rows) < 50
    assert stored(tmp_path / "ck.db") == summary.last_checkpoint_value == len(sink.rows)
    assert summary.checkpoint.saves == len(store.saved)
    assert checkpoint_threads() == []


@pytest.mark.timeout(30)
def test_cancelling_a_run_with_a_save_in_flight_leaves_no_thread_or_task(tmp_path: Path) -> None:
    sink = FlakySink()
    store = GatedSQLiteStore(tmp_path / "ck.db", hold_on=2, durable=lambda: sink.flushed_count)
    bound = Pipeline(one_record_units(50), id=KEY).build(
        sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1))

    async def main() -> set[asyncio.Task[Any]]:
        task = asyncio.create_task(bound.run(handle_signals=False))
        await wait_until_async(store.entered.is_set, what="the held save")
        task.cancel()
        await asyncio.sleep(SETTLE_S)
        assert not task.done()  # the cancel waits for the save on its thread
        store.gate_open.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]

    try:
        left = asyncio.run(main())
    finally:
        store.gate_open.set()
    assert left == set()
    summary = bound.last_summary
    assert summary is not None and summary.outcome == "interrupted"
    assert stored(tmp_path / "ck.db") == summary.last_checkpoint_value == len(sink.rows)
    assert summary.checkpoint.saves == len(store.saved)
    assert checkpoint_threads() == []


def test_a_save_failing_in_the_background_while_the_run_stops_for_another_error_is_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sink = FlakySink(fail=lambda r: r["id"] == 2)  # no DLQ, fail_closed: the 3rd unit stops the run
    store = GatedSQLiteStore(tmp_path / "ck.db", hold_on=2, fail_on=frozenset({2}))
    bound = Pipeline(one_record_units(10), id=KEY).build(
        sink, delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1))
    opener = threading.Thread(target=lambda: (store.entered.wait(10), store.gate_open.set()))
    opener.start()
    try:
        with pytest.raises(ValueError, match="flaky rejects"):  # the run's own error wins
            bound.run_sync()
    finally:
        store.gate_open.set()
        opener.join(10)
    summary = bound.last_summary
    assert summary is not None and summary.checkpoint.failures == 1 and summary.checkpoint.saves == 1
    assert stored(tmp_path / "ck.db") == 1
    assert "checkpoint save failed while the run was stopping" in caplog.text
    assert checkpoint_threads() == []


@pytest.mark.timeout(30)
def test_cancelling_during_concurrent_flushes_lets_every_flush_end_first(tmp_path: Path) -> None:
    held = HeldFlushSink(hold_on=2, name="held")
    other = FlakySink(name="other")
    store = GatedSQLiteStore(tmp_path / "ck.db")
    bound = Pipeline(one_record_units(20), id=KEY).fan_out(
        SinkFanOut([held, other], sink_concurrency=2),
        delivery=DeliveryConfig(checkpoint=store, checkpoint_every=1))

    async def main() -> None:
        task = asyncio.create_task(bound.run(handle_signals=False))
        await wait_until_async(held.held.is_set, what="the held flush")
        task.cancel()
        await asyncio.sleep(SETTLE_S)
        assert not task.done()  # the cancel waits for the held flush to end
        held.release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
    finally:
        held.release.set()
    summary = bound.last_summary
    assert summary is not None and summary.outcome == "interrupted"
    # The final save covers what both sinks made durable, and nothing more.
    assert stored(tmp_path / "ck.db") == summary.last_checkpoint_value == len(held.rows) == len(other.rows)
    assert held.flushed_count == len(held.rows)
