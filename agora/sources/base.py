"""The source contract (``BaseSource``) and the ``max_records`` wrapper the runtime puts
around every source before a run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from agora.errors import CheckpointError
from agora.planes import DataPlane, SourceDataPlaneSpec, warn_legacy_flag
from agora.records import Checkpoint, MalformedRecord

__all__ = [
    "BaseSource",
    "LimitedSource",
    "batch_num_rows",
    "is_batch_capable_source",
    "is_checkpoint_capable",
    "slice_batch",
]

#: Returned by ``BaseSource.checkpoint_within_last_batch`` when a source cannot position
#: inside a batch; the runtime then keeps the checkpoint from *before* that batch.
NO_INTRA_BATCH_CHECKPOINT: Any = object()


if TYPE_CHECKING:
    # A default lets un-parameterised uses mean "any record" under mypy --strict;
    # the runtime TypeVar needs none.
    from typing_extensions import TypeVar as _DefaultedTypeVar

    RecordT = _DefaultedTypeVar("RecordT", default=Any)
else:
    RecordT = TypeVar("RecordT")


class BaseSource(Generic[RecordT]):
    """Base class for every source.

    A source emits either rows (``stream()``, one dict per item) or batches
    (``stream_batches()``, a ``list[dict]`` or a ``pyarrow.RecordBatch`` per item) — which
    one is declared by ``data_plane_spec()``. Either stream may also yield a
    :class:`~agora.records.MalformedRecord` in place of a record (dead-lettered by the
    runtime with ``stage="source_record"``).

    Checkpointing: with ``supports_checkpoint = True``, ``current_checkpoint()`` returns a
    JSON value naming the position *after* the last emitted unit, and
    ``prepare_resume(checkpoint)`` (called before ``open()``) positions a fresh instance so
    it emits exactly the units after it. ``close()`` is idempotent and safe on an unopened
    source.
    """

    source_name: str = ""
    supports_checkpoint: bool = False
    # Legacy flags (deprecated in 0.3, removed in 0.4): override data_plane_spec() instead.
    supports_batch_emit: bool | None = None
    emits_arrow_batches: bool | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "source_name", ""):
            cls.source_name = cls.__name__

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        """Acquire resources. Called after ``prepare_resume``."""

    async def close(self) -> None:
        """Release resources. Idempotent; valid on a source that was never opened."""

    # -- data ------------------------------------------------------------------------
    def stream(self) -> AsyncIterator[Any]:
        """Yield rows (dicts). Row sources override this."""
        raise NotImplementedError(
            f"source {self.source_name!r} emits {self.emitted_data_plane.value}; it has no stream()"
        )

    def stream_batches(self) -> AsyncIterator[Any]:
        """Yield batches (``list[dict]`` or ``RecordBatch``). Batch sources override this."""
        raise NotImplementedError(
            f"source {self.source_name!r} emits rows; it has no stream_batches()"
        )

    # -- planes ----------------------------------------------------------------------
    def data_plane_spec(self) -> SourceDataPlaneSpec:
        """What this source emits. Override to declare batches or Arrow explicitly."""
        cls = type(self)
        if self.emits_arrow_batches:
            warn_legacy_flag(cls, "emits_arrow_batches", "data_plane_spec() returning arrow_batches")
            plane = DataPlane.ARROW_BATCHES
        elif self.supports_batch_emit:
            warn_legacy_flag(cls, "supports_batch_emit", "data_plane_spec() returning python_batches")
            plane = DataPlane.PYTHON_BATCHES
        else:
            plane = DataPlane.PYTHON_ROWS
        return SourceDataPlaneSpec.for_plane(self.source_name, plane)

    @property
    def emitted_data_plane(self) -> DataPlane:
        return self.data_plane_spec().emitted_plane

    # -- checkpointing ---------------------------------------------------------------
    def current_checkpoint(self) -> Any:
        """Position after the last emitted unit (JSON value), or None before the first."""
        return None

    async def prepare_resume(self, checkpoint: Checkpoint | None) -> None:
        """Position a fresh instance after ``checkpoint`` (None = first run)."""
        if checkpoint is not None and not self.supports_checkpoint:
            raise CheckpointError(
                f"source {self.source_name!r} does not support checkpoints but a checkpoint "
                f"was found for it; reset it (agora checkpoint reset) or use a checkpointable source"
            )

    async def ack(self, checkpoint: Any) -> None:
        """Called by the runtime once every record up to ``checkpoint`` is handled.

        ``checkpoint`` is a value ``current_checkpoint()`` returned after a unit; the call
        means every record the source emitted up to that point was written, dead-lettered,
        dropped or let through by the failure policy, and the sinks and the DLQ have made
        it durable (and the checkpoint store has saved it, when there is one). Acks come
        in source order, at most once per checkpoint save, each covering all before it —
        never for a record still in flight, and never after a crash for records not yet
        handled. Override to release upstream resources (commit a queue offset, delete a
        processed file). An exception is logged and the run goes on: the next ack covers
        the same records. The default does nothing.

        The upstream spelling is accepted too: a source with
        ``delivery_success_callback()`` has it called right after each record (or batch)
        it emits; the async callback it returns (or None) is run at the same point as
        ``ack``, once per record, in source order."""

    def limit(self, n: int) -> BaseSource[RecordT]:
        """This source, reading at most ``n`` records per run (a wrapper; the source
        itself is unchanged). Raises ``TypeError``/``ValueError`` for a bad ``n``."""
        return LimitedSource(self, n)

    @property
    def runtime_metrics(self) -> dict[str, int | float]:
        """Counters merged into the run summary's ``runtime["source_metrics"]``."""
        return {}

    def checkpoint_within_last_batch(self, rows: int) -> Any:
        """Checkpoint positioned after the first ``rows`` rows of the last emitted batch.

        Used when ``max_records`` trims a batch. Sources that cannot position inside a
        batch return ``NO_INTRA_BATCH_CHECKPOINT``; the runtime then keeps the checkpoint
        from before the trimmed batch (a resume re-reads it: safe, never past a row).
        """
        return NO_INTRA_BATCH_CHECKPOINT


