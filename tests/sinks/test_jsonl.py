"""JsonLinesSink: encoding, per-record failures, lifecycle, durability, append."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import decimal
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from agora.errors import LifecycleError
from agora.planes import DataPlane
from agora.records import DLQRecord
from agora.sinks.jsonl import JsonLinesSink, encode_json_line


def read_lines(path: Path) -> list[Any]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


async def write_all(sink: JsonLinesSink, *calls: tuple[str, Any]) -> list[Any]:
    await sink.open()
    results = [await getattr(sink, op)(arg) for op, arg in calls]
    await sink.close()
    return results


def test_declares_every_plane_native(tmp_path: Path) -> None:
    spec = JsonLinesSink(tmp_path / "x.jsonl").data_plane_spec()
    assert spec.native_planes == tuple(DataPlane)
    assert spec.sink_name == "jsonl:x.jsonl"


def test_round_trip_on_every_plane_with_unicode_and_nulls(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonLinesSink(path)
    rows = [{"id": 1, "name": "Zoë 🚀", "v": None}, {"id": 2, "name": "line\nbreak", "v": 1.5}]
    batch = pa.record_batch({"id": [3, 4, 5], "name": ["a", None, "c"], "v": [1.0, 2.0, None]})
    results = asyncio.run(write_all(
        sink, ("write", rows[0]), ("write_batch", rows[1:]),
        ("write_arrow_batch", batch.slice(1, 2)), ("write_arrow_batch", batch.slice(0, 0)),
    ))
    assert results == [None, None, None, None]
    assert read_lines(path) == rows + [{"id": 4, "name": None, "v": 2.0},
                                       {"id": 5, "name": "c", "v": None}]
    assert sink.records_written == 4
    assert len(path.read_bytes().splitlines()) == 4  # newlines in values are escaped


def test_non_json_values_are_encoded_deterministically(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    tz = dt.timezone(dt.timedelta(hours=2))
    record = {
        "ts": dt.datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=tz),
        "day": dt.date(2024, 5, 6),
        "amount": decimal.Decimal("10.50"),
        "raw": b"\x00\xffhi",
        "floats": [float("nan"), float("inf"), float("-inf"), 0.5],
        "nested": {"t": (1, 2)},
    }
    asyncio.run(write_all(JsonLinesSink(path), ("write", record)))
    (line,) = read_lines(path)
    assert line == {
        "ts": "2024-05-06T07:08:09.000010+02:00",
        "day": "2024-05-06",
        "amount": "10.50",
        "raw": base64.b64encode(b"\x00\xffhi").decode(),
        "floats": ["NaN", "Infinity", "-Infinity", 0.5],
        "nested": {"t": [1, 2]},
    }
    assert [float(x) for x in line["floats"][1:3]] == [float("inf"), float("-inf")]
    assert encode_json_line(record) == encode_json_line(dict(record))  # deterministic


def test_unencodable_records_fail_alone_and_name_the_sink(tmp_path: Path) -> None:
    path = tmp_path / "partial.jsonl"
    records = [{"ok": 1}, {"bad": object()}, {"lone": "\ud800"}, {(1, 2): "key"}, {"ok": 2}]
    original = [dict(r) for r in records]
    sink = JsonLinesSink(path, name="events")
    (results,) = asyncio.run(write_all(sink, ("write_batch", records)))
    assert [r.written for r in results] == [True, False, False, False, True]
    assert isinstance(results[1].error, TypeError) and "'events'" in str(results[1].error)
    assert "object" in str(results[1].error)
    assert isinstance(results[2].error, ValueError) and "'events'" in str(results[2].error)
    assert isinstance(results[3].error, TypeError)
    assert read_lines(path) == [{"ok": 1}, {"ok": 2}]
    assert records == original  # input not mutated


def test_write_of_unencodable_record_raises(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path / "x.jsonl", name="j")

    async def main() -> None:
        await sink.open()
        with pytest.raises(TypeError, match="'j' cannot write record as JSON"):
            await sink.write({"x": {1, 2}})
        await sink.close()

    asyncio.run(main())
    assert (tmp_path / "x.jsonl").read_bytes() == b""


def test_dlq_records_are_written_as_their_dict(tmp_path: Path) -> None:
    path = tmp_path / "dlq.jsonl"
    rec = DLQRecord(pipeline_id="p", run_id="r", stage="middleware", error_type="E",
                    error_message="m", source="s", checkpoint=3, record={"x": 1})
    asyncio.run(write_all(JsonLinesSink(path), ("write", rec)))
    assert read_lines(path) == [rec.to_dict()]


@pytest.mark.parametrize("op", ["write", "write_batch", "write_arrow_batch", "flush"])
def test_lifecycle_misuse_names_the_sink(tmp_path: Path, op: str) -> None:
    sink = JsonLinesSink(tmp_path / "x.jsonl", name="life")
    args = {"write": ({"x": 1},), "write_batch": ([{"x": 1}],),
            "write_arrow_batch": (pa.record_batch({"x": [1]}),), "flush": ()}[op]

    async def main() -> None:
        with pytest.raises(LifecycleError, match="'life' before open"):
            await getattr(sink, op)(*args)
        await sink.open()
        with pytest.raises(LifecycleError, match="'life' is already open"):
            await sink.open()
        await sink.close()
        await sink.close()
        with pytest.raises(LifecycleError, match="closed sink 'life'"):
            await getattr(sink, op)(*args)

    asyncio.run(main())
    assert (tmp_path / "x.jsonl").read_bytes() == b""


def test_flush_fsyncs_and_close_implies_flush(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "d.jsonl"
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    sink = JsonLinesSink(path)

    async def main() -> None:
        await sink.open()
        await sink.write({"n": 1})
        await sink.flush()
        assert len(synced) == 1
        assert read_lines(path) == [{"n": 1}]  # visible to another reader after flush
        await sink.write({"n": 2})
        await sink.close()

    asyncio.run(main())
    assert len(synced) == 2
    assert read_lines(path) == [{"n": 1}, {"n": 2}]


def test_append_mode_and_reopen_continue_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    asyncio.run(write_all(JsonLinesSink(path), ("write", {"n": 1})))
    sink = JsonLinesSink(path, mode="a")
    asyncio.run(write_all(sink, ("write", {"n": 2})))
    asyncio.run(write_all(sink, ("write", {"n": 3})))  # a closed sink reopened appends
    assert read_lines(path) == [{"n": 1}, {"n": 2}, {"n": 3}]
    asyncio.run(write_all(JsonLinesSink(path), ("write", {"n": 4})))  # "w" truncates
    assert read_lines(path) == [{"n": 4}]


def test_append_cuts_an_incomplete_last_line_left_by_a_crash(tmp_path: Path, caplog) -> None:
    path = tmp_path / "cut.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": 2')
    sink = JsonLinesSink(path, mode="a", name="j")
    asyncio.run(write_all(sink, ("write", {"n": 3})))
    assert read_lines(path) == [{"n": 1}, {"n": 3}]
    assert "incomplete last line" in caplog.text
    whole = tmp_path / "torn_only.jsonl"
    whole.write_bytes(b'{"n": 1')
    asyncio.run(write_all(JsonLinesSink(whole, mode="a"), ("write", {"n": 9})))
    assert read_lines(whole) == [{"n": 9}]


def test_missing_directory_is_a_clear_error_at_open(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path / "nope" / "x.jsonl", name="j")
    with pytest.raises(FileNotFoundError, match="'j' cannot create .*nope.*does not exist"):
        asyncio.run(sink.open())
    with pytest.raises(LifecycleError, match="before open"):
        asyncio.run(sink.write({"x": 1}))


def test_bad_mode_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be 'w'.*got 'x'"):
        JsonLinesSink(tmp_path / "x.jsonl", mode="x")


def test_os_refusal_at_open_keeps_its_type_and_names_the_sink(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path, name="j")  # a directory cannot be opened for writing
    with pytest.raises(IsADirectoryError, match="'j' cannot open .* for writing"):
        asyncio.run(sink.open())
