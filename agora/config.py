"""Delivery configuration and its policies (contract §7), checked when it is built."""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from typing import Any
from enum import StrEnum

from agora.protocols import (
    CHECKPOINT_STORE_METHODS,
    DLQ_SINK_METHODS,
    CheckpointStoreProtocol,
    DLQSink,
)
from agora.records import Checkpoint, DLQRecord
from agora.sinks.base import DUCK_SINK_METHODS, DuckTypedSink
from agora.stores.checkpoint_async import AsyncCheckpointStore, direct_sync_store

__all__ = [
    "CheckpointFailurePolicy",
    "DLQFailurePolicy",
    "DeliveryConfig",
    "FailurePolicy",
    "SinkFailurePolicy",
]


class FailurePolicy(StrEnum):
    """What happens to a failure the DLQ did not capture."""

    FAIL_CLOSED = "fail_closed"  # stop the run, raise the original exception
    LOG_AND_CONTINUE = "log_and_continue"  # count it errored, let the checkpoint pass it


SinkFailurePolicy = FailurePolicy  # alias kept for code written against upstream Agora


class DLQFailurePolicy(StrEnum):
    """What happens when writing to the DLQ itself fails."""

    LOG_ONLY = "log_only"  # log, then fall back to failure_policy
    RAISE = "raise"  # stop the run with the DLQ's exception


class CheckpointFailurePolicy(StrEnum):
    """What happens when saving a checkpoint fails."""

    FAIL_CLOSED = "fail_closed"
    LOG_AND_CONTINUE = "log_and_continue"


