"""Regression verdicts from repeated measurements: a bootstrap interval of the slowdown.

Each metric carries ``k`` repeats (a per-repeat ratio measured against its reference in
the same repeat, or a per-repeat latency). The verdict of a current run against a
baseline:

* the **slowdown** is the ratio of the two medians, expressed as extra time per unit of
  work: ``baseline / current - 1`` for a higher-is-better ratio (a subject that takes
  25% longer reads 25%), ``current / baseline - 1`` for a latency;
* its **interval** is a 90% bootstrap interval: both repeat sets are resampled with
  replacement (a fixed seed, so a verdict is reproducible), the slowdown of the resampled
  medians is taken each time, and the 5th and 95th percentiles bound it;
* **REGRESSED** when the whole interval lies above the tolerance (10% by default): the
  run is slower beyond doubt; **improved** when it lies below minus the tolerance;
  **ok** when its upper end is below the slowdown the gate must catch (25% by default):
  a slowdown that large is ruled out; otherwise **undecided**: the repeats are too noisy
  to tell, and more repeats (or a quieter machine) are needed. A slowdown of the size the
  gate must catch therefore never reads "ok" unless the repeats rule it out.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: Fewer repeats than this cannot give an interval worth trusting.
MIN_REPEATS = 3
#: Bootstrap resamples: the interval's ends move by well under 1% between seeds at 2000.
RESAMPLES = 2000
#: The interval's coverage: 5th to 95th percentile of the resampled slowdowns.
COVERAGE = 0.90


@dataclass(frozen=True)
class NoiseVerdict:
    """The judgement of one metric from its two repeat sets."""

    baseline_median: float
    current_median: float
    slowdown: float  # extra time per unit of work, current vs baseline (< 0: faster)
    interval: tuple[float, float]  # bootstrap interval of ``slowdown``
    verdict: str  # "ok", "improved", "REGRESSED", "undecided"
    repeats: tuple[int, int]  # (baseline, current)

    def explain(self, tolerance: float, must_catch: float) -> str:
        """One line: medians, slowdown and its interval, and why the verdict follows."""
        lo, hi = self.interval
        head = (f"median {self.current_median:.4g} vs {self.baseline_median:.4g}: "
                f"{self.slowdown:+.1%} time, 90% interval [{lo:+.1%}, {hi:+.1%}] "
                f"({self.repeats[1]} vs {self.repeats[0]} repeats)")
        why = {
            "REGRESSED": f"slower by more than {tolerance:.0%} beyond doubt",
            "improved": f"faster by more than {tolerance:.0%} beyond doubt",
            "ok": f"a {must_catch:.0%} slowdown is ruled out",
            "undecided": f"cannot rule out a {must_catch:.0%} slowdown nor prove one "
                         f"over {tolerance:.0%}: add repeats or run on a quieter machine",
        }[self.verdict]
        return f"{head}: {why}"


def check_repeats(name: str, label: str, values: object) -> list[float]:
    """The repeats as floats; ValueError naming the metric when they cannot be judged."""
    if not isinstance(values, (list, tuple)) or len(values) < MIN_REPEATS:
        count = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        raise ValueError(f"{label} repeats of {name} must be a list of at least {MIN_REPEATS} "
                         f"numbers; got {count} — rerun the benchmark with --repeats 5")
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{label} repeats of {name} must be numbers; got {values!r} — "
                         "the result file is damaged; rerun the benchmark") from None
    if min(out) <= 0:
        raise ValueError(f"{label} repeats of {name} must all be > 0; got {min(out)} — "
                         "the measurement failed; rerun the benchmark")
    return out


def _slowdown(base_med: float, cur_med: float, higher_is_better: bool) -> float:
    return base_med / cur_med - 1 if higher_is_better else cur_med / base_med - 1


def slowdown_interval(base: Sequence[float], cur: Sequence[float],
                      higher_is_better: bool) -> tuple[float, float]:
    """90% bootstrap interval of the slowdown of ``cur``'s median against ``base``'s."""
    rng = random.Random(20261205)  # fixed: the same files always get the same verdict
    samples = sorted(
        _slowdown(statistics.median(rng.choices(base, k=len(base))),
                  statistics.median(rng.choices(cur, k=len(cur))), higher_is_better)
        for _ in range(RESAMPLES))
    tail = (1 - COVERAGE) / 2
    return samples[int(tail * RESAMPLES)], samples[int((1 - tail) * RESAMPLES) - 1]


def judge_repeats(name: str, baseline: Sequence[float], current: Sequence[float],
                  higher_is_better: bool, tolerance: float,
                  must_catch: float = 0.25) -> NoiseVerdict:
    """Judge ``current`` against ``baseline`` (see the module docstring)."""
    if not 0 <= tolerance < must_catch:
        raise ValueError(f"the tolerance must be >= 0 and below the slowdown to catch; got "
                         f"{tolerance} and {must_catch} — e.g. --noise-threshold 0.10 "
                         "--must-catch 0.25")
    base = check_repeats(name, "baseline", baseline)
    cur = check_repeats(name, "current", current)
    b_med, c_med = statistics.median(base), statistics.median(cur)
    lo, hi = slowdown_interval(base, cur, higher_is_better)
    if lo > tolerance:
        verdict = "REGRESSED"
    elif hi < -tolerance:
        verdict = "improved"
    elif hi < must_catch:
        verdict = "ok"
    else:
        verdict = "undecided"
    return NoiseVerdict(b_med, c_med, _slowdown(b_med, c_med, higher_is_better), (lo, hi),
                        verdict, (len(base), len(cur)))
