"""Where a resumed ``ArrowCsvSource`` seeks to: record starts found while reading, and their checkpoint form."""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv

from agora.sources._builtin import bad_checkpoint, count_field
from agora.sources._csvscreen import CsvScreen

__all__ = ["KeptStarts", "RecordStart", "StartFinder", "column_types_of_first_block"]

#: Record starts kept for checkpoints: a checkpoint may fall inside the last batch (or the
#: batch before, while the next block's malformed rows are already out), so the latest
#: start at or before it is among the last few.
_KEPT = 4


@dataclass(frozen=True)
class RecordStart:
    """A line start in the file where a record starts: ``byte`` and ``line`` (lines before
    it), and the good and malformed rows of the file before it (``row``, ``malformed``)."""

    byte: int
    line: int
    row: int
    malformed: int

    def to_json(self) -> dict[str, int]:
        return {"byte": self.byte, "line": self.line, "row": self.row,
                "malformed": self.malformed}

    @classmethod
    def parse(cls, source_name: str, value: Any, raw: Any, expected: str) -> RecordStart:
        if not isinstance(raw, Mapping) or set(raw) != {"byte", "line", "row", "malformed"}:
            raise bad_checkpoint(source_name, value, expected)
        byte, line, row, malformed = (
            count_field(source_name, value, expected, raw[key])
            for key in ("byte", "line", "row", "malformed")
        )
        return cls(byte, line, row, malformed)


class StartFinder:
    """Finds the batch ends that are record starts, as the reading thread parses blocks.

    The screen logs each of its reads that ends at a line end with the data records handed
    over before it; the finder knows how many good rows pyarrow returned (``rows``) and
    which records it reported malformed (``malformed_at``, by their 1-based index in the
    stream). A logged read end is a record start for the batches returned so far exactly
    when ``rows`` plus the malformed records before it equals the records before it: the
    rows returned are then precisely the good rows before it, so a resume from there, told
    how many rows and malformed rows precede it, reads on with nothing skipped twice or
    lost. Counts that do not match (a block still being parsed, rows that span lines) log
    nothing, and a resume falls back to the nearest earlier start.
    """

    def __init__(self, screen: CsvScreen, *, header_rows: int, base: RecordStart | None) -> None:
        self._screen = screen
        self._header_rows = header_rows
        self._base_row = base.row if base is not None else 0
        self._base_malformed = base.malformed if base is not None else 0
        self.rows = 0  # good rows pyarrow returned (in this stream)
        self._malformed: deque[int] = deque()  # stream record indices, not yet placed
        self._placed = 0  # malformed records before the last read end looked at
        self.broken = False  # a malformed row pyarrow could not number: stop finding

    def malformed_at(self, number: int | None) -> None:
        """pyarrow reported the record on row ``number`` (it counts the header) malformed."""
        if number is None:
            self.broken = True
        else:
            self._malformed.append(number - self._header_rows)

    def latest(self) -> RecordStart | None:
        """The last record start at or before the rows returned so far, if one is known."""
        found: RecordStart | None = None
        ends = self._screen.ends
        # Ends logged before the screen stopped logging stay good: they precede the cause.
        while ends and not self.broken:
            end = ends[0]
            placed = self._placed
            pending = self._malformed
            while pending and pending[0] <= end.records:
                pending.popleft()
                placed += 1
            if self.rows + placed < end.records:
                # Not reached yet by the rows returned; the malformed records before it
                # stay placed (they precede every later end too).
                self._placed = placed
                break
            ends.popleft()
            self._placed = placed
            if self.rows + placed == end.records:
                found = RecordStart(end.byte, end.line, self._base_row + self.rows,
                                    self._base_malformed + placed)
        return found


class KeptStarts:
    """The last few record starts handed to the pipeline, for the checkpoints after them."""

    def __init__(self, first: RecordStart | None = None) -> None:
        self._starts: deque[RecordStart] = deque(maxlen=_KEPT)
        if first is not None:
            self._starts.append(first)

    def add(self, start: RecordStart | None) -> None:
        if start is not None:
            self._starts.append(start)

    def at_or_before(self, row: int, malformed: int) -> RecordStart | None:
        for start in reversed(self._starts):
            if start.row <= row and start.malformed <= malformed:
                return start
        return None


def column_types_of_first_block(
    path: str,
    screen_of: Any,
    read_options: pa_csv.ReadOptions,
    parse_options: pa_csv.ParseOptions,
    convert_options: pa_csv.ConvertOptions | None,
    memory_pool: pa.MemoryPool | None,
) -> pa_csv.ConvertOptions:
    """``convert_options`` with every column's type fixed to what a read from the top of
    ``path`` infers from its first block — so a read resumed mid-file converts values
    exactly as the whole-file read does, not by what its own first block holds."""
    parse = copy.copy(parse_options)
    parse.invalid_row_handler = _skip  # rows are only counted by the real read
    with open(path, "rb") as fh:
        reader = pa_csv.open_csv(screen_of(fh), read_options=read_options, parse_options=parse,
                                 convert_options=convert_options, memory_pool=memory_pool)
        try:
            schema = reader.schema
        finally:
            reader.close()
    fixed = copy.copy(convert_options) if convert_options else pa_csv.ConvertOptions()
    fixed.column_types = {field.name: field.type for field in schema}
    return fixed


def _skip(row: Any) -> str:
    return "skip"
