"""``ArrowJsonLinesSource``: Arrow batches from screened JSON-lines blocks via ``pyarrow.json``."""

from __future__ import annotations

from contextlib import aclosing
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json

from agora.errors import CheckpointError
from agora.planes import DataPlane
from agora.sources._builtin import (
    OnMalformed,
    bad_checkpoint,
    count_field,
    compact_slice,
    positive_int_or_none,
)
from agora.sources._jsonfile import JsonFileSource, line_problem, parse_json_object
from agora.sources._text import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_RECORD_BYTES,
    UTF8_BOM,
    deep_line_candidates,
    read_line,
)
from agora.sources.identity import PrefixHash

__all__ = ["ArrowJsonLinesSource"]

_Bad = tuple[int, bytes, int, str]  # a malformed line: (line number, raw bytes, length, reason)

#: Bytes read per block. Each block is parsed by pyarrow at once, so it bounds memory
#: (a few times the block) and sets the rows per batch (block / line size).
DEFAULT_JSON_BLOCK_SIZE = 1 << 20


@dataclass
class _Block:
    """Whole lines read from the file: ``text`` is what pyarrow may see (screened-out lines
    blanked, so line numbers hold), ``length``/``lines`` what was consumed from the file."""

    text: bytes
    length: int
    lines: int
    bad: list[_Bad] = field(default_factory=list)


