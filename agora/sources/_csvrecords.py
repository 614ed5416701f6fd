"""Reading CSV records off a binary file with the stdlib ``csv`` module: lines, limits, malformed records."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from agora.sources._text import read_line

__all__ = ["SLOW", "CsvRecordReader", "Pos", "Read"]

Pos = tuple[int, int]  # (lines consumed, byte offset)


class _RecordTooLong(Exception):
    """Raised inside the line feed when a record outgrows ``max_record_bytes``."""


@dataclass
class Read:
    """One record as read: its fields (None at end of file), or why it is malformed."""

    row: list[str] | None
    start: Pos
    end: Pos
    reason: str | None = None
    raw: bytes = b""
    raw_total: int = 0


SLOW: Any = object()  # the fast path saw something it leaves to read_record


class CsvRecordReader:
    """Reads one CSV record at a time from ``fh``, holding at most ``max_record_bytes`` of it.

    ``read`` is the (lines, byte offset) position after the last record read; ``parts``
    holds the physical lines of the record being read (the caller hashes them).
    :meth:`pull` is the fast path (one ``next()`` of ``csv.reader``); :meth:`read_record`
    the slow path that explains a malformed record and never lets a stray quote swallow
    the records after it.
    """

    def __init__(
        self, *, encoding: str, bom: bytes, max_record_bytes: int, fmtparams: dict[str, Any]
    ) -> None:
        self.fh: IO[bytes] | None = None
        self.encoding = encoding
        self.bom = bom
        self.max_record_bytes = max_record_bytes
        self._fmtparams = fmtparams
        self.read: Pos = (0, 0)  # where the reader stands (after the last record)
        self.parts: list[bytes] = []  # physical lines of the record being read
        self.cut = 0  # bytes of an over-long last part that were skipped, not kept
        self.record_bytes = 0
        self.decode_error: str | None = None
        self.eof = False
        self._at_file_start = False
        self._reader: Iterator[list[str]] = iter(())

    def pull(self) -> Any:
        """The next record's fields from ``csv.reader`` as is (None at end of file), or
        :data:`SLOW` when it stopped on an error that :meth:`read_record` must explain."""
        self.parts.clear()
        self.record_bytes = self.cut = 0
        self.decode_error = None
        try:
            return next(self._reader, None)
        except (_RecordTooLong, csv.Error):
            return SLOW

    def restart(self) -> None:
        """Start a fresh ``csv.reader`` at the file's current offset (``self.read``)."""
        self.eof = False
        self._at_file_start = self.read[1] == 0
        self.reader = csv.reader(self._lines(), **self._fmtparams)

    def _lines(self) -> Iterator[str]:
        """Physical lines for ``csv.reader``, kept in ``self.parts``.

        ``csv.reader`` pulls exactly the lines of one record per ``next()``; a record that
        outgrows ``max_record_bytes`` stops it (``_RecordTooLong``) with at most the limit
        held in memory (the rest of an over-long line is skipped and counted in ``_cut``).
        """
        fh = self.fh
        assert fh is not None
        parts, encoding, limit = self.parts, self.encoding, self.max_record_bytes
        while True:
            budget = limit - self.record_bytes
            raw = fh.readline(budget + 1)
            if not raw:
                self.eof = True
                return
            parts.append(raw)
            self.record_bytes += len(raw)
            if self.record_bytes > limit:
                if not raw.endswith(b"\n"):
                    self.cut = read_line(fh, 0)[1]  # skip (and count) the rest of the line
                raise _RecordTooLong
            text = raw
            if self._at_file_start and self.bom:
                text = raw.removeprefix(self.bom)  # a BOM is not part of the first name
            self._at_file_start = False
            try:
                yield text.decode(encoding)
            except UnicodeDecodeError as exc:
                self.decode_error = f"cannot decode line as {encoding}: {exc.reason}"
                yield text.decode(encoding, errors="replace")

    def read_record(self) -> Read:
        """The next non-blank record from ``self.read`` (``row`` None at end of file);
        the slow path for anything but a well-formed one-line record."""
        while True:
            start = self.read
            parts = self.parts
            parts.clear()
            self.record_bytes = self.cut = 0
            self.decode_error = None
            reason: str | None = None
            try:
                row = next(self.reader, None)
            except _RecordTooLong:
                row, reason = [], f"record is longer than max_record_bytes={self.max_record_bytes}"
                if len(parts) == 1:  # one over-long line, read to its end: skip it
                    self.restart()
                    total = len(parts[0]) + self.cut
                    end = (start[0] + 1, start[1] + total)
                    return Read([], start, end, reason, parts[0], total)
                reason += " (a quoted field that never closes?)"
            except csv.Error as exc:
                row, reason = [], f"CSV syntax error: {exc}"
            else:
                reason = self.decode_error
                if self.eof and row is not None and parts:
                    reason = "unterminated quoted field (the file ends inside it)"
            if row is None:
                return Read(None, start, start)
            if reason is not None and len(parts) > 1:
                # Only the line where the record began is malformed: go on right after it,
                # so a stray quote cannot swallow the records that follow.
                first = parts[0]
                del parts[1:]
                end = (start[0] + 1, start[1] + len(first))
                assert self.fh is not None
                self.fh.seek(end[1])
                self.restart()
                return Read([], start, end, reason, first, len(first))
            size = sum(map(len, parts))
            end = (start[0] + len(parts), start[1] + size)
            if not row and reason is None:
                self.read = end  # a blank line (hashed with the next record)
                continue
            return Read(row, start, end, reason, b"".join(parts), size)
