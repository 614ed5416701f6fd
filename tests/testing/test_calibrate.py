"""calibrate_iterations scales k from one timed call that is long enough to trust."""

from __future__ import annotations

import pytest

from agora.testing import calibrate as calibrate_module
from agora.testing import calibrate_iterations


class FakeClock:
    """A perf_counter that advances only when the calibrated work runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_k_doubles_until_a_call_is_long_enough_then_scales(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(calibrate_module.time, "perf_counter", clock.perf_counter)
    tried: list[int] = []

    def work(k: int) -> None:
        tried.append(k)
        clock.now += k * 0.001  # 1 ms per iteration

    assert calibrate_iterations(work, 0.05) == 50
    # 8 ms and then 16 ms: 16 ms is over a quarter of the 50 ms target, so it stops there.
    assert tried == [8, 16]


def test_work_too_fast_to_measure_never_returns_zero(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(calibrate_module.time, "perf_counter", clock.perf_counter)

    def work(k: int) -> None:
        clock.now += 10.0  # one call is far over target

    assert calibrate_iterations(work, 0.001, start=1) == 1


@pytest.mark.parametrize(("target", "start", "message"), [
    (0, 8, "target_s must be > 0; got 0"),
    (-1.0, 8, "target_s must be > 0; got -1.0"),
    (0.1, 0, "start must be >= 1; got 0"),
])
def test_nonsense_arguments_are_refused(target, start, message):
    with pytest.raises(ValueError, match=message):
        calibrate_iterations(lambda k: None, target, start=start)
