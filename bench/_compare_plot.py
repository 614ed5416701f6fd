"""SVG charts of a comparison (``compare.py --plot-dir``): no plotting dependency."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import _svg

if TYPE_CHECKING:
    from bench.compare import Row


def plot(rows: list[Row], baseline: Any, current: Any, plot_dir: Path) -> list[Path]:
    """Write SVG charts to ``plot_dir``; returns the files written."""
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    both = [r for r in rows if r.baseline and r.current is not None]
    if both:
        colors = {"REGRESSED": _svg.BAD_COLOR, "improved": _svg.GOOD_COLOR}
        svg = _svg.hbars(
            "current vs baseline (bar = value / baseline; dashed line = baseline)",
            [r.metric for r in both],
            [
                _svg.Series(
                    "baseline",
                    [1.0] * len(both),
                    _svg.BASELINE_COLOR,
                    labels=[f"{r.baseline:.4g}" for r in both],
                ),
                _svg.Series(
                    "current",
                    [max(0.0, r.current / r.baseline) for r in both],
                    _svg.CURRENT_COLOR,
                    colors=[colors.get(r.verdict, _svg.CURRENT_COLOR) for r in both],
                    labels=[f"{r.current:.4g} ({r.verdict})" for r in both],
                ),
            ],
            reference=1.0,
            note="red: regressed beyond the threshold, green: improved beyond it",
        )
        written.append(_write(plot_dir / "comparison.svg", svg))
    if current.get("kind") == "bench_scaling":
        written += plot_scaling(baseline, current, plot_dir)
    return written


def plot_scaling(baseline: Any, current: Any, plot_dir: Path) -> list[Path]:
    docs = [("baseline", baseline, _svg.BASELINE_COLOR), ("current", current, _svg.CURRENT_COLOR)]
    # (main, workers) shades per document: a darker and a lighter tone of one hue
    shades = {"baseline": ("#7d8894", "#c3cad2"), "current": ("#2f5f99", "#8fb3de")}
    configs = [n for n in current["scaling"]["configs"] if n != "serial"]
    series = [
        _svg.Series(
            label,
            [doc["scaling"]["configs"].get(n, {}).get("ratio_to_w1_d1", 0.0) for n in configs],
            color,
        )
        for label, doc, color in docs
    ]
    out = [
        _write(
            plot_dir / "scaling_throughput.svg",
            _svg.vbars(
                "Arrow lane, heavy transform: throughput vs workers x depth",
                configs,
                series,
                "ratio to w=1, d=1",
                note="w = max_workers, d = max_in_flight_batches",
            ),
        )
    ]
    sizes = current["memory"]["sizes"]
    series = []
    for label, doc, _color in docs:
        runs = doc["memory"]["runs"]
        for key, short, color in zip(
            ("main_peak_rss_mb", "workers_peak_rss_mb"),
            ("main", "workers"),
            shades[label],
            strict=True,
        ):
            series.append(
                _svg.Series(
                    f"{label} {short}", [runs.get(str(n), {}).get(key, 0.0) for n in sizes], color
                )
            )
    out.append(
        _write(
            plot_dir / "scaling_memory.svg",
            _svg.vbars(
                "Peak RSS vs input size (CSV -> Arrow lane -> CSV)",
                [f"{n:,} rows" for n in sizes],
                series,
                "peak RSS (MiB)",
                note="should stay flat as the input grows",
            ),
        )
    )
    return out


def _write(path: Path, svg: str) -> Path:
    path.write_text(svg)
    return path


