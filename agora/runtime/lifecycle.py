"""Starting a run's components in order and stopping the ones that started, in reverse,
whatever happened in between (the run's lifecycle, apart from the pump)."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agora.config import DeliveryConfig
from agora.errors import CheckpointError
from agora.middleware.base import AnyMiddleware, MiddlewareContext
from agora.sinks.base import BaseSink
from agora.sources.base import BaseSource

__all__ = ["Lifecycle", "Started"]

log = logging.getLogger("agora.engine")


@dataclass
class Started:
    """What has started so far, hence what ``stop`` must close."""

    store: bool = False  # the checkpoint store is open
    claimed: bool = False  # the checkpoint key is claimed
    # How many middleware had on_start called, in chain order — the one whose on_start
    # raised included: it may have half-acquired what its on_stop releases.
    middleware: int = 0
    sinks: list[BaseSink] = field(default_factory=list)
    dlq: bool = False
    source: bool = False  # set before source.open(): close() is valid after a half-open


async def _call_hook(hook: Callable[[], object]) -> None:
    """Middleware hooks (and sink/source coroutines) may be plain or async."""
    result = hook()
    if inspect.isawaitable(result):
        await result


class Lifecycle:
    """Start order: checkpoint store open, key claim, checkpoint load (a foreign one is a
    ``CheckpointError``), ``resume_output`` + ``prepare_resume`` → middleware ``on_start``
    → sinks open → DLQ open → source open. ``started`` records what started, so ``stop``
    closes exactly that (a middleware whose ``on_start`` raised gets its ``on_stop`` too).

    ``stop_failures`` maps each middleware whose ``on_stop`` raised to its exception:
    those are logged and reported, never raised. Stop hooks run after the run's last
    commit point — a run that reached its end has written, flushed and checkpointed every
    record it handled; one that failed raises its own error — so no record's fate
    depends on a stop hook."""

    def __init__(self, *, source: BaseSource, middleware: Sequence[AnyMiddleware],
                 contexts: Sequence[MiddlewareContext], sinks: Sequence[BaseSink],
                 config: DeliveryConfig, checkpoint_key: str,
                 on_resume: Callable[[Any], None]) -> None:
        self.source = source
        self.middleware = middleware
        self.contexts = contexts
        self.sinks = sinks
        self.config = config
        self.store = config.checkpoint_store
        self.checkpoint_key = checkpoint_key
        self.on_resume = on_resume
        self.resumed_from: Any = None
        self.started = Started()
        self.stop_failures: dict[str, BaseException] = {}

    async def start(self) -> None:
        """Start everything in order; on failure, what started is recorded for ``stop``."""
        started = self.started
        store = self.store
        if store is not None:
            store.open()
            started.store = True
            store.claim(self.checkpoint_key)  # one run per checkpoint key, in any process
            started.claimed = True
            checkpoint = store.load(self.checkpoint_key)
            if checkpoint is not None and checkpoint.source != self.source.source_name:
                raise CheckpointError(
                    f"checkpoint {self.checkpoint_key!r} was saved by source "
                    f"{checkpoint.source!r}, not {self.source.source_name!r}; refusing to resume "
                    f"from a foreign checkpoint — use another checkpoint_key or reset it "
                    f"(agora checkpoint reset)"
                )
            self.resumed_from = None if checkpoint is None else checkpoint.value
            if checkpoint is not None:
                for sink in self.sinks:  # continue, never restart, what earlier runs wrote
                    sink.resume_output()
            self.on_resume(self.resumed_from)
            await self.source.prepare_resume(checkpoint)
        else:
            await self.source.prepare_resume(None)
        for mw, ctx in zip(self.middleware, self.contexts, strict=True):
            started.middleware += 1  # before the call: a failed start is stopped as well
            await _call_hook(functools.partial(mw.on_start, ctx))
        for sink in self.sinks:
            await sink.open()
            started.sinks.append(sink)
        if self.config.dlq_sink is not None:
            await self.config.dlq_sink.open()
            started.dlq = True
        started.source = True
        await self.source.open()

    async def stop(self, primary: BaseException | None) -> BaseException | None:
        """Stop what started: source close → middleware ``on_stop`` (reverse) → DLQ flush
        and close → sink flush and close (reverse; no flush after a failed start) →
        checkpoint key release and store close. Every step runs; a failing
        step is logged. A failing ``on_stop`` goes to ``stop_failures``; of the other
        steps (whose failure may leave output unclosed), the first error is returned
        only if there was no ``primary`` one."""
        started = self.started
        errors: list[BaseException] = []

        async def step(what: str, fn: Callable[[], object | Awaitable[object]]) -> None:
            try:
                await _call_hook(fn)
            except BaseException as exc:  # noqa: BLE001 - cleanup must go on
                errors.append(exc)
                log.error("cleanup step %s failed: %s: %s", what, type(exc).__name__, exc)

        if started.source:
            await step("source close", self.source.close)
        for i in reversed(range(started.middleware)):
            mw, ctx = self.middleware[i], self.contexts[i]
            try:
                await _call_hook(functools.partial(mw.on_stop, ctx))
            except Exception as exc:  # noqa: BLE001 - the other stop hooks must still run
                self.stop_failures[mw.name] = exc
                log.error("middleware %r: on_stop failed: %s: %s — the other stop hooks "
                          "still ran and the run's records do not depend on it (reported in "
                          "summary.middleware_stop_failures); fix the hook so it releases "
                          "what it holds", mw.name, type(exc).__name__, exc)
            except BaseException as exc:  # a cancel or interrupt inside the hook: raised
                errors.append(exc)
                log.error("cleanup step middleware %s on_stop interrupted: %s",
                          mw.name, type(exc).__name__)
        # Once records may have moved (the source was started), each output is flushed
        # before it closes, however the run ended: what a failed or stopped run wrote
        # past its checkpoint is re-read on resume, but is never left half-buffered by a
        # close that does not flush. A start that failed earlier wrote nothing.
        moved = started.source
        dlq = self.config.dlq_sink
        if started.dlq and dlq is not None:
            if moved:
                await step("dlq flush", dlq.flush)
            await step("dlq close", dlq.close)
        for sink in reversed(started.sinks):
            if moved:
                await step(f"sink {sink.sink_name} flush", sink.flush)
            await step(f"sink {sink.sink_name} close", sink.close)
        store = self.store
        if started.store and store is not None:
            if started.claimed:
                await step("checkpoint key release",
                           functools.partial(store.release, self.checkpoint_key))
            await step("checkpoint store close", store.close)
        if primary is None and errors:
            return errors[0]
        return None
