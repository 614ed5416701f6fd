"""JSON-lines sources: stdlib ``json`` rows and ``pyarrow.json`` batches, byte-offset resume."""

from __future__ import annotations

import io
import json
import os
from collections.abc import AsyncIterator
from typing import IO, Any

import pyarrow as pa
import pyarrow.json as pa_json

from agora.errors import CheckpointError, SourceRecordError
from agora.planes import DataPlane
from agora.records import MalformedRecord
from agora.sources.iterable import (
    BuiltinSource,
    OnMalformed,
    checkpoint_fields,
    compact_slice,
    file_source_name,
    missing_file_error,
    parse_on_malformed,
    positive_int_or_none,
)

__all__ = ["ArrowJsonLinesSource", "JsonLinesSource"]

_Bad = tuple[int, bytes, str]  # a malformed line: (line number, raw bytes, reason)


def parse_json_object(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """``(object, None)`` if ``line`` is one UTF-8 JSON object, else ``(None, reason)``."""
    try:
        value = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8: {exc.reason}"
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} (column {exc.colno})"
    if not isinstance(value, dict):
        return None, f"expected a JSON object, got a JSON {type(value).__name__}"
    return value, None


def raw_text(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").rstrip("\r\n")


class _JsonFileSource(BuiltinSource):
    """An open binary file plus a validated ``(line, byte)`` start position."""

    kind = "jsonl"

    def __init__(self, path: str | os.PathLike[str], on_malformed: Any, name: str | None) -> None:
        super().__init__(file_source_name(self.kind, path, name))
        self.path = os.fspath(path)
        self.on_malformed = parse_on_malformed(self.source_name, on_malformed)
        self._fh: IO[bytes] | None = None
        self._line = 0  # lines before the current position
        self._byte = 0

    def _open(self) -> None:
        try:
            self._fh = open(self.path, "rb")  # noqa: SIM115 — closed in _close()
        except FileNotFoundError:
            raise missing_file_error(self.source_name, self.path) from None
        try:
            self._seek_start()
        except BaseException:
            self._close()
            raise

    def _seek_start(self) -> None:
        fh = self._fh
        assert fh is not None
        if self._byte == 0:
            return
        size = os.fstat(fh.fileno()).st_size
        fits = self._byte <= size
        if fits and self._byte < size:  # at the very end, a last line may lack its newline
            # A checkpoint always sits just after a newline; anything else means the file
            # is not the one the checkpoint was taken on.
            fh.seek(self._byte - 1)
            fits = fh.read(1) == b"\n"
        if not fits:
            raise CheckpointError(
                f"source {self.source_name!r}: checkpoint at byte {self._byte} (line "
                f"{self._line}) does not fit {self.path!r} ({size} bytes); the file changed "
                f"since the checkpoint was taken — reset the checkpoint or restore the file"
            )
        fh.seek(self._byte)

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _malformed(self, line_no: int, line: bytes, reason: str) -> MalformedRecord:
        location = f"{self.path}:{line_no}"
        if self.on_malformed is OnMalformed.FAIL:
            raise SourceRecordError(self.source_name, location, reason)
        return MalformedRecord(raw=raw_text(line), reason=reason, location=location)


class JsonLinesSource(_JsonFileSource):
    """Rows from a JSON-lines file: one UTF-8 JSON object per line; blank lines skipped.

    A line that is not valid JSON, not an object, or not UTF-8 is malformed: ``"fail"``
    raises ``SourceRecordError`` (``path:LINE`` and the reason); ``"dlq"`` emits a
    ``MalformedRecord`` with the raw line and continues. Checkpoint: ``{"line": n,
    "byte": offset}`` after the last emitted unit; resume seeks straight there.
    """

    kind = "jsonl"
    plane = DataPlane.PYTHON_ROWS

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        on_malformed: OnMalformed | str = "fail",
        name: str | None = None,
    ) -> None:
        super().__init__(path, on_malformed, name)
        self._pos = (0, 0)

    def current_checkpoint(self) -> dict[str, int]:
        return {"line": self._pos[0], "byte": self._pos[1]}

    def _apply_checkpoint(self, value: Any) -> None:
        fields = checkpoint_fields(self.source_name, value, ("line", "byte"))
        self._line, self._byte = self._pos = (fields["line"], fields["byte"])

    async def stream(self) -> AsyncIterator[Any]:  # type: ignore[override]
        self._require_open("stream")
        fh = self._fh
        assert fh is not None
        while line := fh.readline():
            self._line += 1
            self._byte += len(line)
            if not line.strip():
                continue
            obj, problem = parse_json_object(line)
            item: Any = obj if problem is None else self._malformed(self._line, line, problem)
            self._pos = (self._line, self._byte)
            yield item


