"""A resumed ArrowCsvSource seeks to the record start its checkpoint recorded and parses
only the rows after it: over a grown file it reads exactly the new rows (quoted fields,
CRLF, a last line without a line end), old checkpoints still resume by re-scanning, and a
changed, truncated or mis-pointed file is refused naming the file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from agora.errors import CheckpointError
from agora.records import MalformedRecord
from agora.sources import ArrowCsvSource
from agora.sources.identity import ENDS_WINDOW
from tests.sources.source_checks import (
    assert_resume_exact,
    at,
    drain,
    drain_async,
    drain_with_checkpoints,
    fingerprint,
    rows_of,
    split_kinds,
)

RESET_HINT = r"agora checkpoint reset STORE --key KEY\) or run with a new checkpoint_key"


def lines(first: int, last: int, *, newline: str = "\n", quoted: bool = False) -> str:
    """Data lines ``first``..``last - 1``: an id and a text (quoted, with an embedded
    delimiter and doubled quote, when ``quoted``)."""
    if quoted:
        return "".join(f'{i},"say ""hi"", {i}"{newline}' for i in range(first, last))
    return "".join(f"{i},t{i}{newline}" for i in range(first, last))


def ids(units: list[Any]) -> list[int]:
    return [row["id"] for row in rows_of(units) if not isinstance(row, MalformedRecord)]


def last_checkpoint(source: ArrowCsvSource) -> Any:
    units, checkpoints = drain_with_checkpoints(source)
    assert units, "the first run read nothing: the test would prove nothing"
    return json.loads(json.dumps(checkpoints[-1])), units


def resumed(source: ArrowCsvSource, checkpoint: Any) -> list[Any]:
    return drain(source, checkpoint, resume=True)


@pytest.mark.parametrize(
    ("newline", "quoted"), [("\n", False), ("\r\n", False), ("\n", True), ("\r\n", True)]
)
def test_a_resume_over_a_grown_file_parses_only_the_new_rows(
    tmp_path: Path, newline: str, quoted: bool
) -> None:
    path = tmp_path / "daily.csv"
    path.write_bytes(f"id,text{newline}{lines(0, 300, newline=newline, quoted=quoted)}".encode())
    checkpoint, units = last_checkpoint(ArrowCsvSource(path, block_size=512))
    assert ids(units) == list(range(300))
    assert checkpoint["seek"] == {"byte": path.stat().st_size, "line": 301, "row": 300,
                                  "malformed": 0}
    with open(path, "ab") as fh:
        fh.write(lines(300, 450, newline=newline, quoted=quoted).encode())
    source = ArrowCsvSource(path, block_size=512)
    units = resumed(source, checkpoint)
    assert ids(units) == list(range(300, 450))
    if quoted:
        assert rows_of(units)[0]["text"] == 'say "hi", 300'
    assert source.stats["rescanned_rows"] == 0  # nothing before the checkpoint was parsed


def test_every_checkpoint_resumes_exactly_with_malformed_and_blank_lines(
    tmp_path: Path,
) -> None:
    body = []
    for i in range(200):
        body.append(f"{i},t{i}\n")
        if i % 17 == 3:
            body.append("oops\n")  # too few fields
        if i % 23 == 5:
            body.append("\n\r\n")  # blank lines pyarrow skips
        if i % 31 == 7:
            body.append(f'{i},"open\n')  # an unterminated quote: screened
    path = tmp_path / "mixed.csv"
    path.write_text("id,text\n" + "".join(body))

    def make() -> ArrowCsvSource:
        return ArrowCsvSource(path, block_size=256, batch_size=7, on_malformed="dlq")

    _, checkpoints = drain_with_checkpoints(make())
    seeking = [cp for cp in checkpoints if cp.get("seek", {}).get("byte", 0) > 0]
    assert len(seeking) > len(checkpoints) // 2, "most checkpoints should carry a record start"
    assert assert_resume_exact(make, interleaving_may_vary=True) > 40  # units: batches, markers


def test_malformed_rows_after_a_seek_keep_their_file_line(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,text\n" + lines(0, 100))
    checkpoint, _ = last_checkpoint(ArrowCsvSource(path, on_malformed="dlq"))
    with open(path, "a") as fh:
        fh.write("100,t100\nbad\n101,t101,extra\n")
    units = resumed(ArrowCsvSource(path, on_malformed="dlq"), checkpoint)
    good, bad = split_kinds(units)
    assert [row["id"] for row in good] == [100]
    assert [m.location for m in bad] == [f"{path}:103", f"{path}:104"]


def test_a_last_line_without_a_line_end_then_grown_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"id,text\n" + lines(0, 50).encode() + b"50,t50")  # no final newline
    checkpoint, units = last_checkpoint(ArrowCsvSource(path, block_size=128))
    assert ids(units) == list(range(51))
    # The last line had no line end, so it is not a known record start: the record start
    # is the line end before it, and the resume skips that one row.
    assert checkpoint["seek"]["row"] < 51 and checkpoint["seek"]["byte"] < path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(b"\n" + lines(51, 60).encode())
    source = ArrowCsvSource(path, block_size=128)
    assert ids(resumed(source, checkpoint)) == list(range(51, 60))
    assert source.stats["rescanned_rows"] == 51 - checkpoint["seek"]["row"]


def test_a_checkpoint_without_a_record_start_still_resumes_by_rescanning(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,text\n" + lines(0, 120))
    checkpoint, _ = last_checkpoint(ArrowCsvSource(path, block_size=256))
    del checkpoint["seek"]  # as written before checkpoints carried one
    with open(path, "a") as fh:
        fh.write(lines(120, 130))
    source = ArrowCsvSource(path, block_size=256)
    assert ids(resumed(source, checkpoint)) == list(range(120, 130))
    assert source.stats["rescanned_rows"] == 120


def test_a_resumed_read_keeps_the_column_types_of_the_first_block(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,price\n" + "".join(f"{i},{i}.5\n" for i in range(20)))
    checkpoint, _ = last_checkpoint(ArrowCsvSource(path))
    with open(path, "a") as fh:
        fh.write("20,3\n21,4\n")  # on their own these would read as int64
    units = resumed(ArrowCsvSource(path), checkpoint)
    assert [u.schema.field("price").type for u in units] == [pa.float64()]
    assert rows_of(units) == [{"id": 20, "price": 3.0}, {"id": 21, "price": 4.0}]
    # User column types and dictionary encoding survive the seek too.
    options = pa_csv.ConvertOptions(column_types={"id": pa.int32()}, auto_dict_encode=True)
    path.write_text("id,city\n1,Oslo\n2,Kyoto\n")
    checkpoint, _ = last_checkpoint(ArrowCsvSource(path, convert_options=options))
    with open(path, "a") as fh:
        fh.write("3,Lima\n")
    units = resumed(ArrowCsvSource(path, convert_options=options), checkpoint)
    assert units[0].schema == pa.schema(
        [("id", pa.int32()), ("city", pa.dictionary(pa.int32(), pa.string()))]
    )
    assert rows_of(units) == [{"id": 3, "city": "Lima"}]


def test_quoted_values_spanning_lines_resume_exactly_without_a_record_start(
    tmp_path: Path,
) -> None:
    # A line end may sit inside a quoted value, so no read end is known to start a record:
    # checkpoints carry none and a resume re-scans.
    text = "".join(f'{i},"line one\nline ""two"" of {i}"\n' for i in range(60))
    path = tmp_path / "multi.csv"
    path.write_text("id,text\n" + text)
    parse = pa_csv.ParseOptions(newlines_in_values=True)

    def make() -> ArrowCsvSource:
        return ArrowCsvSource(path, block_size=128, parse_options=parse)

    checkpoint, units = last_checkpoint(make())
    assert rows_of(units)[1]["text"] == 'line one\nline "two" of 1'
    assert "seek" not in checkpoint
    with open(path, "a") as fh:
        fh.write('60,"new\nrow"\n')
    assert rows_of(resumed(make(), checkpoint)) == [{"id": 60, "text": "new\nrow"}]
    assert assert_resume_exact(make) > 1


def test_a_bare_carriage_return_stops_recording_record_starts(tmp_path: Path) -> None:
    # pyarrow ends a row at a lone CR, so lines stop being rows: later checkpoints keep
    # the last record start found before it and resume exactly.
    path = tmp_path / "cr.csv"
    path.write_bytes(b"id,text\n" + lines(0, 40).encode() + b"40,a\rb\n" + lines(41, 80).encode())

    def make() -> ArrowCsvSource:
        return ArrowCsvSource(path, block_size=128, on_malformed="dlq")

    checkpoint, _ = last_checkpoint(make())
    assert 0 < checkpoint["seek"]["row"] <= 40
    assert assert_resume_exact(make, interleaving_may_vary=True) > 1


def test_an_edited_prefix_is_refused_before_seeking(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,text\n" + lines(0, 100))
    checkpoint, _ = last_checkpoint(ArrowCsvSource(path, block_size=256))
    assert checkpoint["seek"]["byte"] > 0
    data = path.read_bytes()
    path.write_bytes(data.replace(b"50,t50", b"50,x50") + lines(100, 110).encode())
    with pytest.raises(CheckpointError, match="replaced or edited") as info:
        resumed(ArrowCsvSource(path, block_size=256), checkpoint)
    assert str(path) in str(info.value)
    assert "the checkpoint already consumed" in str(info.value)


def test_a_truncated_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,text\n" + lines(0, 100))
    checkpoint, _ = last_checkpoint(ArrowCsvSource(path))
    path.write_text("id,text\n" + lines(0, 10))  # the seek offset is now past the end
    with pytest.raises(CheckpointError, match="truncated or replaced") as info:
        resumed(ArrowCsvSource(path), checkpoint)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("where", ["mid-line", "file start", "inside the header"])
def test_a_record_start_that_is_not_a_line_start_is_refused(tmp_path: Path, where: str) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,text\n" + lines(0, 10))
    size = path.stat().st_size
    byte = {"mid-line": size - 2, "file start": 0, "inside the header": 3}[where]
    value = at(path, {"row": 10, "malformed": 0,
                      "seek": {"byte": byte, "line": 0, "row": 0, "malformed": 0}}, size)
    with pytest.raises(CheckpointError, match="not the start of a line") as info:
        resumed(ArrowCsvSource(path), value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "seek",
    [
        {"byte": 10**9, "line": 1, "row": 0, "malformed": 0},  # beyond what was consumed
        {"byte": 8, "line": 1, "row": 11, "malformed": 0},  # more rows than the checkpoint
        {"byte": 8, "line": 1, "row": 0, "malformed": 1},  # more malformed rows, too
        {"byte": 8, "line": 1, "row": 0},  # a field missing
        {"byte": -1, "line": 1, "row": 0, "malformed": 0},
        [8, 1, 0, 0],
    ],
)
def test_a_record_start_that_this_source_cannot_have_written_is_refused(
    tmp_path: Path, seek: Any
) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,text\n" + lines(0, 10))
    value = at(path, {"row": 10, "malformed": 0, "seek": seek}, path.stat().st_size)
    with pytest.raises(CheckpointError, match=r'"seek": \{"byte"') as info:
        resumed(ArrowCsvSource(path), value)
    assert RESET_HINT.split("\\")[0] in str(info.value) or "reset" in str(info.value).lower()


def test_a_resume_at_the_end_of_an_unchanged_file_emits_nothing(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,text\n" + lines(0, 30))
    checkpoint, _ = last_checkpoint(ArrowCsvSource(path))
    source = ArrowCsvSource(path)
    assert resumed(source, checkpoint) == []
    assert source.stats["rescanned_rows"] == 0


def big_file(path: Path, rows: int = 20_000) -> bytes:
    """A file well past two ENDS_WINDOWs, so its middle is outside both."""
    data = b"id,text\n" + lines(0, rows).encode()
    assert len(data) > 3 * ENDS_WINDOW
    path.write_bytes(data)
    return data


def test_the_ends_check_refuses_a_changed_start_or_resume_point(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    data = big_file(path)
    checkpoint, _ = last_checkpoint(ArrowCsvSource(path, verify_input="ends"))
    assert set(checkpoint["input"]) == {"consumed", "head_sha256", "tail_sha256"}
    for changed, where in [(data.replace(b"\n5,t5\n", b"\n5,x5\n"), "its start differs"),
                           (data[:-4] + b"x99\n", "just before the resume point")]:
        path.write_bytes(changed + lines(20_000, 20_010).encode())
        with pytest.raises(CheckpointError, match=where) as info:
            resumed(ArrowCsvSource(path, verify_input="ends"), checkpoint)
        assert str(path) in str(info.value)


def test_an_edit_inside_the_prefix_passes_the_ends_check_but_not_the_full_one(
    tmp_path: Path,
) -> None:
    # The documented limit of the opt-in ends check: a same-length edit outside both
    # windows. The default is the whole-prefix hash, which refuses it.
    path = tmp_path / "big.csv"
    data = big_file(path)
    ends, _ = last_checkpoint(ArrowCsvSource(path, verify_input="ends"))
    full, _ = last_checkpoint(ArrowCsvSource(path))
    assert set(full["input"]) == {"consumed", "sha256"} and full["seek"] == ends["seek"]
    path.write_bytes(data.replace(b"\n10000,t10000\n", b"\n10000,x10000\n")
                     + lines(20_000, 20_010).encode())
    resumed_ends = resumed(ArrowCsvSource(path, verify_input="ends"), ends)
    assert ids(resumed_ends) == list(range(20_000, 20_010))
    with pytest.raises(CheckpointError, match="replaced or edited") as info:
        resumed(ArrowCsvSource(path), full)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("first", "then"), [("ends", "full"), ("full", "ends")])
def test_switching_verify_input_between_runs_resumes_exactly(
    tmp_path: Path, first: str, then: str
) -> None:
    path = tmp_path / "big.csv"
    big_file(path)
    checkpoint, _ = last_checkpoint(ArrowCsvSource(path, verify_input=first))
    with open(path, "ab") as fh:
        fh.write(lines(20_000, 20_050).encode())
    source = ArrowCsvSource(path, verify_input=then)
    units, checkpoints = asyncio.run(drain_async(source, checkpoint, resume=True))
    assert ids(units) == list(range(20_000, 20_050))
    assert source.stats["rescanned_rows"] == 0
    # The new checkpoint identifies the input the way the new run was asked to.
    expected = {"consumed", "sha256"} if then == "full" else {"consumed", "head_sha256",
                                                               "tail_sha256"}
    assert set(checkpoints[-1]["input"]) == expected
    if then == "full":
        assert checkpoints[-1]["input"] == fingerprint(path, path.stat().st_size)


def test_verify_input_must_be_ends_or_full(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="verify_input must be 'ends' or 'full'; got 'fast'"):
        ArrowCsvSource(tmp_path / "x.csv", verify_input="fast")