def is_batch_capable_source(source: object) -> bool:
    """True when ``source`` is a ``BaseSource`` that emits batches (Python lists or Arrow
    record batches) through ``stream_batches()`` rather than rows through ``stream()``."""
    return isinstance(source, BaseSource) and source.emitted_data_plane is not DataPlane.PYTHON_ROWS


def is_checkpoint_capable(source: object) -> bool:
    """True when ``source`` declares ``supports_checkpoint = True``: only then does a run
    with a checkpoint store load, save and resume its position. The flag, not the shape
    (having ``current_checkpoint``), decides — a source that cannot resume exactly must not
    be resumed."""
    return getattr(source, "supports_checkpoint", False) is True


def batch_num_rows(batch: Any) -> int:
    num_rows = getattr(batch, "num_rows", None)
    return num_rows if num_rows is not None else len(batch)


def slice_batch(batch: Any, length: int) -> Any:
    if hasattr(batch, "num_rows"):
        return batch.slice(0, length)
    return batch[:length]


class LimitedSource(BaseSource[Any]):
    """Wraps a source so a run processes at most ``limit`` records (``run(max_records=N)``).

    Row sources emit exactly ``limit`` records and never pull record ``limit + 1``. Batch
    and Arrow sources pass whole batches while they fit and trim the last one at the
    boundary (``RecordBatch.slice`` / list slice); the checkpoint after a trimmed batch
    never points past its last emitted row. Malformed-record markers do not count as
    records. ``limit == 0`` reads nothing (the inner source is not even iterated).
    """

    def __init__(self, inner: BaseSource, limit: int) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise TypeError(f"max_records must be an int or None; got {type(limit).__name__} "
                            f"(source {inner.source_name!r}) — pass a whole number")
        if limit < 0:
            raise ValueError(f"max_records must be >= 0; got {limit} "
                             f"(source {inner.source_name!r}) — pass 0 or more")
        self.inner = inner
        self.max_records = limit
        self.source_name = inner.source_name
        self.supports_checkpoint = inner.supports_checkpoint
        self._emitted = 0
        self._checkpoint_override: Any = NO_INTRA_BATCH_CHECKPOINT
        self._checkpoint_before: Any = None
        hook = getattr(inner, "delivery_success_callback", None)
        if callable(hook):  # upstream's per-record ack: passed through only when present
            self.delivery_success_callback = hook

    def data_plane_spec(self) -> SourceDataPlaneSpec:
        return self.inner.data_plane_spec()

    @property
    def runtime_metrics(self) -> dict[str, int | float]:
        return self.inner.runtime_metrics

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def prepare_resume(self, checkpoint: Checkpoint | None) -> None:
        await self.inner.prepare_resume(checkpoint)

    async def ack(self, checkpoint: Any) -> None:
        await self.inner.ack(checkpoint)

    def current_checkpoint(self) -> Any:
        if self._checkpoint_override is not NO_INTRA_BATCH_CHECKPOINT:
            return self._checkpoint_override
        return self.inner.current_checkpoint()

    async def stream(self) -> AsyncIterator[Any]:
        if self.max_records == 0:
            return
        agen = self.inner.stream()
        try:
            async for item in agen:
                yield item
                if not isinstance(item, MalformedRecord):
                    self._emitted += 1
                    if self._emitted >= self.max_records:
                        return
        finally:
            await _aclose(agen)

    async def stream_batches(self) -> AsyncIterator[Any]:
        if self.max_records == 0:
            return
        agen = self.inner.stream_batches()
        try:
            before = self.inner.current_checkpoint()
            async for batch in agen:
                if isinstance(batch, MalformedRecord):
                    yield batch
                    before = self.inner.current_checkpoint()
                    continue
                room = self.max_records - self._emitted
                n = batch_num_rows(batch)
                if n <= room:
                    self._emitted += n
                    yield batch
                    if self._emitted >= self.max_records:
                        return
                    before = self.inner.current_checkpoint()
                    continue
                within = self.inner.checkpoint_within_last_batch(room)
                self._checkpoint_override = before if within is NO_INTRA_BATCH_CHECKPOINT else within
                self._emitted += room
                yield slice_batch(batch, room)
                return
        finally:
            await _aclose(agen)


async def _aclose(agen: Any) -> None:
    aclose = getattr(agen, "aclose", None)
    if aclose is not None:
        await aclose()
