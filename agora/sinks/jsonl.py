"""``JsonLinesSink`` (one JSON object per line), the JSON encoding it shares with
``StdoutSink``, and the output-file helpers the file sinks share."""

from __future__ import annotations

import asyncio
import base64
import datetime as _dt
import decimal
import errno
import json
import math
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import pyarrow as pa

from agora.errors import LifecycleError
from agora.planes import DataPlane
from agora.records import DLQRecord, WriteResult
from agora.sinks.base import BaseSink, SinkState

log = logging.getLogger("agora.sinks")

__all__ = [
    "JsonLinesSink",
    "check_complete_tail",
    "check_file_mode",
    "encode_json_line",
    "ensure_openable",
    "open_output_file",
    "sync_file",
]

_FILE_MODES = ("w", "a")


# -- JSON encoding ------------------------------------------------------------------------

# Non-finite floats become these JSON strings: JSON has no NaN/Infinity, ``null`` would be
# indistinguishable from a missing value, and these are the spellings ``float()`` parses
# back (``float("NaN")``, ``float("-Infinity")``).
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _known_default(value: Any) -> Any:
    """JSON stand-ins for the common non-JSON values. Raises TypeError for anything else."""
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, DLQRecord):
        return value.to_dict()
    raise TypeError(f"a value of type {type(value).__qualname__} cannot be encoded as JSON")


def _lenient_default(value: Any) -> Any:
    try:
        return _known_default(value)
    except TypeError:
        return str(value)


def _replace_non_finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE[repr(value)]
    if isinstance(value, dict):
        return {k: _replace_non_finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_non_finite(v) for v in value]
    return value


def _dumps(value: Any, default: Callable[[Any], Any]) -> str:
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=default
    )


def encode_json_line(record: Any, *, lenient: bool = False) -> bytes:
    """Encode one record as a UTF-8 JSON line (ending in ``\\n``), deterministically.

    Mapping key order is kept. JSON types are written as is; ``datetime``/``date``/``time``
    → ``isoformat()``; ``Decimal`` → ``str``; ``bytes`` → standard base64 text; NaN / ±inf
    → the strings ``"NaN"`` / ``"Infinity"`` / ``"-Infinity"``; a ``DLQRecord`` → its
    ``to_dict()``. Anything else raises ``TypeError`` — unless ``lenient``, in which case it
    is written as ``str(value)`` and encoding never fails.
    """
    default = _lenient_default if lenient else _known_default
    try:
        try:
            text = _dumps(record, default)
        except ValueError:
            # allow_nan=False found NaN/inf (cheaper to retry than to walk every record).
            text = _dumps(_replace_non_finite(record), default)
        return (text + "\n").encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        if not lenient:
            raise
        # e.g. unencodable dict keys, circular references, lone surrogates.
        return (json.dumps(str(record), ensure_ascii=True) + "\n").encode("utf-8")


# -- output files -------------------------------------------------------------------------


def ensure_openable(sink: BaseSink) -> bool:
    """Raise LifecycleError if ``sink`` is already open; return True when it is being
    reopened after ``close()`` or resumed from a checkpoint (``resume_output()``) — it then
    continues its output (appends) instead of starting it over."""
    if sink.state is SinkState.OPEN:
        raise LifecycleError(f"sink {sink.sink_name!r} is already open; close() it first")
    return sink.state is SinkState.CLOSED or sink.resuming_output


def check_file_mode(sink_name: str, mode: str) -> str:
    if mode not in _FILE_MODES:
        raise ValueError(
            f"sink {sink_name!r}: mode must be 'w' (truncate) or 'a' (append); got {mode!r}"
        )
    return mode


def open_output_file(sink_name: str, path: Path, mode: str) -> BinaryIO:
    """Open ``path`` for binary writing (``"w"`` truncates, ``"a"`` appends).

    A missing parent directory or an OS refusal is raised as the same ``OSError`` subclass
    with a message naming the sink and the path.
    """
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT,
            f"sink {sink_name!r} cannot create {str(path)!r}: directory {str(parent)!r} does "
            f"not exist — create it first or fix the path",
        )
    try:
        return open(path, "ab" if mode == "a" else "wb")  # noqa: SIM115 - closed by the sink
    except OSError as exc:
        raise type(exc)(
            exc.errno, f"sink {sink_name!r} cannot open {str(path)!r} for writing: {exc.strerror}"
        ) from exc


def check_complete_tail(sink_name: str, path: Path, fh: BinaryIO) -> int:
    """Return the size of an append target after repairing a torn last line.

    A file that does not end in a newline was cut short by an interrupted write (a crash
    between ``flush()`` calls). Those bytes were never fsynced before a checkpoint, so the
    records they belong to are re-emitted on resume: the partial line is cut off (and a
    warning logged) rather than glued to new data or blocking the resume.
    """
    size = os.fstat(fh.fileno()).st_size
    if not size:
        return 0
    with open(path, "rb") as reader:
        reader.seek(size - 1)
        if reader.read(1) == b"\n":
            return size
        keep = _last_newline_end(reader, size)
    os.truncate(path, keep)
    fh.seek(0, os.SEEK_END)
    log.warning(
        "sink %r: cut %d byte(s) of an incomplete last line from %s (an interrupted write; "
        "the records are re-emitted from the last checkpoint)", sink_name, size - keep, path,
    )
    return keep


