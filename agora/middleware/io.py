"""Async I/O middleware: a per-record coroutine the runtime runs up to ``concurrency``
records at a time, with a retry policy and an optional adaptive limit."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from agora.errors import PipelineError
from agora.middleware.base import AnyMiddleware, Middleware, MiddlewareContext

__all__ = ["AsyncMiddleware", "Backpressure", "RetryPolicy", "io_concurrency_of"]


@dataclass(frozen=True)
class RetryPolicy:
    """How a record is retried on the I/O lane.

    ``attempts`` counts the first call (1 = no retry). Only exceptions that are instances
    of ``transient`` are retried; any other fails the record at once. The wait before
    attempt ``k+1`` is ``backoff_s * 2**(k-1)`` capped at ``max_backoff_s``, shortened by
    a random fraction up to ``jitter`` so that records failing together do not retry
    together. ``deadline_s`` bounds one record's whole time in the stage, attempts and
    waits included; once it has passed the record fails with the last error.
    """

    attempts: int = 1
    backoff_s: float = 0.05
    max_backoff_s: float = 5.0
    jitter: float = 0.5
    transient: tuple[type[BaseException], ...] = (OSError, TimeoutError)
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise PipelineError(f"RetryPolicy.attempts must be an int >= 1; got "
                                f"{self.attempts!r} — use 1 for no retries")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise PipelineError(f"RetryPolicy backoff must be >= 0 s; got backoff_s="
                                f"{self.backoff_s!r}, max_backoff_s={self.max_backoff_s!r}")
        if not 0.0 <= self.jitter <= 1.0:
            raise PipelineError(f"RetryPolicy.jitter must be within [0, 1]; got {self.jitter!r}")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise PipelineError(f"RetryPolicy.deadline_s must be > 0 or None; got "
                                f"{self.deadline_s!r}")

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, self.transient)

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait after failed attempt ``attempt`` (``rand`` in [0, 1))."""
        base = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1))
        return base * (1.0 - self.jitter * rand)


@dataclass(frozen=True)
class Backpressure:
    """An adaptive concurrency limit: after every ``window`` calls the lane halves its
    limit (not below ``min_limit``) when the mean call latency exceeded
    ``target_latency_s`` or the share of failed calls exceeded ``max_error_rate``, and
    otherwise raises it by one, up to the stage's ``concurrency``. Each change is a
    *move*, counted in the run summary."""

    target_latency_s: float
    min_limit: int = 1
    window: int = 16
    max_error_rate: float = 0.1

    @classmethod
    def adaptive(cls, *, target_latency_s: float, min_limit: int = 1, window: int = 16,
                 max_error_rate: float = 0.1) -> Backpressure:
        return cls(target_latency_s, min_limit, window, max_error_rate)

    def __post_init__(self) -> None:
        if self.target_latency_s <= 0:
            raise PipelineError(f"Backpressure target_latency_s must be > 0; got "
                                f"{self.target_latency_s!r}")
        if not isinstance(self.min_limit, int) or self.min_limit < 1:
            raise PipelineError(f"Backpressure min_limit must be an int >= 1; got "
                                f"{self.min_limit!r}")
        if not isinstance(self.window, int) or self.window < 1:
            raise PipelineError(f"Backpressure window must be an int >= 1; got {self.window!r}")
        if not 0.0 <= self.max_error_rate <= 1.0:
            raise PipelineError(f"Backpressure max_error_rate must be within [0, 1]; got "
                                f"{self.max_error_rate!r}")


class AsyncMiddleware(Middleware):
    """Per-record middleware for I/O-bound work (HTTP lookups, database reads).

    Write ``async def process(record, ctx)``. The runtime keeps up to ``concurrency``
    records of this stage in flight, yet records still reach the sinks, the DLQ and the
    checkpoint strictly in source order: a record that finishes early waits for the ones
    before it. A record whose call fails after ``retry`` is exhausted is handled like any
    middleware error (DLQ or failure policy), exactly once. ``backpressure`` (optional)
    lowers and raises the limit as latency and errors change.
    """

    concurrency: int = 8
    retry: RetryPolicy = RetryPolicy()
    backpressure: Backpressure | None = None
    #: marks the class family; a plain Middleware may also opt in with ``concurrency``
    io_lane: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Each subclass is named after itself unless it sets ``name``; the inherited
        # name would make every I/O stage "AsyncMiddleware" in the summary and the DLQ.
        if "name" not in cls.__dict__:
            cls.name = cls.__name__


def io_concurrency_of(mw: AnyMiddleware) -> int | None:
    """The I/O-lane concurrency ``mw`` declares, or None if it is an ordinary stage.

    A per-record middleware joins the lane by declaring ``concurrency = N``, or with the
    older spelling ``min_concurrency = N`` plus ``submit(record, ctx)``. Raises
    PipelineError when the value is not a positive int."""
    if not isinstance(mw, Middleware) or mw.process_isolated:
        return None
    attr = "concurrency" if hasattr(mw, "concurrency") else (
        "min_concurrency" if hasattr(mw, "min_concurrency") and callable(
            getattr(mw, "submit", None)) else None)
    if attr is None:
        return None
    n = getattr(mw, attr)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PipelineError(f"middleware {mw.name!r}: {attr} must be an int >= 1; got {n!r} "
                            f"— set how many records may be in flight at once",
                            stage="pipeline_build")
    return n


def io_call_of(mw: Middleware) -> Callable[[Any, MiddlewareContext], Any]:
    """The per-record call of an I/O-lane middleware: ``submit`` for the older spelling.

    ``submit`` may hand back the record's result directly or an awaitable of it (a task
    it started): the call awaits that too, so the record is not done — and its result not
    written — before the task is, and cancelling the call cancels the task."""
    if not hasattr(mw, "concurrency") and hasattr(mw, "min_concurrency"):
        submit: Callable[[Any, MiddlewareContext], Any] = mw.submit  # type: ignore[attr-defined]  # upstream spelling; hasattr-checked above

        async def submitted(record: Any, ctx: MiddlewareContext) -> Any:
            out = submit(record, ctx)
            if inspect.isawaitable(out):
                out = await out
            if inspect.isawaitable(out):
                out = await out
            return out

        return submitted
    return mw.process