#: Bytes read per block. Each block is parsed by pyarrow at once, so it bounds memory
#: (a few times the block) and sets the rows per batch (block / line size).
DEFAULT_JSON_BLOCK_SIZE = 1 << 20


class ArrowJsonLinesSource(_JsonFileSource):
    """Arrow record batches from a JSON-lines file, parsed by ``pyarrow.json``.

    The file is read in newline-aligned blocks of about ``block_size`` bytes, each parsed
    with ``pyarrow.json.read_json`` into one compact batch. As with the streaming
    ``open_json`` reader, the schema is inferred from the first block and pinned: later
    lines with a new field or a value of another type do not fit it. (``open_json`` is not
    used directly because it fails a whole block without saying where, cannot go on after
    a bad block, and cannot resume from a byte offset.)

    When pyarrow rejects a block, that block — and only it — is re-checked line by line:
    invalid JSON, non-objects, and lines that do not fit the schema are malformed, and the
    other lines of the block are parsed together. ``"fail"`` raises ``SourceRecordError``
    for the first malformed line (``path:LINE``); ``"dlq"`` emits a ``MalformedRecord`` per
    malformed line before the block's batch. When no block has fixed the schema yet, the
    first well-formed line of a rejected block fixes it. Pass ``schema`` to fix it up front
    (e.g. when the first lines hold only nulls or empty lists, which pin a ``null`` type).

    Checkpoint: ``{"byte": b, "line": l, "row": r, "malformed": m}`` — the start of the
    current block and how many of its rows and malformed lines were emitted. Resume seeks
    to the block and skips those (re-parsing the first block too, to pin the same schema);
    keep ``block_size`` unchanged across a resume so the schema comes out the same.
    """

    kind = "arrow_jsonl"
    plane = DataPlane.ARROW_BATCHES
    _SHAPE = ("byte", "line", "row", "malformed")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        block_size: int = DEFAULT_JSON_BLOCK_SIZE,
        on_malformed: OnMalformed | str = "fail",
        schema: pa.Schema | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(path, on_malformed, name)
        self.block_size: int = (
            positive_int_or_none(self.source_name, "block_size", block_size)
            or DEFAULT_JSON_BLOCK_SIZE
        )
        if schema is not None and not isinstance(schema, pa.Schema):
            raise TypeError(
                f"source {self.source_name!r}: schema must be a pyarrow.Schema; "
                f"got {type(schema).__name__}"
            )
        self._schema: pa.Schema | None = schema
        self._skip_rows = 0
        self._skip_malformed = 0
        # The checkpoint: current block start and the units of it already emitted.
        self._block: tuple[int, int] = (0, 0)  # (byte, line)
        self._rows_in_block = 0
        self._malformed_in_block = 0
        self._last_start: tuple[int, int, int, int] | None = None
        # Units skipped on resume are already in the checkpoint's counts while we are in
        # the block it names; past it (a different block_size), skips count as usual.
        self._skips_counted = True

    # -- checkpointing ----------------------------------------------------------------
    def current_checkpoint(self) -> dict[str, int]:
        byte, line = self._block
        return {"byte": byte, "line": line, "row": self._rows_in_block,
                "malformed": self._malformed_in_block}

    def checkpoint_within_last_batch(self, rows: int) -> dict[str, int]:
        assert self._last_start is not None, "no batch emitted yet"
        byte, line, row, malformed = self._last_start
        return {"byte": byte, "line": line, "row": row + rows, "malformed": malformed}

    def _apply_checkpoint(self, value: Any) -> None:
        f = checkpoint_fields(self.source_name, value, self._SHAPE)
        self._byte, self._line = f["byte"], f["line"]
        self._block = (self._byte, self._line)
        self._skip_rows = self._rows_in_block = f["row"]
        self._skip_malformed = self._malformed_in_block = f["malformed"]

    def _seek_start(self) -> None:
        super()._seek_start()
        if self._byte > 0 and self._schema is None:
            # Pin the schema the first run inferred: parse the file's first block(s) again.
            fh = self._fh
            assert fh is not None
            fh.seek(0)
            line = 0
            while self._schema is None and fh.tell() < self._byte:
                data = self._read_block()
                self._parse(data, line + 1)
                line += data.count(b"\n")
            fh.seek(self._byte)

    # -- reading ----------------------------------------------------------------------
    def _read_block(self) -> bytes:
        fh = self._fh
        assert fh is not None
        data = fh.read(self.block_size)
        if data and not data.endswith(b"\n"):
            data += fh.readline()  # finish the last line: blocks hold whole lines
        return data

    def _read_json(self, data: bytes) -> pa.Table:
        schema = self._schema
        parse = pa_json.ParseOptions(
            explicit_schema=schema,
            unexpected_field_behavior="error" if schema is not None else "infer",
        )
        # One pyarrow block for the whole chunk, so the result is one compact chunk.
        read = pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1)
        return pa_json.read_json(io.BytesIO(data), read_options=read, parse_options=parse)

    def _parse(self, data: bytes, first_line: int) -> tuple[list[_Bad], pa.RecordBatch | None]:
        """Parse a block: (malformed lines as (line, text, reason), batch or None)."""
        if not data.strip():
            return [], None
        try:
            table = self._read_json(data)
        except pa.ArrowInvalid:
            bad, table = self._parse_lines(data, first_line)
        else:
            bad = []
        if table is None:
            return bad, None
        if self._schema is None:
            self._schema = table.schema
        batches = table.combine_chunks().to_batches()
        return bad, (batches[0] if batches and batches[0].num_rows else None)

    def _parse_lines(
        self, data: bytes, first_line: int
    ) -> tuple[list[_Bad], pa.Table | None]:
        """The slow path for a rejected block: find its malformed lines."""
        bad: list[_Bad] = []
        good: list[tuple[int, bytes]] = []
        for offset, line in enumerate(data.split(b"\n")):
            if not line.strip():
                continue
            _, problem = parse_json_object(line)
            if problem is None:
                good.append((first_line + offset, line))
            else:
                bad.append((first_line + offset, line, problem))
        if not good:
            return bad, None
        try:
            return bad, self._read_json(b"\n".join(line for _, line in good))
        except pa.ArrowInvalid:
            pass
        # Valid JSON objects that pyarrow still rejects do not fit the schema: find them
        # one line at a time (only ever on a block that has such a line).
        tables = []
        for line_no, line in good:
            try:
                table = self._read_json(line)
            except pa.ArrowInvalid as exc:
                bad.append((line_no, line, f"does not fit the schema of the first block: {exc}"))
                continue
            if self._schema is None:
                self._schema = table.schema
            tables.append(table)
        bad.sort(key=lambda item: item[0])
        return bad, (pa.concat_tables(tables) if tables else None)

    async def stream_batches(self) -> AsyncIterator[Any]:  # type: ignore[override]
        self._require_open("stream_batches")
        while data := self._read_block():
            bad, batch = self._parse(data, self._line + 1)
            rows = batch.num_rows if batch is not None else 0
            start = min(self._skip_rows, rows)
            self._skip_rows -= start
            if not self._skips_counted:
                self._rows_in_block = start
            for line_no, line, reason in bad:
                record = self._malformed(line_no, line, reason)
                if self._skip_malformed:
                    self._skip_malformed -= 1
                    if not self._skips_counted:
                        self._malformed_in_block += 1
                    continue
                self._malformed_in_block += 1
                yield record
            if batch is not None and start < rows:
                self._last_start = (*self._block, start, self._malformed_in_block)
                self._advance(data)
                yield compact_slice(batch, start)
            else:
                self._advance(data)
        if self._skip_rows or self._skip_malformed:
            raise CheckpointError(
                f"source {self.source_name!r}: the checkpoint skips {self._skip_rows} rows and "
                f"{self._skip_malformed} malformed lines past the end of {self.path!r}; the "
                f"file changed since the checkpoint was taken — reset the checkpoint"
            )

    def _advance(self, data: bytes) -> None:
        """Move the checkpoint to the start of the next block."""
        self._byte += len(data)
        self._line += data.count(b"\n")
        self._block = (self._byte, self._line)
        self._rows_in_block = 0
        self._malformed_in_block = 0
        self._skips_counted = False
