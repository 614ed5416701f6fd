"""``ArrowCsvSource``: Arrow batches from a CSV file, streamed by ``pyarrow.csv`` via a screen.

Past 400 lines: opening (with a resume's seek), the reading thread's block bookkeeping and
the checkpoints drawn from it share one set of counters; the screen, the input check and
the record-start search already live in ``_csvscreen.py`` and ``arrow_csv_resume.py``."""

from __future__ import annotations

from contextlib import aclosing
import copy
import os
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pa_csv

from agora.errors import CheckpointError, SourceRecordError
from agora.planes import DataPlane
from agora.records import MalformedRecord
from agora.sources._builtin import (
    BuiltinSource,
    OnMalformed,
    bad_checkpoint,
    compact_slice,
    count_field,
    file_source_name,
    missing_file_error,
    parse_on_malformed,
    positive_int_or_none,
)
from agora.sources._csvscreen import CsvScreen, check_header_names, screen_for
from agora.sources._readahead import END, ReadAhead
from agora.sources._text import DEFAULT_MAX_RECORD_BYTES, malformed, record_bytes_setting
from agora.sources.arrow_csv_resume import (
    InputCheck,
    InputFingerprint,
    KeptStarts,
    RecordStart,
    StartFinder,
    check_line_start,
    column_types_of_first_block,
    parse_input_check,
    verified_position,
)
from agora.sources.identity import (
    EndsIdentity,
    PrefixHash,
    TextIdentity,
    parse_any_text_identity,
    split_identity,
)

__all__ = ["ArrowCsvSource"]

#: pyarrow's own default block size. A block is parsed and converted at once, so it bounds
#: the reader's memory (a few times the block) and sets the rows per batch (block / row size).
DEFAULT_BLOCK_SIZE = 1 << 20
#: Blocks parsed ahead of the pipeline by the reading thread (each a few block sizes of memory).
DEFAULT_READ_AHEAD = 2


