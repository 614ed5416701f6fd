"""The Agora error tree: what a user can act on, and where it came from.

::

    AgoraError                      base of everything Agora raises itself
    ├── PipelineError               build-time mistake: the plan is invalid, nothing was started
    ├── ProcessBatchError           a process-isolated batch failed (raise, timeout, death, …)
    │   └── ProcessPoolBrokenError  the worker pool gave up (terminal: the run stops)
    ├── WorkerStartupError          the first worker generation could not start
    ├── CheckpointError             a checkpoint is unreadable, corrupt, foreign or unsavable
    ├── DLQError                    a DLQ file cannot be opened, or read back, as Agora wrote it
    ├── LifecycleError              a component was used outside its open…close window
    ├── SourceRecordError           a source could not read one record (file/line, or the raw record)
    ├── ContractError               a component broke its contract at run time (wrong result count…)
    └── InternalError               a bug in Agora itself ("please report it")

Build-time mistakes are ``PipelineError``; run-time failures are ``ProcessBatchError``,
``WorkerStartupError``, ``CheckpointError``, ``DLQError``, ``SourceRecordError`` and
``ContractError``; misuse is ``LifecycleError``; bugs in Agora are ``InternalError``.
``run()`` re-raises the *original* exception of a failure (the sink's ``OSError``, the
worker's ``ProcessBatchError``); these classes wrap nothing silently. Every class here is
exported from ``agora``, so a single ``except agora.AgoraError`` catches every
Agora-raised error. Invalid arguments to a constructor (``DeliveryConfig(dlq="dlq.db")``)
raise the built-in ``TypeError`` / ``ValueError``, naming the argument and the fix.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "AgoraError",
    "CheckpointError",
    "ContractError",
    "DLQError",
    "InternalError",
    "LifecycleError",
    "PipelineError",
    "ProcessBatchError",
    "ProcessPoolBrokenError",
    "SourceRecordError",
    "WorkerStartupError",
]


class AgoraError(Exception):
    """Base class of every error Agora raises itself.

    ``terminal`` marks errors that stop a run even when a DLQ is configured: they say
    the *run* cannot go on (e.g. a worker pool that gave up), not that one record is bad,
    so dead-lettering would only flood the DLQ with good records.
    """

    terminal: bool = False


class PipelineError(AgoraError):
    """The pipeline cannot be built or planned as written.

    ``stage`` names the phase that rejected it. Every ``PipelineError`` Agora raises names
    one (``"pipeline_build"`` for the builder and planning, raised before any source,
    middleware, sink or store is opened; ``"run"`` / ``"replay"`` for a run's); an error
    built by user code has none unless given (``stage=None`` by default).

    The optional context (``pipeline_id``, ``run_id``, ``source_name``, ``sink_name``,
    ``checkpoint``) says where it happened; ``str()`` is the message followed by the stage
    and every context field that is set (the bare message when none is), so a log line
    alone locates the failure.
    :meth:`with_context` returns a copy with more context, leaving this error unchanged.
    """

    def __init__(
        self,
        message: str,
        *,
        stage: str | None = None,
        pipeline_id: str | None = None,
        run_id: str | None = None,
        source_name: str | None = None,
        sink_name: str | None = None,
        checkpoint: object = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.stage = stage
        self.pipeline_id = pipeline_id
        self.run_id = run_id
        self.source_name = source_name
        self.sink_name = sink_name
        self.checkpoint = checkpoint

    def _context(self) -> dict[str, object]:
        return {key: value for key, value in (
            ("stage", self.stage), ("pipeline", self.pipeline_id), ("run", self.run_id),
            ("source", self.source_name), ("sink", self.sink_name),
            ("checkpoint", self.checkpoint),
        ) if value is not None}

    def __str__(self) -> str:
        context = self._context()
        if not context:
            return self.message
        return f"{self.message} [{', '.join(f'{k}={v}' for k, v in context.items())}]"

    def with_context(self, **context: object) -> PipelineError:
        """A copy of this error with the given context fields set (others kept); the
        copy's ``__cause__`` is this error's cause. Unknown field names are a TypeError."""
        names = ("stage", "pipeline_id", "run_id", "source_name", "sink_name", "checkpoint")
        unknown = sorted(set(context) - set(names))
        if unknown:
            raise TypeError(
                f"PipelineError.with_context() fields must be among {names}; got {unknown}"
            )
        merged = {name: getattr(self, name) for name in names}
        merged.update(context)
        copy = type(self).__new__(type(self))
        PipelineError.__init__(copy, self.message, **merged)
        copy.__cause__ = self.__cause__
        return copy


class ProcessBatchError(AgoraError, RuntimeError):
    """A batch sent to a process-isolated middleware failed (a RuntimeError, so code that
    catches RuntimeError around a process transform keeps working).

    The message names the middleware, the batch index and the cause. ``timed_out`` is set
    when the batch exceeded ``timeout_s``; ``invalidated`` when it was a sibling in flight
    on a pool generation that had to be recycled; ``generation`` is the pool generation
    the batch ran on.
    """

    def __init__(
        self,
        cause: str,
        *,
        middleware_name: str,
        batch_index: int,
        timed_out: bool = False,
        invalidated: bool = False,
        generation: int = 0,
    ) -> None:
        self.cause = cause
        self.middleware_name = middleware_name
        self.batch_index = batch_index
        self.timed_out = timed_out
        self.invalidated = invalidated
        self.generation = generation
        super().__init__(
            f"process middleware {middleware_name!r} failed on batch {batch_index} "
            f"(pool generation {generation}): {cause}"
        )

    def __reduce__(self) -> tuple[Callable[..., ProcessBatchError], tuple[object, ...]]:
        # keep every field across pickling (DLQ, worker boundaries)
        return (
            _rebuild_process_batch_error,
            (
                self.cause,
                self.middleware_name,
                self.batch_index,
                self.timed_out,
                self.invalidated,
                self.generation,
            ),
        )


def _rebuild_process_batch_error(
    cause: str,
    middleware_name: str,
    batch_index: int,
    timed_out: bool,
    invalidated: bool,
    generation: int,
) -> ProcessBatchError:
    return ProcessBatchError(
        cause,
        middleware_name=middleware_name,
        batch_index=batch_index,
        timed_out=timed_out,
        invalidated=invalidated,
        generation=generation,
    )


class ProcessPoolBrokenError(ProcessBatchError):
    """The pool gave up (recycle budget spent, or workers cannot load ``fn``).

    Terminal for the run: the engine must stop rather than route further batches to the
    DLQ, because every later batch would fail the same way.
    """

    terminal = True

    def __reduce__(self) -> tuple[Callable[..., ProcessBatchError], tuple[object, ...]]:
        # keep the subclass across pickling
        return (
            _rebuild_broken,
            (self.cause, self.middleware_name, self.batch_index, self.generation),
        )


def _rebuild_broken(cause: str, name: str, index: int, generation: int) -> ProcessPoolBrokenError:
    return ProcessPoolBrokenError(
        cause, middleware_name=name, batch_index=index, generation=generation
    )


class WorkerStartupError(AgoraError):
    """The first worker generation could not start (``fn`` not loadable, worker crashed)."""


class CheckpointError(AgoraError):
    """A checkpoint cannot be trusted or saved.

    Raised at start for a corrupt, truncated or foreign checkpoint (Agora never silently
    restarts from scratch), and at save time under ``CheckpointFailurePolicy.FAIL_CLOSED``.
    """


class DLQError(AgoraError):
    """A DLQ file cannot be opened, or read back, as Agora wrote it (missing, foreign,
    damaged, or owned by someone else). The message names the file and what to do."""


class LifecycleError(AgoraError, RuntimeError):
    """A component was used outside its lifecycle, e.g. writing to a closed sink."""


#: ``SourceRecordError(record=…)`` not given (None is a record like any other).
_NO_RECORD: object = object()


class SourceRecordError(AgoraError, ValueError):
    """A source could not read one input record.

    Two spellings. ``SourceRecordError(source_name, location, reason)`` is malformed input
    found by a source whose policy is to fail: ``location`` is ``"file:line"`` (or the
    closest position the medium has) and ``reason`` says what was wrong. The 0.3.0
    spelling ``SourceRecordError(error, record=raw, checkpoint=…, source=…,
    stage="source_record")`` wraps the exception (or message) that rejected ``raw``, the
    record as read: raised from a source's stream, it is dead-lettered with that record
    (when a DLQ is set) and ``run()`` then raises ``original``, the wrapped exception.

    Attributes of both: ``source_name``, ``location``, ``reason``, ``original`` (the
    wrapped exception, or None), ``record`` (None when only a location is known),
    ``has_record``, ``checkpoint`` (the source position given, or None) and ``stage``.
    """

    def __init__(
        self,
        source_name: str | BaseException,
        location: str | None = None,
        reason: str | None = None,
        *,
        hint: bool = True,
        record: object = _NO_RECORD,
        checkpoint: object = None,
        source: str | None = None,
        stage: str = "source_record",
    ) -> None:
        self.checkpoint = checkpoint
        self.stage = stage
        self.has_record = record is not _NO_RECORD
        self.record = None if record is _NO_RECORD else record
        if self.has_record and location is None and reason is None:
            self.original = source_name if isinstance(source_name, BaseException) else None
            self.source_name = source or ""
            self.location = ""
            self.reason = str(source_name)
            super().__init__(self.reason if source is None
                             else f"source {source!r}: {self.reason}")
            return
        if not isinstance(source_name, str) or location is None or reason is None:
            raise TypeError(
                f"SourceRecordError takes (source_name, location, reason) or (error, "
                f"record=raw_record); got ({source_name!r}, {location!r}, {reason!r}) — pass "
                f"the record that failed as record=…"
            )
        self.original = None
        self.source_name = source or source_name
        self.location = location
        self.reason = reason
        message = f"source {source_name!r}: malformed record at {location}: {reason}"
        if hint:
            message += (" — fix the input, or construct the source with on_malformed='dlq' "
                        "to dead-letter such lines")
        super().__init__(message)

    def __reduce__(self) -> tuple[Callable[..., SourceRecordError], tuple[object, ...]]:
        if self.has_record:
            return (_rebuild_wrapping_error, (self.original or self.reason, self.record,
                                              self.checkpoint, self.source_name or None,
                                              self.stage))
        return (_rebuild_source_record_error, (self.source_name, self.location, self.reason))


def _rebuild_source_record_error(source_name: str, location: str, reason: str) -> SourceRecordError:
    return SourceRecordError(source_name, location, reason, hint=False)


def _rebuild_wrapping_error(error: str | BaseException, record: object, checkpoint: object,
                            source: str | None, stage: str) -> SourceRecordError:
    return SourceRecordError(error, record=record, checkpoint=checkpoint, source=source,
                             stage=stage)


class ContractError(AgoraError):
    """A user component broke its run-time contract, e.g. a sink returned three
    ``WriteResult`` objects for five records. Handled like any failure of that call."""


class InternalError(AgoraError):
    """An invariant inside Agora broke. This is a bug in agora; please report it."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{message} (this is a bug in agora; please report it)")
