"""Small charts as inline SVG text, drawn on the server.

The control tower must work offline and without a build step, so its charts are plain SVG
markup generated here rather than a JavaScript library. Three shapes cover the page: a
sparkline (one KPI per week), horizontal bars (lines per risk band) and a line chart with
several series and horizontal reference levels (calibration, history against forecast).

Every function returns a string that is safe to put in a template as is: labels are escaped,
numbers are formatted, and a missing value (``None`` or NaN) leaves a gap instead of a zero,
so a week without events is not drawn as a collapse of the KPI.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

Value = float | int | None


@dataclass(frozen=True)
class Series:
    """One line of a line chart: its values at the chart's x positions, a colour and a name."""

    name: str
    values: Sequence[Value]
    colour: str
    dashed: bool = False


@dataclass(frozen=True)
class Level:
    """A horizontal reference line (a reorder point, an order-up-to level)."""

    name: str
    value: float
    colour: str


def _finite(value: Value) -> bool:
    return value is not None and math.isfinite(float(value))


def _segments(points: Sequence[tuple[float, Value]]) -> list[list[tuple[float, float]]]:
    """Runs of consecutive finite values: a missing value breaks the line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if _finite(y):
            runs[-1].append((x, float(y)))  # type: ignore[arg-type]
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def _polyline(points: Sequence[tuple[float, float]], colour: str, width: float, dash: str) -> str:
    if len(points) == 1:
        x, y = points[0]
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{width + 0.5:.1f}" fill="{colour}"/>'
    text = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return (
        f'<polyline fill="none" stroke="{colour}" stroke-width="{width}"{dash} '
        f'stroke-linejoin="round" stroke-linecap="round" points="{text}"/>'
    )


def _range(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high - low < 1e-12:
        pad = abs(high) * 0.1 or 1.0
        return low - pad, high + pad
    return low, high


def sparkline(
    values: Sequence[Value],
    *,
    width: int = 160,
    height: int = 36,
    colour: str = "#2563eb",
    title: str = "",
) -> str:
    """A line through ``values`` (oldest first) with the last point marked; gaps for missing
    values. An empty or all-missing series draws a flat dashed base line, so a tile keeps its
    shape and says plainly that there is nothing to show."""
    label = html.escape(title)
    head = (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{label}"><title>{label}</title>'
    )
    finite = [float(v) for v in values if _finite(v)]  # type: ignore[arg-type]
    if not finite:
        y = height - 2
        return (
            head + f'<line x1="1" y1="{y}" x2="{width - 1}" y2="{y}" stroke="#cbd5e1" '
            'stroke-dasharray="3 3"/></svg>'
        )
    low, high = _range(finite)
    n = max(len(values), 2)
    pad = 3.0

    def place(i: int, v: Value) -> tuple[float, Value]:
        x = pad + i * (width - 2 * pad) / (n - 1)
        if not _finite(v):
            return x, None
        return x, height - pad - (float(v) - low) / (high - low) * (height - 2 * pad)  # type: ignore[arg-type]

    placed = [place(i, v) for i, v in enumerate(values)]
    lines = "".join(_polyline(run, colour, 1.6, "") for run in _segments(placed))
    last = next(((x, y) for x, y in reversed(placed) if _finite(y)), None)
    dot = ""
    if last is not None:
        dot = f'<circle cx="{last[0]:.1f}" cy="{float(last[1]):.1f}" r="2.4" fill="{colour}"/>'  # type: ignore[arg-type]
    return head + lines + dot + "</svg>"


def bars(
    rows: Sequence[tuple[str, Sequence[float]]],
    colours: Sequence[str],
    *,
    width: int = 420,
    bar_height: int = 16,
    label_width: int = 110,
    title: str = "",
) -> str:
    """Horizontal stacked bars: one row per label, the row's parts side by side in
    ``colours``' order, all rows on one scale (the largest row total fills the width). Each
    row ends with its total."""
    label = html.escape(title)
    gap = 6
    height = max(len(rows), 1) * (bar_height + gap) + gap
    total_width = width - label_width - 44
    top = max((sum(parts) for _, parts in rows), default=0.0) or 1.0
    out = [
        f'<svg class="bars" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{label}"><title>{label}</title>'
    ]
    for i, (name, parts) in enumerate(rows):
        y = gap + i * (bar_height + gap)
        out.append(
            f'<text x="{label_width - 6}" y="{y + bar_height - 4}" text-anchor="end" '
            f'class="axis">{html.escape(name)}</text>'
        )
        x = float(label_width)
        for part, colour in zip(parts, colours, strict=False):
            span = part / top * total_width
            if span > 0:
                out.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{span:.1f}" height="{bar_height}" '
                    f'fill="{colour}"><title>{html.escape(name)}: {part:g}</title></rect>'
                )
            x += span
        out.append(
            f'<text x="{x + 4:.1f}" y="{y + bar_height - 4}" class="axis">{sum(parts):g}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def line_chart(
    series: Sequence[Series],
    *,
    levels: Sequence[Level] = (),
    x_labels: Sequence[str] = (),
    width: int = 320,
    height: int = 120,
    y_min: float | None = None,
    y_max: float | None = None,
    diagonal: bool = False,
    title: str = "",
) -> str:
    """Several series over shared x positions (``max(len(values))`` of them), optional
    horizontal ``levels``, the first and last ``x_labels`` under the axis, and a dashed
    ``diagonal`` from (0, y_min) to (end, y_max), the line a calibrated model's points sit on."""
    label = html.escape(title)
    left, right, top_pad, bottom = 34, 8, 8, 18
    values = [float(v) for s in series for v in s.values if _finite(v)]  # type: ignore[arg-type]
    values += [level.value for level in levels]
    low, high = _range(values or [0.0, 1.0])
    low = low if y_min is None else y_min
    high = high if y_max is None else y_max
    n = max((len(s.values) for s in series), default=2)
    n = max(n, 2)
    plot_w, plot_h = width - left - right, height - top_pad - bottom

    def xy(i: float, v: float) -> tuple[float, float]:
        x = left + i * plot_w / (n - 1)
        y = top_pad + (1 - (v - low) / ((high - low) or 1.0)) * plot_h
        return x, min(max(y, top_pad), top_pad + plot_h)

    out = [
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{label}"><title>{label}</title>',
        f'<rect x="{left}" y="{top_pad}" width="{plot_w}" height="{plot_h}" fill="#f8fafc" '
        'stroke="#e2e8f0"/>',
        f'<text x="{left - 4}" y="{top_pad + 8}" text-anchor="end" class="axis">'
        f"{_tick(high)}</text>",
        f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end" class="axis">'
        f"{_tick(low)}</text>",
    ]
    if diagonal:
        (x0, y0), (x1, y1) = xy(0, low), xy(n - 1, high)
        out.append(
            f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="#94a3b8" '
            'stroke-dasharray="4 3"/>'
        )
    for level in levels:
        (x0, y), (x1, _) = xy(0, level.value), xy(n - 1, level.value)
        out.append(
            f'<line x1="{x0:.1f}" y1="{y:.1f}" x2="{x1:.1f}" y2="{y:.1f}" stroke="{level.colour}" '
            f'stroke-width="1.2"><title>{html.escape(level.name)}: {level.value:g}</title></line>'
        )
    for s in series:
        placed = [
            (xy(i, 0)[0], None if not _finite(v) else xy(i, float(v))[1])
            for i, v in enumerate(s.values)
        ]  # type: ignore[arg-type]
        dash = ' stroke-dasharray="4 3"' if s.dashed else ""
        out.extend(_polyline(run, s.colour, 1.6, dash) for run in _segments(placed))
    if x_labels:
        out.append(
            f'<text x="{left}" y="{height - 4}" class="axis">{html.escape(x_labels[0])}</text>'
        )
        out.append(
            f'<text x="{width - right}" y="{height - 4}" text-anchor="end" class="axis">'
            f"{html.escape(x_labels[-1])}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _tick(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.0f}"
    return f"{value:.2g}"


def gauge(
    value: float,
    low_mark: float,
    high_mark: float,
    *,
    width: int = 260,
    height: int = 18,
    title: str = "",
) -> str:
    """A bar of ``value`` from zero with two marks: ``low_mark`` (red: a reorder point) and
    ``high_mark`` (green: an order-up-to level). A negative value (more backordered than held)
    draws left of the zero line."""
    label = html.escape(title)
    low = min(value, 0.0)
    top = max(value, high_mark, low_mark, 1.0) * 1.08
    span = (top - low) or 1.0

    def x(v: float) -> float:
        return 1 + (v - low) / span * (width - 2)

    start, end = sorted((x(0.0), x(value)))
    colour = "#93c5fd" if value >= low_mark else "#fca5a5"
    return (
        f'<svg class="gauge" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{label}"><title>{label}</title>'
        f'<rect x="1" y="5" width="{width - 2}" height="8" fill="#f1f5f9"/>'
        f'<rect x="{start:.1f}" y="5" width="{end - start:.1f}" height="8" fill="{colour}"/>'
        f'<line x1="{x(low_mark):.1f}" x2="{x(low_mark):.1f}" y1="1" y2="{height - 1}" '
        f'stroke="#dc2626" stroke-width="2"><title>reorder point {low_mark:g}</title></line>'
        f'<line x1="{x(high_mark):.1f}" x2="{x(high_mark):.1f}" y1="1" y2="{height - 1}" '
        f'stroke="#16a34a" stroke-width="2"><title>order-up-to {high_mark:g}</title></line>'
        "</svg>"
    )