class ArrowJsonLinesSource(JsonFileSource):
    """Arrow record batches from a JSON-lines file, parsed by ``pyarrow.json``.

    The file is read in newline-aligned blocks of about ``block_size`` bytes, each parsed
    with ``pyarrow.json.read_json`` into one compact batch. As with the streaming
    ``open_json`` reader, the schema is inferred from the first block and pinned: later
    lines with a new field or a value of another type do not fit it. (``open_json`` is not
    used directly because it fails a whole block without saying where, cannot go on after
    a bad block, and cannot resume from a byte offset.)

    Before pyarrow sees a block, each line is screened: a line longer than
    ``max_record_bytes``, nested deeper than ``max_depth`` (pyarrow's parser would exhaust
    its stack and crash the process) or not UTF-8 (pyarrow would put it into a string
    column) is malformed and blanked out. When pyarrow rejects a block, that block — and
    only it — is re-checked line by line: invalid JSON, non-objects, and lines that do not
    fit the schema are malformed, and the other lines are parsed together. ``"fail"``
    raises ``SourceRecordError`` for the first malformed line (``path:LINE``); ``"dlq"``
    emits a ``MalformedRecord`` per malformed line (in line order) before the block's batch.
    A UTF-8 BOM at the start of the file is ignored. When no block has fixed the schema
    yet, the first well-formed line of a rejected block fixes it. Pass ``schema`` to fix it
    up front (e.g. when the first lines hold only nulls or empty lists).

    Checkpoint: ``{"byte": b, "line": l, "row": r, "malformed": m, "input": {...}}`` — the
    start of the current block, how many of its rows and malformed lines were emitted, and
    the fingerprint of every byte read so far. A resume verifies the fingerprint (appending
    to the file is fine; a replaced or edited file is a ``CheckpointError``), re-reads the
    block exactly as far as the first run had and skips those units (re-parsing the first
    block too, to pin the same schema); keep ``block_size`` unchanged across a resume.
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
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        name: str | None = None,
    ) -> None:
        super().__init__(path, on_malformed, name, max_record_bytes, max_depth)
        self.block_size: int = (
            positive_int_or_none(self.source_name, "block_size", block_size)
            or DEFAULT_JSON_BLOCK_SIZE
        )
        if schema is not None and not isinstance(schema, pa.Schema):
            raise TypeError(
                f"source {self.source_name!r}: schema must be a pyarrow.Schema; "
                f"got {type(schema).__name__}"
            )
        self._given_schema = schema
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._schema: pa.Schema | None = self._given_schema
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
    def current_checkpoint(self) -> dict[str, Any]:
        byte, line = self._block
        return {"byte": byte, "line": line, "row": self._rows_in_block,
                "malformed": self._malformed_in_block, "input": self._hash.identity()}

    def checkpoint_within_last_batch(self, rows: int) -> dict[str, Any]:
        assert self._last_start is not None, "no batch emitted yet"
        byte, line, row, malformed = self._last_start
        return {"byte": byte, "line": line, "row": row + rows, "malformed": malformed,
                "input": self._hash.identity()}

    def _apply_checkpoint(self, value: Any) -> None:
        expected = "{" + ", ".join(f'"{f}": <int >= 0>' for f in self._SHAPE) + ', "input": {...}}'
        fields, _ = self._split_checkpoint(value, expected)
        if set(fields) != set(self._SHAPE):
            raise bad_checkpoint(self.source_name, value, expected)
        f = {k: count_field(self.source_name, value, expected, fields[k]) for k in self._SHAPE}
        assert self._identity is not None
        if f["byte"] > self._identity.consumed:
            raise bad_checkpoint(self.source_name, value, expected + " with byte <= consumed")
        self._byte, self._line = f["byte"], f["line"]
        self._block = (self._byte, self._line)
        self._skip_rows = self._rows_in_block = f["row"]
        self._skip_malformed = self._malformed_in_block = f["malformed"]

    def _after_verify(self) -> None:
        if self._byte > 0 and self._schema is None:
            # Pin the schema the first run inferred: parse the file's first block(s) again,
            # cut where the first run's reads ended, so growth cannot change them.
            fh = self._fh
            assert fh is not None and self._identity is not None
            fh.seek(0)
            pos, line = 0, 0
            while self._schema is None and pos < self._byte:
                block = self._read_block(None, line + 1, self._identity.consumed - pos)
                if not block.length:
                    break  # (cannot happen after the prefix check; never loop forever)
                self._parse(block.text, line + 1)
                pos += block.length
                line += block.lines
            fh.seek(self._byte)

    # -- reading ----------------------------------------------------------------------
    def _read_block(
        self, hasher: PrefixHash | None, first_line: int, limit: int | None
    ) -> _Block:
        """Whole lines from the current position (line ``first_line``), about ``block_size``
        bytes but at most ``limit``, screened. ``hasher`` (if any) sees every byte consumed."""
        fh = self._fh
        assert fh is not None
        start = fh.tell()
        data = fh.read(self.block_size if limit is None else min(self.block_size, limit))
        if hasher is not None:
            hasher.update(data)
        length, lines = len(data), data.count(b"\n")
        cut_line: tuple[int, int] | None = None  # (index, length) of a line not kept whole
        room = None if limit is None else limit - len(data)
        if data and not data.endswith(b"\n") and room != 0:
            # Finish the last line (blocks hold whole lines), keeping at most the record
            # limit of it in memory.
            cap = self.max_record_bytes if room is None else min(self.max_record_bytes, room)
            head, total, ended = read_line(fh, cap, None if hasher is None else hasher.update)
            if len(head) < total:
                cut_line = (lines, len(data) - (data.rfind(b"\n") + 1) + total - ended)
            data += head
            length += total
            lines += ended
        return self._screen(data, start, first_line, cut_line, length, lines)

    def _screen(
        self,
        data: bytes,
        start: int,
        first_line: int,
        cut_line: tuple[int, int] | None,
        length: int,
        lines: int,
    ) -> _Block:
        block = _Block(data, length, lines)
        need_utf8 = not data.isascii()
        if need_utf8:
            try:
                data.decode("utf-8")
                need_utf8 = False
            except UnicodeDecodeError:
                pass
        long_lines = len(data) > self.max_record_bytes or cut_line is not None
        deep = deep_line_candidates(data, self.max_depth)
        bom = start == 0 and data.startswith(UTF8_BOM)
        if not (need_utf8 or long_lines or deep or bom):
            return block  # the usual case: nothing on any line to screen out
        parts = data.split(b"\n")
        check = set(deep)
        if bom:
            parts[0] = self._strip_bom(parts[0], start)
            check.add(0)
        if long_lines:
            check.update(i for i, line in enumerate(parts) if len(line) > self.max_record_bytes)
            if cut_line is not None:
                check.add(cut_line[0])
        if need_utf8:
            check.update(i for i, line in enumerate(parts) if not line.isascii())
        for i in sorted(check):
            line = parts[i]
            total = cut_line[1] if cut_line is not None and cut_line[0] == i else len(line)
            problem = line_problem(line, total, self.max_record_bytes, self.max_depth)
            if problem is None and need_utf8:
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    problem = f"not UTF-8: {exc.reason} at byte {exc.start}"
            if problem is not None:
                block.bad.append((first_line + i, line, total, problem))
                parts[i] = b""
        block.text = b"\n".join(parts)
        return block

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
        """Parse a screened block: (malformed lines, batch or None)."""
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

    def _parse_lines(self, data: bytes, first_line: int) -> tuple[list[_Bad], pa.Table | None]:
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
                bad.append((first_line + offset, line, len(line), problem))
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
                reason = f"does not fit the schema of the first block: {exc}"
                bad.append((line_no, line, len(line), reason))
                continue
            if self._schema is None:
                self._schema = table.schema
            tables.append(table)
        return bad, (pa.concat_tables(tables) if tables else None)

    async def stream_batches(self) -> AsyncIterator[Any]:
        if (alone := self._read_unopened("stream_batches")) is not None:  # unopened
            async with aclosing(alone):
                async for item in alone:
                    yield item
            return
        identity = self._identity
        # The first block of a resume ends where the first run's read of it ended.
        limit = None
        if identity is not None and identity.consumed > self._byte:
            limit = identity.consumed - self._byte
        while True:
            block = self._read_block(self._hash, self._line + 1, limit)
            limit = None
            if not block.length:
                break
            bad, batch = self._parse(block.text, self._line + 1)
            bad = sorted(block.bad + bad, key=lambda item: item[0])
            rows = batch.num_rows if batch is not None else 0
            start = min(self._skip_rows, rows)
            self._skip_rows -= start
            if not self._skips_counted:
                self._rows_in_block = start
            for line_no, line, total, reason in bad:
                record = self._bad_line(line_no, line, total, reason)
                if self._skip_malformed:
                    self._skip_malformed -= 1
                    if not self._skips_counted:
                        self._malformed_in_block += 1
                    continue
                self._malformed_in_block += 1
                yield record
            if batch is not None and start < rows:
                self._last_start = (*self._block, start, self._malformed_in_block)
                self._advance(block)
                yield compact_slice(batch, start)
            else:
                self._advance(block)
        if self._skip_rows or self._skip_malformed:
            raise CheckpointError(
                f"source {self.source_name!r}: the checkpoint skips {self._skip_rows} rows and "
                f"{self._skip_malformed} malformed lines past the end of {self.path!r}; the "
                f"file changed since the checkpoint was taken — reset the checkpoint"
            )

    def _advance(self, block: _Block) -> None:
        """Move the checkpoint to the start of the next block."""
        self._byte += block.length
        self._line += block.lines
        self._block = (self._byte, self._line)
        self._rows_in_block = 0
        self._malformed_in_block = 0
        self._skips_counted = False
