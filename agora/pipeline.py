"""``Pipeline`` (an immutable builder) and ``BoundPipeline`` (a pipeline bound to a
writer and a delivery config, runnable any number of times)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from agora.config import DeliveryConfig
from agora.errors import PipelineError
from agora.middleware.base import (
    AnyMiddleware,
    ArrowBatchMiddleware,
    BatchMiddleware,
    Middleware,
)
from agora.runtime.engine import Progress, run_pipeline
from agora.runtime.plan import PipelineExplain, Plan, WriterTarget, make_plan
from agora.runtime.replay import ReplayReport, run_replay
from agora.runtime.summary import PipelineRunSummary
from agora.middleware.builtins import FilterMiddleware
from agora.sinks.base import BaseSink
from agora.sinks.base import as_sink
from agora.sinks.fanout import SinkFanOut
from agora.sinks.router import SinkRouter
from agora.sinks.simple import StdoutSink
from agora.sources.base import BaseSource, LimitedSource

__all__ = ["BoundPipeline", "Pipeline"]

_MIDDLEWARE_TYPES = (Middleware, BatchMiddleware, ArrowBatchMiddleware)

#: The stage every builder and planning error names (an error raised by user code names
#: none unless it says so).
_BUILD = "pipeline_build"


class Pipeline:
    """``Pipeline(source, id=None).pipe(mw, …).build(sink)`` — each call returns a new
    pipeline; nothing is opened until ``run()``.

    ``id`` names the pipeline in its summary, ``explain()``, checkpoints and DLQ records;
    if omitted it is the source's name. The default checkpoint key is ``id`` when given,
    else the source name plus a digest of the middleware and sink names (see
    :attr:`BoundPipeline.checkpoint_key`), so two pipelines reading one source into
    different sinks never share a checkpoint.
    """

    def __init__(self, source: BaseSource, id: str | None = None, *,
                 _middleware: tuple[AnyMiddleware, ...] = ()) -> None:
        if not isinstance(source, BaseSource):
            raise PipelineError(
                f"Pipeline needs a BaseSource; got {type(source).__name__} — wrap plain "
                f"iterables in IterableSource(...)", stage=_BUILD
            )
        if id is not None and (not isinstance(id, str) or not id):
            raise PipelineError(f"Pipeline id must be a non-empty string; got {id!r}",
                                stage=_BUILD)
        self.source = source
        self.id = id
        self.middleware = _middleware

    @property
    def _pipeline_id(self) -> str:
        """0.3.0's name for the pipeline id: the id given, else the source's name."""
        return self.id or self.source.source_name

    @property
    def _middlewares(self) -> list[AnyMiddleware]:
        """0.3.0's name for the chain, as a new list (the pipeline stays immutable)."""
        return list(self.middleware)

    def pipe(self, *middleware: AnyMiddleware) -> Pipeline:
        """Return a new pipeline with ``middleware`` appended to the chain."""
        for mw in middleware:
            if not isinstance(mw, _MIDDLEWARE_TYPES):  # the type checker cannot see every caller
                raise PipelineError(
                    f"pipe() needs Middleware, BatchMiddleware or ArrowBatchMiddleware "
                    f"instances; got {type(mw).__name__} — wrap a function in "
                    f"MapMiddleware(fn) / BatchMapMiddleware(fn) / ArrowMapMiddleware(fn)",
                    stage=_BUILD)
        return Pipeline(self.source, self.id, _middleware=self.middleware + tuple(middleware))

    def filter(self, predicate: Callable[[Any], Any], *, name: str | None = None) -> Pipeline:
        """Return a new pipeline that keeps only records for which ``predicate`` is true
        (shorthand for ``pipe(FilterMiddleware(predicate))``)."""
        return self.pipe(FilterMiddleware(predicate, name=name))

    def build(self, sink: WriterTarget | None = None, *,
              delivery: DeliveryConfig | None = None,
              config: DeliveryConfig | None = None) -> BoundPipeline:
        """Bind the pipeline to ``sink`` (default: a :class:`StdoutSink`).

        ``delivery=`` is the preferred spelling of the delivery config; ``config=`` is
        accepted as its alias. A sink may be a :class:`BaseSink`, a fan-out, a router, or
        any object with async ``open`` / ``write`` / ``close`` methods (adapted)."""
        chosen = _one_config("build", delivery, config)
        if sink is None:
            sink = StdoutSink()
        if isinstance(sink, (SinkFanOut, SinkRouter)):
            return BoundPipeline(self, sink, chosen)
        return BoundPipeline(self, as_sink(sink, where="build()"), chosen)

    def fan_out(self, sinks: Iterable[BaseSink] | SinkFanOut, *,
                delivery: DeliveryConfig | None = None,
                config: DeliveryConfig | None = None) -> BoundPipeline:
        chosen = _one_config("fan_out", delivery, config)
        fan = sinks if isinstance(sinks, SinkFanOut) else SinkFanOut(
            [as_sink(s, where="fan_out()") for s in sinks])
        return BoundPipeline(self, fan, chosen)

    def route(self, router: SinkRouter, *, delivery: DeliveryConfig | None = None,
              config: DeliveryConfig | None = None) -> BoundPipeline:
        chosen = _one_config("route", delivery, config)
        if not isinstance(router, SinkRouter):
            raise PipelineError(f"route() needs a SinkRouter; got {type(router).__name__}",
                                stage=_BUILD)
        return BoundPipeline(self, router, chosen)


