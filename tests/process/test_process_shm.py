"""Shared memory is reserved before it is written, and a batch that /dev/shm cannot hold
crosses over the worker's pipe instead — on the driver's side and on the worker's."""

from __future__ import annotations

import errno
import logging
import os
from multiprocessing import Pipe

import pyarrow as pa
import pytest

from agora.errors import ProcessPoolBrokenError, WorkerStartupError
from agora.process import ArrowProcessBatchMiddleware, ProcessBatchMiddleware
from agora.process import shm
from agora.process.shm import HEADER_SIZE, MappedSlot, ShmFull, Slot, leftover_slot_paths
from agora.process.transport import encode_rows, put_arrow, put_rows, recv_raw
from agora.process.worker import OK, VIA_PIPE_SHM_FULL, VIA_SLOT, _send_result
from tests.process import faults
from tests.process.helpers import rows, run, started

pytestmark = pytest.mark.timeout(60)


def refuse_payload_reservations(
    monkeypatch: pytest.MonkeyPatch, above: int = HEADER_SIZE
) -> list[int]:
    """Make this process's reservations of more than ``above`` bytes fail like a full
    /dev/shm (a slot's header still fits); returns the list of refused lengths."""
    refused: list[int] = []
    real = shm.reserve

    def full_above(fd: int, offset: int, length: int, directory: str) -> None:
        if offset + length > above:
            refused.append(length)
            raise ShmFull(directory, length, errno.ENOSPC)
        real(fd, offset, length, directory)

    monkeypatch.setattr(shm, "reserve", full_above)
    return refused


# ------------------------------------------------------------------ reservation


def test_a_slot_reserves_its_header_and_then_what_each_write_needs():
    slot = Slot(0)
    try:
        assert slot.reserved == HEADER_SIZE
        assert os.stat(slot.path).st_blocks > 0  # the header page is really allocated
        put_rows(slot, b"x" * 5000)
        assert slot.reserved == HEADER_SIZE + 5000
        put_rows(slot, b"y" * 10)  # already covered: nothing more is reserved
        assert slot.reserved == HEADER_SIZE + 5000
    finally:
        slot.release()


def test_a_full_directory_refuses_the_write_and_leaves_the_slot_untouched(monkeypatch):
    slot = Slot(0)
    try:
        slot.payload(4)[:] = b"keep"
        refuse_payload_reservations(monkeypatch)
        with pytest.raises(ShmFull) as info:
            put_rows(slot, b"z" * 100)
        assert bytes(slot.payload(4)) == b"keep"
        message = str(info.value)
        assert shm.shm_dir() in message and "free" in message
        assert "--shm-size" in message and "AGORA_SHM_DIR" in message
        with pytest.raises(ShmFull):
            put_arrow(slot, pa.record_batch({"x": [1, 2, 3]}))
    finally:
        slot.release()


def test_without_posix_fallocate_space_is_reserved_by_writing_zeros(monkeypatch):
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    slot = Slot(0)
    try:
        put_rows(slot, b"a" * 200_000)
        assert os.stat(slot.path).st_blocks * 512 >= 200_000
        assert bytes(slot.payload(3)) == b"aaa"
    finally:
        slot.release()


def test_an_interrupted_reservation_is_retried(monkeypatch):
    real = os.posix_fallocate
    calls: list[int] = []

    def interrupted_once(fd: int, offset: int, length: int) -> None:
        calls.append(length)
        if len(calls) == 1:
            raise InterruptedError(errno.EINTR, "Interrupted system call")
        real(fd, offset, length)

    slot = Slot(0)
    try:
        monkeypatch.setattr(os, "posix_fallocate", interrupted_once)
        put_rows(slot, b"q" * 9000)
        assert calls == [9000, 9000] and slot.reserved == HEADER_SIZE + 9000
    finally:
        slot.release()


