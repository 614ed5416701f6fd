"""Compare a benchmark result JSON with a stored baseline; flag regressions, draw plots.

    python bench/compare.py --baseline BASE.json [--baseline MORE_BASE.json ...] \\
        --current NEW.json [--current MORE.json ...] [--threshold 0.25] [--plot-dir DIR]
    python bench/compare.py --self-test

Reads three formats (both files must be the same kind): ``bench_process_lanes.py``
output (its ``ratios``, with ``targets``), ``bench_scaling.py`` output (scaling ratios,
memory growth and peak RSS) and pytest-benchmark's ``--benchmark-json`` output (the
median of every benchmark, plus the within-run lane/baseline speed ratios of
``bench/test_bench_lanes.py``). Direction matters: ratios and rows/s are better higher,
seconds and RSS better lower. A metric that moved the wrong way by more than
``threshold`` (a fraction of the baseline) is a regression. When both process-lanes
documents carry per-repeat values (``repeats``), a metric is judged by its medians
by a bootstrap interval of the slowdown of its median instead (``bench/_noise.py``), and
each verdict is explained on one line. Of those, only the metrics matching a ``--gate``
glob (by default the CPU-time ones, ``*_cpu`` and ``*_cpu_s``) can fail the comparison;
wall-time metrics are judged the same way and reported as advisory, because on a shared
machine their verdict is decided by the load as much as by the code. Several
``--current`` files of process-lanes runs are judged as one run with all their repeats —
unless the baseline is itself several runs (``--baseline`` repeated, at least five
process-lanes runs recorded at different moments): then each gated metric is judged run by
run, by the run medians and the spread between runs (``_noise.judge_runs``), which is
what a release gate on a shared machine needs.
Exit status: 0 nothing flagged, 1 at least one regression, 2 usage error (unreadable
file, unknown or mismatched format, unusable repeats), 3 no regression but at least one
gated metric undecided (add a run and compare again).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _compare_plot, _noise

#: Metrics that can fail a comparison judged from repeats: CPU time of the process tree,
#: which other processes on the machine barely move (waiting for a core costs no CPU),
#: and whose run medians move little enough between runs of an unchanged tree (one
#: standard deviation, measured over 37 runs on the shared 2-core machine) for one to
#: three runs to tell a 25% slowdown from noise: heavy 3.8%, row lane 4.1%, whole-pipeline
#: fixed cost 6.5%, whole-pipeline Arrow identity 8.4%. ``arrow_identity_vs_ppe_ipc_cpu``
#: moved by 15% (its three processes wake each other ~1,000 times a second, and how much
#: CPU a wake-up costs depends on the load): it is reported, advisory; the Arrow
#: transport it exercises is gated through the whole-pipeline identity run.
DEFAULT_GATES = ("arrow_heavy_vs_serial_cpu", "rows_cheap_vs_ppe_pickle_cpu",
                 "pipeline_fixed_cpu_s", "pipeline_identity_vs_ppe_ipc_cpu")

#: Lane / baseline pairs whose within-run speed ratio is compared for pytest-benchmark
#: runs of bench/test_bench_lanes.py (a ratio from one run travels better than a median).
LANE_PAIRS = [
    ("row-lane", "row-serial"),
    ("arrow-lane", "arrow-serial"),
    ("row-lane", "ppe-pickle"),
    ("arrow-lane", "ppe-ipc"),
]


class UsageError(Exception):
    """A file that cannot be compared; reported with exit status 2."""


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    higher_is_better: bool
    target: float | None = None


@dataclass(frozen=True)
class Row:
    metric: str
    baseline: float | None
    current: float | None
    change: float | None  # (current - baseline) / baseline
    verdict: str  # ok, improved, REGRESSED, undecided, missing, new, ignored, "… (advisory)"
    higher_is_better: bool
    target: float | None = None
    note: str = ""  # why the verdict follows, when judged from repeats

    @property
    def regressed(self) -> bool:
        return self.verdict == "REGRESSED"

    @property
    def undecided(self) -> bool:
        return self.verdict == "undecided"


# ------------------------------------------------------------------ reading results


def kind_of(doc: Any) -> str:
    if isinstance(doc, dict):
        if doc.get("kind") == "bench_scaling":
            return "scaling"
        if isinstance(doc.get("ratios"), dict):
            return "process_lanes"
        if isinstance(doc.get("benchmarks"), list):
            return "pytest_benchmark"
    raise UsageError(
        "not a result this script knows: expected bench_process_lanes.py or "
        "bench_scaling.py JSON, or pytest-benchmark --benchmark-json output"
    )


def metrics_of(doc: Any) -> dict[str, Metric]:
    """Every comparable metric of a result document, by name."""
    kind = kind_of(doc)
    out: list[Metric] = []
    if kind == "process_lanes":
        targets = doc.get("targets", {})
        for key, value in doc["ratios"].items():
            # the script's own rule: a *_s figure is a latency (a ceiling), the rest floors
            out.append(Metric(key, float(value), not key.endswith("_s"), targets.get(key)))
    elif kind == "scaling":
        for name, cfg in doc.get("scaling", {}).get("configs", {}).items():
            if name not in ("w1_d1", "serial"):
                out.append(Metric(f"scaling.{name}.ratio_to_w1_d1", cfg["ratio_to_w1_d1"], True))
            if name != "serial":
                out.append(Metric(f"scaling.{name}.ratio_to_serial", cfg["ratio_to_serial"], True))
        memory = doc.get("memory", {})
        for key, value in memory.get("growth", {}).items():
            out.append(Metric(f"memory.growth.{key}", float(value), False))
        for size, run in memory.get("runs", {}).items():
            for key in ("main_peak_rss_mb", "workers_peak_rss_mb"):
                out.append(Metric(f"memory.{size}_rows.{key}", float(run[key]), False))
    else:
        by_config: dict[tuple[str, str], float] = {}
        for bench in doc["benchmarks"]:
            median = float(bench["stats"]["median"])
            out.append(Metric(f"{bench['name']}.median_s", median, False))
            info = bench.get("extra_info", {})
            if "config" in info and "transform" in info:
                by_config[(info["transform"], info["config"])] = median
        for transform in sorted({t for t, _ in by_config}):
            for lane, base in LANE_PAIRS:
                if (transform, lane) in by_config and (transform, base) in by_config:
                    ratio = by_config[(transform, base)] / by_config[(transform, lane)]
                    out.append(Metric(f"{transform}.{lane}_vs_{base}_speed", ratio, True))
    return {m.name: m for m in out}


def load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not JSON (line {exc.lineno}: {exc.msg})") from exc


# ------------------------------------------------------------------ comparing


def judge(base: Metric, value: float, threshold: float) -> tuple[float | None, str]:
    if base.value == 0:
        return None, "ok" if value == 0 else (
            "improved" if (value > 0) == base.higher_is_better else "REGRESSED"
        )
    change = (value - base.value) / abs(base.value)
    worse = -change if base.higher_is_better else change
    if worse > threshold:
        return change, "REGRESSED"
    if worse < -threshold:
        return change, "improved"
    return change, "ok"


def merge_runs(docs: Sequence[Any]) -> Any:
    """Several process-lanes runs as one: every metric's repeats concatenated (metrics
    that not every run has are dropped), each figure the median of the merged repeats."""
    if len(docs) == 1:
        return docs[0]
    kinds = {kind_of(doc) for doc in docs}
    if kinds != {"process_lanes"}:
        raise UsageError("several --baseline or --current files can only be process-lanes runs "
                         f"(bench_process_lanes.py); got {', '.join(sorted(kinds))}")
    merged = dict(docs[0])
    names = set.intersection(*(set(doc.get("repeats") or {}) for doc in docs))
    repeats: dict[str, list[float]] = {}
    for name in sorted(names):
        values: list[float] = []
        for doc in docs:
            value = doc["repeats"][name]
            values += _noise.check_repeats(name, "current", value) if isinstance(
                value, (list, tuple)) else [value]
        repeats[name] = values
    merged["repeats"] = repeats
    merged["ratios"] = {**docs[0]["ratios"],
                        **{name: statistics.median(v) for name, v in repeats.items()}}
    return merged


def _repeats_of(docs: Sequence[Any]) -> list[dict[str, Any]]:
    return [doc.get("repeats") or {} for doc in docs]


def compare(baseline: Any, current: Any, threshold: float, ignore: Sequence[str] = (),
            noise_threshold: float = 0.10, must_catch: float = 0.25,
            gates: Sequence[str] = DEFAULT_GATES,
            baseline_runs: Sequence[dict[str, Any]] | None = None,
            current_runs: Sequence[dict[str, Any]] | None = None) -> list[Row]:
    """One row per metric of either document, baseline order first. Metrics matching an
    ``ignore`` glob are shown with verdict "ignored" and never count as regressions;
    metrics judged from repeats that match no ``gates`` glob are advisory: their verdict
    is shown with "(advisory)" and never counts either. With ``baseline_runs`` and
    ``current_runs`` (each run's ``repeats``), a metric every run carries is judged by
    run medians (``_noise.judge_runs``) instead of by pooled repeats."""
    if threshold < 0:
        raise UsageError(f"--threshold must be >= 0; got {threshold}")
    kinds = kind_of(baseline), kind_of(current)
    if kinds[0] != kinds[1]:
        raise UsageError(f"cannot compare a {kinds[0]} result with a {kinds[1]} result")
    base, cur = metrics_of(baseline), metrics_of(current)
    reps_b, reps_c = baseline.get("repeats") or {}, current.get("repeats") or {}
    rows = []
    for name, b in base.items():
        c = cur.get(name)
        if c is None:
            rows.append(Row(name, b.value, None, None, "missing", b.higher_is_better, b.target))
            continue
        change, verdict, note = *judge(b, c.value, threshold), ""
        if name in reps_b and name in reps_c:
            try:
                if (baseline_runs and current_runs
                        and all(name in r for r in (*baseline_runs, *current_runs))):
                    v = _noise.judge_runs(name, [r[name] for r in baseline_runs],
                                          [r[name] for r in current_runs],
                                          b.higher_is_better, noise_threshold, must_catch)
                else:
                    v = _noise.judge_repeats(name, reps_b[name], reps_c[name],
                                             b.higher_is_better, noise_threshold, must_catch)
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
            b = Metric(name, v.baseline_median, b.higher_is_better, b.target)
            c = Metric(name, v.current_median, c.higher_is_better, c.target)
            change = v.current_median / v.baseline_median - 1
            verdict, note = v.verdict, v.explain(noise_threshold, must_catch)
            if verdict != "ok" and not any(fnmatch.fnmatchcase(name, g) for g in gates):
                verdict += " (advisory)"
        elif name in reps_b:
            note = "current has no repeats: one value against the baseline's median"
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in ignore):
            verdict = "ignored"
        rows.append(
            Row(
                name,
                b.value,
                c.value,
                change,
                verdict,
                b.higher_is_better,
                c.target if c.target is not None else b.target,
                note,
            )
        )
    for name, c in cur.items():
        if name not in base:
            rows.append(Row(name, None, c.value, None, "new", c.higher_is_better, c.target))
    return rows


def render(rows: list[Row]) -> str:
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.4g}"

    width = max([len(r.metric) for r in rows] + [6])
    lines = [
        f"{'metric':<{width}}  {'better':>6}  {'baseline':>10}  {'current':>10}  "
        f"{'change':>8}  verdict"
    ]
    for r in rows:
        change = "-" if r.change is None else f"{r.change:+.1%}"
        verdict = r.verdict
        if r.target is not None and r.current is not None:
            met = r.current >= r.target if r.higher_is_better else r.current <= r.target
            sign = ">=" if r.higher_is_better else "<="
            verdict += f" (target {sign} {r.target:g} {'met' if met else 'MISSED'})"
        lines.append(
            f"{r.metric:<{width}}  {'higher' if r.higher_is_better else 'lower':>6}  "
            f"{num(r.baseline):>10}  {num(r.current):>10}  {change:>8}  {verdict}"
        )
        if r.note:
            lines.append(f"{'':<{width}}    {r.note}")
    regressed = sum(r.regressed for r in rows)
    undecided = sum(r.undecided for r in rows)
    lines.append(f"\n{regressed} regression(s), {undecided} undecided")
    if undecided and not regressed:
        lines.append("undecided: the repeats cannot tell; run the benchmark again and pass "
                     "every run with --current (their repeats are judged together)")
    elif not regressed:
        lines.append("nothing flagged")
    return "\n".join(lines)


def warnings_for(baseline: Any, current: Any) -> list[str]:
    """Reasons the comparison may mislead: different modes, a busy machine."""
    out = []
    if baseline.get("mode") and current.get("mode") and baseline["mode"] != current["mode"]:
        out.append(f"baseline is a {baseline['mode']} run, current a {current['mode']} run")
    for label, doc in (("baseline", baseline), ("current", current)):
        loads = [p.get("background_cores", 0.0) for p in doc.get("pairs", {}).values()]
        loads.append(doc.get("scaling", {}).get("background_cores", 0.0))
        if max(loads) > 0.25:
            out.append(
                f"{label}: other processes used up to {max(loads):.2f} cores during "
                f"a measurement; ratios that need both cores read low"
            )
    return out


# ------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, action="append", default=[],
                        help="stored result JSON (repeatable for process-lanes runs: five or "
                        "more baseline runs are judged run by run)")
    parser.add_argument("--current", type=Path, action="append", default=[],
                        help="new result JSON of the same kind (repeatable for "
                        "process-lanes runs: their repeats are judged together)")
    parser.add_argument("--threshold", type=float, default=0.25,
                        help="metrics without repeats: flag a move in the bad direction "
                        "beyond this fraction (0.25)")
    parser.add_argument("--noise-threshold", type=float, default=0.10,
                        help="metrics with repeats: REGRESSED when the whole interval of "
                        "the slowdown lies above this fraction (0.10)")
    parser.add_argument("--must-catch", type=float, default=0.25,
                        help="metrics with repeats: ok only when the interval rules out "
                        "a slowdown this large (0.25); otherwise undecided")
    parser.add_argument("--gate", action="append", default=[], metavar="GLOB",
                        help="metrics with repeats that can fail the comparison "
                        f"(repeatable; default {' '.join(DEFAULT_GATES)}); the rest are advisory")
    parser.add_argument("--plot-dir", type=Path, help="write SVG bar charts here")
    parser.add_argument("--ignore", action="append", default=[], metavar="GLOB",
                        help="report but never flag metrics matching GLOB (repeatable), "
                        "e.g. '*.median_s' to gate a pytest-benchmark run on ratios only")
    parser.add_argument("--self-test", action="store_true", help="run built-in checks and exit")
    args = parser.parse_args(argv)
    if args.self_test:
        from bench._compare_selftest import run_self_test

        return run_self_test()
    if not args.baseline or not args.current:
        parser.error("--baseline and --current are required (or --self-test)")
    try:
        if args.noise_threshold < 0 or args.must_catch <= args.noise_threshold:
            raise UsageError(f"--noise-threshold must be >= 0 and below --must-catch; got "
                             f"{args.noise_threshold} and {args.must_catch} — e.g. "
                             "--noise-threshold 0.10 --must-catch 0.25")
        base_docs = [load(path) for path in args.baseline]
        cur_docs = [load(path) for path in args.current]
        baseline, current = merge_runs(base_docs), merge_runs(cur_docs)
        by_runs = len(base_docs) > 1
        rows = compare(baseline, current, args.threshold, args.ignore, args.noise_threshold,
                       args.must_catch, args.gate or DEFAULT_GATES,
                       baseline_runs=_repeats_of(base_docs) if by_runs else None,
                       current_runs=_repeats_of(cur_docs) if by_runs else None)
    except UsageError as exc:
        print(f"compare.py: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # repeats that cannot be judged, found while merging
        print(f"compare.py: {exc}", file=sys.stderr)
        return 2
    names = ", ".join(str(path) for path in args.current)
    bases = ", ".join(str(path) for path in args.baseline)
    print(f"baseline: {bases}\ncurrent:  {names}\n")
    print(render(rows))
    for warning in warnings_for(baseline, current):
        print(f"warning: {warning}")
    if args.plot_dir is not None:
        for path in _compare_plot.plot(rows, baseline, current, args.plot_dir):
            print(f"wrote {path}")
    if any(r.regressed for r in rows):
        return 1
    return 3 if any(r.undecided for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
