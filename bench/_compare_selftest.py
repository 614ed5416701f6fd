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
]


def run_self_test() -> int:
    """Run every check (these and the gate's); print one line each; 0 if all pass."""
    from bench._gate_selftest import REPEAT_CHECKS  # they import this module's helpers
    from bench._runs_selftest import RUN_CHECKS

    checks = [*CHECKS, *REPEAT_CHECKS, *RUN_CHECKS]
    failed = 0
    for check in checks:
        try:
            check()
        except AssertionError as exc:
            failed += 1
            print(f"FAIL {check.__name__}: {exc}")
        else:
            print(f"ok   {check.__name__}")
    print(f"\n{len(checks) - failed} of {len(checks)} self-test checks passed")
    return 1 if failed else 0
