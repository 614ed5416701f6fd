"""The sink contract (``BaseSink``), its explicit lifecycle, and plane declarations."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from agora.errors import LifecycleError
from agora.planes import DataPlane, SinkCapabilities, SinkDataPlaneSpec, warn_legacy_flag
from agora.records import WriteResult

__all__ = ["BaseSink", "DuckTypedSink", "SinkState", "as_sink"]


class SinkState(StrEnum):
    """Where a sink is in its life (``BaseSink.state``)."""

    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


if TYPE_CHECKING:
    # A default lets un-parameterised uses mean "any record" under mypy --strict;
    # the runtime TypeVar needs none.
    from typing_extensions import TypeVar as _DefaultedTypeVar

    RecordT = _DefaultedTypeVar("RecordT", default=Any)
else:
    RecordT = TypeVar("RecordT")


class BaseSink(Generic[RecordT]):
    """Base class for every sink.

    Contract:

    * ``open()`` → any number of ``write`` / ``write_batch`` / ``write_arrow_batch`` /
      ``flush`` → ``close()``. ``close()`` is idempotent and implies ``flush()``.
      Built-in sinks raise :class:`~agora.errors.LifecycleError` naming the sink when
      written or flushed before ``open()`` or after ``close()``.
    * ``write(record)`` returns None or raises.
    * ``write_batch(records)`` / ``write_arrow_batch(batch)`` return None (all written),
      or a list with exactly one :class:`WriteResult` per input record/row, in order;
      raising means the whole call failed. Inputs are never mutated.
    * Planes: declare ``accepted_data_planes`` / ``native_data_planes`` class attributes
      or return them from ``sink_capabilities()``. Rows are always accepted. A subclass
      that declares nothing and overrides ``write_batch`` / ``write_arrow_batch`` takes
      Python batches / Arrow batches natively. The runtime calls ``write_arrow_batch``
      only on sinks whose native planes include Arrow.
    * ``parallel_writes_safe`` (default False) and ``ordered_writes_required`` (default
      True): a concurrent :class:`~agora.SinkFanOut` writes the records of one batch to
      this sink at the same time only when it is safe and order is not required.

    Subclasses that want the built-in lifecycle checks call ``await super().open()`` /
    ``await super().close()`` and ``self._check_usable("write")``.
    """

    sink_name: str = ""
    accepted_data_planes: ClassVar[tuple[DataPlane, ...] | None] = None
    native_data_planes: ClassVar[tuple[DataPlane, ...] | None] = None
    # Legacy flags (deprecated in 0.3, removed in 0.4).
    batch_writable_native: ClassVar[bool | None] = None
    arrow_passthrough_native: ClassVar[bool | None] = None

    #: True when every record must be a mapping (a CSV row, a Parquet row). Such a sink
    #: fails any other record on its own (``WriteResult.failed`` with a ``TypeError``
    #: naming the sink and the record type), so it is dead-lettered, never lost.
    requires_mappings: ClassVar[bool] = False
    parallel_writes_safe: ClassVar[bool] = False
    ordered_writes_required: ClassVar[bool] = True

    _state: SinkState = SinkState.NEW
    #: Set by ``resume_output()``: the next ``open()`` continues existing output.
    resuming_output: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "sink_name", ""):
            cls.sink_name = cls.__name__

    # -- lifecycle -------------------------------------------------------------------
    @property
    def state(self) -> SinkState:
        return self._state

    async def open(self) -> None:
        """Acquire resources. A closed sink may be opened again (a bound pipeline runs
        repeatedly): it continues its output rather than starting it over."""
        self._state = SinkState.OPEN

    def resume_output(self) -> None:
        """Called by the runtime before ``open()`` when a run resumes from a checkpoint.

        The sink must then continue the output it already has instead of starting it
        over — records before the checkpoint were delivered by an earlier run (maybe an
        earlier process). Built-in file sinks append even when constructed with
        ``mode="w"``. The default records the request in ``resuming_output``.
        """
        self.resuming_output = True

    @property
    def runtime_metrics(self) -> Mapping[str, int | float]:
        """Counters summed by key into the run summary's ``sink_metrics`` (none by default)."""
        return {}

    async def flush(self) -> None:
        self._check_usable("flush")

    async def close(self) -> None:
        """Flush and release resources. Idempotent."""
        self._state = SinkState.CLOSED

    def _check_usable(self, op: str) -> None:
        if self._state is SinkState.OPEN:
            return
        if self._state is SinkState.NEW:
            raise LifecycleError(f"cannot {op} sink {self.sink_name!r} before open()")
        raise LifecycleError(f"cannot {op} closed sink {self.sink_name!r}")

    # -- data ------------------------------------------------------------------------
    async def write(self, record: Any) -> None:
        raise NotImplementedError(f"sink {self.sink_name!r} does not implement write()")

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        """Default: write records one by one, reporting each failure per record."""
        results: list[WriteResult] = []
        failed = False
        for record in records:
            try:
                await self.write(record)
            except LifecycleError:
                raise
            except Exception as exc:  # a per-record failure, reported in the results
                failed = True
                results.append(WriteResult.failed(exc))
            else:
                results.append(WriteResult.ok())
        return results if failed else None

    async def write_arrow_batch(self, batch: Any) -> list[WriteResult] | None:
        raise TypeError(
            f"sink {self.sink_name!r} does not accept arrow_batches; the runtime downgrades "
            f"Arrow to rows for it — declare native_data_planes including arrow_batches and "
            f"implement write_arrow_batch() to receive RecordBatches"
        )

    # -- planes ----------------------------------------------------------------------
    def sink_capabilities(self) -> SinkCapabilities | None:
        """Optional explicit declaration; overrides the class attributes."""
        return None

    def data_plane_spec(self) -> SinkDataPlaneSpec:
        """Read the declaration. Raises ValueError (naming the sink) if it is inconsistent."""
        caps = self.sink_capabilities()
        accepted: Any = None
        native: Any = None
        if caps is not None and (
            caps.accepted_data_planes is not None or caps.native_data_planes is not None
        ):
            accepted, native = caps.accepted_data_planes, caps.native_data_planes
        elif self.accepted_data_planes is not None or self.native_data_planes is not None:
            accepted, native = self.accepted_data_planes, self.native_data_planes
        else:
            batches = caps.batch_writable_native if caps is not None else None
            arrow = caps.arrow_passthrough_native if caps is not None else None
            if batches is None:
                batches = self.batch_writable_native
            if arrow is None:
                arrow = self.arrow_passthrough_native
            legacy = [DataPlane.PYTHON_ROWS]
            if batches:
                warn_legacy_flag(type(self), "batch_writable_native",
                                 "native_data_planes including python_batches")
                legacy.append(DataPlane.PYTHON_BATCHES)
            if arrow:
                warn_legacy_flag(type(self), "arrow_passthrough_native",
                                 "native_data_planes including arrow_batches")
                legacy.append(DataPlane.ARROW_BATCHES)
            if len(legacy) == 1 and caps is None:
                # Nothing declared: a subclass that implements the batch methods itself
                # takes those planes natively (what 0.3.0 plugins rely on).
                cls = type(self)
                if cls.write_batch is not BaseSink.write_batch:
                    legacy.append(DataPlane.PYTHON_BATCHES)
                if cls.write_arrow_batch is not BaseSink.write_arrow_batch:
                    legacy.append(DataPlane.ARROW_BATCHES)
            if len(legacy) > 1:
                accepted = native = tuple(legacy)
        return SinkDataPlaneSpec.build(self.sink_name, accepted, native)


