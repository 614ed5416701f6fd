"""Starting a run's components in order and stopping the ones that started, in reverse,
whatever happened in between (the run's lifecycle, apart from the pump)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from agora.config import DeliveryConfig
from agora.errors import CheckpointError
from agora.middleware.base import MiddlewareContext
from agora.sources.base import BaseSource

__all__ = ["Lifecycle"]

log = logging.getLogger("agora.engine")


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


class Lifecycle:
    """Start order: checkpoint store open, key claim, checkpoint load (a foreign one is a
    ``CheckpointError``), ``resume_output`` + ``prepare_resume`` → middleware ``on_start``
    → sinks open → DLQ open → source open. ``state`` records what started, so ``stop``
    closes exactly that."""

    def __init__(self, *, source: BaseSource, middleware: list[Any],
                 contexts: list[MiddlewareContext], sinks: list[Any], config: DeliveryConfig,
                 checkpoint_key: str, on_resume: Callable[[Any], None]) -> None:
        self.source = source
        self.middleware = middleware
        self.contexts = contexts
        self.sinks = sinks
        self.config = config
        self.checkpoint_key = checkpoint_key
        self.on_resume = on_resume
        self.resumed_from: Any = None
        self.state: dict[str, Any] = {"store": False, "claimed": False, "mw": 0, "sinks": [],
                                      "dlq": False, "source": False}

    async def start(self) -> None:
        """Start everything in order; on failure, what started is recorded for ``stop``."""
        state = self.state
        store = self.config.checkpoint
        if store is not None:
            opener = getattr(store, "open", None)
            if opener is not None:
                await _maybe_await(opener())
            state["store"] = True
            claim = getattr(store, "claim", None)
            if claim is not None:  # one run per checkpoint key, in any process
                claim(self.checkpoint_key)
                state["claimed"] = True
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
            await _maybe_await(mw.on_start(ctx))
            state["mw"] += 1
        for sink in self.sinks:
            await sink.open()
            state["sinks"].append(sink)
        if self.config.dlq is not None:
            await self.config.dlq.open()
            state["dlq"] = True
        state["source"] = True  # close() is valid even if open() fails half-way
        await self.source.open()

    async def stop(self, primary: BaseException | None) -> BaseException | None:
        """Stop what started: source close → middleware ``on_stop`` (reverse) → DLQ close →
        sink close → checkpoint key release and store close. Every step runs; a failing
        step is logged; the first error is returned only if there was no ``primary`` one."""
        state = self.state
        errors: list[BaseException] = []

        async def step(what: str, fn: Callable[[], Any]) -> None:
            try:
                await _maybe_await(fn())
            except BaseException as exc:  # noqa: BLE001 - cleanup must go on
                errors.append(exc)
                log.error("cleanup step %s failed: %s: %s", what, type(exc).__name__, exc)

        if state["source"]:
            await step("source close", self.source.close)
        for i in reversed(range(state["mw"])):
            mw, ctx = self.middleware[i], self.contexts[i]
            await step(f"middleware {mw.name} on_stop", functools.partial(mw.on_stop, ctx))
        if state["dlq"]:
            await step("dlq close", self.config.dlq.close)
        for sink in reversed(state["sinks"]):
            await step(f"sink {sink.sink_name} close", sink.close)
        if state["store"]:
            store = self.config.checkpoint
            release = getattr(store, "release", None)
            if release is not None and state["claimed"]:
                await step("checkpoint key release", functools.partial(release, self.checkpoint_key))
            closer = getattr(store, "close", None)
            if closer is not None:
                await step("checkpoint store close", closer)
        if primary is None and errors:
            return errors[0]
        return None
