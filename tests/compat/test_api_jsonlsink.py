"""``JsonLinesSink`` with 0.3.0's options: ``serializer`` (second positional argument)
applied to every record on every path, ``append=`` as an alias of ``mode=``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from agora import (
    ArrowBatchSource,
    DeliveryConfig,
    IterableSource,
    JsonLinesSink,
    MapMiddleware,
    Pipeline,
)
from agora.stores import JsonLinesDLQSink, read_dlq


@dataclass
class Order:
    id: int
    total: float


def lines(path: Path) -> list[object]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_serializer_turns_opaque_records_into_json_values(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    sink = JsonLinesSink(out, lambda o: {"id": o.id, "total": o.total})
    Pipeline(IterableSource([Order(1, 2.5), Order(2, 4.0)])).build(sink).run_sync()
    assert lines(out) == [{"id": 1, "total": 2.5}, {"id": 2, "total": 4.0}]


def test_the_serializer_sees_arrow_rows_too(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    batch = pa.RecordBatch.from_pydict({"id": [1, 2]})
    sink = JsonLinesSink(out, serializer=lambda row: {"key": row["id"] * 10})
    Pipeline(ArrowBatchSource([batch])).build(sink).run_sync()
    assert lines(out) == [{"key": 10}, {"key": 20}]


def test_a_serializer_that_raises_fails_that_record_alone(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"

    def serialize(row: dict[str, int]) -> dict[str, int]:
        if row["id"] == 2:
            raise KeyError("no such field")
        return row

    dlq = JsonLinesDLQSink(tmp_path / "dlq.jsonl")
    Pipeline(IterableSource([{"id": 1}, {"id": 2}, {"id": 3}])).pipe(
        MapMiddleware(lambda r: r, name="pass")).build(
        JsonLinesSink(out, serialize), delivery=DeliveryConfig(dlq=dlq, batch_size=3)).run_sync()
    assert lines(out) == [{"id": 1}, {"id": 3}]
    (dead,) = list(read_dlq(tmp_path / "dlq.jsonl"))
    assert dead.record == {"id": 2} and "serializer raised KeyError" in dead.error_message


def test_append_is_an_alias_of_mode(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 0}\n')
    Pipeline(IterableSource([{"id": 1}])).build(JsonLinesSink(out, append=True)).run_sync()
    assert lines(out) == [{"id": 0}, {"id": 1}]
    assert JsonLinesSink(out, append=False).mode == "w"


def test_bad_serializer_or_conflicting_spellings_are_refused_naming_the_sink(tmp_path) -> None:
    with pytest.raises(TypeError, match=r"sink 'jsonl:out.jsonl': serializer must be a callable"):
        JsonLinesSink(tmp_path / "out.jsonl", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"append=True and mode='w' disagree"):
        JsonLinesSink(tmp_path / "out.jsonl", append=True, mode="w")
