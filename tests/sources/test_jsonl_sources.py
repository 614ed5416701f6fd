"""JsonLinesSource and ArrowJsonLinesSource: parsing, malformed lines under both policies,
schema pinning, exact byte-offset resume, empty files and bad checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from agora.errors import CheckpointError, SourceRecordError
from agora.planes import DataPlane
from agora.records import MalformedRecord
from agora.sources import ArrowJsonLinesSource, JsonLinesSource
from tests.sources.source_checks import (
    at,
    positions,
    assert_resume_exact,
    drain,
    drain_with_checkpoints,
    rows_of,
)

RECORDS = [{"id": i, "name": f"ü{i}", "tags": ["a"] * (i % 3 + 1)} for i in range(6)]
GOOD = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS)
# Line 2 is invalid JSON, line 4 blank, line 5 an array, line 7 a bare number.
MIXED = '{"id": 1}\n{"id": \n{"id": 2}\n\n[1, 2]\n{"id": 3}\n7\n{"id": 4}\n'


@pytest.fixture
def write(tmp_path: Path):
    def write(text: str | bytes, name: str = "data.jsonl") -> Path:
        path = tmp_path / name
        path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
        return path

    return write


def good_ids(units: list) -> list:
    return [r["id"] for r in rows_of(units) if not isinstance(r, MalformedRecord)]


def markers(units: list) -> list[MalformedRecord]:
    return [u for u in units if isinstance(u, MalformedRecord)]


# -- JsonLinesSource ----------------------------------------------------------------------


def test_jsonl_rows_are_the_objects(write) -> None:
    src = JsonLinesSource(write(GOOD))
    assert src.source_name == "jsonl:data.jsonl"
    assert src.emitted_data_plane is DataPlane.PYTHON_ROWS
    assert drain(src) == RECORDS


def test_jsonl_checkpoints_are_line_and_byte(write) -> None:
    _, checkpoints = drain_with_checkpoints(JsonLinesSource(write('{"a":1}\n\n{"a":2}\n')))
    assert positions(checkpoints) == [{"line": 1, "byte": 8}, {"line": 3, "byte": 17}]


@pytest.mark.parametrize("text", [GOOD, MIXED, '{"a": 1}\r\n{"a": 2}', ""])
def test_jsonl_resume_is_exact_at_every_boundary(write, text) -> None:
    path = write(text)
    n = assert_resume_exact(lambda: JsonLinesSource(path, on_malformed="dlq"))
    assert n == len([line for line in text.splitlines() if line.strip()])


def test_jsonl_malformed_fail_names_file_line_and_reason(write) -> None:
    path = write(MIXED)
    with pytest.raises(SourceRecordError) as info:
        drain(JsonLinesSource(path))
    assert info.value.location == f"{path}:2"
    assert info.value.reason.startswith("invalid JSON:")


def test_jsonl_malformed_dlq_keeps_raw_lines_and_goes_on(write) -> None:
    path = write(MIXED)
    units = drain(JsonLinesSource(path, on_malformed="dlq"))
    assert good_ids(units) == [1, 2, 3, 4]
    bad = markers(units)
    assert [(m.raw, m.location) for m in bad] == [
        ('{"id": ', f"{path}:2"),
        ("[1, 2]", f"{path}:5"),
        ("7", f"{path}:7"),
    ]
    assert bad[1].reason == "expected a JSON object, got a JSON list"


def test_jsonl_undecodable_line_is_malformed(write) -> None:
    path = write(b'{"a": "\xff"}\n{"a": 1}\n')
    units = drain(JsonLinesSource(path, on_malformed="dlq"))
    assert markers(units)[0].reason.startswith("not UTF-8")
    assert units[1:] == [{"a": 1}]


@pytest.mark.parametrize(
    "value",
    [{"line": 1, "byte": 5}, {"line": 1, "byte": 9999}],
)
def test_jsonl_checkpoint_that_does_not_fit_the_file_is_refused(write, value) -> None:
    path = write(GOOD)
    with pytest.raises(CheckpointError, match="cannot resume over"):
        drain(JsonLinesSource(path), at(path, value), resume=True)


@pytest.mark.parametrize("value", [None, 3, {"byte": 3}, {"line": 0, "byte": 1.0}])
def test_jsonl_checkpoint_of_the_wrong_shape_is_refused(write, value) -> None:
    path = write(GOOD)
    if isinstance(value, dict):
        value = at(path, value, 0)
    with pytest.raises(CheckpointError, match=r"'jsonl:data.jsonl'.*expected"):
        drain(JsonLinesSource(path), value, resume=True)


def test_jsonl_missing_file_fails_at_open(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="source 'jsonl:x.jsonl'"):
        drain(JsonLinesSource(tmp_path / "x.jsonl"))


# -- ArrowJsonLinesSource -----------------------------------------------------------------


def test_arrow_jsonl_emits_compact_typed_batches(write) -> None:
    src = ArrowJsonLinesSource(write(GOOD))
    assert src.source_name == "arrow_jsonl:data.jsonl"
    assert src.emitted_data_plane is DataPlane.ARROW_BATCHES
    units = drain(src)
    assert len(units) == 1 and isinstance(units[0], pa.RecordBatch)
    assert units[0].schema.field("tags").type == pa.list_(pa.string())
    assert rows_of(units) == RECORDS


def test_arrow_jsonl_blocks_hold_whole_lines(write) -> None:
    path = write(GOOD)
    units, checkpoints = drain_with_checkpoints(ArrowJsonLinesSource(path, block_size=20))
    assert rows_of(units) == RECORDS
    assert len(units) == len(RECORDS)  # every line is longer than a block
    end = {"byte": len(GOOD.encode()), "line": 6, "row": 0, "malformed": 0}
    assert positions(checkpoints)[-1] == end


@pytest.mark.parametrize("block_size", [1, 16, 40, 1 << 20])
@pytest.mark.parametrize("text", [GOOD, MIXED])
def test_arrow_jsonl_resume_is_exact_at_every_boundary(write, text, block_size) -> None:
    path = write(text)
    n = assert_resume_exact(
        lambda: ArrowJsonLinesSource(path, block_size=block_size, on_malformed="dlq")
    )
    assert n >= 1


def test_arrow_jsonl_malformed_dlq_isolates_lines_of_a_rejected_block(write) -> None:
    path = write(MIXED)
    units = drain(ArrowJsonLinesSource(path, on_malformed="dlq"))
    assert [m.location for m in markers(units)] == [f"{path}:2", f"{path}:5", f"{path}:7"]
    assert markers(units)[0].raw == '{"id": '
    assert good_ids(units) == [1, 2, 3, 4]
    assert isinstance(units[-1], pa.RecordBatch)  # markers come before their block's batch


def test_arrow_jsonl_malformed_fail_names_the_first_bad_line(write) -> None:
    path = write(MIXED)
    with pytest.raises(SourceRecordError) as info:
        drain(ArrowJsonLinesSource(path))
    assert info.value.location == f"{path}:2"


def test_arrow_jsonl_schema_is_pinned_by_the_first_block(write) -> None:
    text = '{"a": 1}\n{"a": 2}\n{"a": "x"}\n{"a": 3, "b": 1}\n{"a": 4}\n'
    path = write(text)
    units = drain(ArrowJsonLinesSource(path, block_size=18, on_malformed="dlq"))
    assert good_ids_a(units) == [1, 2, 4]
    reasons = [m.reason for m in markers(units)]
    assert len(reasons) == 2
    assert all(r.startswith("does not fit the schema of the first block") for r in reasons)
    assert {u.schema for u in units if isinstance(u, pa.RecordBatch)} == {
        pa.schema([("a", pa.int64())])
    }


def test_arrow_jsonl_explicit_schema_avoids_null_pinning(write) -> None:
    path = write('{"tags": []}\n{"tags": ["x"]}\n')
    with pytest.raises(SourceRecordError, match=r"data.jsonl:2: does not fit the schema"):
        drain(ArrowJsonLinesSource(path, block_size=1))
    schema = pa.schema([("tags", pa.list_(pa.string()))])
    units = drain(ArrowJsonLinesSource(path, block_size=1, schema=schema))
    assert rows_of(units) == [{"tags": []}, {"tags": ["x"]}]
    with pytest.raises(TypeError, match="pyarrow.Schema"):
        ArrowJsonLinesSource(path, schema={"tags": "list"})  # type: ignore[arg-type]


def good_ids_a(units: list) -> list:
    return [r["a"] for r in rows_of(units) if not isinstance(r, MalformedRecord)]


def test_arrow_jsonl_resume_keeps_the_first_blocks_schema(write) -> None:
    # The first block infers double; a resumed run that starts at block 3 must not
    # infer int64 from it.
    path = write('{"v": 1.5}\n{"v": 2}\n{"v": 3}\n')
    units, checkpoints = drain_with_checkpoints(ArrowJsonLinesSource(path, block_size=1))
    resumed = drain(ArrowJsonLinesSource(path, block_size=1), checkpoints[1], resume=True)
    assert [u.schema for u in resumed] == [units[2].schema]
    assert resumed[0].schema.field("v").type == pa.float64()


def test_arrow_jsonl_resume_across_a_changed_block_size_is_still_exact(write) -> None:
    path = write(MIXED)
    units, checkpoints = drain_with_checkpoints(
        ArrowJsonLinesSource(path, block_size=1 << 20, on_malformed="dlq")
    )
    for k, value in enumerate(checkpoints):
        resumed = drain(
            ArrowJsonLinesSource(path, block_size=8, on_malformed="dlq"), value, resume=True
        )
        assert good_ids(resumed) == good_ids(units[k + 1 :])
        assert markers(resumed) == markers(units[k + 1 :])


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_arrow_jsonl_empty_files_emit_nothing(write, text) -> None:
    path = write(text)
    assert drain(ArrowJsonLinesSource(path)) == []
    assert assert_resume_exact(lambda: ArrowJsonLinesSource(path)) == 0


def test_arrow_jsonl_all_lines_malformed(write) -> None:
    path = write("nope\n[1]\n")
    units = drain(ArrowJsonLinesSource(path, on_malformed="dlq"))
    assert [m.raw for m in units] == ["nope", "[1]"]


def test_arrow_jsonl_checkpoint_past_the_file_is_refused(write) -> None:
    path = write(GOOD)
    end = len(GOOD.encode())
    with pytest.raises(CheckpointError, match="past the end"):
        drain(
            ArrowJsonLinesSource(path),
            at(path, {"byte": end, "line": 6, "row": 1, "malformed": 0}),
            resume=True,
        )
    with pytest.raises(CheckpointError, match="cannot resume over"):
        drain(
            ArrowJsonLinesSource(path),
            at(path, {"byte": 3, "line": 0, "row": 0, "malformed": 0}),
            resume=True,
        )


@pytest.mark.parametrize("value", [{"byte": 0, "line": 0}, {"byte": 0, "line": 0, "row": 0}, 0])
def test_arrow_jsonl_checkpoint_of_the_wrong_shape_is_refused(write, value) -> None:
    path = write(GOOD)
    if isinstance(value, dict):
        value = at(path, value)
    with pytest.raises(CheckpointError, match=r'expected \{"byte": <int >= 0>'):
        drain(ArrowJsonLinesSource(path), value, resume=True)


def test_arrow_jsonl_missing_file_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="source 'arrow_jsonl:x.jsonl'"):
        drain(ArrowJsonLinesSource(tmp_path / "x.jsonl"))
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        ArrowJsonLinesSource(tmp_path / "x.jsonl", block_size=0)
    with pytest.raises(ValueError, match="on_malformed"):
        ArrowJsonLinesSource(tmp_path / "x.jsonl", on_malformed="drop")
