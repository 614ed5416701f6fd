"""Handshakes for tests that order events: wait for a condition instead of sleeping."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

#: How often a condition is re-checked. Short enough that waiting adds nothing
#: noticeable, long enough not to burn a core that the workers under test need.
POLL_S = 0.01


def _timed_out(what: str, timeout_s: float) -> AssertionError:
    return AssertionError(
        f"waited {timeout_s} s for {what}, and it never happened — check that the code "
        f"under test reaches that point, or give it a longer timeout_s"
    )


def wait_until(condition: Callable[[], bool], *, timeout_s: float = 10.0,
               what: str = "the condition") -> None:
    """Return as soon as ``condition()`` is true; raise ``AssertionError`` naming ``what``
    if it is still false after ``timeout_s`` seconds. Never returns early."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout_s)
        time.sleep(POLL_S)


async def wait_until_async(condition: Callable[[], bool], *, timeout_s: float = 10.0,
                           what: str = "the condition") -> None:
    """:func:`wait_until` for a coroutine: yields to the event loop between checks, so
    the tasks being waited on keep running."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout_s)
        await asyncio.sleep(POLL_S)


async def wait_for_path(path: str | os.PathLike[str], *, timeout_s: float = 10.0) -> None:
    """Wait (without blocking the event loop) until ``path`` exists — e.g. the marker a
    worker-side transform writes when it starts a batch."""
    target = Path(path)
    await wait_until_async(target.exists, timeout_s=timeout_s, what=f"{target} to appear")
