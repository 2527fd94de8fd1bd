"""Chart geometry for server-rendered SVG: columns (stacked), dot ranges and bars.

Functions here turn figures into shapes in a chart's own coordinates (its
``viewBox``); the templates (``pages/reports/_charts.html``) draw them. All text
passes through the templates' escaping. Colours are chosen for 3:1 contrast
against the white panel at least (WCAG 1.4.11), text for 4.5:1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

PANEL = "#ffffff"
TEXT = "#111820"
MUTED = "#4a5866"
GRID = "#d5dbe1"
# Series colours: calm, told apart by lightness as well as hue.
BLUE = "#1f5f8b"
AMBER = "#a34f00"
SLATE = "#67717b"
TEAL = "#2a7f77"
SERIES_COLOURS = (BLUE, AMBER, SLATE, TEAL)

FONT = 14
LABEL_CHARS = 22


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top`` (about ``count`` of them)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def short(text: str, limit: int = LABEL_CHARS) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (the full text goes in a title)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass
class Tick:
    pos: float
    label: str


@dataclass
class Segment:
    x: float
    y: float
    w: float
    h: float
    colour: str
    title: str


@dataclass
class Column:
    label: str  # under the axis ('' when skipped for room)
    title: str  # the column's full description (its <title>)
    x: float
    w: float
    segments: list[Segment]
    total: str
    total_y: float


@dataclass
class ColumnChart:
    width: int
    height: int
    left: float
    top: float
    bottom: float  # y of the x axis
    right: float
    columns: list[Column]
    yticks: list[Tick]
    legend: list[tuple[str, str]]  # (colour, name)
    show_totals: bool


def column_chart(categories: Sequence[tuple[str, str]], series: Sequence[tuple[str, str,
                 Sequence[int]]], fmt: Callable[[float], str], *, width: int = 1200,
                 height: int = 320) -> ColumnChart:
    """Stacked columns: ``categories`` (axis label, full label), ``series`` (name, colour,
    one value per category), ``fmt`` formats numbers in the visitor's locale."""
    left, right, top, bottom = 56.0, width - 12.0, 34.0 if len(series) > 1 else 16.0, height - 34.0
    totals = [sum(s[2][i] for s in series) for i in range(len(categories))]
    ticks = nice_ticks(max(totals, default=0))
    top_value = ticks[-1]
    plot_h = bottom - top
    slot = (right - left) / max(1, len(categories))
    bar_w = max(1.0, slot * (0.7 if slot > 6 else 0.9))
    label_every = max(1, math.ceil(len(categories) * 58 / (right - left)))
    show_totals = slot >= 26
    columns = []
    for i, (axis_label, full_label) in enumerate(categories):
        x = left + i * slot + (slot - bar_w) / 2
        y = bottom
        segments = []
        for name, colour, values in series:
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / top_value
            y -= h
            segments.append(Segment(x, y, bar_w, h, colour, f"{full_label}: {name} {fmt(value)}"))
        columns.append(Column(axis_label if i % label_every == 0 else "", full_label, x, bar_w,
                              segments, fmt(totals[i]) if totals[i] else "", y - 5))
    yticks = [Tick(bottom - plot_h * t / top_value, fmt(t)) for t in ticks]
    legend = [(colour, name) for name, colour, _ in series] if len(series) > 1 else []
    return ColumnChart(width, height, left, top, bottom, right, columns, yticks, legend,
                       show_totals)


@dataclass
class RangeRow:
    label: str
    title: str
    y: float
    x_median: float | None
    x_p90: float | None
    text: str


@dataclass
class RangeChart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    rows: list[RangeRow]
    xticks: list[Tick]
    legend: list[tuple[str, str]] = field(default_factory=list)


def range_chart(rows: Sequence[tuple[str, float | None, float | None, str]],
                tick_fmt: Callable[[float], str], *, width: int = 600,
                median_name: str = "", p90_name: str = "") -> RangeChart:
    """One row per group: a dot at the median, a ring at the 90th percentile, a line
    between. ``rows``: (name, median, p90, text shown at the row's end); values in
    minutes."""
    row_h = 34.0
    top, left = 34.0, 170.0
    right = width - 130.0
    height = int(top + row_h * max(1, len(rows)) + 34)
    bottom = height - 30.0
    ticks = nice_ticks(max((p or m or 0 for _, m, p, _ in rows), default=0), 4)
    top_value = ticks[-1]

    def x_of(v: float | None) -> float | None:
        return None if v is None else left + (right - left) * v / top_value

    shaped = [RangeRow(short(name), name, top + row_h * i + row_h / 2, x_of(m), x_of(p), text)
              for i, (name, m, p, text) in enumerate(rows)]
    xticks = [Tick(left + (right - left) * t / top_value, tick_fmt(t)) for t in ticks]
    return RangeChart(width, height, left, right, top, bottom, shaped, xticks,
                      [(BLUE, median_name), (BLUE, p90_name)])


@dataclass
class BarRow:
    label: str
    title: str
    y: float
    w: float
    text: str


@dataclass
class BarChart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    bar_h: float
    rows: list[BarRow]
    xticks: list[Tick]
    colour: str


def bar_chart(rows: Sequence[tuple[str, float | None, str]], tick_fmt: Callable[[float], str],
              *, width: int = 600, top_value: float | None = None,
              colour: str = AMBER) -> BarChart:
    """Horizontal bars: (name, value or None, text at the bar's end)."""
    row_h, top, left = 34.0, 12.0, 170.0
    right = width - 90.0
    height = int(top + row_h * max(1, len(rows)) + 34)
    bottom = height - 30.0
    ticks = nice_ticks(top_value or max((v or 0 for _, v, _ in rows), default=0), 4)
    scale = ticks[-1]
    shaped = [BarRow(short(name), name, top + row_h * i + row_h / 2,
                     (right - left) * (v or 0) / scale, text)
              for i, (name, v, text) in enumerate(rows)]
    xticks = [Tick(left + (right - left) * t / scale, tick_fmt(t)) for t in ticks]
    return BarChart(width, height, left, right, top, bottom, 18.0, shaped, xticks, colour)
