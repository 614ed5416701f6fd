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

Repeats of one run share that run's moment — the load, the caches, where the scheduler
put the three processes — so they understate how far a whole run can move: on the
shared machine a run's median of ``pipeline_fixed_cpu_s`` moved by ±6.5% (one standard
deviation) between runs of the unchanged tree, and the repeat bootstrap above failed 3
of 20 of them. When the baseline is **several runs** recorded at different moments
(:func:`judge_runs`, at least ``MIN_BASELINE_RUNS``), the unit of evidence is a run
instead: each run is its median; the slowdown is the ratio of the geometric means of
the current runs and the baseline runs; its interval is a Student-t interval whose
spread is the between-run standard deviation (pooled over the baseline runs and, when
there are several, the current runs), on the log scale, at ``RUN_COVERAGE``. The same
REGRESSED / improved / ok / undecided rule then applies.
"""

from __future__ import annotations

import math
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
#: A baseline of runs needs this many to estimate the between-run spread.
MIN_BASELINE_RUNS = 5
#: The run-level interval's coverage (two-sided). A false REGRESSED needs the whole
#: interval above the 10% tolerance and a false "ok" needs it below the 25% to catch, so
#: the coverage mostly trades "undecided" for another run: at 0.98 one unchanged gate in
#: 20 stayed undecided after 3 runs on the shared machine; at 0.95 none of 40 did, and
#: every 25% slowdown still failed (docs/benchmarks.md).
RUN_COVERAGE = 0.95


@dataclass(frozen=True)
class NoiseVerdict:
    """The judgement of one metric from its two repeat sets."""

    baseline_median: float
    current_median: float
    slowdown: float  # extra time per unit of work, current vs baseline (< 0: faster)
    interval: tuple[float, float]  # bootstrap interval of ``slowdown``
    verdict: str  # "ok", "improved", "REGRESSED", "undecided"
    repeats: tuple[int, int]  # (baseline, current), counted in ``unit``
    unit: str = "repeats"  # "runs" when judged by run medians

    def explain(self, tolerance: float, must_catch: float) -> str:
        """One line: medians, slowdown and its interval, and why the verdict follows."""
        lo, hi = self.interval
        centre = "median" if self.unit == "repeats" else "mean of run medians"
        coverage = COVERAGE if self.unit == "repeats" else RUN_COVERAGE
        head = (f"{centre} {self.current_median:.4g} vs {self.baseline_median:.4g}: "
                f"{self.slowdown:+.1%} time, {coverage:.0%} interval [{lo:+.1%}, {hi:+.1%}] "
                f"({self.repeats[1]} vs {self.repeats[0]} {self.unit})")
        why = {
            "REGRESSED": f"slower by more than {tolerance:.0%} beyond doubt",
            "improved": f"faster by more than {tolerance:.0%} beyond doubt",
            "ok": f"a {must_catch:.0%} slowdown is ruled out",
            "undecided": f"cannot rule out a {must_catch:.0%} slowdown nor prove one "
                         f"over {tolerance:.0%}: add {self.unit} or run on a quieter machine",
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


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (Cornish-Fisher expansion around the normal one; within 0.5%
    of the exact value from 5 degrees of freedom up, which is all the gate uses)."""
    z = statistics.NormalDist().inv_cdf(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


def run_interval(base_runs: Sequence[float], cur_runs: Sequence[float],
                 higher_is_better: bool) -> tuple[float, float, float]:
    """(slowdown, low, high) from run medians: geometric means and a t interval with the
    pooled between-run spread (see the module docstring)."""
    sign = -1.0 if higher_is_better else 1.0  # log of time per unit of work, up to a constant
    b = [sign * math.log(v) for v in base_runs]
    c = [sign * math.log(v) for v in cur_runs]
    b_mean, c_mean = statistics.fmean(b), statistics.fmean(c)
    squares = sum((x - b_mean) ** 2 for x in b) + sum((x - c_mean) ** 2 for x in c)
    df = len(b) - 1 + len(c) - 1
    se = math.sqrt(squares / df) * math.sqrt(1 / len(b) + 1 / len(c))
    half = t_quantile(1 - (1 - RUN_COVERAGE) / 2, df) * se
    d = c_mean - b_mean
    return math.exp(d) - 1, math.exp(d - half) - 1, math.exp(d + half) - 1


def judge_runs(name: str, baseline: Sequence[Sequence[float]],
               current: Sequence[Sequence[float]], higher_is_better: bool, tolerance: float,
               must_catch: float = 0.25) -> NoiseVerdict:
    """Judge the ``current`` runs against the ``baseline`` runs, each given as its
    repeats, by their run medians (see the module docstring)."""
    _check_tolerance(tolerance, must_catch)
    if len(baseline) < MIN_BASELINE_RUNS:
        raise ValueError(f"a baseline of runs needs at least {MIN_BASELINE_RUNS} runs to "
                         f"judge {name}; got {len(baseline)} — record more baseline runs")
    if not current:
        raise ValueError(f"no current run of {name} to judge")
    base = [statistics.median(check_repeats(name, "baseline", r)) for r in baseline]
    cur = [statistics.median(check_repeats(name, "current", r)) for r in current]
    slowdown, lo, hi = run_interval(base, cur, higher_is_better)
    return NoiseVerdict(math.exp(statistics.fmean(math.log(v) for v in base)),
                        math.exp(statistics.fmean(math.log(v) for v in cur)),
                        slowdown, (lo, hi), _verdict(lo, hi, tolerance, must_catch),
                        (len(base), len(cur)), unit="runs")


def _check_tolerance(tolerance: float, must_catch: float) -> None:
    if not 0 <= tolerance < must_catch:
        raise ValueError(f"the tolerance must be >= 0 and below the slowdown to catch; got "
                         f"{tolerance} and {must_catch} — e.g. --noise-threshold 0.10 "
                         "--must-catch 0.25")


def _verdict(lo: float, hi: float, tolerance: float, must_catch: float) -> str:
    if lo > tolerance:
        return "REGRESSED"
    if hi < -tolerance:
        return "improved"
    return "ok" if hi < must_catch else "undecided"


def judge_repeats(name: str, baseline: Sequence[float], current: Sequence[float],
                  higher_is_better: bool, tolerance: float,
                  must_catch: float = 0.25) -> NoiseVerdict:
    """Judge ``current`` against ``baseline`` (see the module docstring)."""
    _check_tolerance(tolerance, must_catch)
    base = check_repeats(name, "baseline", baseline)
    cur = check_repeats(name, "current", current)
    b_med, c_med = statistics.median(base), statistics.median(cur)
    lo, hi = slowdown_interval(base, cur, higher_is_better)
    return NoiseVerdict(b_med, c_med, _slowdown(b_med, c_med, higher_is_better), (lo, hi),
                        _verdict(lo, hi, tolerance, must_catch), (len(base), len(cur)))
