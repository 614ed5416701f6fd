"""Read-ahead: ``ReadAhead`` order, bound, errors and shutdown, and ``ArrowCsvSource`` with
read-ahead on giving exactly what it gives with reading inline (rows, markers, checkpoints,
error points), leaving no thread behind."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agora.errors import SourceRecordError
from agora.sources import ArrowCsvSource
from agora.sources._readahead import END, ReadAhead
from tests.sources.source_checks import assert_resume_exact, drain_with_checkpoints, split_kinds, unit_view


def _readahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("agora-readahead")]


def _counter(limit: int, *, fail_at: int | None = None) -> tuple[Any, list[int]]:
    calls: list[int] = []

    def read() -> Any:
        i = len(calls)
        calls.append(i)
        if fail_at is not None and i == fail_at:
            raise OSError(f"disk error at item {i}")
        return END if i >= limit else i

    return read, calls


def test_items_come_in_order_then_end_repeats() -> None:
    read, _ = _counter(50)

    async def main() -> list[Any]:
        ra: ReadAhead[Any] = ReadAhead(read, depth=3, name="agora-readahead-test")
        got = []
        try:
            while (item := await ra.next()) is not END:
                got.append(item)
            assert await ra.next() is END
        finally:
            ra.close()
        return got

    assert asyncio.run(main()) == list(range(50))
    assert _readahead_threads() == []


def test_never_reads_more_than_depth_ahead() -> None:
    read, calls = _counter(100)

    async def main() -> None:
        ra: ReadAhead[Any] = ReadAhead(read, depth=2, name="agora-readahead-test")
        try:
            assert await ra.next() == 0
            time.sleep(0.2)  # give the thread every chance to run further ahead
            # item 0 taken, 2 queued, at most one more being read
            assert len(calls) <= 4, calls
            assert await ra.next() == 1
        finally:
            ra.close()

    asyncio.run(main())
    assert _readahead_threads() == []


def test_read_error_surfaces_after_every_earlier_item_and_stops_reading() -> None:
    read, calls = _counter(100, fail_at=3)

    async def main() -> list[Any]:
        ra: ReadAhead[Any] = ReadAhead(read, depth=4, name="agora-readahead-test")
        got: list[Any] = []
        try:
            with pytest.raises(OSError, match="disk error at item 3"):
                while True:
                    got.append(await ra.next())
            assert await ra.next() is END  # the error is not raised twice
        finally:
            ra.close()
        return got

    assert asyncio.run(main()) == [0, 1, 2]
    assert len(calls) == 4  # nothing read after the failing call
    assert _readahead_threads() == []


def test_close_while_thread_blocked_on_full_queue_ends_the_thread() -> None:
    read, _ = _counter(10_000)

    async def main() -> None:
        ra: ReadAhead[Any] = ReadAhead(read, depth=1, name="agora-readahead-test")
        assert await ra.next() == 0
        time.sleep(0.05)
        thread = ra.thread
        assert thread is not None and thread.is_alive()
        ra.close()
        assert not thread.is_alive()
        with pytest.raises(RuntimeError, match="after close"):
            await ra.next()

    asyncio.run(main())
    assert _readahead_threads() == []


def test_cancelled_consumer_then_close_leaves_no_thread() -> None:
    gate = threading.Event()

    def read() -> Any:
        gate.wait(5)
        return 1

    async def main() -> None:
        ra: ReadAhead[Any] = ReadAhead(read, depth=1, name="agora-readahead-test")
        task = asyncio.ensure_future(ra.next())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()  # the read in progress is let finish; close() waits for it
        ra.close()

    asyncio.run(main())
    assert _readahead_threads() == []


@pytest.mark.parametrize("depth", [0, -1, True, 1.5])
def test_bad_depth_is_rejected(depth: Any) -> None:
    with pytest.raises(ValueError, match="depth must be an int >= 1"):
        ReadAhead(lambda: END, depth=depth)


# -- ArrowCsvSource --------------------------------------------------------------------


def _csv(path: Path, rows: int, *, bad_every: int | None = None) -> Path:
    lines = ["id,name,amount"]
    for i in range(rows):
        if bad_every and i % bad_every == bad_every - 1:
            lines.append(f"{i},short")  # wrong column count: a malformed row
        else:
            lines.append(f"{i},name{i},{i * 1.5}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("on_malformed", ["dlq", "fail"])
def test_arrow_csv_same_units_and_checkpoints_with_and_without_read_ahead(
    tmp_path: Path, on_malformed: str
) -> None:
    path = _csv(tmp_path / "data.csv", 3000, bad_every=None if on_malformed == "fail" else 97)

    def read(read_ahead: int) -> tuple[list[Any], list[Any]]:
        src = ArrowCsvSource(path, block_size=4096, on_malformed=on_malformed,
                             read_ahead=read_ahead)
        units, checkpoints = drain_with_checkpoints(src)
        return [unit_view(u) for u in units], checkpoints

    inline_units, inline_cps = read(0)
    ahead_units, ahead_cps = read(3)
    assert len(inline_units) > 10  # many blocks, so read-ahead really ran ahead
    if on_malformed == "fail":
        assert ahead_units == inline_units
        assert ahead_cps == inline_cps
    else:
        # pyarrow may report a malformed row one block early, in either mode and varying
        # between runs: rows and markers must each match in order, and the end position.
        assert split_kinds(ahead_units) == split_kinds(inline_units)
        assert len(split_kinds(inline_units)[1]) > 10
        assert ahead_cps[-1] == inline_cps[-1]
    assert _readahead_threads() == []


def test_arrow_csv_resume_is_exact_with_read_ahead(tmp_path: Path) -> None:
    path = _csv(tmp_path / "data.csv", 600, bad_every=53)
    n = assert_resume_exact(
        lambda: ArrowCsvSource(path, block_size=2048, on_malformed="dlq", read_ahead=2),
        interleaving_may_vary=True,
    )
    assert n > 5
    assert _readahead_threads() == []


def test_arrow_csv_fatal_row_is_raised_after_the_rows_before_its_block(tmp_path: Path) -> None:
    path = _csv(tmp_path / "data.csv", 2000, bad_every=1500)  # one bad row, at line 1501

    async def main(read_ahead: int) -> tuple[int, str]:
        src = ArrowCsvSource(path, block_size=2048, on_malformed="fail", read_ahead=read_ahead)
        await src.open()
        rows = 0
        try:
            with pytest.raises(SourceRecordError) as info:
                async for batch in src.stream_batches():
                    rows += batch.num_rows
        finally:
            await src.close()
        return rows, str(info.value)

    inline = asyncio.run(main(0))
    ahead = asyncio.run(main(4))
    assert ahead == inline
    assert 0 < inline[0] < 1500 and "data.csv:1501" in inline[1]
    assert _readahead_threads() == []


def test_arrow_csv_close_mid_stream_stops_the_reading_thread(tmp_path: Path) -> None:
    path = _csv(tmp_path / "data.csv", 5000)

    async def main() -> None:
        src = ArrowCsvSource(path, block_size=2048, read_ahead=2)
        await src.open()
        stream = src.stream_batches()
        await stream.__anext__()
        assert len(_readahead_threads()) == 1
        await stream.aclose()  # an abandoned stream stops reading ahead
        assert _readahead_threads() == []
        await src.close()

    asyncio.run(main())
    assert _readahead_threads() == []


@pytest.mark.parametrize("bad", [-1, True, 2.0])
def test_arrow_csv_bad_read_ahead_names_the_source(tmp_path: Path, bad: Any) -> None:
    path = _csv(tmp_path / "data.csv", 3)
    with pytest.raises(ValueError, match=r"source 'arrow_csv:.*read_ahead must be an int >= 0"):
        ArrowCsvSource(path, read_ahead=bad)