class ArrowCsvSource(BuiltinSource):
    """Arrow record batches from a CSV file, streamed with ``pyarrow.csv.open_csv``.

    Memory is bounded by the block size, not the file size. ``block_size`` (bytes) sets the
    parse unit; ``batch_size`` (rows, optional) caps the rows per emitted batch by slicing
    bigger blocks. ``read_options`` / ``parse_options`` / ``convert_options`` /
    ``memory_pool`` pass through to pyarrow, except that reading is forced single-threaded
    (malformed rows are then reported in file order, which exact resume and the DLQ
    location need) and empty lines are always skipped.

    Malformed rows: a wrong column count, and lines screened out before pyarrow parses
    them — longer than ``max_record_bytes``, not UTF-8 (so one bad value never turns a
    column into ``binary``), or with an unterminated quote (when ``newlines_in_values`` is
    off, the default, and no ``escape_char`` is set). ``"fail"`` raises ``SourceRecordError``
    naming the file, line and reason; ``"dlq"`` drops the row from its batch and emits a
    ``MalformedRecord`` for it no later than just before that batch. (pyarrow parses a
    block ahead, so a marker may also come a batch earlier; which one can vary between
    runs, and the checkpoint does not depend on it.) A value that does not convert to its
    column's type (inferred from the first block) is always fatal — pass
    ``convert_options=ConvertOptions(column_types=...)`` to read such columns as strings.
    A header that cannot be read (duplicate names, not UTF-8, CR-only line endings) is a
    ``SourceRecordError`` at ``open()`` whatever the policy. A UTF-8 BOM is ignored.

    Checkpoint: ``{"row": good rows emitted, "malformed": malformed rows emitted, "input":
    {...}, "seek": {"byte", "line", "row", "malformed"}}``. ``seek`` is a record start at
    or before the checkpoint: the byte offset of a line start, the lines before it, and the
    good and malformed rows before it. A resume checks the file (below), reads the header
    from the top, seeks to ``seek.byte`` and skips only the rows between it and the
    checkpoint, so a run over a grown file costs what its new rows cost. Column types are
    those the file's first block gives, as in a read from the top. Without ``seek`` (a
    checkpoint of an older version, or options under which a line end is not known to end
    a row: ``newlines_in_values``, ``escape_char``, ``skip_rows``, ``skip_rows_after_names``,
    or after a bare carriage return) the resume re-scans from the top and skips.

    ``verify_input`` says how a resume checks that the file still starts with the bytes the
    checkpoint consumed (appending is fine): ``"full"`` (default) — every consumed byte
    hashes the same (SHA-256): a read of the whole prefix per resume, which catches any
    edit of the consumed part; ``"ends"`` (opt-in, for inputs only ever appended to) — the
    file holds at least that many bytes, their first and last 64 KiB are unchanged and an
    unfinished last line was not extended, in two small reads: it cannot see a same-length
    edit in the middle of the consumed part. A failed check is a ``CheckpointError``
    naming the file.
    A checkpoint holding a whole-prefix hash is always checked in full.

    Read-ahead: a thread parses up to ``read_ahead`` blocks (default 2) ahead of the
    pipeline — pyarrow releases the GIL while it parses, so reading overlaps the rest of the
    job. Order, checkpoints and errors are unchanged: a read error or a fatal malformed row
    is raised when the pipeline reaches the block it is in, never earlier, and a block's
    malformed-row markers still come just before that block's rows. ``read_ahead=0`` reads
    on the caller's thread. ``close()`` (and an abandoned stream) stops the thread.
    """

    plane = DataPlane.ARROW_BATCHES

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        block_size: int | None = None,
        batch_size: int | None = None,
        on_malformed: OnMalformed | str = "fail",
        read_options: pa_csv.ReadOptions | None = None,
        parse_options: pa_csv.ParseOptions | None = None,
        convert_options: pa_csv.ConvertOptions | None = None,
        memory_pool: pa.MemoryPool | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        read_ahead: int = DEFAULT_READ_AHEAD,
        verify_input: InputCheck | str = InputCheck.FULL,
        name: str | None = None,
    ) -> None:
        super().__init__(file_source_name("arrow_csv", path, name))
        self.verify_input = parse_input_check(self.source_name, verify_input)
        if not isinstance(read_ahead, int) or isinstance(read_ahead, bool) or read_ahead < 0:
            raise ValueError(
                f"source {self.source_name!r}: read_ahead must be an int >= 0 (blocks parsed "
                f"ahead; 0 reads inline); got {read_ahead!r}"
            )
        self.read_ahead = read_ahead
        self.path = os.fspath(path)
        self.on_malformed = parse_on_malformed(self.source_name, on_malformed)
        self.batch_size = positive_int_or_none(self.source_name, "batch_size", batch_size)
        self.max_record_bytes = record_bytes_setting(self.source_name, max_record_bytes)
        block_size = positive_int_or_none(self.source_name, "block_size", block_size)
        self._read_options = copy.copy(read_options) if read_options else pa_csv.ReadOptions()
        self._read_options.use_threads = False
        if block_size is not None or read_options is None:
            self._read_options.block_size = block_size or DEFAULT_BLOCK_SIZE
        self.block_size = self._read_options.block_size
        self._parse_options = copy.copy(parse_options) if parse_options else pa_csv.ParseOptions()
        if self._parse_options.invalid_row_handler is not None:
            raise ValueError(
                f"source {self.source_name!r}: parse_options.invalid_row_handler is managed "
                f"by the source; use on_malformed='fail' or 'dlq' instead"
            )
        # Screened lines become marker rows; empty lines must stay skipped (as by default).
        self._parse_options.ignore_empty_lines = True
        self._parse_options.invalid_row_handler = self._on_invalid_row
        self._convert_options = convert_options
        self._memory_pool = memory_pool
        self._reset()

    def _reset(self) -> None:
        self._fh: IO[bytes] | None = None
        self._screen: CsvScreen | None = None
        self._identity: TextIdentity | EndsIdentity | None = None
        self._fingerprint = InputFingerprint(self.verify_input)
        self._reader: Any = None
        self._rows = 0  # good rows emitted (or skipped on resume)
        self._malformed = 0  # malformed rows emitted (or skipped on resume)
        self._skip_rows = 0
        self._skip_malformed = 0
        self._scanned = 0  # data rows parsed so far, good or bad (for error locations)
        self._pending: list[MalformedRecord] = []  # found by the reading thread
        self._pending_out: list[MalformedRecord] = []  # handed over, not yet emitted
        self._invalid: Any = None  # first invalid row under "fail"
        self._last_start = 0
        # The input identity as of the last block handed to the pipeline: the screen's own
        # hasher runs ahead in the reading thread and must not be read from here.
        self._seen_input: dict[str, Any] | None = None
        self._readahead: ReadAhead[Any] | None = None
        self._stats = {"blocks": 0, "rows": 0, "malformed": 0, "rescanned_rows": 0}
        self._resume_from: RecordStart | None = None  # the checkpoint's record start
        self._finder: StartFinder | None = None  # used by the reading thread only
        self._starts = KeptStarts()  # record starts handed to the pipeline
        self._number_shift = 0  # pyarrow numbers rows from the read's start, not the file's

    # -- checkpointing ----------------------------------------------------------------
    def _input(self) -> dict[str, Any]:
        return self._fingerprint.of(self._screen, self._fh)

    def _handed_input(self) -> dict[str, Any]:
        return self._seen_input if self._seen_input is not None else self._input()

    def current_checkpoint(self) -> dict[str, Any]:
        return self._checkpoint_at(self._rows)

    def checkpoint_within_last_batch(self, rows: int) -> dict[str, Any]:
        return self._checkpoint_at(self._last_start + rows)

    def _checkpoint_at(self, row: int) -> dict[str, Any]:
        value = {"row": row, "malformed": self._malformed, "input": self._handed_input()}
        start = self._starts.at_or_before(row, self._malformed)
        if start is not None:
            value["seek"] = start.to_json()
        return value

    def _apply_checkpoint(self, value: Any) -> None:
        expected = ('{"row": <int >= 0>, "malformed": <int >= 0>, "input": {...}} and maybe '
                    '"seek": {"byte", "line", "row", "malformed": <int >= 0>} (before them)')
        fields, raw = split_identity(self.source_name, self.path, value, expected)
        self._identity = parse_any_text_identity(self.source_name, value, raw)
        if set(fields) - {"seek"} != {"row", "malformed"}:
            raise bad_checkpoint(self.source_name, value, expected)
        self._rows = self._skip_rows = count_field(self.source_name, value, expected, fields["row"])
        self._malformed = self._skip_malformed = count_field(
            self.source_name, value, expected, fields["malformed"]
        )
        if "seek" in fields:
            start = RecordStart.parse(self.source_name, value, fields["seek"], expected)
            if (start.row > self._rows or start.malformed > self._malformed
                    or start.byte > self._identity.consumed or start.line > start.byte):
                raise bad_checkpoint(self.source_name, value, expected)
            self._resume_from = start
            self._starts = KeptStarts(start)

    @property
    def stats(self) -> dict[str, int]:
        """Counters for the run summary: blocks parsed, rows and malformed rows emitted,
        rows re-parsed to reach the resume point."""
        return dict(self._stats)

    @property
    def runtime_metrics(self) -> dict[str, int | float]:
        return {f"arrow_csv_{key}": value for key, value in self._stats.items()}

    # -- lifecycle --------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self._fh = open(self.path, "rb")  # noqa: SIM115 — closed in _close()
        except FileNotFoundError:
            raise missing_file_error(self.source_name, self.path) from None
        try:
            self._open_reader()
        except BaseException:
            self._close()
            raise

    def _open_reader(self) -> None:
        fh = self._fh
        assert fh is not None
        start = self._resume_from
        hasher = PrefixHash(hashing=self.verify_input is InputCheck.FULL)
        if self._identity is not None:
            hasher = verified_position(self.source_name, self.path, fh, self._identity,
                                       start.byte if start is not None else 0, self.verify_input)
        ro = self._read_options
        header = None if ro.column_names or ro.autogenerate_column_names else ro.skip_rows + 1
        if start is not None:
            check_line_start(self.source_name, self.path, fh, start, header=header is not None)
        if os.fstat(fh.fileno()).st_size == 0:
            self._reader = None  # pyarrow rejects an empty file; we read it as no rows
        else:
            convert = self._convert_options
            if start is not None:
                # The resumed read sees only the rows after the start: its types must come
                # from the file's first block, as they did for the read from the top.
                convert = self._call(lambda: column_types_of_first_block(
                    self.path, lambda f: self._new_screen(f, header, PrefixHash()),
                    self._read_options, self._parse_options, self._convert_options,
                    self._memory_pool), opening=True)
                self._scanned = start.row + start.malformed
                self._number_shift = start.row + start.malformed
                self._skip_rows, self._skip_malformed = (
                    self._rows - start.row, self._malformed - start.malformed)
            self._screen = self._new_screen(fh, header, hasher, start)
            self._finder = StartFinder(self._screen, header_rows=1 if header else 0, base=start)
            self._reader = self._call(
                lambda: pa_csv.open_csv(
                    self._screen,
                    read_options=self._read_options,
                    parse_options=self._parse_options,
                    convert_options=convert,
                    memory_pool=self._memory_pool,
                ),
                opening=True,
            )
            if self._reader is not None:
                self._check_names(header)
        if self._reader is None and (self._skip_rows or self._skip_malformed):
            raise self._past_end()

    def _new_screen(self, fh: IO[bytes], header: int | None, hasher: PrefixHash,
                    start: RecordStart | None = None) -> CsvScreen:
        return screen_for(fh, self._read_options, self._parse_options, header=header,
                          max_record_bytes=self.max_record_bytes, hasher=hasher,
                          seek=(start.byte, start.line) if start is not None else None)

    def _check_names(self, header: int | None) -> None:
        check_header_names(self.source_name, self.path, self._reader.schema.names, header)

    def _close(self) -> None:
        self._stop_reading_ahead()  # before the reader and file it uses go away
        if self._seen_input is None and self._fh is not None:
            self._seen_input = self._input()  # may read the file: keep it for later checkpoints
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    # -- reading ----------------------------------------------------------------------
    def _on_invalid_row(self, row: Any) -> str:
        # Called by pyarrow, in file order (single-threaded reading). Must not raise:
        # pyarrow would only print the exception.
        self._scanned += 1
        if self._finder is not None:
            self._finder.malformed_at(row.number)
        if self.on_malformed is OnMalformed.FAIL:
            if self._invalid is None:
                self._invalid = row
            return "error"
        if self._skip_malformed:
            self._skip_malformed -= 1
            return "skip"
        self._pending.append(self._malformed_of(row, forget=True))
        return "skip"

    def _malformed_of(self, row: Any, *, forget: bool = False) -> MalformedRecord:
        assert self._screen is not None
        screened = self._screen.lookup(row.text, forget=forget)
        if screened is not None:
            return malformed(screened.raw, screened.total, screened.reason,
                             f"{self.path}:{screened.line}")
        line = (row.number + self._number_shift if row.number is not None
                else f"data row {self._scanned}")
        text = row.text.encode("utf-8", errors="replace")
        return malformed(
            text,
            len(text),
            f"expected {row.expected_columns} columns, got {row.actual_columns}",
            f"{self.path}:{line}",
        )

    def _call(self, fn: Any, *, opening: bool = False) -> Any:
        """Run a pyarrow read, turning its parse errors into ``SourceRecordError``."""
        try:
            result = fn()
        except pa.ArrowInvalid as exc:
            self._raise_fatal(exc)
            if opening and "Empty CSV file" in str(exc):
                return None  # blank lines only: no header, no rows
            if self._invalid is not None:
                assert self._screen is not None
                row = self._invalid
                record = self._malformed_of(row)
                reason = record.reason
                if self._screen.lookup(row.text) is None:
                    reason += f": {row.text!r:.200}"
                raise SourceRecordError(self.source_name, record.location, reason) from exc
            raise SourceRecordError(
                self.source_name,
                f"{self.path} (in the block after data row {self._scanned})",
                f"{exc} — values that do not fit the column type inferred from the first "
                f"block cannot be dead-lettered; set convert_options column_types",
                hint=False,
            ) from exc
        self._raise_fatal(None)
        return result

    def _raise_fatal(self, exc: BaseException | None) -> None:
        if self._screen is not None and self._screen.fatal is not None:
            where = f"{self.path}:{(self._read_options.skip_rows or 0) + 1}"
            raise SourceRecordError(
                self.source_name, where, self._screen.fatal, hint=False
            ) from exc

    async def stream_batches(self) -> AsyncIterator[Any]:
        if (alone := self._read_unopened("stream_batches")) is not None:  # unopened
            async with aclosing(alone):
                async for item in alone:
                    yield item
            return
        if self._reader is not None:
            self._seen_input = self._input()
            if self.read_ahead:
                self._readahead = ReadAhead(self._read_block, depth=self.read_ahead,
                                            name=f"agora-readahead-{self.source_name}")
        try:
            while self._reader is not None:
                if self._readahead is not None:
                    batch, markers, seen, start = await self._readahead.next()
                else:
                    batch, markers, seen, start = self._read_block()
                self._pending_out = markers
                if batch is END:
                    self._seen_input = seen
                    self._starts.add(start)
                    break
                for record in self._drain():
                    yield record
                self._seen_input = seen
                self._starts.add(start)  # taken only by checkpoints at or after it
                for piece in self._pieces(batch):
                    self._last_start = self._rows
                    self._rows += piece.num_rows
                    self._stats["rows"] += piece.num_rows
                    yield piece
            for record in self._drain():
                yield record
        finally:
            self._stop_reading_ahead()
        if self._skip_rows or self._skip_malformed:
            raise self._past_end()

    def _read_block(
        self,
    ) -> tuple[Any, list[MalformedRecord], dict[str, Any], RecordStart | None]:
        """Parse the next block (in the read-ahead thread): the batch (or ``END``), the
        malformed-row markers found up to it, the input identity after it and the last
        record start known by then. Only this function touches the reader, the screen and
        the malformed-row bookkeeping."""
        batch = self._call(self._next_batch)
        markers, self._pending = self._pending, []
        assert self._finder is not None
        if batch is not END:
            self._scanned += batch.num_rows
            self._finder.rows += batch.num_rows
        return batch, markers, self._input(), self._finder.latest()

    def _stop_reading_ahead(self) -> None:
        readahead, self._readahead = self._readahead, None
        if readahead is not None:
            readahead.close()

    def _next_batch(self) -> Any:
        try:
            return self._reader.read_next_batch()
        except StopIteration:
            return END

    def _drain(self) -> Iterator[MalformedRecord]:
        while self._pending_out:
            record = self._pending_out.pop(0)
            self._malformed += 1
            self._stats["malformed"] += 1
            yield record

    def _pieces(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        self._stats["blocks"] += 1
        start = 0
        if self._skip_rows:
            start = min(self._skip_rows, batch.num_rows)
            self._skip_rows -= start
            self._stats["rescanned_rows"] += start
        if self.batch_size is None:
            if start < batch.num_rows:
                yield compact_slice(batch, start)
            return
        # Capped batches are zero-copy views of the block's batch.
        for offset in range(start, batch.num_rows, self.batch_size):
            yield batch.slice(offset, self.batch_size)

    def _past_end(self) -> CheckpointError:
        return CheckpointError(
            f"source {self.source_name!r}: the checkpoint is after {self._rows} rows and "
            f"{self._malformed} malformed rows, but {self.path!r} has fewer; the file changed "
            f"since the checkpoint was taken — reset the checkpoint or restore the file"
        )

