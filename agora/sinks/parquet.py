"""``ParquetSink``: Arrow and Python batches into a Parquet dataset folder or one Parquet
file, buffered into row groups, with schema checks that name the differing fields."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from agora.planes import DataPlane
from agora.records import WriteResult
from agora.sinks.base import BaseSink, SinkState
from agora._safe_files import fsync_dir
from agora.sinks._files import create_private_file, ensure_openable, sync_file
from agora.sinks._parquet_dataset import DatasetLedger, check_layout
from agora.sinks._parquet_parts import HashingWriter, PartLedger
from agora.sinks._parquet_schema import conform_batch, infer_batch, rows_to_batch

__all__ = ["ParquetSink"]

# Rows held before a row group is written without waiting for flush(). Larger groups
# compress and scan better; smaller ones bound memory. 64k rows is pyarrow's own scale of
# choice for readers and keeps a wide table's buffer in the tens of megabytes.
DEFAULT_ROW_GROUP_SIZE = 65_536

Layout = Literal["dataset", "file"]
_LAYOUTS = ("dataset", "file")


def _codec_available(name: str) -> bool:
    try:
        return bool(pa.Codec.is_available(name))
    except ValueError:  # a name pyarrow does not know at all
        return False


class ParquetSink(BaseSink):
    """Writes Arrow batches and Python batches (and single rows) to Parquet: by default a
    dataset folder at ``path`` (``layout="dataset"``), or one file (``layout="file"``).

    * Schema: ``schema`` if given, else the schema of the first batch (for Python batches,
      pyarrow's inference over that batch — pass ``schema=`` when early batches may be
      all-null or otherwise unrepresentative). Every later batch must have the same field
      names (any order). A type that differs only by a safe widening (int32 → int64,
      string → large_string, nullability, …) is cast; anything else fails the call with a
      ``ValueError`` naming the sink and each differing field.
    * Python rows are checked one by one: a non-mapping, a key not in the schema (never
      silently dropped), a value that does not convert, or a null in a non-nullable field
      fails that record alone (``WriteResult.failed``); missing keys are nulls.
    * Buffering: rows are buffered and written as row groups of ``row_group_size`` rows,
      and on ``flush()``. Arrow batches are immutable and are buffered by reference.
    * Durability: a Parquet file cannot be appended to and is unreadable without its
      footer, so rows go to a hidden partial file and every ``flush()`` (the runtime
      flushes before each checkpoint) *seals* it — footer, fsync, rename — into a part
      recorded (name, size, SHA-256) in an owner-only manifest replaced atomically. With
      ``fsync=False`` the parts (and, in the dataset layout, the manifest and folder) are
      not fsynced: flushed rows then survive a killed process (the kernel still holds
      them) but not a power loss or an operating-system crash.
    * ``layout="dataset"``: ``path`` is a folder (created 0700) of ``part-NNNNNN.parquet``
      files, one per sealed part, and ``_agora_manifest.json``, its commit record; read
      it with ``pyarrow.parquet.read_table(path)``, ``pyarrow.dataset.dataset(path)`` or
      any engine that reads a folder of Parquet files (the partial file and the manifest
      start with ``.``/``_``, which they skip). Each row is written once: ``close()``
      only commits, and a resumed or repeated run never reads the parts already there,
      so its cost does not grow with the output. Readers see the rows of each part as
      soon as it is sealed. A fresh sink (not resumed, not reopened) starts the dataset
      over: a successful ``open()`` removes the parts its manifest lists. See
      :class:`~agora.sinks._parquet_dataset.DatasetLedger` for crash recovery.
    * ``layout="file"``: ``close()`` re-encodes the previous file (when the sink continues
      its output), every part and the rest into one new file renamed onto ``path``, so
      ``path`` only ever holds a complete file, and a fresh sink replaces it at
      ``close()`` — at the cost of reading and writing every row again at every close,
      the whole earlier output included. Parts live next to ``path`` until then.
    * Shared folders: only parts the manifest lists, with matching size and hash, are ever
      adopted. A listed part that is missing or altered fails ``open()``/``close()`` with
      ``ValueError`` (its rows would otherwise be lost). A part-like file the manifest does
      not list is ignored with a warning and left in place (``layout="file"``), or fails
      ``open()`` naming it (``layout="dataset"``: readers would read it). The sink's
      temporary files are created exclusively (0600) and never opened through a link; a
      link or another user's file in their place, or as the manifest, raises
      ``PermissionError`` naming it. An output of the other layout at ``path`` fails
      ``open()`` with ``ValueError`` saying which ``layout=`` continues it.
    """

    accepted_data_planes: ClassVar[tuple[DataPlane, ...]] = (
        DataPlane.PYTHON_ROWS,
        DataPlane.PYTHON_BATCHES,
        DataPlane.ARROW_BATCHES,
    )
    native_data_planes: ClassVar[tuple[DataPlane, ...]] = (
        DataPlane.PYTHON_BATCHES,
        DataPlane.ARROW_BATCHES,
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        schema: pa.Schema | None = None,
        name: str | None = None,
        compression: str = "zstd",
        row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
        layout: Layout = "dataset",
        fsync: bool = True,
    ) -> None:
        self.path = Path(path)
        self.sink_name = name or f"parquet:{self.path.name}"
        if row_group_size < 1:
            raise ValueError(
                f"sink {self.sink_name!r}: row_group_size must be ≥ 1; got {row_group_size}"
            )
        if schema is not None and not isinstance(schema, pa.Schema):
            raise TypeError(
                f"sink {self.sink_name!r}: schema must be a pyarrow.Schema; got "
                f"{type(schema).__name__}"
            )
        if compression.lower() != "none" and not _codec_available(compression):
            raise ValueError(
                f"sink {self.sink_name!r}: compression {compression!r} is not available in "
                f"this pyarrow build; use 'zstd', 'snappy', 'gzip' or 'none'"
            )
        if layout not in _LAYOUTS:
            raise ValueError(
                f"sink {self.sink_name!r}: layout must be 'dataset' (a folder of parts) or "
                f"'file' (one file, rewritten at every close); got {layout!r}"
            )
        self.layout: Layout = layout
        self.fsync = fsync
        self.schema: pa.Schema | None = schema
        self.compression = compression
        self.row_group_size = row_group_size
        self._fh: BinaryIO | None = None
        self._out: HashingWriter | None = None
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[pa.RecordBatch] = []
        self._buffered_rows = 0
        self.records_written = 0
        self.row_groups_written = 0
        self._part_rows = 0
        self._continuing = False
        self._ledger = PartLedger(self.path, self.sink_name)
        self._dataset = DatasetLedger(self.path, self.sink_name, fsync=fsync)
        self._own_partial = False

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def partial_path(self) -> Path:
        """Where rows written since the last ``flush()`` go (never read back after a crash)."""
        if self.layout == "dataset":
            return self._dataset.partial_path
        return self.path.with_name(f".{self.path.name}.agora-partial")

    async def open(self) -> None:
        """Start writing. A sink reopened after ``close()`` or resumed from a checkpoint
        continues its output: the file at ``path`` and the parts a crashed run recorded
        are kept and merged at ``close()``. A fresh sink discards the parts an earlier
        crashed run recorded. A failure leaves ``path`` untouched."""
        continuing = ensure_openable(self)
        check_layout(self.sink_name, self.path, self.layout, self._ledger.manifest_path)
        if self.layout == "dataset":
            self._dataset.start(continuing)
            if continuing and self.schema is None:
                self.schema = self._dataset.schema
        else:
            self._ledger.start(continuing)
            if continuing and self.schema is None:
                self.schema = self._previous_schema()
        self._continuing = continuing
        self._open_partial()
        if self.layout == "dataset":
            try:
                self._dataset.begin()
            except BaseException:
                self._discard_partial()
                raise
        await super().open()

    def _previous_schema(self) -> pa.Schema | None:
        """The schema of the earlier output or of its first part that has one."""
        if self.path.exists():
            schema = pq.read_schema(self.path)
            if schema.names:
                return schema
        for part in self._ledger.parts:
            with self._ledger.open_part(part) as fh:
                schema = pq.read_schema(fh)
            if schema.names:
                return schema
        return None

    def _open_partial(self) -> None:
        self._fh = create_private_file(self.sink_name, self.partial_path)
        self._out = HashingWriter(self._fh)
        self._own_partial = True  # what is at partial_path is ours to remove

    async def flush(self) -> None:
        """Seal everything written so far into a durable part file (footer written,
        fsynced, renamed into place, recorded in the manifest): after ``flush()`` the rows
        survive a crash, and ``close()`` merges the parts into ``path``."""
        self._check_usable("flush")
        self._write_buffer()
        await self._seal()

    async def _seal(self) -> None:
        if self._writer is None:
            return
        assert self._fh is not None and self._out is not None
        self._writer.close()
        self._writer = None
        await self._sync(self._fh)
        sealed = os.fstat(self._fh.fileno())
        self._fh.close()
        self._fh = None
        if self.layout == "dataset":
            assert self.schema is not None
            self._dataset.seal(self._out, sealed, self._part_rows, self.schema)
        else:
            self._ledger.seal(self.partial_path, self._out, sealed)
        self._part_rows = 0
        self._own_partial = False
        self._open_partial()

    async def _sync(self, fh: BinaryIO) -> None:
        if self.fsync:
            await sync_file(fh)
        else:
            fh.flush()

    async def close(self) -> None:
        """Seal what is buffered; then commit the dataset's manifest (``layout="dataset"``),
        or merge the earlier output and every part into one file (row group by row group),
        fsync it and move it onto ``path`` (``layout="file"``).

        Idempotent. If that fails, ``path`` keeps what it held before, the sealed parts
        stay for a resumed run, and the error is re-raised."""
        if self._state is SinkState.CLOSED:
            return
        try:
            if self._state is SinkState.OPEN:
                self._write_buffer()
                if self.layout == "dataset":
                    if (not self._dataset.parts and self._writer is None
                            and self.schema is not None):
                        # An empty part, so that readers learn the schema of no rows.
                        self._start_writer(self.schema)
                    await self._seal()
                    self._dataset.commit(self.schema)
                else:
                    await self._seal()
                    await self._merge()
        finally:
            self._discard_partial()
            self._buffer.clear()
            self._buffered_rows = 0
            await super().close()

    async def _merge(self) -> None:
        inputs: list[Any] = [self.path] if self._continuing and self.path.exists() else []
        inputs += list(self._ledger.parts)
        assert self._fh is not None and self._out is not None
        schema = self.schema if self.schema is not None else pa.schema([])
        self._start_writer(schema)
        assert self._writer is not None
        for source in inputs:
            fh = source if isinstance(source, Path) else self._ledger.open_part(source)
            try:
                with pq.ParquetFile(fh) as previous:
                    if not previous.schema_arrow.names:
                        continue  # the empty file of a run that saw no schema
                    for i in range(previous.num_row_groups):  # one row group at a time
                        self._writer.write_table(
                            self._conform_table(previous.read_row_group(i)))
            finally:
                if not isinstance(fh, Path):
                    fh.close()
        self._writer.close()
        self._writer = None
        await self._sync(self._fh)
        self._fh.close()
        self._fh = None
        # Recorded before the rename: a run killed after it knows the parts are merged.
        self._ledger.record_merged(self._out)
        os.replace(self.partial_path, self.path)
        self._own_partial = False
        if self.fsync:
            fsync_dir(self.path.parent)
        self._ledger.finish()

    def _conform_table(self, table: pa.Table) -> pa.Table:
        assert self.schema is not None
        if table.schema.equals(self.schema):
            return table
        return table.select(self.schema.names).cast(self.schema)

    def _discard_partial(self) -> None:
        """Release the writer and the partial file; never raises."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - an original error is already propagating
                pass
            self._writer = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._own_partial:
            self.partial_path.unlink(missing_ok=True)
            self._own_partial = False

    # -- data ------------------------------------------------------------------------------
    async def write(self, record: Any) -> None:
        self._check_usable("write")
        results = self._write_rows([record])
        if results is not None and results[0].error is not None:
            raise results[0].error

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        self._check_usable("write_batch")
        return self._write_rows(records)

    async def write_arrow_batch(self, batch: pa.RecordBatch) -> list[WriteResult] | None:
        self._check_usable("write_arrow_batch")
        if self.schema is None:
            self.schema = batch.schema
        self._add(self._conform(batch))
        return None

    def _write_rows(self, records: Sequence[Any]) -> list[WriteResult] | None:
        results: list[WriteResult | None] = [None] * len(records)
        valid: list[int] = []
        names = set(self.schema.names) if self.schema is not None else None
        for i, record in enumerate(records):
            if not isinstance(record, Mapping):
                results[i] = WriteResult.failed(TypeError(
                    f"sink {self.sink_name!r} writes mappings (one dict per row); got "
                    f"{type(record).__name__}"
                ))
            elif names is not None and (extra := [k for k in record if k not in names]):
                results[i] = WriteResult.failed(ValueError(
                    f"sink {self.sink_name!r}: record has keys {extra} that are not fields of "
                    f"the Parquet schema {sorted(names)}; the record was not written "
                    f"rather than losing those values — pass schema= with every field"
                ))
            else:
                valid.append(i)
        rows = [records[i] for i in valid]
        if rows:
            batch, _ = self._convert(rows, results, valid)
            self._add(batch)
        if any(r is not None for r in results):
            return [r if r is not None else WriteResult.ok() for r in results]
        return None

    def _convert(
        self, rows: list[Any], results: list[WriteResult | None], index: list[int]
    ) -> tuple[pa.RecordBatch, list[int]]:
        """Rows → one batch of the schema (inferred from the first batch when the sink
        has none); see :func:`rows_to_batch`."""
        if self.schema is None:
            batch = infer_batch(self.sink_name, rows)
            self.schema = batch.schema
            return batch, index
        return rows_to_batch(self.sink_name, self.schema, rows, results, index)

    def _conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        assert self.schema is not None
        return conform_batch(self.sink_name, self.path, self.schema, batch)

    def _add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._buffer.append(batch)
            self._buffered_rows += batch.num_rows
            self.records_written += batch.num_rows
        if self._buffered_rows >= self.row_group_size:
            self._write_buffer()

    def _start_writer(self, schema: pa.Schema) -> None:
        assert self._out is not None
        self._writer = pq.ParquetWriter(self._out, schema, compression=self.compression)

    def _write_buffer(self) -> None:
        if not self._buffered_rows:
            return
        assert self.schema is not None
        if self._writer is None:
            self._start_writer(self.schema)
        assert self._writer is not None
        table = pa.Table.from_batches(self._buffer, schema=self.schema)
        self._writer.write_table(table, row_group_size=self.row_group_size)
        self._part_rows += table.num_rows
        self.row_groups_written += -(-table.num_rows // self.row_group_size)
        self._buffer.clear()
        self._buffered_rows = 0
