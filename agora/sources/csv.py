"""``CsvSource``: rows (or Python batches) from a CSV file read with the stdlib ``csv``."""

from __future__ import annotations

from contextlib import aclosing
import codecs
import csv
import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

from agora.errors import SourceRecordError
from agora.planes import DataPlane
from agora.records import MalformedRecord
from agora.sources._builtin import (
    BuiltinSource,
    OnMalformed,
    bad_checkpoint,
    count_field,
    file_source_name,
    missing_file_error,
    parse_on_malformed,
    positive_int_or_none,
)
from agora.sources._text import (
    DEFAULT_MAX_RECORD_BYTES,
    UTF8_BOM,
    malformed,
    record_bytes_setting,
)
from agora.sources._csvrecords import SLOW, CsvRecordReader, Pos
from agora.sources.arrow_csv import ArrowCsvSource
from agora.sources.identity import (
    FollowingHash,
    TextIdentity,
    parse_text_identity,
    split_identity,
    verify_text_prefix,
)

__all__ = ["ArrowCsvSource", "CsvSource"]

def duplicate_names(names: list[str]) -> list[str]:
    return [name for name, n in Counter(names).items() if n > 1]


class CsvSource(BuiltinSource):
    """Rows from a CSV file with a header row, read with the stdlib ``csv`` module.

    Each record is ``dict(zip(header, values))`` with string values; blank lines are
    skipped and a UTF-8 BOM at the start of the file is ignored. With ``batch_size`` the
    source emits Python batches (``list[dict]`` of up to ``batch_size`` rows) instead of
    rows; a batch ends early at a malformed record so units stay in file order.

    The header must be readable and its names distinct: otherwise no record can be read
    faithfully, and ``open()`` raises ``SourceRecordError`` for line 1 (whatever
    ``on_malformed`` says) naming the file and the problem — duplicated names, bytes the
    ``encoding`` cannot decode, CR-only line endings (not supported: convert them to LF).

    A malformed record — a field count different from the header's, a ``csv.Error``, a
    line the ``encoding`` cannot decode, or more than ``max_record_bytes`` — raises
    ``SourceRecordError`` (``"fail"``) or is emitted as ``MalformedRecord(raw=<record
    text, at most RAW_CAP bytes>, location="path:LINE")`` (``"dlq"``). A quoted field that
    never closes (the file ends inside it, or it outgrows ``max_record_bytes`` or the
    ``csv`` field size limit) makes only the line where it opened malformed; reading goes
    on from the next line, so the records after it are not swallowed.

    Checkpoint: ``{"line": n, "byte": offset, "input": {"consumed": offset, "sha256": …}}``
    just after the last emitted unit. A resume verifies that the file still starts with the
    bytes consumed (appending is fine; a replaced or edited file is a ``CheckpointError``),
    re-reads the header and seeks. ``encoding`` must be ASCII-compatible (the file is split
    into lines on ``b"\\n"``); ``fmtparams`` go to ``csv.reader`` (e.g. ``delimiter=";"``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int | None = None,
        on_malformed: OnMalformed | str = "fail",
        encoding: str = "utf-8",
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        name: str | None = None,
        **fmtparams: Any,
    ) -> None:
        super().__init__(file_source_name("csv", path, name))
        self.path = os.fspath(path)
        self.batch_size = positive_int_or_none(self.source_name, "batch_size", batch_size)
        self.plane = DataPlane.PYTHON_ROWS if batch_size is None else DataPlane.PYTHON_BATCHES
        self.on_malformed = parse_on_malformed(self.source_name, on_malformed)
        self.max_record_bytes = record_bytes_setting(self.source_name, max_record_bytes)
        codec = codecs.lookup(encoding)  # LookupError for an unknown encoding, at construction
        one, two = "\n".encode(encoding), "\n\n".encode(encoding)
        if not one.endswith(b"\n") or two != one + b"\n":  # BOM-prefixed utf-8-sig is fine
            raise ValueError(
                f"source {self.source_name!r}: encoding {encoding!r} is not ASCII-compatible; "
                f"CsvSource splits lines on b'\\n' — re-encode the file as UTF-8"
            )
        self.encoding = encoding
        self._bom = UTF8_BOM if codec.name in ("utf-8", "utf-8-sig") else b""
        csv.reader([], **fmtparams)  # reject bad formatting parameters now, not mid-run
        self._fmtparams: dict[str, Any] = fmtparams
        self._reset()

    def _reset(self) -> None:
        self._fh: IO[bytes] | None = None
        self._identity: TextIdentity | None = None
        self._hash = FollowingHash()
        self._pos: Pos = (0, 0)  # checkpoint: after the last emitted unit
        self._header: list[str] | None = None
        self._batch_ends: list[Pos] = []  # end of each row of the last batch
        self._batch_start: Pos = (0, 0)
        self._rows = CsvRecordReader(
            encoding=self.encoding,
            bom=self._bom,
            max_record_bytes=self.max_record_bytes,
            fmtparams=self._fmtparams,
        )

    # -- checkpointing ----------------------------------------------------------------
    def current_checkpoint(self) -> dict[str, Any]:
        return self._checkpoint_at(self._pos)

    def checkpoint_within_last_batch(self, rows: int) -> dict[str, Any]:
        pos = self._batch_ends[rows - 1] if rows > 0 else self._batch_start
        return self._checkpoint_at(pos)

    def _checkpoint_at(self, pos: Pos) -> dict[str, Any]:
        return {"line": pos[0], "byte": pos[1], "input": self._hash.identity_at(pos[1])}

    def _apply_checkpoint(self, value: Any) -> None:
        expected = '{"line": <int >= 0>, "byte": <int >= 0>, "input": {...}}'
        fields, raw = split_identity(self.source_name, self.path, value, expected)
        identity = parse_text_identity(self.source_name, value, raw)
        if set(fields) != {"line", "byte"}:
            raise bad_checkpoint(self.source_name, value, expected)
        line = count_field(self.source_name, value, expected, fields["line"])
        byte = count_field(self.source_name, value, expected, fields["byte"])
        if byte != identity.consumed:
            raise bad_checkpoint(self.source_name, value, expected + " with byte == consumed")
        self._identity, self._pos = identity, (line, byte)

    # -- lifecycle --------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self._fh = open(self.path, "rb")  # noqa: SIM115 — closed in _close()
        except FileNotFoundError:
            raise missing_file_error(self.source_name, self.path) from None
        try:
            self._position_reader()
        except BaseException:
            self._fh.close()
            self._fh = None
            raise

    def _close(self) -> None:
        if self._fh is not None:
            # A checkpoint asked for after close() still needs the fingerprint.
            self._hash.close(self._pos[1])
            self._fh.close()
            self._fh = None

    def _position_reader(self) -> None:
        fh = self._fh
        assert fh is not None
        resumed = self._pos if self._identity is not None else None
        if self._identity is not None:
            self._hash = FollowingHash(verify_text_prefix(
                self.source_name, self.path, fh, self._identity, self._identity.consumed
            ))
            fh.seek(0)
        self._hash.attach(fh.fileno())
        self._rows.fh = fh
        self._rows.restart()
        self._read_header()
        if resumed is None or resumed == (0, 0):  # nothing consumed yet (an empty file)
            self._pos = self._rows.read
        elif resumed[1] < self._rows.read[1] or resumed[0] < self._rows.read[0]:
            raise bad_checkpoint(
                self.source_name,
                resumed,
                f"a position after the header (byte {self._rows.read[1]})",
            )
        else:
            fh.seek(resumed[1])
            self._rows.read = resumed
            self._rows.restart()
        self._batch_start = self._pos
        self._hash.mark_unit_end(self._pos[1], batch=False)

    def _read_header(self) -> None:
        first = self._rows.read_record()
        if first.row is None:
            return  # an empty (or blank) file: no header, no rows
        where = f"{self.path}:{first.start[0] + 1}"
        problem = first.reason
        if problem is not None and b"\r" in first.raw.rstrip(b"\r\n"):
            problem = (
                "the header line holds a bare carriage return — the file seems to use CR-only "
                "line endings, which CsvSource does not read; convert them to LF (or CRLF)"
            )
        elif first.row is not None and problem is None and (dups := duplicate_names(first.row)):
            problem = (
                f"the header repeats the column name(s) {dups}; each column needs its own "
                f"name, or the values under a repeated name would overwrite each other — "
                f"rename the columns in the file"
            )
        if problem is not None:
            raise SourceRecordError(
                self.source_name, where, f"cannot read the header: {problem}", hint=False
            )
        self._header = first.row
        self._rows.read = first.end
        self._hash.commit(first.start[1], first.end[1], self._rows.parts)

    def _records(self) -> Iterator[tuple[Any, Pos]]:
        """(record or MalformedRecord, position after it) for each data record."""
        header = self._header
        if header is None:
            return
        rows = self._rows
        width, parts, commit = len(header), rows.parts, self._hash.commit
        while True:
            # Fast path: a well-formed record on one line, nothing unusual about it.
            start = rows.read
            row = rows.pull()
            if (
                row is not None and row is not SLOW and len(parts) == 1
                and len(row) == width and rows.decode_error is None and not rows.eof
            ):
                line = parts[0]
                end = (start[0] + 1, start[1] + len(line))
                rows.read = end
                commit(start[1], end[1], parts)
                yield dict(zip(header, row, strict=True)), end
                continue
            # Anything else: re-read the record on the slow path, which explains it.
            assert rows.fh is not None
            rows.fh.seek(start[1])
            rows.read = start
            rows.restart()
            rec = rows.read_record()
            if rec.row is None:
                return
            rows.read = rec.end
            commit(rec.start[1], rec.end[1], parts)
            reason = rec.reason
            if reason is None and len(rec.row) != width:
                reason = f"expected {width} fields (the header's), got {len(rec.row)}"
            if reason is None:
                yield dict(zip(header, rec.row, strict=True)), rec.end
                continue
            location = f"{self.path}:{rec.start[0] + 1}"
            if self.on_malformed is OnMalformed.FAIL:
                raise SourceRecordError(self.source_name, location, reason)
            yield malformed(rec.raw, rec.raw_total, reason, location), rec.end

    async def stream(self) -> AsyncIterator[Any]:
        if (alone := self._read_unopened("stream")) is not None:  # unopened
            async with aclosing(alone):
                async for item in alone:
                    yield item
            return
        if self.batch_size is not None:
            raise NotImplementedError(
                f"source {self.source_name!r} has batch_size={self.batch_size} and emits "
                f"python_batches; it has no stream() — use stream_batches()"
            )
        for item, end in self._records():
            self._pos = end
            yield item

    async def stream_batches(self) -> AsyncIterator[Any]:
        if (alone := self._read_unopened("stream_batches")) is not None:  # unopened
            async with aclosing(alone):
                async for item in alone:
                    yield item
            return
        if self.batch_size is None:
            raise NotImplementedError(
                f"source {self.source_name!r} emits rows (no batch_size); it has no "
                f"stream_batches() — use stream()"
            )
        batch: list[dict[str, str]] = []
        ends: list[Pos] = []
        for item, end in self._records():
            if isinstance(item, MalformedRecord):
                if batch:
                    # Emit the rows before the bad record first: units stay in file order,
                    # so every checkpoint is a plain file position.
                    self._emit_batch(ends)
                    yield batch
                    batch, ends = [], []
                self._pos = end
                self._batch_ends = []
                self._hash.mark_unit_end(end[1], batch=False)
                yield item
                continue
            batch.append(item)
            ends.append(end)
            if len(batch) >= self.batch_size:
                self._emit_batch(ends)
                yield batch
                batch, ends = [], []
        if batch:
            self._emit_batch(ends)
            yield batch

    def _emit_batch(self, ends: list[Pos]) -> None:
        self._batch_start = self._pos
        self._batch_ends = ends
        self._pos = ends[-1]
        self._hash.mark_unit_end(self._pos[1], batch=True)
