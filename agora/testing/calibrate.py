"""Heavy-work calibration: how many iterations of a loop cost a chosen time here."""

from __future__ import annotations

import time
from collections.abc import Callable


def calibrate_iterations(work: Callable[[int], object], target_s: float, *, start: int = 8) -> int:
    """The ``k`` for which ``work(k)`` takes about ``target_s`` seconds on this machine.

    ``work(k)`` must cost time roughly proportional to ``k``. ``k`` doubles from ``start``
    until one call takes over a quarter of the target (long enough to time reliably), then
    scales linearly. Always returns at least 1. The figure is as noisy as the machine:
    use it to size work, never to assert speed.
    """
    if target_s <= 0:
        raise ValueError(
            f"target_s must be > 0; got {target_s!r} — pass the seconds one call should take"
        )
    if start < 1:
        raise ValueError(f"start must be >= 1; got {start!r} — pass the first k to try")
    k = start
    while True:
        started = time.perf_counter()
        work(k)
        elapsed = time.perf_counter() - started
        if elapsed > target_s / 4:
            return max(1, round(k * target_s / elapsed))
        k *= 2