@dataclass(frozen=True, kw_only=True)
class DeliveryConfig:
    """How a run delivers, dead-letters and checkpoints. All fields keyword-only; every
    field is checked here, so a mistake fails at construction with a ``TypeError`` /
    ``ValueError`` naming the field, never later inside a run.

    * ``dlq``: a DLQ sink (:class:`~agora.protocols.DLQSink`: ``SQLiteDLQSink(path)``,
      ``JsonLinesDLQSink(path)``, ``MemorySink()``, or any object with async ``open``,
      ``write_batch``, ``flush`` and ``close``) or None. An object with async ``open``,
      ``write`` and ``close`` only is adapted (records written one by one); ``dlq`` is
      then the adapter, whose ``inner`` is the object given.
    * ``checkpoint``: a checkpoint store (``InMemoryCheckpointStore()``,
      ``SQLiteCheckpointStore(path)``, their ``Sync*`` forms, a
      :class:`~agora.CheckpointStore` of one's own, or any object with the methods of
      :class:`~agora.protocols.CheckpointStoreProtocol`) or None. An object with only
      ``load`` and ``save`` is accepted too; it gets no-op ``claim``/``release`` (it
      cannot fence concurrent runs) — see :attr:`checkpoint_store`. A store whose methods
      are coroutines (``async def``) is adapted (:class:`AsyncStoreAdapter`).
    * ``checkpoint_every``: handled records between checkpoint saves (a save also happens
      at the clean end of the stream). Trade-off: smaller means fewer duplicates after a
      crash, larger means fewer durable commits.
    * ``batch_size``: on the row lane, how many records the writer groups per delivery
      call and per commit step.
    * ``max_buffer_size``: upper bound on records held between the source and the commit
      (units in flight, and the row-lane writer group); at least one unit is always
      held. It bounds memory and the duplicate window after a crash; keep it at least
      ``max_in_flight_batches`` × batch rows or it, not the pool, limits pipelining.
    * ``batch_flush_interval_ms``: on the row lane, the longest a partial group of
      ``batch_size`` records waits for more records (milliseconds; None: until the group
      is full or the source ends). When it has waited that long the group is handed on,
      finished work is committed and the checkpoint saved, so a slow trickle source
      still reaches its sinks and its checkpoint. Trade-off: shorter means fresher
      output, more (smaller) sink writes and checkpoint saves while the source is slow.
    * ``dlq_redactor``: ``fn(DLQRecord) -> DLQRecord`` applied before every DLQ write
      (mask or drop sensitive fields); if it raises, the DLQ write counts as failed.
    """

    dlq: DLQSink | None = None
    dlq_failure_policy: DLQFailurePolicy = DLQFailurePolicy.LOG_ONLY
    checkpoint: CheckpointStoreProtocol | AsyncCheckpointStore | LoadSaveStore | None = None
    checkpoint_key: str | None = None
    checkpoint_every: int = 1000
    checkpoint_failure_policy: CheckpointFailurePolicy = CheckpointFailurePolicy.FAIL_CLOSED
    batch_size: int = 1
    failure_policy: FailurePolicy = FailurePolicy.FAIL_CLOSED
    max_buffer_size: int = 1_000_000
    batch_flush_interval_ms: float | None = None
    dlq_redactor: Callable[[DLQRecord], DLQRecord] | None = None
    sink_failure_policy: InitVar[FailurePolicy | str | None] = None
    _store: CheckpointStoreProtocol | None = field(
        default=None, init=False, repr=False, compare=False)
    _dlq_sink: DLQSink | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self, sink_failure_policy: FailurePolicy | str | None) -> None:
        if sink_failure_policy is not None:
            if self.failure_policy is not FailurePolicy.FAIL_CLOSED and FailurePolicy(
                sink_failure_policy
            ) is not FailurePolicy(self.failure_policy):
                raise ValueError(
                    "DeliveryConfig got both failure_policy and its alias sink_failure_policy "
                    "with different values; pass only failure_policy"
                )
            object.__setattr__(self, "failure_policy", sink_failure_policy)
        for name, enum in (
            ("failure_policy", FailurePolicy),
            ("dlq_failure_policy", DLQFailurePolicy),
            ("checkpoint_failure_policy", CheckpointFailurePolicy),
        ):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                valid = ", ".join(repr(m.value) for m in enum)
                raise ValueError(
                    f"DeliveryConfig.{name} must be one of {valid}; got {value!r}"
                ) from None
        for name in ("checkpoint_every", "batch_size", "max_buffer_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"DeliveryConfig.{name} must be an integer >= 1; got {value!r}")
        interval = self.batch_flush_interval_ms
        if interval is not None and (isinstance(interval, bool)
                                     or not isinstance(interval, (int, float))):
            raise TypeError(
                f"DeliveryConfig.batch_flush_interval_ms must be a number of milliseconds or "
                f"None; got {_describe(interval)} — e.g. batch_flush_interval_ms=500"
            )
        if interval is not None and not 0 < interval < float("inf"):
            raise ValueError(
                f"DeliveryConfig.batch_flush_interval_ms must be > 0 and finite (milliseconds), "
                f"or None to wait for full groups; got {interval!r}"
            )
        if self.checkpoint_key is not None and (
            not isinstance(self.checkpoint_key, str) or not self.checkpoint_key
        ):
            raise TypeError(
                f"DeliveryConfig.checkpoint_key must be a non-empty string or None (None: the "
                f"pipeline id); got {_describe(self.checkpoint_key)}"
            )
        if self.dlq_redactor is not None and not callable(self.dlq_redactor):
            raise TypeError(
                f"DeliveryConfig.dlq_redactor must be callable: fn(DLQRecord) -> DLQRecord; "
                f"got {_describe(self.dlq_redactor)}"
            )
        # ``dlq`` stays the object given (code reads it back); the engine drives
        # ``dlq_sink``: the same object, or the adapter around a duck-typed one.
        object.__setattr__(self, "_dlq_sink", None if self.dlq is None else _check_dlq(self.dlq))
        if self.checkpoint is not None:
            object.__setattr__(self, "_store", _checkpoint_store(self.checkpoint))

    @property
    def checkpoint_store(self) -> CheckpointStoreProtocol | None:
        """The store the engine drives: ``checkpoint`` itself; its ``sync_store`` for an
        ``InMemoryCheckpointStore`` / ``SQLiteCheckpointStore`` whose engine-facing
        methods are not overridden; an :class:`AsyncStoreAdapter` for any other store with
        coroutine methods; or — for an object with only ``load`` and ``save`` — an adapter
        that forwards those and adds no-op ``open``/``claim``/``release``/``close``
        (forwarding ``open``/``close`` if the object has them)."""
        return self._store

    @property
    def dlq_sink(self) -> DLQSink | None:
        """The DLQ the engine drives: ``dlq`` itself, or — for an object with async
        ``open``/``write``/``close`` and no ``write_batch`` — one adapter around it, made
        when the config is made (so every run of the config drives the same adapter)."""
        return self._dlq_sink


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _path_hint(value: object, suggestion: Callable[[str], str], otherwise: str) -> str:
    """``— did you mean …?`` for a path given where a component belongs."""
    if isinstance(value, (str, os.PathLike)):
        return f" — did you mean {suggestion(str(os.fspath(value)))}?"
    return f" — {otherwise}"


def _dlq_suggestion(path: str) -> str:
    kind = "JsonLinesDLQSink" if path.endswith((".jsonl", ".json", ".ndjson")) else "SQLiteDLQSink"
    return f"{kind}({path!r})"


_DLQ_FIX = ("pass SQLiteDLQSink(path), JsonLinesDLQSink(path) or MemorySink(), or subclass "
            "agora.BaseSink")


def _check_dlq(dlq: object) -> DLQSink:
    """The DLQ the engine will drive: ``dlq`` itself, or — for an object with async
    ``open``/``write``/``close`` but no ``write_batch`` — a :class:`DuckTypedSink` around
    it. Anything else is refused, naming what is missing."""
    if not callable(getattr(dlq, "write_batch", None)) and all(
        inspect.iscoroutinefunction(getattr(dlq, m, None)) for m in DUCK_SINK_METHODS
    ):
        return DuckTypedSink(dlq)
    missing = [m for m in DLQ_SINK_METHODS if not callable(getattr(dlq, m, None))]
    if missing or not isinstance(dlq, DLQSink):
        what = f" (it has no {', '.join(missing)})" if missing and len(missing) < 4 else ""
        raise TypeError(
            f"DeliveryConfig.dlq must be a DLQ sink such as SQLiteDLQSink(path); got "
            f"{_describe(dlq)}{what}"
            f"{_path_hint(dlq, _dlq_suggestion, _DLQ_FIX)}"
        )
    sync = [m for m in DLQ_SINK_METHODS if not inspect.iscoroutinefunction(getattr(dlq, m))]
    if sync:
        raise TypeError(
            f"DeliveryConfig.dlq must be a DLQ sink whose open/write_batch/flush/close are "
            f"coroutines (async def); {type(dlq).__name__}.{sync[0]} is not — subclass "
            f"agora.BaseSink or make it async"
        )
    return dlq


def _checkpoint_store(store: object) -> CheckpointStoreProtocol:
    """The store the engine will call: checked, and adapted if it has only load/save or
    coroutine methods. A built-in coroutine store (``agora.InMemoryCheckpointStore``,
    ``agora.SQLiteCheckpointStore``) with none of its engine-facing methods overridden is
    driven through its ``sync_store``: the same calls without a loop hop each, and saves
    on the committer thread where the store allows it."""
    direct = direct_sync_store(store)
    if direct is not None:
        # Checked in turn: a wrapped store of one's own may have coroutine methods itself.
        return _checkpoint_store(direct)
    present = [m for m in CHECKPOINT_STORE_METHODS if callable(getattr(store, m, None))]
    if "load" not in present or "save" not in present:
        hint = _path_hint(store, lambda p: f"SQLiteCheckpointStore({p!r})",
                          "subclass agora.CheckpointStore for a store of your own")
        raise TypeError(
            f"DeliveryConfig.checkpoint must be a checkpoint store such as "
            f"SQLiteCheckpointStore(path) or InMemoryCheckpointStore() (a CheckpointStore, "
            f"with load() and save()); got {_describe(store)}{hint}"
        )
    if any(inspect.iscoroutinefunction(getattr(store, name)) for name in present):
        return AsyncStoreAdapter(store)
    if isinstance(store, CheckpointStoreProtocol):
        return store
    return LoadSaveStoreAdapter(store)  # type: ignore[arg-type]


class AsyncStoreAdapter:
    """Drives a store whose methods are coroutines (``async def load/save/close`` — the
    shape some stores are written in) through the synchronous protocol the engine calls.

    Each coroutine runs to completion on one private event loop, on a helper thread the
    adapter starts at ``open()`` and stops at ``close()``; the caller waits for it, exactly
    as it waits for a synchronous store. Every call therefore runs on the same loop, so a
    store may keep loop-bound resources (a connection) between calls. Synchronous methods
    are called directly; a missing ``open``/``claim``/``release``/``close`` is a no-op (no
    ``claim`` means the store cannot refuse a second run on the same key). An exception
    raised by the store reaches the engine unchanged."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _call(self, name: str, *args: object) -> Any:
        method = getattr(self.inner, name, None)
        if not callable(method):
            return None
        if not inspect.iscoroutinefunction(method):
            return method(*args)
        if self._loop is None:
            self._start()
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(method(*args), self._loop).result()

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="agora-async-store",
                                  daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread

    def _stop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def open(self) -> None:
        self._call("open")

    def claim(self, key: str) -> None:
        self._call("claim", key)

    def load(self, key: str) -> Checkpoint | None:
        result: Checkpoint | None = self._call("load", key)
        return result

    def save(self, key: str, checkpoint: Checkpoint) -> None:
        self._call("save", key, checkpoint)

    def release(self, key: str) -> None:
        self._call("release", key)

    def close(self) -> None:
        try:
            self._call("close")
        finally:
            self._stop()


class LoadSaveStore:
    """Type of a minimal store: anything with synchronous ``load`` and ``save``."""

    def load(self, key: str) -> Checkpoint | None:
        raise NotImplementedError

    def save(self, key: str, checkpoint: Checkpoint) -> None:
        raise NotImplementedError


class LoadSaveStoreAdapter:
    """Drives a store that has only ``load`` and ``save`` (and maybe ``open``/``close``)
    through the full protocol. Its ``claim``/``release`` do nothing: such a store cannot
    refuse a second run on the same key — subclass ``CheckpointStore`` for that."""

    def __init__(self, inner: LoadSaveStore) -> None:
        self.inner = inner
        # Resolved once here so the engine never looks attributes up by name.
        opener = getattr(inner, "open", None)
        closer = getattr(inner, "close", None)
        self._open: Callable[[], object] | None = opener if callable(opener) else None
        self._close: Callable[[], object] | None = closer if callable(closer) else None

    def open(self) -> None:
        if self._open is not None:
            self._open()

    def claim(self, key: str) -> None:
        """No fencing: the wrapped store has no ``claim``."""

    def load(self, key: str) -> Checkpoint | None:
        return self.inner.load(key)

    def save(self, key: str, checkpoint: Checkpoint) -> None:
        self.inner.save(key, checkpoint)

    def release(self, key: str) -> None:
        """Nothing to release (see ``claim``)."""

    def close(self) -> None:
        if self._close is not None:
            self._close()
