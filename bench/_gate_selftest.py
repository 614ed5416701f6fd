"""Self-test checks of the regression gate on repeats (part of ``compare.py --self-test``).

Constructed sets show the rule's edges; sets recorded on the shared 2-core machine
(``bench/results/gate-20261205/``, quick runs, 5 repeats each, while other processes used
up to ~1 core) show what it does with real noise: every unchanged run passes or is
undecided, every run with ``AGORA_BENCH_SLOWDOWN=0.25`` is flagged or undecided.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import compare as cmp
from bench._compare_selftest import LANES, _quiet

GATED = "arrow_heavy_vs_serial_cpu"  # one of compare.DEFAULT_GATES
# Constructed sets of a quiet machine (noise about ±6%): a baseline, a rerun of the
# unchanged tree, and the rerun with every subject pass 25% costlier (each ratio / 1.25).
QUIET_BASE = [8.62, 9.31, 9.01, 8.75, 9.46]
QUIET_UNCHANGED = [9.74, 8.40, 9.12, 10.05, 8.93]
QUIET_SLOWED = [round(v / 1.25, 3) for v in QUIET_UNCHANGED]
#: Campaigns recorded on the shared machine, each a folder of baseline.json, uNN.json
#: (unchanged tree) and sNN.json (AGORA_BENCH_SLOWDOWN=0.25), run in interleaved order:
#: a baseline of 5 repeats, and one of 15.
RECORDED_DIRS = [Path(__file__).resolve().parent / "results" / name
                 for name in ("gate-20261205", "gate-20261205-b15")]


def _recorded() -> list[tuple[dict[str, Any], dict[str, dict[str, Any]]]]:
    """(baseline, {run name: document}) of every recorded campaign."""
    out = []
    for folder in RECORDED_DIRS:
        runs = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
        base = runs.pop("baseline", None)
        assert base is not None and runs, f"recorded runs are missing from {folder}"
        out.append((base, runs))
    return out


def _gated_verdicts(base: dict[str, Any], doc: dict[str, Any]) -> dict[str, str]:
    return {r.metric: r.verdict for r in cmp.compare(base, doc, 0.25)
            if any(r.metric.endswith(end) for end in ("_cpu", "_cpu_s"))}


def _with_repeats(values: list[float], metric: str = GATED) -> dict[str, Any]:
    doc = copy.deepcopy(LANES)
    doc["ratios"][metric] = sorted(values)[len(values) // 2]
    doc["repeats"] = {metric: values}
    return doc


def _row(base: list[float], cur: list[float], metric: str = GATED) -> cmp.Row:
    rows = cmp.compare(_with_repeats(base, metric), _with_repeats(cur, metric), 0.25)
    return next(r for r in rows if r.metric == metric)


def check_repeats_unchanged_passes() -> None:
    row = _row(QUIET_BASE, QUIET_UNCHANGED)
    assert row.verdict == "ok", row
    assert "interval" in row.note and "ruled out" in row.note, row.note
    for base, runs in _recorded():
        unchanged = {name: doc for name, doc in runs.items() if name.startswith("u")}
        assert len(unchanged) >= 6, sorted(runs)
        for name, doc in unchanged.items():
            verdicts = _gated_verdicts(base, doc)
            assert len(verdicts) == 5, verdicts  # every CPU metric was judged
            assert "REGRESSED" not in verdicts.values(), (name, verdicts)


def check_repeats_slowdown_caught() -> None:
    row = _row(QUIET_BASE, QUIET_SLOWED)
    assert row.verdict == "REGRESSED", row
    assert "beyond doubt" in row.note, row.note
    latency = [0.10, 0.11, 0.105, 0.098, 0.102]
    row = _row(latency, [v * 1.3 for v in latency], "pipeline_fixed_cpu_s")  # lower is better
    assert row.verdict == "REGRESSED", row
    for base, runs in _recorded():
        slowed = {name: doc for name, doc in runs.items() if name.startswith("s")}
        assert len(slowed) >= 4, sorted(runs)
        for name, doc in slowed.items():
            assert doc["injected_slowdown"] == 0.25, name
            verdicts = _gated_verdicts(base, doc)
            assert "REGRESSED" in verdicts.values(), (name, verdicts)  # the run fails


def check_noisy_run_is_undecided() -> None:
    # a current run whose repeats swing ±60% can neither prove nor rule out a 25% slowdown
    row = _row(QUIET_BASE, [4.0, 7.2, 8.0, 9.0, 13.6])
    assert row.verdict == "undecided", row
    assert "add repeats" in row.note, row.note


def check_wall_metrics_are_advisory() -> None:
    metric = "arrow_identity_vs_ppe_ipc"  # wall time: judged, never gating by default
    row = _row(QUIET_BASE, QUIET_SLOWED, metric)
    assert row.verdict == "REGRESSED (advisory)" and not row.regressed, row
    rows = cmp.compare(_with_repeats(QUIET_BASE, metric), _with_repeats(QUIET_SLOWED, metric),
                       0.25, gates=[metric])
    assert next(r for r in rows if r.metric == metric).regressed, rows


def check_exit_codes_and_merged_runs() -> None:
    with tempfile.TemporaryDirectory(prefix="agora-gate-") as tmp:
        root = Path(tmp)

        def write(name: str, values: list[float]) -> str:
            (root / name).write_text(json.dumps(_with_repeats(values)))
            return str(root / name)

        base = write("base.json", QUIET_BASE)
        noisy = write("noisy.json", [4.0, 7.2, 8.0, 9.0, 13.6])
        argv = ["--baseline", base, "--current"]
        assert _quiet(cmp.main, [*argv, write("same.json", QUIET_UNCHANGED)]) == 0
        assert _quiet(cmp.main, [*argv, write("slow.json", QUIET_SLOWED)]) == 1
        assert _quiet(cmp.main, [*argv, noisy]) == 3  # undecided: run again
        # two more quiet runs next to the noisy one decide it: 15 repeats, median 8.93
        more = [write(f"more{i}.json", QUIET_UNCHANGED) for i in range(2)]
        assert _quiet(cmp.main, [*argv, noisy, "--current", more[0], "--current", more[1]]) == 0
        merged = cmp.merge_runs([json.loads(Path(p).read_text()) for p in (noisy, *more)])
        assert len(merged["repeats"][GATED]) == 15, merged
        scaling = root / "scaling.json"
        scaling.write_text(json.dumps({"kind": "bench_scaling", "scaling": {}}))
        assert _quiet(cmp.main, [*argv, noisy, "--current", str(scaling)]) == 2
        for bad in (["--noise-threshold", "-0.1"], ["--noise-threshold", "0.3"],
                    ["--must-catch", "0.05"]):
            assert _quiet(cmp.main, [*argv, noisy, *bad]) == 2, bad


def check_bad_repeats_rejected() -> None:
    for bad in ([9.0, 9.1], [9.0, 0.0, 9.2], "9.0", [9.0, "x", 9.2]):
        doc = _with_repeats(QUIET_BASE)
        doc["repeats"][GATED] = bad
        try:
            cmp.compare(_with_repeats(QUIET_BASE), doc, 0.25)
        except cmp.UsageError as exc:
            assert GATED in str(exc) and "rerun" in str(exc), exc
        else:
            raise AssertionError(f"repeats {bad!r} were accepted")


def check_slowdown_setting() -> None:
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

        def one_pass() -> int:  # 20 ms of CPU work
            until = time.thread_time() + 0.02
            while time.thread_time() < until:
                pass
            return 7

        run = inject.slowed(one_pass)
        assert run() == 7  # the first call calibrates, and the pass's rows come back
        began = time.thread_time()
        assert run() == 7
        spent = time.thread_time() - began
        assert spent >= 0.029, spent  # the pass and half its CPU cost again
    finally:
        if saved is None:
            os.environ.pop(inject.SLOWDOWN_ENV, None)
        else:
            os.environ[inject.SLOWDOWN_ENV] = saved


def check_too_few_repeats_refused() -> None:
    from bench import bench_process_lanes

    try:
        _quiet(bench_process_lanes.main, ["--quick", "--repeats", "2"])
    except SystemExit as exc:
        assert exc.code == 2, exc.code  # argparse's usage error, before anything runs
    else:
        raise AssertionError("--repeats 2 was accepted")


REPEAT_CHECKS: list[Callable[[], None]] = [
    check_repeats_unchanged_passes,
    check_repeats_slowdown_caught,
    check_noisy_run_is_undecided,
    check_wall_metrics_are_advisory,
    check_exit_codes_and_merged_runs,
    check_bad_repeats_rejected,
    check_slowdown_setting,
    check_too_few_repeats_refused,
]