def _last_newline_end(reader: BinaryIO, size: int) -> int:
    """Offset just after the last newline before ``size`` (0 if there is none)."""
    pos = size
    chunk = 64 * 1024
    while pos > 0:
        start = max(0, pos - chunk)
        reader.seek(start)
        data = reader.read(pos - start)
        idx = data.rfind(b"\n")
        if idx >= 0:
            return start + idx + 1
        pos = start
    return 0


async def sync_file(fh: BinaryIO) -> None:
    """Push Python's buffer to the OS and fsync, so the data survives a crash."""
    fh.flush()
    # fsync can take milliseconds on real disks; keep the event loop free meanwhile.
    await asyncio.to_thread(os.fsync, fh.fileno())


# -- the sink -----------------------------------------------------------------------------


class JsonLinesSink(BaseSink):
    """Writes one JSON value per line (UTF-8, ``\\n``-terminated) to ``path``.

    Native on rows, Python batches and Arrow batches (Arrow rows are written as
    ``batch.to_pylist()`` gives them, so a timestamp column becomes ISO-8601 text). Encoding
    follows :func:`encode_json_line`: a record that cannot be encoded fails on its own (a
    per-record ``WriteResult.failed`` naming the sink); the other records are written.

    ``mode="w"`` truncates at ``open()``, ``mode="a"`` appends (cutting off an incomplete last
    line left by an interrupted write); reopening after ``close()`` appends. ``flush()`` fsyncs;
    ``close()`` flushes and is idempotent.
    """

    accepted_data_planes: ClassVar[tuple[DataPlane, ...]] = (
        DataPlane.PYTHON_ROWS,
        DataPlane.PYTHON_BATCHES,
        DataPlane.ARROW_BATCHES,
    )
    native_data_planes: ClassVar[tuple[DataPlane, ...]] = accepted_data_planes

    def __init__(self, path: str | os.PathLike[str], *, mode: str = "w",
                 name: str | None = None) -> None:
        self.path = Path(path)
        self.sink_name = name or f"jsonl:{self.path.name}"
        self.mode = check_file_mode(self.sink_name, mode)
        self._fh: BinaryIO | None = None
        self.records_written = 0

    async def open(self) -> None:
        """Create (``"w"``: truncate) or append to the file; a reopened sink appends.
        A failure leaves the sink's state unchanged."""
        mode = "a" if ensure_openable(self) else self.mode
        fh = open_output_file(self.sink_name, self.path, mode)
        try:
            if mode == "a":
                check_complete_tail(self.sink_name, self.path, fh)
        except BaseException:
            fh.close()
            raise
        self._fh = fh
        await super().open()

    def _encode(self, record: Any) -> bytes:
        try:
            return encode_json_line(record)
        except (TypeError, ValueError, RecursionError) as exc:
            cls = TypeError if isinstance(exc, TypeError) else ValueError
            raise cls(f"sink {self.sink_name!r} cannot write record as JSON: {exc}") from exc

    def _emit(self, chunk: bytes, count: int) -> None:
        assert self._fh is not None
        if chunk:
            self._fh.write(chunk)
        self.records_written += count

    async def write(self, record: Any) -> None:
        self._check_usable("write")
        self._emit(self._encode(record), 1)

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        self._check_usable("write_batch")
        return self._write_all(records)

    async def write_arrow_batch(self, batch: pa.RecordBatch) -> list[WriteResult] | None:
        self._check_usable("write_arrow_batch")
        return self._write_all(batch.to_pylist())

    def _write_all(self, records: Sequence[Any]) -> list[WriteResult] | None:
        lines: list[bytes] = []
        results: list[WriteResult] = []
        failed = False
        for record in records:
            try:
                lines.append(self._encode(record))
            except (TypeError, ValueError, RecursionError) as exc:
                failed = True
                results.append(WriteResult.failed(exc))
            else:
                results.append(WriteResult.ok())
        # One write per call: a batch's lines land together or (on an OS error) the call fails.
        self._emit(b"".join(lines), len(lines))
        return results if failed else None

    async def flush(self) -> None:
        self._check_usable("flush")
        assert self._fh is not None
        await sync_file(self._fh)

    async def close(self) -> None:
        """Flush, fsync and close the file. Idempotent; cleanup errors re-raise after closing."""
        if self._state is SinkState.CLOSED:
            return
        try:
            if self._state is SinkState.OPEN:
                await self.flush()
        finally:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            await super().close()
