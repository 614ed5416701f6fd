"""Shared-memory slots and codecs, and what happens when the driver itself is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pytest

from agora.process.shm import (
    HEADER_SIZE,
    MappedSlot,
    Slot,
    SlotTooSmall,
    leftover_slot_paths,
    sweep_stale_slots,
)
from agora.process.transport import ArrowTransport, RowTransport, encode_rows
from tests.process.helpers import alive


def test_a_slot_is_a_private_file_in_shared_memory_removed_on_release():
    slot = Slot(10)
    try:
        assert os.path.exists(slot.path)
        assert os.stat(slot.path).st_mode & 0o777 == 0o600
        assert slot.capacity >= 10 + HEADER_SIZE
        assert slot.path in leftover_slot_paths(os.getpid())
    finally:
        slot.release()
    assert not os.path.exists(slot.path)
    slot.release()  # idempotent


def test_a_header_is_read_back_only_once_written():
    slot = Slot(100)
    try:
        reader = MappedSlot(slot.path, slot.capacity, writable=False)
        assert reader.read_header() == (-1, 0)
        slot.write_header(42, 17)
        assert reader.read_header() == (42, 17)
        reader.close()
    finally:
        slot.release()


def test_row_transport_round_trip_and_overflow():
    transport = RowTransport()
    slot = Slot(0)
    try:
        n = transport.write_input(slot, encode_rows([{"a": 1}, None]))
        assert transport.read_output(slot, n) == [{"a": 1}, None]
        with pytest.raises(SlotTooSmall) as info:
            transport.write_input(slot, b"x" * (slot.capacity + 1))
        assert info.value.required == slot.capacity + 1
    finally:
        slot.release()


def test_arrow_transport_reports_the_exact_size_it_needs():
    transport = ArrowTransport()
    slot = Slot(0)
    big = pa.record_batch({"x": pa.array(range(300_000), pa.int64())})  # 2.4 MB > 1 MiB
    try:
        with pytest.raises(SlotTooSmall) as info:
            transport.write_input(slot, big)
        roomy = Slot(info.value.required)
        try:
            n = transport.write_input(roomy, big)
            assert n == info.value.required
            out = transport.read_output(roomy, n)
            roomy.view[HEADER_SIZE : HEADER_SIZE + 64] = bytes(64)  # scribble on the slot
            assert out.equals(big)  # the result was copied out
        finally:
            roomy.release()
    finally:
        slot.release()


def test_a_pickled_slice_never_crosses_but_its_ipc_is_only_the_slice():
    transport = ArrowTransport()
    parent = pa.record_batch({"x": pa.array(range(100_000), pa.int64())})
    piece = parent.slice(50_000, 10)
    slot = Slot(0)
    try:
        n = transport.write_input(slot, piece)
        assert n < 2_000
        assert transport.read_output(slot, n).equals(piece)
    finally:
        slot.release()


def test_slots_of_a_dead_creator_are_swept_and_live_ones_kept(tmp_path):
    from agora.process.shm import SLOT_PREFIX, shm_dir

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a pid that is gone
    stale = os.path.join(shm_dir(), f"{SLOT_PREFIX}{child.pid}-0123456789abcdef")
    open(stale, "wb").close()
    mine = Slot(0)
    try:
        assert sweep_stale_slots() >= 1
        assert not os.path.exists(stale)
        assert os.path.exists(mine.path)
    finally:
        mine.release()


DRIVER = textwrap.dedent(
    """
    import asyncio, json, sys
    from agora.process import ProcessBatchMiddleware
    from agora.middleware.base import MiddlewareContext
    from tests.process import faults

    async def main():
        mw = ProcessBatchMiddleware(faults.sleep_as_told, max_workers=2)
        await mw.on_start(MiddlewareContext("p", "r", mw.name, 0))
        busy = asyncio.ensure_future(mw.submit(0, [{"id": 0, "sleep": 300}]))
        await asyncio.sleep(0.2)
        print(json.dumps(mw.worker_pids()), flush=True)
        await busy

    if __name__ == "__main__":
        asyncio.run(main())
    """
)


@pytest.mark.timeout(30)
def test_workers_die_with_a_driver_killed_by_sigkill(no_orphans, tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    driver = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, env=env, cwd=os.getcwd()
    )
    try:
        assert driver.stdout is not None
        pids = json.loads(driver.stdout.readline())
        assert len(alive(pids)) == 2
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        if driver.stdout is not None:
            driver.stdout.close()
    deadline = time.monotonic() + 5
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive(pids) == []  # the busy one and the idle one
    sweep_stale_slots()
    assert leftover_slot_paths(driver.pid) == []


_SIZE_CASES = [
    pa.record_batch({"a": [1, None, 3]}),
    pa.record_batch({"s": ["x", None, "yyyy"], "f": [0.5, 1.5, None]}),
    pa.record_batch({"l": [[1, 2], None, []]}),
    pa.record_batch({"st": [{"x": 1, "y": "a"}, None]}),
    pa.record_batch({"m": pa.array([[("k", 1)], None], pa.map_(pa.string(), pa.int64()))}),
    pa.record_batch({"a": pa.array([], pa.int64())}),
    pa.record_batch({"d": pa.array(["p", "q", "p"]).dictionary_encode()}),
    pa.record_batch({"ld": pa.array([["p"], ["q", "p"]], pa.list_(
        pa.dictionary(pa.int8(), pa.string())))}),
    pa.record_batch({"a": [1, 2]}).replace_schema_metadata({"k": "v" * 100}),
    pa.record_batch({"a": list(range(5000)), "s": [str(i) for i in range(5000)]}).slice(17, 999),
]


def _written_size(batch: pa.RecordBatch) -> int:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().size


def test_the_ipc_size_of_every_batch_is_what_a_real_write_takes_whatever_came_before():
    """The size is learnt per schema from the first batch: each case is sized after every
    other case (so after a different schema was learnt) and twice in a row (learnt)."""
    from agora.process.transport import arrow_ipc_size, write_arrow_into

    for before in _SIZE_CASES:
        for batch in _SIZE_CASES:
            arrow_ipc_size(before)
            for _ in range(2):
                size = arrow_ipc_size(batch)
                assert size == _written_size(batch), (before.schema, batch.schema)
                # and the slot writer fits in exactly that many bytes
                assert write_arrow_into(memoryview(bytearray(size)), batch) == size
