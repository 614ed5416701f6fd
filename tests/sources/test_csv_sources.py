"""CsvSource (stdlib csv) and ArrowCsvSource (pyarrow streaming): values, malformed rows
under both policies, exact resume, empty inputs, missing files and bad checkpoints."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from agora.errors import CheckpointError, SourceRecordError
from agora.planes import DataPlane
from agora.records import MalformedRecord
from agora.sources import ArrowCsvSource, CsvSource
from tests.sources.source_checks import (
    at,
    positions,
    assert_resume_exact,
    drain,
    drain_with_checkpoints,
    rows_of,
)

GOOD = "id,name,city\n1,Ada,Zürich\n2,Bo,東京\n3,Cy,Oslo\n"
# Line 3 has too few fields, line 5 too many; line 6 is blank.
MIXED = "id,name\n1,a\n2\n3,c\n4,d,extra\n\n5,e\n6,f\n"


@pytest.fixture
def write(tmp_path: Path):
    def write(text: str | bytes, name: str = "data.csv") -> Path:
        path = tmp_path / name
        if isinstance(text, str):
            path.write_text(text, encoding="utf-8")
        else:
            path.write_bytes(text)
        return path

    return write


# -- CsvSource ----------------------------------------------------------------------------


def test_csv_rows_are_string_dicts_keyed_by_header(write) -> None:
    src = CsvSource(write(GOOD))
    assert src.source_name == "csv:data.csv"
    assert src.emitted_data_plane is DataPlane.PYTHON_ROWS
    assert drain(src) == [
        {"id": "1", "name": "Ada", "city": "Zürich"},
        {"id": "2", "name": "Bo", "city": "東京"},
        {"id": "3", "name": "Cy", "city": "Oslo"},
    ]


def test_csv_checkpoints_are_line_and_byte_after_each_record(write) -> None:
    _, checkpoints = drain_with_checkpoints(CsvSource(write("a\nx\n\ny\n")))
    assert positions(checkpoints) == [{"line": 2, "byte": 4}, {"line": 4, "byte": 7}]


def test_csv_quoted_newlines_and_crlf_are_one_record(write) -> None:
    text = 'id,note\r\n1,"two\r\nlines"\r\n2,plain\r\n'
    src_path = write(text.encode())
    assert drain(CsvSource(src_path)) == [
        {"id": "1", "note": "two\r\nlines"},
        {"id": "2", "note": "plain"},
    ]
    assert assert_resume_exact(lambda: CsvSource(src_path)) == 2


def test_csv_last_record_without_newline_resumes(write) -> None:
    path = write("a,b\n1,2\n3,4")
    assert assert_resume_exact(lambda: CsvSource(path)) == 2


@pytest.mark.parametrize("policy", ["fail", "dlq"])
def test_csv_resume_is_exact_at_every_boundary(write, policy) -> None:
    path = write(GOOD if policy == "fail" else MIXED)
    assert assert_resume_exact(lambda: CsvSource(path, on_malformed=policy)) >= 3


@pytest.mark.parametrize("batch_size", [1, 2, 3, 10])
def test_csv_batches_resume_exactly_including_after_malformed(write, batch_size) -> None:
    path = write(MIXED)
    n = assert_resume_exact(lambda: CsvSource(path, batch_size=batch_size, on_malformed="dlq"))
    assert n >= 3


def test_csv_malformed_fail_names_file_line_and_reason(write) -> None:
    path = write(MIXED)
    with pytest.raises(SourceRecordError) as info:
        drain(CsvSource(path))
    err = info.value
    assert err.location == f"{path}:3"
    assert err.reason == "expected 2 fields (the header's), got 1"
    assert err.source_name == "csv:data.csv"


def test_csv_malformed_dlq_emits_markers_in_place(write) -> None:
    path = write(MIXED)
    units, checkpoints = drain_with_checkpoints(CsvSource(path, on_malformed="dlq"))
    bad = [(i, u) for i, u in enumerate(units) if isinstance(u, MalformedRecord)]
    assert [i for i, _ in bad] == [1, 3]
    assert bad[0][1] == MalformedRecord(
        raw="2", reason="expected 2 fields (the header's), got 1", location=f"{path}:3"
    )
    assert bad[1][1].raw == "4,d,extra"
    assert bad[1][1].location == f"{path}:5"
    assert positions(checkpoints)[1] == {"line": 3, "byte": 14}
    good = [u["id"] for u in units if not isinstance(u, MalformedRecord)]
    assert good == ["1", "3", "5", "6"]


def test_csv_batches_end_before_a_malformed_record(write) -> None:
    units = drain(CsvSource(write(MIXED), batch_size=10, on_malformed="dlq"))
    shapes = [len(u) if isinstance(u, list) else "bad" for u in units]
    assert shapes == [1, "bad", 1, "bad", 2]


def test_csv_batch_checkpoint_within_last_batch_is_exact(write) -> None:
    path = write("a\n1\n2\n3\n4\n")

    async def go() -> tuple:
        src = CsvSource(path, batch_size=3)
        await src.open()
        agen = src.stream_batches()
        await agen.__anext__()
        result = (src.checkpoint_within_last_batch(0), src.checkpoint_within_last_batch(2))
        await agen.aclose()
        await src.close()
        return result

    before, within = asyncio.run(go())
    assert before == at(path, {"line": 1, "byte": 2})
    assert within == at(path, {"line": 3, "byte": 6})
    assert drain(CsvSource(path, batch_size=3), within, resume=True) == [[{"a": "3"}, {"a": "4"}]]


def test_csv_plane_methods_match_the_declared_plane(write) -> None:
    path = write(GOOD)

    async def go(src: CsvSource, batches: bool) -> None:
        await src.open()
        try:
            async for _ in src.stream_batches() if batches else src.stream():
                pass
        finally:
            await src.close()

    with pytest.raises(NotImplementedError, match="use stream_batches"):
        asyncio.run(go(CsvSource(path, batch_size=2), batches=False))
    with pytest.raises(NotImplementedError, match="use stream\\(\\)"):
        asyncio.run(go(CsvSource(path), batches=True))
    assert CsvSource(path, batch_size=2).emitted_data_plane is DataPlane.PYTHON_BATCHES


def test_csv_syntax_error_is_malformed(write) -> None:
    path = write('a,b\n1,"x"y\n2,z\n')
    with pytest.raises(SourceRecordError, match="CSV syntax error"):
        drain(CsvSource(path, strict=True))
    units = drain(CsvSource(path, strict=True, on_malformed="dlq"))
    assert isinstance(units[0], MalformedRecord)
    assert units[0].location == f"{path}:2"
    assert units[1:] == [{"a": "2", "b": "z"}]


def test_csv_undecodable_line_is_malformed_and_undecodable_header_fails(write) -> None:
    path = write(b"a,b\n1,\xff\n2,ok\n")
    with pytest.raises(SourceRecordError, match="cannot decode line as utf-8"):
        drain(CsvSource(path))
    units = drain(CsvSource(path, on_malformed="dlq"))
    assert units[0].raw == "1,\ufffd"
    assert units[1:] == [{"a": "2", "b": "ok"}]
    header = write(b"\xffa,b\n1,2\n", "bad_header.csv")
    with pytest.raises(SourceRecordError, match=r"bad_header.csv:1.*cannot decode"):
        drain(CsvSource(header, on_malformed="dlq"))


def test_csv_encodings(write) -> None:
    path = write("név\nÁrvíztűrő\n".encode("latin2"))
    assert drain(CsvSource(path, encoding="latin2")) == [{"név": "Árvíztűrő"}]
    bom = write("\ufeffa\n1\n".encode(), "bom.csv")
    assert drain(CsvSource(bom, encoding="utf-8-sig")) == [{"a": "1"}]
    with pytest.raises(ValueError, match="not ASCII-compatible"):
        CsvSource(path, encoding="utf-16")
    with pytest.raises(LookupError):
        CsvSource(path, encoding="no-such-codec")


def test_csv_format_parameters_pass_through(write) -> None:
    path = write("a;b\n1;2\n")
    assert drain(CsvSource(path, delimiter=";")) == [{"a": "1", "b": "2"}]
    with pytest.raises(TypeError):
        CsvSource(path, delimiter="too long")


@pytest.mark.parametrize("text", ["", "\n\n", "a,b\n", "a,b\n\n\n"])
def test_csv_empty_and_header_only_files_emit_nothing(write, text) -> None:
    path = write(text)
    assert drain(CsvSource(path)) == []
    assert assert_resume_exact(lambda: CsvSource(path)) == 0


def test_csv_bad_constructor_arguments(write) -> None:
    path = write(GOOD)
    with pytest.raises(ValueError, match="on_malformed must be 'fail' or 'dlq'; got 'skip'"):
        CsvSource(path, on_malformed="skip")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        CsvSource(path, batch_size=0)


@pytest.mark.parametrize(
    "value",
    [7, {"line": 1}, {"line": 1, "byte": -2}, {"line": "1", "byte": 8}, [1, 8]],
)
def test_csv_checkpoint_of_the_wrong_shape_is_refused(write, value) -> None:
    path = write(GOOD)
    if isinstance(value, dict):
        value = at(path, value, 0)
    with pytest.raises(CheckpointError, match=r"'csv:data.csv'.*expected \{\"line\""):
        drain(CsvSource(path), value, resume=True)


@pytest.mark.parametrize(
    "value",
    [{"line": 9, "byte": 999}, {"line": 2, "byte": 20}, {"line": 0, "byte": 3},
     {"line": 4, "byte": 0}],
)
def test_csv_checkpoint_that_does_not_fit_the_file_is_refused(write, value) -> None:
    path = write(GOOD)
    with pytest.raises(CheckpointError, match="cannot resume over|after the header"):
        drain(CsvSource(path), at(path, value), resume=True)


def test_csv_missing_file_fails_at_open_naming_source_and_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="source 'csv:nope.csv'") as info:
        drain(CsvSource(path))
    assert info.value.filename == str(path)


# -- ArrowCsvSource -----------------------------------------------------------------------


def arrow_rows(units: list) -> list:
    return [u for u in rows_of(units) if not isinstance(u, MalformedRecord)]


def test_arrow_csv_emits_typed_record_batches(write) -> None:
    src = ArrowCsvSource(write(GOOD))
    assert src.source_name == "arrow_csv:data.csv"
    assert src.emitted_data_plane is DataPlane.ARROW_BATCHES
    units = drain(src)
    assert all(isinstance(u, pa.RecordBatch) for u in units)
    assert units[0].schema.field("id").type == pa.int64()
    assert rows_of(units)[1] == {"id": 2, "name": "Bo", "city": "東京"}


def test_arrow_csv_small_blocks_and_batch_size_shape_the_batches(write) -> None:
    path = write("n\n" + "".join(f"{i}\n" for i in range(100)))
    units = drain(ArrowCsvSource(path, block_size=64))
    assert len(units) > 3
    assert arrow_rows(units) == [{"n": i} for i in range(100)]
    capped = drain(ArrowCsvSource(path, batch_size=7))
    assert max(u.num_rows for u in capped) == 7
    assert arrow_rows(capped) == [{"n": i} for i in range(100)]


@pytest.mark.parametrize(("block_size", "batch_size"), [(8, None), (16, None), (40, 1), (None, 2)])
def test_arrow_csv_resume_is_exact_with_malformed_rows(write, block_size, batch_size) -> None:
    path = write(MIXED)

    def make() -> ArrowCsvSource:
        return ArrowCsvSource(
            path, block_size=block_size, batch_size=batch_size, on_malformed="dlq"
        )

    assert assert_resume_exact(make, interleaving_may_vary=True) >= 3
    units = drain(make())
    assert [u.raw for u in units if isinstance(u, MalformedRecord)] == ["2", "4,d,extra"]
    assert [r["id"] for r in arrow_rows(units)] == [1, 3, 5, 6]


def test_arrow_csv_malformed_record_carries_line_and_reason(write) -> None:
    path = write(MIXED)
    units, checkpoints = drain_with_checkpoints(ArrowCsvSource(path, on_malformed="dlq"))
    assert units[0] == MalformedRecord(
        raw="2", reason="expected 2 columns, got 1", location=f"{path}:3"
    )
    assert units[1].location == f"{path}:5"
    # One block: both markers come before its batch; the checkpoint counts both kinds.
    # The last one can seek straight to the end of the file: nothing precedes it unread.
    end = {"byte": len(MIXED.encode()), "line": MIXED.count("\n"), "row": 4, "malformed": 2}
    assert positions(checkpoints) == [
        {"row": 0, "malformed": 1},
        {"row": 0, "malformed": 2},
        {"row": 4, "malformed": 2, "seek": end},
    ]


@pytest.mark.parametrize("block_size", [8, None])
def test_arrow_csv_malformed_fail_names_file_line_and_reason(write, block_size) -> None:
    path = write(MIXED)
    with pytest.raises(SourceRecordError) as info:
        drain(ArrowCsvSource(path, block_size=block_size))
    assert info.value.location == f"{path}:3"
    assert info.value.reason == "expected 2 columns, got 1: '2'"


def test_arrow_csv_conversion_error_is_fatal_and_says_what_to_do(write) -> None:
    path = write("a\n1\n2\nx\n")
    with pytest.raises(SourceRecordError, match="column_types") as info:
        drain(ArrowCsvSource(path, block_size=4, on_malformed="dlq"))
    assert str(path) in info.value.location
    as_strings = pa_csv.ConvertOptions(column_types={"a": pa.string()})
    units = drain(ArrowCsvSource(path, block_size=4, convert_options=as_strings))
    assert [r["a"] for r in rows_of(units)] == ["1", "2", "x"]


def test_arrow_csv_options_pass_through(write) -> None:
    path = write("a;b\n1;2\n")
    units = drain(
        ArrowCsvSource(
            path,
            parse_options=pa_csv.ParseOptions(delimiter=";"),
            read_options=pa_csv.ReadOptions(column_names=["x", "y"], skip_rows=1),
        )
    )
    assert rows_of(units) == [{"x": 1, "y": 2}]
    src = ArrowCsvSource(path, read_options=pa_csv.ReadOptions(block_size=4096, use_threads=True))
    assert src.block_size == 4096


def test_arrow_csv_refuses_a_user_invalid_row_handler(write) -> None:
    with pytest.raises(ValueError, match="use on_malformed"):
        ArrowCsvSource(
            write(GOOD), parse_options=pa_csv.ParseOptions(invalid_row_handler=lambda r: "skip")
        )


@pytest.mark.parametrize("text", ["", "\n\n", "a,b\n"])
def test_arrow_csv_empty_and_header_only_files_emit_nothing(write, text) -> None:
    path = write(text)
    assert drain(ArrowCsvSource(path)) == []
    assert assert_resume_exact(lambda: ArrowCsvSource(path)) == 0


def test_arrow_csv_all_rows_malformed_emits_only_markers(write) -> None:
    path = write("a,b\n1\n2\n")
    units = drain(ArrowCsvSource(path, on_malformed="dlq"))
    assert [u.raw for u in units] == ["1", "2"]


def test_arrow_csv_checkpoint_past_the_file_is_refused(write) -> None:
    path = write(GOOD)
    with pytest.raises(CheckpointError, match="has fewer"):
        drain(ArrowCsvSource(path), at(path, {"row": 4, "malformed": 0}), resume=True)
    empty = write("", "empty.csv")
    with pytest.raises(CheckpointError, match="has fewer"):
        drain(ArrowCsvSource(empty), at(empty, {"row": 1, "malformed": 0}), resume=True)


@pytest.mark.parametrize("value", [3, {"row": 3}, {"row": 1, "malformed": True}])
def test_arrow_csv_checkpoint_of_the_wrong_shape_is_refused(write, value) -> None:
    path = write(GOOD)
    if isinstance(value, dict):
        value = at(path, value)
    with pytest.raises(CheckpointError, match=r'expected \{"row": <int >= 0>, "malformed"'):
        drain(ArrowCsvSource(path), value, resume=True)


def test_arrow_csv_stats_count_blocks_rows_and_rescans(write) -> None:
    path = write(MIXED)
    src = ArrowCsvSource(path, on_malformed="dlq")
    drain(src, at(path, {"row": 2, "malformed": 1}, 0), resume=True)
    assert src.stats == {"blocks": 1, "rows": 2, "malformed": 1, "rescanned_rows": 2}


def test_arrow_csv_missing_file_fails_at_open(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="source 'arrow_csv:gone.csv'"):
        drain(ArrowCsvSource(tmp_path / "gone.csv"))


def test_arrow_csv_bad_constructor_arguments(write) -> None:
    with pytest.raises(ValueError, match="block_size must be a positive int"):
        ArrowCsvSource(write(GOOD), block_size=-1)
    with pytest.raises(ValueError, match="on_malformed"):
        ArrowCsvSource(write(GOOD), on_malformed="ignore")


def test_names_use_the_basename_so_they_survive_a_move(tmp_path: Path) -> None:
    a, b = tmp_path / "one", tmp_path / "two"
    a.mkdir()
    b.mkdir()
    assert CsvSource(a / "x.csv").source_name == CsvSource(b / "x.csv").source_name
    assert CsvSource(os.fspath(a / "x.csv"), name="mine").source_name == "mine"
