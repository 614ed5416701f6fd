"""Small drivers for the process-lane tests: start a middleware, submit batches."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psutil

from agora.middleware.base import MiddlewareContext

T = TypeVar("T")


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an async test body on a fresh event loop."""
    return asyncio.run(main())


def context(name: str) -> MiddlewareContext:
    return MiddlewareContext(pipeline_id="test-pipe", run_id="run-1", middleware_name=name,
                             middleware_index=0)


@asynccontextmanager
async def started(mw: Any) -> AsyncIterator[MiddlewareContext]:
    """``on_start`` … ``on_stop``, the way the runtime brackets a run."""
    ctx = context(mw.name)
    await mw.on_start(ctx)
    try:
        yield ctx
    finally:
        await mw.on_stop(ctx)


def rows(batch_id: int, n: int = 3, **extra: Any) -> list[dict[str, Any]]:
    """``n`` records of batch ``batch_id``; ``extra`` goes into the first record."""
    out = [{"id": batch_id * 100 + i, "value": i} for i in range(n)]
    out[0].update(extra)
    return out


def alive(pids: list[int]) -> list[int]:
    """The pids among ``pids`` that still run (zombies count as gone)."""
    living = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                living.append(pid)
        except psutil.NoSuchProcess:
            continue
    return living


def gather(*aws: Any) -> Any:
    return asyncio.gather(*aws, return_exceptions=True)


def shm_dir_listing() -> set[str]:
    from agora.process.shm import shm_dir

    return set(os.listdir(shm_dir()))