def _one_config(method: str, delivery: DeliveryConfig | None,
                config: DeliveryConfig | None) -> DeliveryConfig | None:
    """``delivery=`` and its alias ``config=`` name the same setting: at most one may be given."""
    if delivery is not None and config is not None:
        raise TypeError(
            f"{method}() got both delivery= and config=; they are the same setting — "
            f"pass only delivery=")
    return delivery if delivery is not None else config


class BoundPipeline:
    """A pipeline with its writer and delivery config. ``run()`` may be called repeatedly
    (one run at a time); with a checkpoint store, each run resumes where the last stopped."""

    def __init__(self, pipeline: Pipeline, writer: WriterTarget,
                 delivery: DeliveryConfig | None) -> None:
        if delivery is not None and not isinstance(delivery, DeliveryConfig):
            raise PipelineError(
                f"delivery must be a DeliveryConfig; got {type(delivery).__name__}", stage=_BUILD)
        self.pipeline = pipeline
        self.writer = writer
        self.delivery = delivery or DeliveryConfig()
        self.last_summary: PipelineRunSummary | None = None
        self._running = threading.Lock()

    @property
    def source(self) -> BaseSource:
        return self.pipeline.source

    def with_sink(self, sink: Any) -> BoundPipeline:
        """A new bound pipeline: the same pipeline and delivery config, written to ``sink``
        (anything ``build()`` takes). This one is left as it is."""
        return self.pipeline.build(sink, delivery=self.delivery)

    @property
    def middleware(self) -> list[AnyMiddleware]:
        return list(self.pipeline.middleware)

    @property
    def sinks(self) -> list[BaseSink]:
        if isinstance(self.writer, (SinkFanOut, SinkRouter)):
            return list(self.writer.sinks)
        return [self.writer]

    @property
    def pipeline_id(self) -> str:
        """The id given to ``Pipeline(…, id=)``, else the source's name."""
        return self.pipeline.id or self.source.source_name

    @property
    def checkpoint_key(self) -> str:
        """The key this pipeline's checkpoints are saved under: ``checkpoint_key`` of the
        delivery config, else the id given to ``Pipeline``, else the source name plus a
        digest of the middleware and sink names. The digest keeps two id-less pipelines
        that read one source into different sinks (or through different chains) from
        resuming from each other's checkpoint; it is stable across processes as long as
        those names are."""
        if self.delivery.checkpoint_key:
            return self.delivery.checkpoint_key
        if self.pipeline.id:
            return self.pipeline.id
        parts = [self.source.source_name, *(m.name for m in self.middleware),
                 *(s.sink_name for s in self.sinks)]
        digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:10]
        return f"{self.source.source_name}-{digest}"

    def _source_for(self, max_records: int | None) -> BaseSource:
        if max_records is None:
            return self.source
        return LimitedSource(self.source, max_records)

    def _plan(self, source: BaseSource, max_records: int | None) -> Plan:
        """Plan the run; a ``PipelineError`` that names no stage is a planning one."""
        try:
            return make_plan(pipeline_id=self.pipeline_id, source=source,
                             middleware=self.middleware, writer=self.writer,
                             max_records=max_records, batch_size=self.delivery.batch_size,
                             batch_flush_interval_ms=self.delivery.batch_flush_interval_ms)
        except PipelineError as err:
            if err.stage is None:
                err.stage = _BUILD
            raise

    def explain(self, max_records: int | None = None) -> PipelineExplain:
        """Describe the run without loading a checkpoint, opening, reading or starting anything."""
        return self._plan(self._source_for(max_records), max_records).explain

    async def run(self, max_records: int | None = None, *,
                  progress: Callable[[Progress], None] | None = None,
                  handle_signals: bool = True,
                  run_id: str | None = None) -> PipelineRunSummary:
        """Run to the end of the source (or ``max_records``).

        Raises the original exception of a failure. A first SIGINT/SIGTERM (when run on
        the main thread and no handler of the program's own is installed) or a cancel of
        the task stops reading at once, commits or abandons what is in flight within a
        few seconds, checkpoints the handled prefix, shuts down cleanly and raises
        ``KeyboardInterrupt`` (``CancelledError`` for a cancel); a second signal abandons
        in-flight work at once. ``handle_signals=False`` leaves signal handlers alone.
        However the run ends, ``last_summary`` is this run's summary (``None`` if the
        run never started, e.g. an invalid plan). ``run_id`` names the run in its summary,
        checkpoints and DLQ records (default: a fresh random id)."""
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise PipelineError(f"run_id must be a non-empty string or None; got {run_id!r}",
                                stage="run")
        if not self._running.acquire(blocking=False):
            raise PipelineError(
                f"pipeline {self.pipeline_id!r} is already running; runs of one BoundPipeline "
                f"cannot overlap", stage="run")
        try:
            self.last_summary = None
            source = self._source_for(max_records)
            plan = self._plan(source, max_records)
            try:
                return await run_pipeline(
                    pipeline_id=self.pipeline_id, source=source, middleware=self.middleware,
                    writer=self.writer, plan=plan, config=self.delivery, progress=progress,
                    on_summary=self._remember, signals=handle_signals, run_id=run_id,
                    checkpoint_key=self.checkpoint_key,
                )
            except PipelineError as err:
                self._locate(err)
                raise
        finally:
            self._running.release()

    async def replay(
        self,
        dlq: str | os.PathLike[str],
        *,
        stage: str | None = None,
        pipeline_id: str | None = None,
        include_replayed: bool = False,
        dry_run: bool = False,
        progress: Callable[[Progress], None] | None = None,
    ) -> ReplayReport:
        """Re-send the records dead-lettered in ``dlq`` through this pipeline's chain and
        writer, and return a :class:`ReplayReport`.

        Additive: sinks continue their existing output (as on a resumed run), never
        truncate it. Idempotent: each record handled is marked in the DLQ file as the run
        goes (at every checkpoint interval), and is not sent again unless
        ``include_replayed``. A record that fails again updates its own DLQ entry
        (attempts + 1, latest error); ``report.failed_again`` counts them. Only records of
        ``pipeline_id`` (default: this pipeline's id) and, if given, of ``stage`` are sent;
        raw source input and records with flagged values are reported, not sent.
        ``dry_run`` reports what would be sent and changes nothing. Raises ``DLQError``
        for an unreadable DLQ, ``PipelineError`` if it holds only other pipelines'
        records, and the original exception of a run that stops.
        """
        if not self._running.acquire(blocking=False):
            raise PipelineError(
                f"pipeline {self.pipeline_id!r} is already running; a replay cannot overlap "
                f"a run of the same BoundPipeline", stage="replay")
        try:
            return await run_replay(
                dlq=dlq, pipeline_id=self.pipeline_id, records_of=pipeline_id,
                checkpoint_key=self.checkpoint_key,
                source_plane=self.source.emitted_data_plane, middleware=self.middleware,
                writer=self.writer, sinks=self.sinks, delivery=self.delivery, stage=stage,
                include_replayed=include_replayed, dry_run=dry_run, progress=progress,
            )
        finally:
            self._running.release()

    def _remember(self, summary: PipelineRunSummary) -> None:
        self.last_summary = summary

    def _locate(self, err: PipelineError) -> None:
        """Fill the context a ``PipelineError`` raised *during* a run left unset (which
        pipeline, which run, which source, stage ``"run"``), on the error itself: the
        caller still gets the very exception that was raised."""
        summary = self.last_summary
        if err.pipeline_id is None:
            err.pipeline_id = self.pipeline_id
        if err.run_id is None and summary is not None:
            err.run_id = summary.run_id
        if err.source_name is None:
            err.source_name = self.source.source_name
        if err.stage is None:
            err.stage = "run"

    @property
    def _config(self) -> DeliveryConfig:
        """0.3.0's name for :attr:`delivery` (read-only)."""
        return self.delivery

    def run_sync(self, max_records: int | None = None, *,
                 progress: Callable[[Progress], None] | None = None,
                 run_id: str | None = None) -> PipelineRunSummary:
        """Blocking ``run()``; works with or without an event loop running in this thread
        (inside a running loop it runs on a helper thread with its own loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(max_records, progress=progress, run_id=run_id))
        results: list[PipelineRunSummary] = []
        errors: list[BaseException] = []

        def target() -> None:
            try:
                results.append(asyncio.run(self.run(max_records, progress=progress, run_id=run_id)))
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)

        thread = threading.Thread(target=target, name="agora-run-sync")
        thread.start()
        thread.join()
        if errors:
            raise errors[0]
        return results[0]
