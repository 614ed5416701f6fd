"""NullSink and StdoutSink."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import io
import json

import pyarrow as pa
import pytest

from agora.errors import LifecycleError
from agora.planes import DataPlane
from agora.sinks.simple import NullSink, StdoutSink

_CALLS = {
    "write": ({"x": 1},),
    "write_batch": ([{"x": 1}],),
    "write_arrow_batch": (pa.record_batch({"x": [1]}),),
    "flush": (),
}


@pytest.mark.parametrize("factory", [lambda: NullSink(name="n"),
                                     lambda: StdoutSink(io.StringIO(), name="n")])
@pytest.mark.parametrize("op", sorted(_CALLS))
def test_lifecycle_misuse_names_the_sink(factory, op: str) -> None:
    sink = factory()

    async def main() -> None:
        with pytest.raises(LifecycleError, match="'n' before open"):
            await getattr(sink, op)(*_CALLS[op])
        await sink.open()
        await sink.close()
        await sink.close()  # idempotent
        with pytest.raises(LifecycleError, match="closed sink 'n'"):
            await getattr(sink, op)(*_CALLS[op])

    asyncio.run(main())
    assert sink.count == 0


def test_null_sink_counts_every_plane_and_keeps_nothing() -> None:
    sink = NullSink()
    assert sink.data_plane_spec().native_planes == tuple(DataPlane)

    async def main() -> None:
        await sink.open()
        await sink.write({"a": 1})
        assert await sink.write_batch([{"a": 2}, {"a": 3}]) is None
        assert await sink.write_arrow_batch(pa.record_batch({"a": [4, 5, 6]}).slice(1)) is None
        await sink.close()

    asyncio.run(main())
    assert sink.count == 5
    assert not hasattr(sink, "records")


def test_stdout_writes_one_json_line_per_record_on_every_plane() -> None:
    stream = io.StringIO()
    sink = StdoutSink(stream)

    async def main() -> None:
        await sink.open()
        await sink.write({"a": 1, "s": "é"})
        await sink.write_batch([{"a": 2}])
        await sink.write_arrow_batch(pa.record_batch({"a": [3, None]}))
        await sink.close()

    asyncio.run(main())
    lines = stream.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"a": 1, "s": "é"}, {"a": 2}, {"a": 3}, {"a": None}]
    assert sink.count == 4
    assert not stream.closed  # the caller's stream is never closed


def test_stdout_never_fails_on_odd_values() -> None:
    stream = io.StringIO()
    sink = StdoutSink(stream)

    class Odd:
        def __str__(self) -> str:
            return "odd!"

    records = [
        {"when": dt.datetime(2024, 1, 2, 3, 4, 5), "amount": decimal.Decimal("1.50"),
         "raw": b"\x00\xff", "nan": float("nan"), "obj": Odd()},
        {(1, 2): "tuple key"},
        {"lone": "\ud800"},
    ]

    async def main() -> None:
        await sink.open()
        assert await sink.write_batch(records) is None
        await sink.close()

    asyncio.run(main())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0] == {"when": "2024-01-02T03:04:05", "amount": "1.50", "raw": "AP8=",
                        "nan": "NaN", "obj": "odd!"}
    assert lines[1] == str(records[1])
    assert lines[2] == str(records[2])


def test_stdout_defaults_to_sys_stdout_at_write_time(capsys: pytest.CaptureFixture[str]) -> None:
    sink = StdoutSink()

    async def main() -> None:
        await sink.open()
        await sink.write({"hello": "world"})
        await sink.close()

    asyncio.run(main())
    assert json.loads(capsys.readouterr().out) == {"hello": "world"}


def test_stdout_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="'stdout'.*'jsonl'.*got 'csv'"):
        StdoutSink(format="csv")
