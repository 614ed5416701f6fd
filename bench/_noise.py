"""Noise-aware verdicts: compare repeated measurements by their medians and noise bands.

A benchmark run on a shared 2-core machine moves by tens of percent between runs of an
unchanged tree, so one number against one stored number with a fixed threshold flags
regressions that are not there. Here each metric carries ``k`` repeats, measured
interleaved with its reference (ABAB…). The verdict:

* the **noise** of a repeat set is its relative half-range, ``(max - min) / (2 * median)``;
* the **band** is the baseline median ± the larger noise of the two sets (baseline and
  current), so a noisy current run widens the band instead of crying wolf;
* the **change beyond the band** is the slowdown of the current median past the band's
  bad edge, as a fraction: for a higher-is-better ratio ``edge / median - 1`` (so 25%
  more time per row reads as 25%), for a latency ``median / edge - 1``;
* REGRESSED when that change exceeds the threshold; "improved" when the current median
  is past the good edge by more than the threshold; otherwise "ok".
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: Fewer repeats than this cannot give a band worth trusting.
MIN_REPEATS = 3


@dataclass(frozen=True)
class NoiseVerdict:
    """The judgement of one metric from its two repeat sets."""

    baseline_median: float
    current_median: float
    band: tuple[float, float]
    noise: float  # half-width of the band, as a fraction of the baseline median
    beyond: float  # slowdown past the bad edge (> 0) or speed-up past the good edge (< 0)
    verdict: str  # "ok", "improved", "REGRESSED"

    def explain(self, threshold: float) -> str:
        """One line: medians, band, change and why the verdict follows."""
        lo, hi = self.band
        head = (f"median {self.current_median:.4g} vs baseline {self.baseline_median:.4g}, "
                f"band [{lo:.4g}, {hi:.4g}] (noise ±{self.noise:.1%})")
        if self.verdict == "REGRESSED":
            return f"{head}: {self.beyond:.1%} slower than the band's edge > {threshold:.0%}"
        if self.verdict == "improved":
            return f"{head}: {-self.beyond:.1%} faster than the band's edge > {threshold:.0%}"
        if self.beyond > 0:
            return f"{head}: {self.beyond:.1%} past the band's edge, within {threshold:.0%}"
        return f"{head}: inside the band"


def check_repeats(name: str, label: str, values: Sequence[float]) -> list[float]:
    """The repeats as floats; ValueError naming the metric when they cannot be judged."""
    if not isinstance(values, (list, tuple)) or len(values) < MIN_REPEATS:
        count = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        raise ValueError(f"{label} repeats of {name} must be a list of at least {MIN_REPEATS} "
                         f"numbers; got {count} — rerun the benchmark with --repeats 5")
    out = [float(v) for v in values]
    if min(out) <= 0:
        raise ValueError(f"{label} repeats of {name} must all be > 0; got {min(out)} — "
                         "the measurement failed; rerun the benchmark")
    return out


def noise_of(values: Sequence[float]) -> float:
    """Relative half-range of a repeat set."""
    median = statistics.median(values)
    return (max(values) - min(values)) / (2 * median)


def judge_repeats(name: str, baseline: Sequence[float], current: Sequence[float],
                  higher_is_better: bool, threshold: float) -> NoiseVerdict:
    """Judge ``current`` against ``baseline`` (see the module docstring)."""
    base = check_repeats(name, "baseline", baseline)
    cur = check_repeats(name, "current", current)
    b_med, c_med = statistics.median(base), statistics.median(cur)
    noise = max(noise_of(base), noise_of(cur))
    lo, hi = b_med * max(0.0, 1 - noise), b_med * (1 + noise)
    if higher_is_better:
        bad_edge, good_edge = lo, hi
        # time per unit of work grows as 1/ratio: express both sides as a slowdown
        # a band reaching 0 means the noise swamps any slowdown: nothing can be flagged
        slower = bad_edge / c_med - 1 if bad_edge > 0 else 0.0
        faster = 1 - good_edge / c_med if c_med > good_edge else 0.0
    else:
        bad_edge, good_edge = hi, lo
        slower = c_med / bad_edge - 1
        faster = 1 - c_med / good_edge if c_med < good_edge else 0.0
    if slower > threshold:
        verdict, beyond = "REGRESSED", slower
    elif faster > threshold:
        verdict, beyond = "improved", -faster
    else:
        verdict, beyond = "ok", max(slower, -faster) if slower > 0 else -faster
    return NoiseVerdict(b_med, c_med, (lo, hi), noise, beyond, verdict)
