"""Small self-contained SVG bar charts for benchmark comparisons (no plotting dependency).

Two shapes: :func:`hbars` (one row per metric, a bar per series: baseline vs current)
and :func:`vbars` (one group per category, a bar per series: scaling tables). Both
return the SVG document as a string; values must be finite and non-negative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

FONT = 'font-family="sans-serif"'
BASELINE_COLOR = "#9aa5b1"
CURRENT_COLOR = "#3b6ea8"
BAD_COLOR = "#c0392b"
GOOD_COLOR = "#2e8b57"


@dataclass(frozen=True)
class Series:
    """One bar per category; ``colors`` (optional) overrides ``color`` per category, and
    ``labels`` (optional) is the text printed at the end of each bar."""

    name: str
    values: Sequence[float]
    color: str
    colors: Sequence[str] | None = None
    labels: Sequence[str] | None = None


def _text(
    x: float, y: float, text: str, anchor: str = "start", extra: str = "", size: int = 11
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {FONT} font-size="{size}" '
        f"{extra}>{escape(text)}</text>"
    )


def _rect(x: float, y: float, w: float, h: float, color: str, title: str) -> str:
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0.0):.1f}" height="{max(h, 0.0):.1f}" '
        f'fill="{color}"><title>{escape(title)}</title></rect>'
    )


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    out = []
    for i, s in enumerate(series):
        out.append(_rect(x + i * 130, y - 9, 10, 10, s.color, s.name))
        out.append(_text(x + i * 130 + 14, y, s.name))
    return out


def _document(width: float, height: float, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}">\n<rect width="100%" height="100%" '
        f'fill="white"/>\n' + "\n".join(body) + "\n</svg>\n"
    )


def _check(categories: Sequence[str], series: Sequence[Series]) -> float:
    for s in series:
        if len(s.values) != len(categories):
            raise ValueError(
                f"series {s.name!r} has {len(s.values)} values for {len(categories)} categories"
            )
        if any(not math.isfinite(v) or v < 0 for v in s.values):
            raise ValueError(f"series {s.name!r}: bar values must be finite and >= 0")
    return max([v for s in series for v in s.values] + [1e-12])


def hbars(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    reference: float | None = None,
    note: str = "",
) -> str:
    """Horizontal grouped bars, one row per category; ``reference`` draws a dashed line
    at that value (e.g. 1.0 when values are normalised to the baseline)."""
    top = _check(categories, series)
    if reference is not None:
        top = max(top, reference)
    # ~6.5 px per character of 11 px sans-serif: room for the longest metric name
    label_w = max(120.0, 6.5 * max((len(c) for c in categories), default=0) + 20)
    plot_w, bar_h, gap = 420.0, 12.0, 10.0
    row_h = bar_h * len(series) + gap
    height = 60 + row_h * len(categories) + 30
    scale = plot_w / (top * 1.15)
    body = [_text(10, 20, title, extra='font-weight="bold"'), *_legend(series, label_w, 40)]
    y = 55.0
    for i, cat in enumerate(categories):
        body.append(_text(label_w - 8, y + row_h / 2, cat, anchor="end"))
        for j, s in enumerate(series):
            v = s.values[i]
            color = s.colors[i] if s.colors else s.color
            by = y + j * bar_h
            body.append(_rect(label_w, by, v * scale, bar_h - 2, color, f"{s.name}: {v:g}"))
            label = s.labels[i] if s.labels else f"{v:.3g}"
            body.append(_text(label_w + v * scale + 4, by + bar_h - 3, label))
        y += row_h
    if reference is not None:
        x = label_w + reference * scale
        body.append(
            f'<line x1="{x:.1f}" y1="50" x2="{x:.1f}" y2="{y:.1f}" stroke="#333" '
            f'stroke-dasharray="4 3"/>'
        )
    if note:
        body.append(_text(10, y + 20, note, extra='fill="#555"'))
    return _document(label_w + plot_w + 140, height, body)


def vbars(
    title: str, categories: Sequence[str], series: Sequence[Series], y_label: str, note: str = ""
) -> str:
    """Vertical grouped bars, one group per category, with a value label on each bar."""
    top = _check(categories, series)
    left, plot_h, bar_w, gap = 60.0, 240.0, 22.0, 18.0
    group_w = bar_w * len(series) + gap
    width = left + group_w * len(categories) + 40
    base_y = 60 + plot_h
    scale = plot_h / (top * 1.15)
    body = [
        _text(10, 20, title, extra='font-weight="bold"'),
        *_legend(series, left, 40),
        f'<line x1="{left}" y1="{base_y}" x2="{width - 20:.1f}" y2="{base_y}" stroke="#333"/>',
        _text(
            14,
            60 + plot_h / 2,
            y_label,
            anchor="middle",
            extra=f'transform="rotate(-90 14 {60 + plot_h / 2:.1f})"',
        ),
    ]
    x = left + gap / 2
    for i, cat in enumerate(categories):
        for j, s in enumerate(series):
            v = s.values[i]
            bx, h = x + j * bar_w, v * scale
            color = s.colors[i] if s.colors else s.color
            body.append(_rect(bx, base_y - h, bar_w - 2, h, color, f"{s.name} {cat}: {v:g}"))
            label = s.labels[i] if s.labels else f"{v:.3g}"
            body.append(_text(bx + bar_w / 2, base_y - h - 3, label, anchor="middle", size=9))
        body.append(_text(x + (group_w - gap) / 2, base_y + 14, cat, anchor="middle"))
        x += group_w
    if note:
        body.append(_text(10, base_y + 34, note, extra='fill="#555"'))
    return _document(max(width, left + 130 * len(series) + 20), base_y + 44, body)
