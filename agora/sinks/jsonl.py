"""``JsonLinesSink`` (one JSON object per line) and the JSON encoding it shares with
``StdoutSink``."""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import pyarrow as pa

from agora.planes import DataPlane
from agora.records import DLQRecord, WriteResult
from agora.sinks._files import (
    TextFileSink,
    check_complete_tail,
    check_file_mode,
    ensure_openable,
    mode_from,
    open_output_file,
)

__all__ = [
    "JsonLinesSink",
    "encode_json_line",
]


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


# -- the sink -----------------------------------------------------------------------------


class JsonLinesSink(TextFileSink):
    """Writes one JSON value per line (UTF-8, ``\\n``-terminated) to ``path``.

    Native on rows, Python batches and Arrow batches (Arrow rows are written as
    ``batch.to_pylist()`` gives them, so a timestamp column becomes ISO-8601 text). Encoding
    follows :func:`encode_json_line`: a record that cannot be encoded fails on its own (a
    per-record ``WriteResult.failed`` naming the sink); the other records are written.

    ``mode="w"`` truncates at ``open()``, ``mode="a"`` appends (cutting off an incomplete last
    line left by an interrupted write); reopening after ``close()`` appends. ``flush()`` fsyncs;
    ``close()`` flushes and is idempotent. ``append=True`` / ``False`` (the upstream spelling)
    means ``mode="a"`` / ``"w"``; both at once must agree.

    ``serializer(record) -> JSON value`` (optional, the second positional argument as
    upstream has it) turns each record into what is written — on every path, Arrow rows
    included, so a file never depends on which path a batch took. A serializer that raises
    fails that record alone.
    """

    accepted_data_planes: ClassVar[tuple[DataPlane, ...]] = (
        DataPlane.PYTHON_ROWS,
        DataPlane.PYTHON_BATCHES,
        DataPlane.ARROW_BATCHES,
    )
    native_data_planes: ClassVar[tuple[DataPlane, ...]] = accepted_data_planes

    def __init__(self, path: str | os.PathLike[str],
                 serializer: Callable[[Any], Any] | None = None,
                 append: bool | None = None, *, mode: str | None = None,
                 name: str | None = None) -> None:
        self.path = Path(path)
        self.sink_name = name or f"jsonl:{self.path.name}"
        if serializer is not None and not callable(serializer):
            raise TypeError(
                f"sink {self.sink_name!r}: serializer must be a callable (record -> JSON value) "
                f"or None; got {type(serializer).__name__}"
            )
        self.serializer = serializer
        self.mode = check_file_mode(self.sink_name, mode_from(self.sink_name, mode, append))
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
        if self.serializer is not None:
            try:
                record = self.serializer(record)
            except Exception as exc:
                raise ValueError(
                    f"sink {self.sink_name!r}: serializer raised {type(exc).__name__}: {exc}"
                ) from exc
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
