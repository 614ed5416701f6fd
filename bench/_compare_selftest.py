"""Built-in checks of bench/compare.py, run by ``python bench/compare.py --self-test``.

Kept out of ``tests/`` on purpose: the comparison script is benchmark tooling, and its
checks need no pytest. Each check builds small synthetic result documents in the three
formats and asserts what the comparison must say about them.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import compare as cmp

LANES: dict[str, Any] = {
    "mode": "quick",
    "ratios": {
        "arrow_identity_vs_ppe_ipc": 10.0,
        "rows_cheap_vs_ppe_pickle": 1.0,
        "timeout_recovery_s": 0.020,
    },
    "targets": {
        "arrow_identity_vs_ppe_ipc": 5.0,
        "rows_cheap_vs_ppe_pickle": 0.9,
        "timeout_recovery_s": 0.150,
    },
}


def _scaling() -> dict[str, Any]:
    def cfg(ratio: float, vs_serial: float) -> dict[str, Any]:
        return {"ratio_to_w1_d1": ratio, "ratio_to_serial": vs_serial}

    def run(main: float, workers: float) -> dict[str, Any]:
        return {"main_peak_rss_mb": main, "workers_peak_rss_mb": workers}

    return {
        "kind": "bench_scaling",
        "mode": "quick",
        "scaling": {
            "background_cores": 0.0,
            "configs": {"w1_d1": cfg(1.0, 0.95), "w2_d4": cfg(1.9, 1.8), "serial": cfg(1.05, 1.0)},
        },
        "memory": {
            "sizes": [100, 200, 400],
            "runs": {"100": run(110.0, 100.0), "200": run(112.0, 100.0), "400": run(115.0, 101.0)},
            "growth": {"main_peak_rss": 1.05, "workers_peak_rss": 1.01},
        },
    }


def _pytest_benchmark(lane_s: float, serial_s: float) -> dict[str, Any]:
    def bench(config: str, median: float) -> dict[str, Any]:
        return {
            "name": f"test_pipeline[{config}-heavy]",
            "stats": {"median": median},
            "extra_info": {"config": config, "transform": "heavy"},
        }

    return {
        "machine_info": {},
        "benchmarks": [bench("arrow-lane", lane_s), bench("arrow-serial", serial_s)],
    }


def _verdicts(baseline: Any, current: Any, threshold: float = 0.25) -> dict[str, str]:
    return {r.metric: r.verdict for r in cmp.compare(baseline, current, threshold)}


def check_regression_detected() -> None:
    current = copy.deepcopy(LANES)
    current["ratios"]["arrow_identity_vs_ppe_ipc"] = 6.0  # -40%: worse for a "higher" metric
    verdicts = _verdicts(LANES, current)
    assert verdicts["arrow_identity_vs_ppe_ipc"] == "REGRESSED", verdicts
    assert verdicts["rows_cheap_vs_ppe_pickle"] == "ok", verdicts


# Constructed repeat sets of a quiet machine (noise about ±6%): a baseline, a rerun of
# the unchanged tree, and the rerun with every lane pass 25% longer (each ratio / 1.25).
QUIET_BASE = [8.62, 9.31, 9.01, 8.75, 9.46]
QUIET_UNCHANGED = [9.74, 8.40, 9.12, 10.05, 8.93]
QUIET_SLOWED = [round(v / 1.25, 3) for v in QUIET_UNCHANGED]
# Repeat sets recorded on the shared 2-core machine (quick mode, k=5, about 1.4 cores
# used by other processes): arrow_heavy_vs_serial in two runs of the unchanged tree, and
# pipeline_fixed_s of a run of the unchanged tree and of a run with AGORA_BENCH_SLOWDOWN=0.25.
RECORDED_HEAVY = ([1.7364, 1.2703, 1.2225, 1.3906, 1.595], [2.1941, 1.7205, 0.9401, 1.3172, 1.3518])
RECORDED_FIXED = ([0.2127, 0.0994, 0.1279, 0.1446, 0.1192], [0.3277, 0.3159, 0.3057, 0.2767, 0.2156])


def _with_repeats(values: list[float], metric: str = "arrow_identity_vs_ppe_ipc") -> dict[str, Any]:
    doc = copy.deepcopy(LANES)
    doc["ratios"][metric] = sorted(values)[len(values) // 2]
    doc["repeats"] = {metric: values}
    return doc


def _noise_row(base: list[float], cur: list[float],
               metric: str = "arrow_identity_vs_ppe_ipc") -> cmp.Row:
    rows = cmp.compare(_with_repeats(base, metric), _with_repeats(cur, metric), 0.25)
    return next(r for r in rows if r.metric == metric)


def check_repeats_unchanged_spread_passes() -> None:
    row = _noise_row(QUIET_BASE, QUIET_UNCHANGED)
    assert row.verdict == "ok", row
    assert "band" in row.note and "median" in row.note, row.note
    row = _noise_row(*RECORDED_HEAVY, metric="arrow_heavy_vs_serial")
    assert row.verdict == "ok", row  # -3% median on a noisy machine: not a regression


def check_repeats_slowdown_caught() -> None:
    row = _noise_row(QUIET_BASE, QUIET_SLOWED)
    assert row.verdict == "REGRESSED", row
    assert "slower than the band's edge" in row.note, row.note
    row = _noise_row(*RECORDED_FIXED, metric="pipeline_fixed_s")  # a *_s metric: lower
    assert row.verdict == "REGRESSED", row


def check_repeats_noise_widens_band() -> None:
    # a current run whose own repeats swing ±60% cannot prove a 20% drop
    noisy = [4.0, 7.2, 8.0, 9.0, 13.6]
    verdict = cmp.compare(_with_repeats(QUIET_BASE), _with_repeats(noisy), 0.25)
    assert {r.metric: r.verdict for r in verdict}["arrow_identity_vs_ppe_ipc"] == "ok", verdict


def check_bad_repeats_rejected() -> None:
    for bad in ([9.0, 9.1], [9.0, 0.0, 9.2], "9.0"):
        doc = _with_repeats(QUIET_BASE)
        doc["repeats"]["arrow_identity_vs_ppe_ipc"] = bad
        try:
            cmp.compare(_with_repeats(QUIET_BASE), doc, 0.25)
        except cmp.UsageError as exc:
            assert "arrow_identity_vs_ppe_ipc" in str(exc) and "rerun" in str(exc), exc
        else:
            raise AssertionError(f"repeats {bad!r} were accepted")


def check_slowdown_setting() -> None:
    import os

    from bench import _noise_pipeline as inject

    saved = os.environ.get(inject.SLOWDOWN_ENV)
    try:
        os.environ[inject.SLOWDOWN_ENV] = "0.25"
        assert inject.injected_slowdown() == 0.25
        for bad in ("fast", "-0.1"):
            os.environ[inject.SLOWDOWN_ENV] = bad
            try:
                inject.injected_slowdown()
            except ValueError as exc:
                assert inject.SLOWDOWN_ENV in str(exc) and "unset it" in str(exc), exc
            else:
                raise AssertionError(f"{inject.SLOWDOWN_ENV}={bad!r} was accepted")
        os.environ.pop(inject.SLOWDOWN_ENV)
        assert inject.injected_slowdown() == 0.0
        os.environ[inject.SLOWDOWN_ENV] = "0.5"
        inner: list[float] = []

        def one_pass() -> int:
            began = time.perf_counter()
            time.sleep(0.02)
            inner.append(time.perf_counter() - began)
            return 7

        started = time.perf_counter()
        assert inject.slowed(one_pass)() == 7  # the pass's rows come back
        total = time.perf_counter() - started
        assert total >= 1.5 * inner[0], (total, inner)  # spun for half the pass's time
    finally:
        if saved is None:
            os.environ.pop(inject.SLOWDOWN_ENV, None)
        else:
            os.environ[inject.SLOWDOWN_ENV] = saved


def check_noise_threshold_usage() -> None:
    with tempfile.TemporaryDirectory(prefix="agora-compare-") as tmp:
        path = Path(tmp) / "r.json"
        path.write_text(json.dumps(_with_repeats(QUIET_BASE)))
        argv = ["--baseline", str(path), "--current", str(path)]
        assert _quiet(cmp.main, argv) == 0
        assert _quiet(cmp.main, [*argv, "--noise-threshold", "-0.1"]) == 2


def check_too_few_repeats_refused() -> None:
    from bench import bench_process_lanes

    try:
        _quiet(bench_process_lanes.main, ["--quick", "--repeats", "2"])
    except SystemExit as exc:
        assert exc.code == 2, exc.code  # argparse's usage error, before anything runs
    else:
        raise AssertionError("--repeats 2 was accepted")


def check_improvement_not_flagged() -> None:
    current = copy.deepcopy(LANES)
    current["ratios"]["arrow_identity_vs_ppe_ipc"] = 20.0
    current["ratios"]["timeout_recovery_s"] = 0.010
    rows = cmp.compare(LANES, current, 0.25)
    assert not any(r.regressed for r in rows), rows
    assert {r.verdict for r in rows} == {"improved", "ok"}, rows


def check_direction_of_latency() -> None:
    current = copy.deepcopy(LANES)
    current["ratios"]["timeout_recovery_s"] = 0.030  # +50% latency: a regression
    assert _verdicts(LANES, current)["timeout_recovery_s"] == "REGRESSED"
    current["ratios"]["timeout_recovery_s"] = 0.022  # +10%: within the threshold
    assert _verdicts(LANES, current)["timeout_recovery_s"] == "ok"
    assert _verdicts(LANES, current, threshold=0.05)["timeout_recovery_s"] == "REGRESSED"


def check_pytest_benchmark_medians() -> None:
    base = _pytest_benchmark(lane_s=0.30, serial_s=0.60)
    slower = _pytest_benchmark(lane_s=0.50, serial_s=0.60)
    verdicts = _verdicts(base, slower)
    assert verdicts["test_pipeline[arrow-lane-heavy].median_s"] == "REGRESSED", verdicts
    assert verdicts["test_pipeline[arrow-serial-heavy].median_s"] == "ok", verdicts
    # the within-run speed ratio falls from 2.0 to 1.2: also a regression
    assert verdicts["heavy.arrow-lane_vs_arrow-serial_speed"] == "REGRESSED", verdicts
    faster = _pytest_benchmark(lane_s=0.20, serial_s=0.60)
    assert not any(r.regressed for r in cmp.compare(base, faster, 0.25))


def check_ignored_metrics_never_fail() -> None:
    base = _pytest_benchmark(lane_s=0.30, serial_s=0.60)
    both_slower = _pytest_benchmark(lane_s=0.60, serial_s=1.20)  # a busy machine: ratio holds
    rows = cmp.compare(base, both_slower, 0.25, ignore=["*.median_s"])
    assert not any(r.regressed for r in rows), rows
    verdicts = {r.metric: r.verdict for r in rows}
    assert verdicts["test_pipeline[arrow-lane-heavy].median_s"] == "ignored", verdicts
    assert verdicts["heavy.arrow-lane_vs_arrow-serial_speed"] == "ok", verdicts


def check_scaling_directions() -> None:
    current = _scaling()
    current["memory"]["growth"]["main_peak_rss"] = 2.0  # memory grows with input
    current["scaling"]["configs"]["w2_d4"]["ratio_to_w1_d1"] = 1.1  # lost its scaling
    verdicts = _verdicts(_scaling(), current)
    assert verdicts["memory.growth.main_peak_rss"] == "REGRESSED", verdicts
    assert verdicts["scaling.w2_d4.ratio_to_w1_d1"] == "REGRESSED", verdicts
    assert verdicts["memory.growth.workers_peak_rss"] == "ok", verdicts
    assert "scaling.serial.ratio_to_w1_d1" not in verdicts, "serial is context, not a metric"


def check_missing_and_new_metrics() -> None:
    current = copy.deepcopy(LANES)
    del current["ratios"]["rows_cheap_vs_ppe_pickle"]
    current["ratios"]["arrow_heavy_vs_serial"] = 2.0
    verdicts = _verdicts(LANES, current)
    assert verdicts["rows_cheap_vs_ppe_pickle"] == "missing", verdicts
    assert verdicts["arrow_heavy_vs_serial"] == "new", verdicts


def check_command_line() -> None:
    """Exit codes and plots through main(), with files on disk."""
    with tempfile.TemporaryDirectory(prefix="agora-compare-") as tmp:
        root = Path(tmp)

        def write(name: str, doc: Any) -> str:
            (root / name).write_text(json.dumps(doc))
            return str(root / name)

        worse = copy.deepcopy(LANES)
        worse["ratios"]["rows_cheap_vs_ppe_pickle"] = 0.5
        base, bad = write("base.json", LANES), write("bad.json", worse)
        scaling = write("scaling.json", _scaling())
        assert _quiet(cmp.main, ["--baseline", base, "--current", base]) == 0
        assert _quiet(cmp.main, ["--baseline", base, "--current", bad]) == 1
        assert _quiet(cmp.main, ["--baseline", base, "--current", scaling]) == 2
        assert _quiet(cmp.main, ["--baseline", base, "--current", str(root / "nope")]) == 2
        (root / "junk.json").write_text("{not json")
        assert _quiet(cmp.main, ["--baseline", base, "--current", str(root / "junk.json")]) == 2
        plots = root / "plots"
        assert (
            _quiet(
                cmp.main, ["--baseline", scaling, "--current", scaling, "--plot-dir", str(plots)]
            )
            == 0
        )
        assert (
            _quiet(cmp.main, ["--baseline", base, "--current", bad, "--plot-dir", str(plots)]) == 1
        )
        names = sorted(p.name for p in plots.iterdir())
        assert names == ["comparison.svg", "scaling_memory.svg", "scaling_throughput.svg"], names
        for svg in plots.iterdir():
            tree = ET.parse(svg)  # well-formed XML, an SVG root, at least one bar
            assert tree.getroot().tag == "{http://www.w3.org/2000/svg}svg", svg
            assert len(tree.getroot().findall("{http://www.w3.org/2000/svg}rect")) > 2, svg


def _quiet(fn: Callable[[list[str]], int], argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(argv)


CHECKS = [
    check_regression_detected,
    check_improvement_not_flagged,
    check_direction_of_latency,
    check_pytest_benchmark_medians,
    check_ignored_metrics_never_fail,
    check_scaling_directions,
    check_missing_and_new_metrics,
    check_command_line,
    check_repeats_unchanged_spread_passes,
    check_repeats_slowdown_caught,
    check_repeats_noise_widens_band,
    check_bad_repeats_rejected,
    check_slowdown_setting,
    check_noise_threshold_usage,
    check_too_few_repeats_refused,
]


def run_self_test() -> int:
    """Run every check; print one line each; 0 if all pass, 1 otherwise."""
    failed = 0
    for check in CHECKS:
        try:
            check()
        except AssertionError as exc:
            failed += 1
            print(f"FAIL {check.__name__}: {exc}")
        else:
            print(f"ok   {check.__name__}")
    print(f"\n{len(CHECKS) - failed} of {len(CHECKS)} self-test checks passed")
    return 1 if failed else 0
