"""The JSON-lines DLQ sink: one record per line, appended, fsynced, a torn tail repaired."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from agora.records import DEFAULT_MAX_VALUE_SIZE, DLQRecord
from agora.sinks.base import BaseSink, SinkState
from agora.stores._files import create_owner_only, make_private_dirs
from agora.stores.dlq import DLQError, check_max_value_size, require_record

__all__ = ["JsonLinesDLQSink"]

# Every line this sink writes starts with this (DLQRecord.to_dict's first field).
_LINE_PREFIX = b'{"pipeline_id":'


class JsonLinesDLQSink(BaseSink):
    """Dead-letters ``DLQRecord``s as one ``DLQRecord.to_json()`` line each.

    Content never fails a write: ``to_json`` stores flagged fallbacks, cuts string and bytes
    values (and the error message) to ``max_value_size`` with ``truncated`` set, and writes
    a lone surrogate as a ``\\udXXX`` JSON escape (lossless).

    The file is opened in append mode (an existing DLQ is never truncated) and created
    owner-only (0600). ``flush()`` flushes Python's buffer and ``fsync``s: after it returns
    the lines survive SIGKILL and power loss. A crash mid-write can leave a torn last line;
    it was never flushed, so the run that wrote it did not count it captured, and
    ``open()`` removes it before appending (a last line that is complete JSON only gets
    its missing newline). A torn tail that does not look like an Agora record makes
    ``open()`` fail with :class:`DLQError` instead. Methods block for a local write/fsync.
    """

    sink_name = "jsonl_dlq"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        sink_name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_value_size = check_max_value_size(self, max_value_size)
        if sink_name is not None:
            self.sink_name = sink_name
        self._file: Any = None

    def __repr__(self) -> str:
        return f"JsonLinesDLQSink({str(self.path)!r})"

    async def open(self) -> None:
        """Open (or reopen after ``close()``: a bound pipeline runs repeatedly) in append
        mode. A second ``open()`` while open is a no-op."""
        if self.state is SinkState.OPEN:
            return
        what = f"DLQ file of sink {self.sink_name!r}"
        try:
            make_private_dirs(self.path.parent, what=f"{what} {self.path}", error=DLQError)
            fd, _ = create_owner_only(
                self.path, os.O_RDWR | os.O_APPEND, what=what, error=DLQError
            )
        except OSError as exc:
            raise DLQError(f"DLQ sink {self.sink_name!r} cannot open {self.path}: {exc}") from exc
        try:
            self._repair_tail(fd)
        except BaseException:
            os.close(fd)
            raise
        self._file = os.fdopen(fd, "ab")
        await super().open()

    def _repair_tail(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        start = size
        while start > 0:  # find the start of the unterminated last line
            chunk_start = max(0, start - 65536)
            newline = os.pread(fd, start - chunk_start, chunk_start).rfind(b"\n")
            if newline >= 0:
                start = chunk_start + newline + 1
                break
            start = chunk_start
        tail = os.pread(fd, size - start, start)
        try:
            json.loads(tail)
        except ValueError:
            if not (tail.startswith(_LINE_PREFIX) or _LINE_PREFIX.startswith(tail)):
                raise DLQError(
                    f"DLQ file {self.path} ends with an incomplete line that is not an Agora "
                    f"DLQ record (byte {start}); is it really a DLQ file? Fix or move it aside"
                ) from None
            os.ftruncate(fd, start)  # a torn, never-flushed write from a crash
        else:
            os.write(fd, b"\n")
        os.fsync(fd)

    async def write(self, record: Any) -> None:
        self._check_usable("write")
        self._file.write(self._line(record))

    async def write_batch(self, records: Sequence[Any]) -> None:
        self._check_usable("write")
        lines = [self._line(r) for r in records]  # all-or-nothing encoding
        self._file.write(b"".join(lines))
        return None

    def _line(self, record: Any) -> bytes:
        text = require_record(self, record).to_json(max_value_size=self.max_value_size)
        return text.encode("utf-8") + b"\n"

    async def flush(self) -> None:
        """Write buffered lines and fsync; durable when this returns."""
        self._check_usable("flush")
        self._file.flush()
        os.fsync(self._file.fileno())

    async def close(self) -> None:
        """Flush (with fsync), then close the file. Idempotent."""
        if self.state is SinkState.CLOSED:
            return
        file, self._file = self._file, None
        try:
            if file is not None:
                file.flush()
                os.fsync(file.fileno())
        finally:
            if file is not None:
                file.close()
            await super().close()

    @classmethod
    def read(
        cls,
        path: str | os.PathLike[str],
        *,
        pipeline_id: str | None = None,
        stage: str | None = None,
    ) -> Iterator[DLQRecord]:
        """Yield the records of a JSON-lines DLQ file in file order.

        A torn (unterminated, unparsable) last line is skipped: it was never flushed.
        Raises :class:`DLQError` at once if the file is missing, and while iterating for
        any other line that is not a DLQ record (naming file and line).
        """
        path = Path(path)
        if not path.is_file():
            raise DLQError(f"DLQ file {path} does not exist")
        return _iter_json_lines(path, pipeline_id, stage)


def _iter_json_lines(
    path: Path, pipeline_id: str | None, stage: str | None
) -> Iterator[DLQRecord]:
    for _, _, record in iter_dlq_lines(path):
        if _matches(record, pipeline_id, stage):
            yield record


def iter_dlq_lines(path: Path) -> Iterator[tuple[int, bytes, DLQRecord]]:
    """``(line number, raw line, record)`` for each record line of a JSON-lines DLQ file.

    Blank lines are skipped; a torn final line (a crash mid-write: never flushed, never
    counted) ends the iteration; any other line that is not a DLQ record is a ``DLQError``
    naming the file and line.
    """
    with open(path, "rb") as fh:  # binary: split on b"\n" only, never on U+2028 & co
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
                if not isinstance(data, dict):
                    raise ValueError(f"expected a JSON object, got {type(data).__name__}")
                record = DLQRecord.from_dict(data)
            except (TypeError, ValueError) as exc:
                if not raw.endswith(b"\n"):
                    return
                raise DLQError(
                    f"DLQ file {path}, line {lineno}: not a DLQ record ({exc})"
                ) from exc
            yield lineno, raw, record


def _matches(record: DLQRecord, pipeline_id: str | None, stage: str | None) -> bool:
    return (pipeline_id is None or record.pipeline_id == pipeline_id) and (
        stage is None or record.stage == stage
    )
