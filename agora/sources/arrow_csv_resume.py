"""Resuming an ``ArrowCsvSource``: the input check, and the record starts it seeks to."""

from __future__ import annotations

import copy
import os
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pa_csv

from agora.errors import CheckpointError
from agora.sources._builtin import START_OVER, bad_checkpoint, count_field, parse_choice
from agora.sources._csvscreen import CsvScreen
from agora.sources.identity import (
    ENDS_WINDOW,
    EndsIdentity,
    PrefixHash,
    TextIdentity,
    ends_identity,
    hash_prefix,
    verify_ends,
    verify_text_prefix,
)

__all__ = [
    "InputCheck",
    "InputFingerprint",
    "KeptStarts",
    "RecordStart",
    "StartFinder",
    "check_line_start",
    "column_types_of_first_block",
    "parse_input_check",
    "verified_position",
]

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


class InputCheck(StrEnum):
    """How a resume checks that the file still starts with what the checkpoint consumed.

    ``ENDS``: the file still holds that many bytes, and the first and the last
    ``ENDS_WINDOW`` bytes of them are unchanged — two small reads, whatever the file size.
    ``FULL``: every consumed byte hashes the same — one read of the whole prefix per resume.
    """

    ENDS = "ends"
    FULL = "full"


def parse_input_check(source_name: str, value: InputCheck | str) -> InputCheck:
    return parse_choice(source_name, "verify_input", InputCheck, value,
                        " — 'full' hashes the whole consumed prefix on every resume")


def verified_position(
    source_name: str,
    path: str,
    fh: IO[bytes],
    identity: TextIdentity | EndsIdentity,
    resume_at: int,
    check: InputCheck,
) -> PrefixHash:
    """Check the consumed prefix by what the checkpoint recorded (a whole-prefix hash is
    always checked in full; ends only by their ends), then return what the read that
    follows from ``resume_at`` counts its bytes with: the running hash of the bytes before
    it (``FULL``, which may take a read of them) or a byte counter (``ENDS``)."""
    if isinstance(identity, TextIdentity):
        running = verify_text_prefix(source_name, path, fh, identity, resume_at)
        if check is InputCheck.FULL:
            return running
    else:
        verify_ends(source_name, path, fh, identity)
        if check is InputCheck.FULL:
            running = hash_prefix(fh, resume_at)
            fh.seek(resume_at)
            return running
    fh.seek(resume_at)
    return PrefixHash(hashing=False, consumed=resume_at)


class InputFingerprint:
    """The ``"input"`` value of a checkpoint after the bytes a screen has read."""

    def __init__(self, check: InputCheck) -> None:
        self._check = check
        self._head: str | None = None  # the head window's hash, once it is whole

    def of(self, screen: CsvScreen | None, fh: IO[bytes] | None) -> dict[str, Any]:
        if self._check is InputCheck.FULL:
            return (screen.hasher if screen is not None else PrefixHash()).identity()
        consumed = screen.hasher.consumed if screen is not None else 0
        value = ends_identity(fh.fileno() if fh is not None and consumed else None,
                              consumed, self._head)
        if consumed >= ENDS_WINDOW:
            self._head = value["head_sha256"]
        return value


def check_line_start(
    source_name: str, path: str, fh: IO[bytes], start: RecordStart, *, header: bool
) -> None:
    """Refuse a record start that is not a line start after the header line (if any):
    this source never writes one."""
    fh.seek(0)
    inside_header = header and not fh.readline(start.byte).endswith(b"\n")
    if inside_header or (start.byte and os.pread(fh.fileno(), 1, start.byte - 1) != b"\n"):
        raise CheckpointError(
            f"source {source_name!r}: the checkpoint's resume offset (byte {start.byte} of "
            f"{path!r}) is not the start of a line after the header, so it was not written "
            f"by this source; {START_OVER}"
        )
