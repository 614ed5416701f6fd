"""``JsonLinesSource``: rows from a JSON-lines file with the stdlib ``json``, byte-offset resume."""

from __future__ import annotations

from contextlib import aclosing
import os
from collections.abc import AsyncIterator
from typing import Any

from agora.planes import DataPlane
from agora.sources._builtin import OnMalformed, bad_checkpoint, count_field
from agora.sources._jsonfile import JsonFileSource, line_problem, parse_json_object
from agora.sources._text import DEFAULT_MAX_DEPTH, DEFAULT_MAX_RECORD_BYTES, read_line
from agora.sources.arrow_jsonl import ArrowJsonLinesSource

__all__ = ["ArrowJsonLinesSource", "JsonLinesSource"]


class JsonLinesSource(JsonFileSource):
    """Rows from a JSON-lines file: one UTF-8 JSON object per line; blank lines skipped; a
    UTF-8 BOM at the start of the file is ignored.

    A line is malformed when it is longer than ``max_record_bytes``, nests arrays/objects
    deeper than ``max_depth`` (checked before parsing, so no line can exhaust the stack),
    is not UTF-8, not valid JSON, or not an object: ``"fail"`` raises ``SourceRecordError``
    (``path:LINE`` and the reason); ``"dlq"`` emits a ``MalformedRecord`` with the raw line
    (at most ``RAW_CAP`` bytes of it, marked when truncated) and continues.

    Checkpoint: ``{"line": n, "byte": offset, "input": {"consumed": offset, "sha256": …}}``
    after the last line read. A resume verifies that the file still starts with the bytes
    consumed (appending is fine; a replaced or edited file is a ``CheckpointError``), then
    seeks straight to ``offset``.
    """

    kind = "jsonl"
    plane = DataPlane.PYTHON_ROWS

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        on_malformed: OnMalformed | str = "fail",
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        name: str | None = None,
    ) -> None:
        super().__init__(path, on_malformed, name, max_record_bytes, max_depth)
        self._reset()

    def current_checkpoint(self) -> dict[str, Any]:
        return {"line": self._line, "byte": self._byte, "input": self._hash.identity()}

    def _apply_checkpoint(self, value: Any) -> None:
        expected = '{"line": <int >= 0>, "byte": <int >= 0>, "input": {...}}'
        fields, _ = self._split_checkpoint(value, expected)
        if set(fields) != {"line", "byte"}:
            raise bad_checkpoint(self.source_name, value, expected)
        line = count_field(self.source_name, value, expected, fields["line"])
        byte = count_field(self.source_name, value, expected, fields["byte"])
        assert self._identity is not None
        if byte != self._identity.consumed:
            raise bad_checkpoint(self.source_name, value, expected + " with byte == consumed")
        self._line, self._byte = line, byte

    async def stream(self) -> AsyncIterator[Any]:
        if (alone := self._read_unopened("stream")) is not None:  # unopened
            async with aclosing(alone):
                async for item in alone:
                    yield item
            return
        fh = self._fh
        assert fh is not None
        limit, depth, update = self.max_record_bytes, self.max_depth, self._hash.update
        while True:
            start = self._byte
            line = fh.readline(limit + 1)  # the record (at most the limit) and its "\n"
            if not line:
                return
            update(line)
            total = len(line)
            if total > limit and not line.endswith(b"\n"):
                total += read_line(fh, 0, update)[1]  # over-long: skip (and hash) the rest
            self._line += 1
            self._byte += total
            length = total - line.endswith(b"\n")  # the record without its line end
            if start == 0:
                line = self._strip_bom(line, start)
            if length <= limit and not line.strip():
                continue
            problem = None
            if length > limit or line.count(b"[") + line.count(b"{") > depth:
                problem = line_problem(line, length, limit, depth)
            obj = None
            if problem is None:
                obj, problem = parse_json_object(line)
            yield obj if problem is None else self._bad_line(self._line, line, length, problem)
