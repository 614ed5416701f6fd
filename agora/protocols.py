"""The typed seams between the run engine and the parts it drives: the checkpoint store,
the DLQ sink and the process-isolated stage, as structural protocols.

Each protocol lists exactly what the engine calls — nothing more — so a third-party
component satisfies it by shape, without inheriting anything. The built-in bases
(``CheckpointStore``, ``BaseSink``, the process middlewares) satisfy them, and
``DeliveryConfig`` checks its ``checkpoint`` and ``dlq`` against them when it is built.
A sink's seam is :class:`agora.sinks.BaseSink` itself (every sink subclasses it).

This module imports only ``records``: every layer may import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agora.records import Checkpoint, DLQRecord, WriteResult

__all__ = [
    "CHECKPOINT_STORE_METHODS",
    "CheckpointStoreProtocol",
    "DLQSink",
    "DLQ_SINK_METHODS",
    "ProcessStage",
]


@runtime_checkable
class CheckpointStoreProtocol(Protocol):
    """What the engine calls on a checkpoint store, in this order: ``open()``,
    ``claim(key)``, ``load(key)``, any number of ``save(key, checkpoint)``, then
    ``release(key)`` and ``close()``.

    Every method is synchronous: each is a short local operation, and the engine calls
    it from its event loop. ``save`` is durable when it returns. ``claim`` refuses a key
    another run holds with ``CheckpointError``. Subclass :class:`agora.CheckpointStore`
    to get ``open``/``close`` defaults and in-process claims for free.
    """

    def open(self) -> None: ...

    def claim(self, key: str) -> None: ...

    def load(self, key: str) -> Checkpoint | None: ...

    def save(self, key: str, checkpoint: Checkpoint) -> None: ...

    def release(self, key: str) -> None: ...

    def close(self) -> None: ...


#: The methods a checkpoint store must have (all synchronous).
CHECKPOINT_STORE_METHODS = ("open", "claim", "load", "save", "release", "close")


@runtime_checkable
class _DLQSinkShape(Protocol):
    """The shape :class:`DLQSink` describes, as the type checker sees it."""

    sink_name: str

    async def open(self) -> None: ...

    async def write_batch(self, records: Sequence[DLQRecord], /) -> list[WriteResult] | None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


#: The coroutine methods a DLQ sink must have.
DLQ_SINK_METHODS = ("open", "write_batch", "flush", "close")


def has_dlq_sink_shape(obj: object) -> bool:
    """Whether ``obj`` has what the engine calls on a DLQ sink (see :class:`DLQSink`)."""
    return hasattr(obj, "sink_name") and all(
        callable(getattr(obj, name, None)) for name in DLQ_SINK_METHODS)


class _ShapeChecked(type):
    """``isinstance(x, DLQSink)`` holds for a subclass and for any object of its shape."""

    def __instancecheck__(cls, instance: object) -> bool:
        if super().__instancecheck__(instance):
            return True
        return bool(cls.__dict__.get("_checks_shape")) and has_dlq_sink_shape(instance)


class _DLQSinkBase(metaclass=_ShapeChecked):
    """What the engine calls on a DLQ sink: ``open()``, ``write_batch(records)``,
    ``flush()``, ``close()`` — all coroutines — and ``sink_name`` for messages.

    ``write_batch`` receives :class:`DLQRecord` objects and returns None (all stored) or
    one :class:`WriteResult` per record, in order. A record counts as captured only
    once ``flush()`` has returned: the checkpoint never passes it before. Every
    ``BaseSink`` (``SQLiteDLQSink``, ``JsonLinesDLQSink``, ``MemorySink``) satisfies it:
    ``isinstance`` checks the shape, not the ancestry.

    It is also a base class (0.3.0's ``DLQSink``): a subclass gets :meth:`replay` and
    :meth:`acknowledge`. A subclass with async ``open``/``write``/``close`` and no
    ``write_batch`` is driven like any such sink (``DeliveryConfig`` adapts it).
    """

    _checks_shape = True
    sink_name: str = "dlq"

    async def replay(self, record: DLQRecord) -> DLQRecord:
        """A copy of ``record`` with ``attempt`` one higher, every other field kept. This
        default stores nothing; a sink that keeps dead letters (``SQLiteDLQSink``) also
        records the new count. Raises ``TypeError`` for anything but a ``DLQRecord``."""
        if not isinstance(record, DLQRecord):
            raise TypeError(
                f"DLQ sink {self.sink_name!r}: replay() takes a DLQRecord; got "
                f"{type(record).__name__} — pass a record read back from the DLQ"
            )
        return record.with_fields(attempt=record.attempt + 1)

    async def acknowledge(self, record: DLQRecord) -> None:
        """Say ``record`` was handled (replayed successfully). This default keeps nothing,
        so it does nothing; a sink that keeps dead letters removes the record."""


if TYPE_CHECKING:
    # The type checker sees the seam as the structural protocol it is (any object of
    # that shape is a DLQ sink); at run time the same name is also a base class.
    DLQSink = _DLQSinkShape
else:
    DLQSink = _DLQSinkBase
    DLQSink.__name__ = DLQSink.__qualname__ = "DLQSink"


@runtime_checkable
class ProcessStage(Protocol):
    """What the engine needs of a middleware whose class sets ``process_isolated = True``
    (``ProcessBatchMiddleware``, ``ArrowProcessBatchMiddleware``).

    * ``submit(batch_index, payload)`` runs one batch in the worker pool and returns its
      result (one result per record for rows, a ``RecordBatch`` for Arrow); the engine
      calls it from up to ``max_in_flight_batches`` tasks at once and commits results in
      source order itself. Cancelling the awaiting task abandons the batch.
    * ``metrics()`` is a JSON-ready dict of pool counters for the run summary.
    * ``on_start(ctx)`` / ``on_stop(ctx)`` (as for every middleware) start and stop the pool.
    """

    name: str
    max_in_flight_batches: int

    async def submit(self, batch_index: int, payload: Any, /) -> Any: ...

    def metrics(self) -> dict[str, Any]: ...
