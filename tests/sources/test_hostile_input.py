"""Bad and hostile input in text and Parquet files: every source that can see a kind of
bad record reports it the same way (file:line and reason, routed by on_malformed), the
other records all arrive unchanged, and nothing in one line can crash the driver."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agora.errors import SourceRecordError
from agora.records import MalformedRecord
from agora.sources import (
    ArrowCsvSource,
    ArrowJsonLinesSource,
    BaseSource,
    CsvSource,
    JsonLinesSource,
    ParquetSource,
)
from agora.sources._text import RAW_CAP
from tests.sources.source_checks import drain, split_kinds

Make = Callable[..., BaseSource]
CSV_SOURCES: dict[str, Make] = {
    "csv": CsvSource,
    "csv_batches": lambda p, **kw: CsvSource(p, batch_size=2, **kw),
    "arrow_csv": ArrowCsvSource,
}
JSON_SOURCES: dict[str, Make] = {"jsonl": JsonLinesSource, "arrow_jsonl": ArrowJsonLinesSource}


def read(make: Make, path: Path, **kw: Any) -> tuple[list[dict[str, Any]], list[MalformedRecord]]:
    good, bad = split_kinds(drain(make(path, on_malformed="dlq", **kw)))
    return [dict(r) for r in good], bad


def as_str(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{k: str(v) for k, v in r.items()} for r in rows]


def write(tmp_path: Path, data: bytes, name: str = "in.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- invalid UTF-8 -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CSV_SOURCES))
def test_csv_invalid_utf8_is_a_malformed_line_and_the_column_stays_text(tmp_path, kind) -> None:
    path = write(tmp_path, b"id,name\n1,ok\n2,bad\xff\n3,fine\n")
    good, bad = read(CSV_SOURCES[kind], path)
    assert as_str(good) == [{"id": "1", "name": "ok"}, {"id": "3", "name": "fine"}]
    assert [(m.location, m.raw) for m in bad] == [(f"{path}:3", "2,bad\ufffd")]
    assert "UTF-8" in bad[0].reason or "utf-8" in bad[0].reason
    if kind == "arrow_csv":
        batches = [u for u in drain(ArrowCsvSource(path, on_malformed="dlq"))
                   if isinstance(u, pa.RecordBatch)]
        assert all(b.schema.field("name").type == pa.string() for b in batches)


@pytest.mark.parametrize("kind", list(JSON_SOURCES))
def test_json_invalid_utf8_is_a_malformed_line_and_never_reaches_a_string_column(
    tmp_path, kind
) -> None:
    path = write(tmp_path, b'{"s": "ok"}\n{"s": "bad\xff"}\n{"s": "fine"}\n')
    good, bad = read(JSON_SOURCES[kind], path)
    assert good == [{"s": "ok"}, {"s": "fine"}]
    assert [m.location for m in bad] == [f"{path}:2"] and "not UTF-8" in bad[0].reason
    if kind == "arrow_jsonl":
        for unit in drain(ArrowJsonLinesSource(path, on_malformed="dlq")):
            if isinstance(unit, pa.RecordBatch):
                unit.validate(full=True)  # raises on invalid UTF-8 in a string column


@pytest.mark.parametrize("kind", [*CSV_SOURCES, *JSON_SOURCES])
def test_invalid_utf8_under_fail_names_file_and_line(tmp_path, kind) -> None:
    if kind in CSV_SOURCES:
        path, make = write(tmp_path, b"a\n1\n\xfe\n"), CSV_SOURCES[kind]
    else:
        path, make = write(tmp_path, b'{"a": 1}\n{"a": "\xfe"}\n'), JSON_SOURCES[kind]
    with pytest.raises(SourceRecordError, match=rf"malformed record at {path}:\d: .*(UTF-8|utf-8)"):
        drain(make(path))


# -- CSV headers, quotes, line endings -------------------------------------------------------


@pytest.mark.parametrize("policy", ["fail", "dlq"])
@pytest.mark.parametrize("kind", list(CSV_SOURCES))
def test_a_duplicated_header_name_makes_the_file_unreadable(tmp_path, kind, policy) -> None:
    path = write(tmp_path, b"a,a,b\n1,2,3\n")
    with pytest.raises(SourceRecordError, match=rf"{path}:1: cannot read the header: .*\['a'\]"):
        drain(CSV_SOURCES[kind](path, on_malformed=policy))


@pytest.mark.parametrize("kind", list(CSV_SOURCES))
def test_an_unterminated_quote_spoils_only_its_own_line(tmp_path, kind) -> None:
    path = write(tmp_path, b'a,b\n1,x\n2,"oops\n3,y\n4,z\n')
    good, bad = read(CSV_SOURCES[kind], path)
    assert as_str(good) == [{"a": "1", "b": "x"}, {"a": "3", "b": "y"}, {"a": "4", "b": "z"}]
    assert [(m.location, m.raw) for m in bad] == [(f"{path}:3", '2,"oops')]
    assert "unterminated quoted field" in bad[0].reason
    with pytest.raises(SourceRecordError, match=rf"{path}:3: unterminated quoted field"):
        drain(CSV_SOURCES[kind](path))


def test_csv_quoted_fields_may_still_span_lines(tmp_path) -> None:
    path = write(tmp_path, b'a,b\n1,"two\nlines"\n2,y\n')
    assert drain(CsvSource(path)) == [{"a": "1", "b": "two\nlines"}, {"a": "2", "b": "y"}]


def test_csv_unterminated_quote_in_a_long_file_keeps_every_later_record(tmp_path) -> None:
    body = b"".join(b"%d,v%d\n" % (i, i) for i in range(2000))
    path = write(tmp_path, b'a,b\n9,"open\n' + body)
    good, bad = read(CsvSource, path, max_record_bytes=4096)
    assert [int(r["a"]) for r in good] == list(range(2000))
    assert [m.location for m in bad] == [f"{path}:2"]


@pytest.mark.parametrize("kind", list(CSV_SOURCES))
def test_cr_only_line_endings_are_a_clear_error_naming_the_file(tmp_path, kind) -> None:
    path = write(tmp_path, b"a,b\r1,2\r3,4\r")
    with pytest.raises(SourceRecordError, match=rf"{path}:1: .*CR-only line endings"):
        drain(CSV_SOURCES[kind](path, on_malformed="dlq"))


@pytest.mark.parametrize("kind", list(CSV_SOURCES))
def test_crlf_line_endings_are_read(tmp_path, kind) -> None:
    path = write(tmp_path, b"a,b\r\n1,2\r\n3,4\r\n")
    good, bad = read(CSV_SOURCES[kind], path)
    assert as_str(good) == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}] and bad == []


# -- BOMs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(CSV_SOURCES))
def test_a_bom_is_stripped_from_the_first_csv_name(tmp_path, kind) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfid,name\n1,x\n2,y\n")
    good, bad = read(CSV_SOURCES[kind], path)
    assert as_str(good) == [{"id": "1", "name": "x"}, {"id": "2", "name": "y"}] and bad == []


@pytest.mark.parametrize("kind", list(JSON_SOURCES))
def test_a_bom_before_the_first_json_line_is_ignored(tmp_path, kind) -> None:
    path = write(tmp_path, b'\xef\xbb\xbf{"a": 1}\n{"a": 2}\n')
    good, bad = read(JSON_SOURCES[kind], path)
    assert good == [{"a": 1}, {"a": 2}] and bad == []


@pytest.mark.parametrize("kind", list(JSON_SOURCES))
def test_a_bom_inside_the_file_is_not_stripped(tmp_path, kind) -> None:
    path = write(tmp_path, b'{"a": 1}\n\xef\xbb\xbf{"a": 2}\n')
    good, bad = read(JSON_SOURCES[kind], path)
    assert good == [{"a": 1}] and [m.location for m in bad] == [f"{path}:2"]


# -- nesting depth ---------------------------------------------------------------------------


def test_jsonl_200k_deep_line_is_malformed_not_a_recursion_error(tmp_path) -> None:
    deep = b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    path = write(tmp_path, b'{"a": 1}\n' + deep + b'\n{"a": 2}\n')
    good, bad = read(JsonLinesSource, path)
    assert good == [{"a": 1}, {"a": 2}]
    assert [m.location for m in bad] == [f"{path}:2"]
    assert bad[0].reason.startswith("JSON nested deeper than max_depth=128")
    with pytest.raises(SourceRecordError, match=rf"{path}:2: JSON nested deeper"):
        drain(JsonLinesSource(path))


ARROW_DEEP_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from agora.sources import ArrowJsonLinesSource
    from agora.records import MalformedRecord

    async def main():
        src = ArrowJsonLinesSource(sys.argv[1], on_malformed="dlq")
        await src.open()
        rows, bad = [], []
        try:
            async for unit in src.stream_batches():
                if isinstance(unit, MalformedRecord):
                    bad.append(unit.location.rsplit(":", 1)[1] + " " + unit.reason)
                else:
                    rows.extend(unit.to_pylist())
        finally:
            await src.close()
        print(json.dumps([rows, bad]))

    asyncio.run(main())
    """
)


