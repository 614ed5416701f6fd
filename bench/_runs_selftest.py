"""Self-test checks of the run-by-run gate (part of ``compare.py --self-test``).

Constructed baselines of several runs show the rule's edges: a run that moves with the
baseline's own spread passes, a 25% slowdown fails, one disturbed run is undecided (and
the runs after it decide), and a baseline too small to estimate a spread is refused. The
campaign recorded on the shared 2-core machine (``bench/results/gate-20261206-runs/``)
is judged again from its files: every unchanged gate passes, every slowed gate fails.
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import _noise
from bench import compare as cmp
from bench._compare_selftest import LANES, _quiet

METRIC = "arrow_heavy_vs_serial_cpu"  # gated, higher is better
#: Run-level offsets of a quiet baseline (about ±3% between runs), of a noisy one (about
#: ±9%), and the repeats' own wobble inside a run.
OFFSETS = [1.00, 1.04, 0.97, 1.02, 0.96, 1.03, 0.99, 1.01]
NOISY = [1.00, 1.12, 0.91, 1.06, 0.88, 1.09, 0.95, 1.03]
WOBBLE = [1.00, 0.98, 1.03, 0.99, 1.02]
RESULTS = Path(__file__).resolve().parent / "results"
CAMPAIGN = RESULTS / "gate-20261206-c3"


def _run(level: float, metric: str = METRIC) -> dict[str, Any]:
    doc = copy.deepcopy(LANES)
    values = [round(level * w, 4) for w in WOBBLE]
    doc["ratios"][metric] = sorted(values)[2]
    doc["repeats"] = {metric: values}
    return doc


def _judge(base_levels: list[float], cur_levels: list[float]) -> cmp.Row:
    base = [_run(v) for v in base_levels]
    cur = [_run(v) for v in cur_levels]
    rows = cmp.compare(cmp.merge_runs(base), cmp.merge_runs(cur), 0.25,
                       baseline_runs=[d["repeats"] for d in base],
                       current_runs=[d["repeats"] for d in cur])
    return next(r for r in rows if r.metric == METRIC)


def check_t_quantile() -> None:
    # Student's t, one-sided 0.99, from tables
    for df, exact in ((5, 3.365), (9, 2.821), (20, 2.528), (60, 2.390)):
        got = _noise.t_quantile(0.99, df)
        assert abs(got / exact - 1) < 0.005, (df, got, exact)


def check_runs_unchanged_passes_and_slowdown_fails() -> None:
    row = _judge(OFFSETS, [1.01])
    assert row.verdict == "ok", row
    assert "(1 vs 8 runs)" in row.note and "ruled out" in row.note, row.note
    row = _judge(OFFSETS, [1.01 / 1.25])
    assert row.verdict == "REGRESSED", row
    row = _judge(OFFSETS, [1.25])  # faster beyond doubt
    assert row.verdict == "improved", row


def check_one_disturbed_run_is_undecided_then_decided() -> None:
    # against a noisy baseline one run 12% slower than usual is neither proof nor
    # all-clear, and neither is one run 25% slower; more runs decide both
    disturbed = 1 / 1.12
    assert _judge(NOISY, [disturbed]).verdict == "undecided"
    assert _judge(NOISY, [disturbed, 1.0, 1.02]).verdict == "ok"
    assert _judge(NOISY, [1 / 1.25]).verdict == "undecided"
    assert _judge(NOISY, [1 / 1.25, 1 / 1.27, 1 / 1.24]).verdict == "REGRESSED"


def check_small_run_baselines_refused() -> None:
    try:
        _noise.judge_runs(METRIC, [[1.0, 1.0, 1.0]] * 4, [[1.0, 1.0, 1.0]], True, 0.10)
    except ValueError as exc:
        assert "at least 5 runs" in str(exc), exc
    else:
        raise AssertionError("a baseline of 4 runs was accepted")
    with tempfile.TemporaryDirectory(prefix="agora-runs-") as tmp:
        paths = []
        for i, level in enumerate(OFFSETS):
            path = Path(tmp) / f"b{i}.json"
            path.write_text(json.dumps(_run(level)))
            paths.append(str(path))
        cur = Path(tmp) / "cur.json"
        cur.write_text(json.dumps(_run(1.0)))
        argv = ["--current", str(cur)]
        for p in paths[:3]:
            argv += ["--baseline", p]
        assert _quiet(cmp.main, argv) == 2  # three baseline runs: refused, named
        for p in paths[3:]:
            argv += ["--baseline", p]
        assert _quiet(cmp.main, argv) == 0  # eight: judged run by run


def _gates_of(folder: Path) -> dict[str, list[Path]]:
    """{gate name: its runs in order} from a campaign folder (``u03-1.json``, …)."""
    out: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*-[0-9].json")):
        name, _, attempt = path.stem.rpartition("-")
        out.setdefault(name, []).insert(int(attempt) - 1, path)
    return out


def _verdict(base: list[dict[str, Any]], runs: list[dict[str, Any]]) -> int:
    rows = cmp.compare(cmp.merge_runs(base), cmp.merge_runs(runs), 0.25,
                       baseline_runs=[d["repeats"] for d in base],
                       current_runs=[d["repeats"] for d in runs])
    return 1 if any(r.regressed for r in rows) else 3 if any(r.undecided for r in rows) else 0


def check_recorded_campaign_by_runs() -> None:
    base = [json.loads(p.read_text()) for p in sorted((RESULTS / "baseline").glob("*.json"))]
    assert len(base) >= _noise.MIN_BASELINE_RUNS, len(base)
    gates = _gates_of(CAMPAIGN)
    logged = dict(re.findall(r"(\w+) verdict exit (\d)", (CAMPAIGN / "log.txt").read_text()))
    unchanged = [g for g in gates if g.startswith("u")]
    slowed = [g for g in gates if g.startswith("s")]
    assert len(unchanged) >= 20 and len(slowed) >= 5, sorted(gates)
    for name, paths in gates.items():
        docs = [json.loads(p.read_text()) for p in paths]
        assert all(d["injected_slowdown"] == (0.25 if name.startswith("s") else 0)
                   for d in docs), name
        # replay validate_release: measure again while REGRESSED or undecided
        for used in range(1, len(docs) + 1):
            verdict = _verdict(base, docs[:used])
            if verdict == 0:
                break
        assert used == len(docs), (name, used, len(docs))  # it stopped where the log did
        assert str(verdict) == logged[name], (name, verdict, logged[name])
        assert verdict == (1 if name.startswith("s") else 0), (name, verdict)


RUN_CHECKS: list[Callable[[], None]] = [
    check_t_quantile,
    check_runs_unchanged_passes_and_slowdown_fails,
    check_one_disturbed_run_is_undecided_then_decided,
    check_small_run_baselines_refused,
    check_recorded_campaign_by_runs,
]
