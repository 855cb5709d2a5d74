"""Small inline SVG line charts for the dashboard: drawn on the server, so the page needs no script,
no chart library and nothing from the internet. Each series is a line with dots and, optionally,
a shaded interval band."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape

from markupsafe import Markup

__all__ = ["Series", "line_chart", "nice_ticks"]

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 20, 48, 34


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    points: list[tuple[float, float, float | None, float | None]]  # (time, value, low, high)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2 or 5 times a power of ten apart)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high - low < 1e-6 * max(1.0, abs(low), abs(high)):  # a flat series (ticks are rounded to 10 decimals)
        low, high = low - 0.5, high + 0.5
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    if first > low:  # low / step underflowed (a subnormal low)
        first -= step
    ticks = []
    value = first
    while value <= high + step * 0.5 and len(ticks) < 3 * count:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _time_label(t: float, span: float) -> str:
    moment = datetime.fromtimestamp(t, timezone.utc)
    if span >= 2 * 86400:
        return moment.strftime("%m-%d %H:%M")
    if span >= 120:
        return moment.strftime("%H:%M")
    return moment.strftime("%H:%M:%S")


def _number(value: float, percent: bool) -> str:
    return f"{value * 100:.3g}%" if percent else f"{value:.3g}"


def line_chart(series: list[Series], title: str, y_label: str, percent: bool = False,
               y_range: tuple[float, float] | None = None) -> Markup:
    """An SVG chart of ``series`` over time (UTC), ``title`` above it; "No data yet" when nothing to draw."""
    points = [p for s in series for p in s.points]
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
            f'role="img" aria-label="{escape(title)}" class="chart">'
            f'<text x="{LEFT}" y="18" class="chart-title">{escape(title)}</text>')
    if not points:
        return Markup(head + f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="empty">No data yet'
                      "</text></svg>")
    times = [p[0] for p in points]
    values = [v for p in points for v in (p[1], p[2], p[3]) if v is not None and math.isfinite(v)]
    low, high = y_range if y_range else (min(values), max(values))
    ticks = nice_ticks(low, high)
    y0, y1 = ticks[0], ticks[-1]
    t0, t1 = min(times), max(times)
    if t1 - t0 < 1e-9:
        t0, t1 = t0 - 30, t1 + 30
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return TOP + plot_h - (min(max(v, y0), y1) - y0) / (y1 - y0) * plot_h

    parts = [head]
    for tick in ticks:
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" class="tick">'
                     f'{_number(tick, percent)}</text>')
    for i, anchor in enumerate(("start", "middle", "middle", "middle", "end")):
        t = t0 + (t1 - t0) * i / 4
        parts.append(f'<text x="{x(t):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="{anchor}" class="tick">'
                     f'{_time_label(t, t1 - t0)}</text>')
    parts.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" text-anchor="end" class="axis">time (UTC)</text>'
                 f'<text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" class="axis" '
                 f'transform="rotate(-90 14 {TOP + plot_h / 2})">{escape(y_label)}</text>')
    for s in series:
        band = [(p[0], p[2], p[3]) for p in s.points if p[2] is not None and p[3] is not None]
        if len(band) > 1:
            upper = " ".join(f"{x(t):.1f},{y(hi):.1f}" for t, _, hi in band)
            lower = " ".join(f"{x(t):.1f},{y(lo):.1f}" for t, lo, _ in reversed(band))
            parts.append(f'<polygon points="{upper} {lower}" fill="{s.color}" fill-opacity="0.15" stroke="none"/>')
        line = " ".join(f"{x(p[0]):.1f},{y(p[1]):.1f}" for p in s.points)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{s.color}" stroke-width="2"/>')
        for p in s.points:
            parts.append(f'<circle cx="{x(p[0]):.1f}" cy="{y(p[1]):.1f}" r="3" fill="{s.color}"/>')
    legend_x = LEFT
    for s in series:  # a row under the title
        parts.append(f'<rect x="{legend_x}" y="26" width="12" height="12" fill="{s.color}" rx="2"/>'
                     f'<text x="{legend_x + 16}" y="36" class="legend">{escape(s.name)}</text>')
        legend_x += 16 + 7 * len(s.name) + 20
    parts.append("</svg>")
    return Markup("".join(parts))