def test_zero_filling_that_finds_no_room_raises_shm_full(monkeypatch):
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSYS, "no fallocate")

    def no_room(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    monkeypatch.setattr(os, "pwrite", no_room)
    with pytest.raises(ShmFull, match="No space left on device"):
        Slot(0)
    assert leftover_slot_paths(os.getpid()) == []  # the half-made slot was unlinked


def test_a_read_only_mapping_cannot_reserve():
    slot = Slot(0)
    try:
        reader = MappedSlot(slot.path, slot.capacity, writable=False)
        with pytest.raises(ValueError, match="read-only mapping cannot reserve"):
            reader.reserve(10)
        reader.close()
    finally:
        slot.release()


def test_agora_shm_dir_chooses_the_directory_and_a_bad_one_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("AGORA_SHM_DIR", str(tmp_path))
    assert shm.shm_dir() == str(tmp_path)
    slot = Slot(0)
    try:
        assert os.path.dirname(slot.path) == str(tmp_path)
    finally:
        slot.release()
    monkeypatch.setenv("AGORA_SHM_DIR", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="AGORA_SHM_DIR must name a writable directory"):
        shm.shm_dir()


# ------------------------------------------------------------------ worker side, in process


@pytest.mark.parametrize("lane", ["rows", "arrow"])
def test_a_worker_that_cannot_reserve_sends_its_result_over_the_pipe(monkeypatch, lane):
    result = rows(1, 50) if lane == "rows" else pa.record_batch({"x": list(range(50))})
    slot = Slot(0)
    reader, writer = Pipe(duplex=False)
    out = MappedSlot(slot.path, slot.capacity, writable=True)
    try:
        _send_result(writer, out, lane, 7, result)
        assert OK.unpack(reader.recv_bytes())[3] == VIA_SLOT  # room: the slot is used
        assert slot.read_header()[0] == 7
        refuse_payload_reservations(monkeypatch, above=0)
        fresh = MappedSlot(slot.path, slot.capacity, writable=True)  # nothing reserved yet
        _send_result(writer, fresh, lane, 8, result)
        _op, seq, nbytes, via = OK.unpack(reader.recv_bytes())
        assert (seq, via) == (8, VIA_PIPE_SHM_FULL)
        data = recv_raw(reader, nbytes)  # the result follows right after the OK message
        assert data.size == nbytes
        assert slot.read_header()[0] == 7  # the slot was not touched
        if lane == "rows":
            assert data.to_pybytes() == encode_rows(result)
        else:
            assert pa.ipc.open_stream(data).read_next_batch().equals(result)
        fresh.close()
    finally:
        out.close()
        reader.close()
        writer.close()
        slot.release()


# ------------------------------------------------------------------ whole pool


def test_driver_side_full_shm_sends_batches_over_the_pipe_and_counts_them(
    no_orphans, monkeypatch, caplog
):
    refused = refuse_payload_reservations(monkeypatch)
    mw = ProcessBatchMiddleware(faults.double_values, max_workers=2)

    async def main():
        async with started(mw):
            for i in range(3):
                out = await mw.submit(i, rows(i, 20))
                assert [r["value"] for r in out] == [2 * v for v in range(20)]
            metrics = mw.metrics()
            assert metrics["shm_fallbacks_in"] == 3
            assert metrics["shm_fallbacks_out"] == 0  # workers' own reservations succeed
            assert metrics["batches_ok"] == 3

    with caplog.at_level(logging.WARNING, logger="agora.process"):
        run(main)
    assert refused
    warnings = [r.getMessage() for r in caplog.records if r.name == "agora.process"]
    assert len(warnings) == 1  # the first fallback is logged, not every one
    assert "'process_batch'" in warnings[0] and "--shm-size" in warnings[0]


@pytest.mark.parametrize("lane", ["rows", "arrow"])
def test_worker_side_full_shm_returns_results_over_the_pipe_and_counts_them(no_orphans, lane):
    if lane == "rows":
        mw = ProcessBatchMiddleware(faults.double_values_with_shm_full, max_workers=1)
        batches = [rows(i, 30) for i in range(3)]
    else:
        mw = ArrowProcessBatchMiddleware(faults.arrow_add_doubled_with_shm_full, max_workers=1)
        batches = [pa.record_batch({"x": [float(i)] * 30}) for i in range(3)]

    async def main():
        async with started(mw):
            for i, batch in enumerate(batches):
                out = await mw.submit(i, batch)
                if lane == "rows":
                    assert [r["value"] for r in out] == [2 * v for v in range(30)]
                else:
                    assert out.column("doubled").to_pylist() == [2.0 * i] * 30
            metrics = mw.metrics()
            assert metrics["shm_fallbacks_out"] == 3
            assert metrics["shm_fallbacks_in"] == 0
            assert metrics["batches_ok"] == 3

    run(main)


def test_a_shm_without_room_for_any_slot_fails_start_with_the_fix(no_orphans, monkeypatch):
    refuse_payload_reservations(monkeypatch, above=0)
    mw = ArrowProcessBatchMiddleware(faults.arrow_identity, max_workers=2, name="enrich")

    async def main():
        with pytest.raises(WorkerStartupError) as info:
            async with started(mw):
                pass
        message = str(info.value)
        assert "'enrich'" in message and "shared-memory slots" in message
        assert "--shm-size" in message and "AGORA_SHM_DIR" in message

    run(main)


def test_a_bad_agora_shm_dir_fails_start_naming_the_variable(no_orphans, monkeypatch, tmp_path):
    monkeypatch.setenv("AGORA_SHM_DIR", str(tmp_path / "nowhere"))
    mw = ProcessBatchMiddleware(faults.double_values, max_workers=1, name="clean")

    async def main():
        with pytest.raises(WorkerStartupError, match=r"'clean': AGORA_SHM_DIR must name"):
            async with started(mw):
                pass

    run(main)


def test_a_new_generation_without_room_for_slots_breaks_the_pool_with_the_fix(
    no_orphans, monkeypatch
):
    mw = ProcessBatchMiddleware(faults.sigkill_self_on_poison, max_workers=1, name="enrich")

    async def main():
        async with started(mw):
            assert await mw.submit(0, rows(0)) is not None
            refuse_payload_reservations(monkeypatch, above=0)  # /dev/shm is full from now on
            # The worker dies; the fresh generation cannot even create its slots.
            with pytest.raises(ProcessPoolBrokenError) as info:
                await mw.submit(1, rows(1, poison=True))
            message = str(info.value)
            assert "could not start a new worker generation" in message
            assert "--shm-size" in message and "AGORA_SHM_DIR" in message
            with pytest.raises(ProcessPoolBrokenError):  # later batches fail fast
                await mw.submit(2, rows(2))
        assert mw.metrics()["pool_state"] == "broken"

    run(main)


def test_a_worker_that_cannot_map_its_slots_fails_start_naming_them(no_orphans, monkeypatch):
    from agora.process import workers as workers_module

    real_spec = workers_module.WorkerSpec

    def spec_with_a_vanished_input_slot(**fields: object) -> object:
        fields["in_path"] = str(fields["in_path"]) + "-gone"
        return real_spec(**fields)  # type: ignore[arg-type]

    monkeypatch.setattr(workers_module, "WorkerSpec", spec_with_a_vanished_input_slot)
    mw = ProcessBatchMiddleware(faults.double_values, max_workers=1, name="enrich")

    async def main():
        with pytest.raises(WorkerStartupError) as info:
            async with started(mw):
                pass
        message = str(info.value)
        assert "'enrich': a worker could not map its shared-memory slots" in message
        assert "FileNotFoundError" in message

    run(main)
