"""The CSV line screen's quick quote check: it says a chunk holds a line with an odd
number of quote characters exactly when one does, so skipping the line loop when it says
no can never miss an unterminated quoted field."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

import json

from agora import ArrowCsvSource, DeliveryConfig, JsonLinesSink, Pipeline
from agora.stores import JsonLinesDLQSink, read_dlq
from agora.sources._csvscreen import has_odd_quote_line

LINES = st.lists(st.text(alphabet='"a,\r;', max_size=12), max_size=20)


@given(LINES, st.sampled_from(['"', "'", "|"]))
def test_the_check_finds_an_odd_line_exactly_when_there_is_one(lines: list[str], quote: str):
    chunk = "\n".join(line.replace('"', quote) for line in lines).encode()
    expected = any(line.replace('"', quote).count(quote) % 2 for line in lines)
    assert has_odd_quote_line(chunk, quote.encode()) is expected


def test_the_check_counts_quotes_per_line_not_per_chunk():
    assert has_odd_quote_line(b'a,"b\nc,"d\n', b'"')  # two odd lines, an even total
    assert not has_odd_quote_line(b'a,"b"\nc,""\n', b'"')
    assert has_odd_quote_line(b'"""\n', b'"') and not has_odd_quote_line(b'""""\n', b'"')


def test_an_unterminated_quote_among_quoted_lines_is_still_screened(tmp_path: Path):
    body = "".join(f'{i},"name {i}"\n' for i in range(2000))
    body += '2000,"broken\n'
    body += "".join(f'{i},"name {i}"\n' for i in range(2001, 4000))
    path = tmp_path / "orders.csv"
    path.write_text("id,name\n" + body)
    out = tmp_path / "out.jsonl"
    Pipeline(ArrowCsvSource(path, on_malformed="dlq")).build(
        JsonLinesSink(out),
        delivery=DeliveryConfig(dlq=JsonLinesDLQSink(tmp_path / "dlq.jsonl")),
    ).run_sync()
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert ids == [i for i in range(4000) if i != 2000]
    (dead,) = list(read_dlq(tmp_path / "dlq.jsonl"))
    assert "unterminated quoted field" in dead.error_message
    assert "2000" in str(dead.record)