@pytest.mark.timeout(60)
def test_arrow_jsonl_20k_deep_lines_do_not_crash_the_process(tmp_path) -> None:
    closed = b'{"a": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    unclosed = b'{"a": ' + b"{\"b\": " * 20_000
    path = write(tmp_path, b'{"a": 1}\n' + closed + b'\n{"a": 2}\n' + unclosed + b'\n{"a": 3}\n')
    # In a child process: if the guard failed, pyarrow's parser would kill it (SIGSEGV).
    done = subprocess.run(
        [sys.executable, "-c", ARROW_DEEP_SCRIPT, str(path)],
        capture_output=True, text=True, timeout=50, cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows, bad = json.loads(done.stdout)
    assert rows == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert [b.split(" (raw")[0] for b in bad] == ["2 JSON nested deeper than max_depth=128",
                                                  "4 JSON nested deeper than max_depth=128"]


@pytest.mark.parametrize("kind", list(JSON_SOURCES))
def test_brackets_inside_strings_do_not_count_towards_depth(tmp_path, kind) -> None:
    text = "[" * 500 + '\\"{' * 300
    path = write(tmp_path, json.dumps({"s": text}).encode() + b"\n")
    good, bad = read(JSON_SOURCES[kind], path)
    assert good == [{"s": text}] and bad == []


@pytest.mark.parametrize("kind", list(JSON_SOURCES))
def test_max_depth_is_a_setting_with_a_safe_range(tmp_path, kind) -> None:
    path = write(tmp_path, b'{"a": [[[1]]]}\n{"a": [2]}\n')
    good, bad = read(JSON_SOURCES[kind], path, max_depth=3)
    assert good == [{"a": [2]}] and [m.location for m in bad] == [f"{path}:1"]
    for wrong in (0, 1001, True, "9"):
        with pytest.raises(ValueError, match=r"max_depth must be an int from 1 to 1000"):
            JSON_SOURCES[kind](path, max_depth=wrong)


# -- record size -----------------------------------------------------------------------------


def long_line_file(tmp_path: Path, kind: str, size: int) -> tuple[Path, bytes]:
    if kind in CSV_SOURCES:
        line = b"2," + b"x" * size
        return write(tmp_path, b"a,b\n1,ok\n" + line + b"\n3,ok\n"), line
    line = b'{"a": "' + b"x" * size + b'"}'
    return write(tmp_path, b'{"a": "ok1"}\n' + line + b'\n{"a": "ok3"}\n'), line


@pytest.mark.parametrize("kind", [*CSV_SOURCES, *JSON_SOURCES])
def test_an_over_long_line_is_malformed_and_its_raw_payload_is_capped(tmp_path, kind) -> None:
    make = {**CSV_SOURCES, **JSON_SOURCES}[kind]
    path, line = long_line_file(tmp_path, kind, 3 << 20)
    where = f"{path}:{3 if kind in CSV_SOURCES else 2}"
    good, bad = read(make, path, max_record_bytes=1 << 20)
    assert len(good) == 2 and all("ok" in str(r) for r in good)
    assert [m.location for m in bad] == [where]
    (record,) = bad
    assert "longer than max_record_bytes=1048576" in record.reason
    assert f"raw record truncated to its first {RAW_CAP} of" in record.reason
    assert record.raw.startswith(line[:RAW_CAP].decode())
    assert record.raw.endswith("bytes]") and len(record.raw) < RAW_CAP + 100
    with pytest.raises(SourceRecordError, match=rf"{where}: (line|record) is"):
        drain(make(path, max_record_bytes=1 << 20))


@pytest.mark.parametrize("kind", [*CSV_SOURCES, *JSON_SOURCES])
def test_a_malformed_line_below_the_limit_keeps_its_first_raw_cap_bytes(tmp_path, kind) -> None:
    make = {**CSV_SOURCES, **JSON_SOURCES}[kind]
    if kind in CSV_SOURCES:
        line = b"2," + b"y" * (RAW_CAP * 2) + b",extra"  # one field too many
        path = write(tmp_path, b"a,b\n" + line + b"\n3,ok\n")
    else:
        line = b'{"a": "' + b"y" * (RAW_CAP * 2)  # unterminated JSON
        path = write(tmp_path, line + b'\n{"a": "ok"}\n')
    good, bad = read(make, path)
    assert len(good) == 1 and len(bad) == 1
    assert bad[0].raw.startswith(line[:RAW_CAP].decode())
    assert "[truncated: first 65536 of" in bad[0].raw and len(bad[0].raw) < RAW_CAP + 100


@pytest.mark.parametrize("kind", [*CSV_SOURCES, *JSON_SOURCES])
def test_max_record_bytes_must_be_positive(tmp_path, kind) -> None:
    make = {**CSV_SOURCES, **JSON_SOURCES}[kind]
    with pytest.raises(ValueError, match="max_record_bytes must be a positive int; got 0"):
        make(tmp_path / "x", max_record_bytes=0)


# -- Parquet ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b"PAR1", b"not parquet at all, just text\n" * 4, "truncated"],
    ids=["empty", "magic-only", "text", "truncated"],
)
def test_an_unreadable_parquet_file_is_an_error_naming_the_path(tmp_path, content) -> None:
    path = tmp_path / "bad.parquet"
    if content == "truncated":
        pq.write_table(pa.table({"a": list(range(100))}), path)
        content = path.read_bytes()[:-20]
    path.write_bytes(content)
    with pytest.raises(SourceRecordError, match=rf"{path}: not a readable Parquet file"):
        drain(ParquetSource(path))


def test_arrow_csv_in_a_declared_other_encoding_is_not_screened_as_utf8(tmp_path) -> None:
    import pyarrow.csv as pa_csv

    path = write(tmp_path, b"a,b\n1,caf\xe9\n2,ok\n")
    src = ArrowCsvSource(path, read_options=pa_csv.ReadOptions(encoding="latin-1"))
    assert rows_of_units(drain(src)) == [{"a": 1, "b": "café"}, {"a": 2, "b": "ok"}]


def rows_of_units(units: list[Any]) -> list[dict[str, Any]]:
    good, bad = split_kinds(units)
    assert bad == []
    return [dict(r) for r in good]


def test_arrow_jsonl_over_deep_line_under_fail_names_file_and_line(tmp_path) -> None:
    deep = b'{"a": ' + b"[" * 2000 + b"]" * 2000 + b"}"  # deep, yet safe for pyarrow itself
    path = write(tmp_path, b'{"a": 1}\n' + deep + b"\n")
    with pytest.raises(SourceRecordError, match=rf"{path}:2: JSON nested deeper than max_depth"):
        drain(ArrowJsonLinesSource(path))


@pytest.mark.parametrize("kind", list(CSV_SOURCES))
def test_a_quote_inside_an_unquoted_field_is_data_on_both_csv_sources(tmp_path, kind) -> None:
    path = write(tmp_path, b'a,b\n1,5" pipe\n2,"x, ""y"""\n3,ok\n')
    good, bad = read(CSV_SOURCES[kind], path)
    assert bad == []
    assert as_str(good) == [{"a": "1", "b": '5" pipe'}, {"a": "2", "b": 'x, "y"'},
                            {"a": "3", "b": "ok"}]


@pytest.mark.parametrize("kind", list(JSON_SOURCES))
def test_an_unpaired_surrogate_escape_is_malformed_and_a_pair_is_read(tmp_path, kind) -> None:
    path = write(tmp_path, b'{"s": "ok"}\n{"s": "a\\ud800b"}\n{"s": "\\ud83d\\ude00"}\n')
    good, bad = read(JSON_SOURCES[kind], path)
    assert good == [{"s": "ok"}, {"s": "\U0001f600"}]
    assert [m.location for m in bad] == [f"{path}:2"]


@pytest.mark.parametrize("kind", [*CSV_SOURCES, *JSON_SOURCES])
def test_the_default_record_limit_caps_a_huge_line(tmp_path, kind) -> None:
    from agora.sources._text import DEFAULT_MAX_RECORD_BYTES

    make = {**CSV_SOURCES, **JSON_SOURCES}[kind]
    path, _ = long_line_file(tmp_path, kind, DEFAULT_MAX_RECORD_BYTES + (1 << 20))
    good, bad = read(make, path)
    assert len(good) == 2 and len(bad) == 1
    assert f"max_record_bytes={DEFAULT_MAX_RECORD_BYTES}" in bad[0].reason
    assert len(bad[0].raw) < RAW_CAP + 100