#: The methods an object needs to be used as a sink without subclassing ``BaseSink``.
DUCK_SINK_METHODS: tuple[str, ...] = ("open", "write", "close")


class DuckTypedSink(BaseSink[Any]):
    """Adapts an object that has async ``open`` / ``close`` and ``write`` and/or
    ``write_arrow_batch`` (optionally ``write_batch`` / ``flush``) but does not subclass
    ``BaseSink``.

    ``write_batch`` is the object's own when it has one (its return value is taken as the
    per-record results, and Python batches are then a native plane), else records are
    written one by one. An object with an async ``write_arrow_batch`` is Arrow-native: an Arrow pipeline hands it each
    ``RecordBatch`` as it is. One without ``write`` takes Arrow batches only; a row sent
    to it fails with a ``TypeError`` naming the sink (dead-lettered, never lost).
    ``close()`` is called once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sink_name = str(getattr(inner, "sink_name", "") or type(inner).__name__)
        self._arrow = inspect.iscoroutinefunction(getattr(inner, "write_arrow_batch", None))
        self._rows = inspect.iscoroutinefunction(getattr(inner, "write", None))
        self._batches = inspect.iscoroutinefunction(getattr(inner, "write_batch", None))

    def data_plane_spec(self) -> SinkDataPlaneSpec:
        """Rows always; Python batches natively when the object has an async
        ``write_batch`` (the row lane hands it each group of ``batch_size`` records, as
        0.3.0 did); Arrow batches natively with an async ``write_arrow_batch``."""
        if not (self._arrow or self._batches):
            return SinkDataPlaneSpec.build(self.sink_name, None, None)
        planes = [DataPlane.PYTHON_ROWS]
        if self._batches:
            planes.append(DataPlane.PYTHON_BATCHES)
        if self._arrow:
            planes.append(DataPlane.ARROW_BATCHES)
        return SinkDataPlaneSpec.build(self.sink_name, tuple(planes), tuple(planes))

    async def write_arrow_batch(self, batch: Any) -> list[WriteResult] | None:
        if not self._arrow:
            return await super().write_arrow_batch(batch)
        result = await self.inner.write_arrow_batch(batch)
        return result if isinstance(result, list) else None

    async def open(self) -> None:
        await self.inner.open()
        await super().open()

    async def write(self, record: Any) -> None:
        if not self._rows:
            raise TypeError(
                f"sink {self.sink_name!r} has no write() and takes Arrow record batches only; "
                f"got a {type(record).__name__} row — feed it from an Arrow source or give "
                f"{type(self.inner).__name__} an async write()")
        await self.inner.write(record)

    async def write_batch(self, records: Sequence[Any]) -> list[WriteResult] | None:
        if not self._batches:
            return await super().write_batch(records)
        result = await self.inner.write_batch(list(records))
        return result if isinstance(result, list) else None

    async def flush(self) -> None:
        own = getattr(self.inner, "flush", None)
        if own is not None:
            await own()

    async def close(self) -> None:
        if self._state is SinkState.CLOSED:
            return
        try:
            await self.inner.close()
        finally:
            await super().close()


def as_sink(obj: Any, *, where: str) -> BaseSink[Any]:
    """``obj`` as a ``BaseSink``: itself, or a :class:`DuckTypedSink` when it has the
    sink methods as coroutines. Raises ``TypeError`` naming what is missing."""
    if isinstance(obj, BaseSink):
        return obj
    missing = [m for m in DUCK_SINK_METHODS
               if not inspect.iscoroutinefunction(getattr(obj, m, None))]
    if missing == ["write"] and inspect.iscoroutinefunction(
            getattr(obj, "write_arrow_batch", None)):
        missing = []  # an Arrow-only sink: write_arrow_batch stands in for write
    if missing:
        raise TypeError(
            f"{where} needs a sink: a BaseSink, or an object with async "
            f"{', '.join(DUCK_SINK_METHODS)} methods; {type(obj).__name__} has no async "
            f"{', '.join(missing)} — subclass agora.BaseSink or add them")
    return DuckTypedSink(obj)
