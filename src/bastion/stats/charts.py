"""The portal's charts, laid out here and drawn as inline SVG by a template.

This module only computes geometry — bars, polylines, axis ticks, legend entries, each
with the text of its ``<title>`` — and ``templates/fragments/chart.html`` writes the
SVG. Keeping the markup in the template means every text that came from people (a
rule's name) goes through Jinja's autoescaping like the rest of the page, and no SVG
string is ever marked safe. Colours are SVG presentation attributes (``fill=``,
``stroke=``), which the portal's Content-Security-Policy allows, unlike ``style=``.
No script draws anything: the charts are there with JavaScript off, and each bar and
point says its value in a tooltip and to screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from bastion.stats.report import StatsReport

__all__ = ["Chart", "Series", "line_chart", "report_charts", "stacked_bars"]

WIDTH = 720
HEIGHT = 260
LEFT, RIGHT, TOP, BOTTOM = 52.0, 12.0, 14.0, 30.0
MAX_X_LABELS = 10
MAX_STACKED = 6
MAX_LEGEND = 40
GREEN, AMBER, RED, PURPLE = "#1a7f37", "#d98e04", "#c62828", "#7b3fbf"
BLUE, TEAL, SLATE, PINK = "#2457d6", "#0e9384", "#667085", "#c11574"
VIOLET = "#9e77ed"
PALETTE = (BLUE, TEAL, AMBER, PURPLE, PINK, GREEN, RED, SLATE)


@dataclass(frozen=True)
class Series:
    """One named series of values, one per day (None: no value that day)."""

    name: str
    values: Sequence[float | None]
    color: str


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    title: str


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Polyline:
    points: str
    stroke: str


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    fill: str
    title: str


@dataclass(frozen=True)
class LegendKey:
    fill: str
    label: str
    """The series' name, shortened to fit (``title`` has it whole)."""
    title: str


@dataclass
class Chart:
    """A chart's geometry in a ``width`` × ``height`` view box."""

    id: str
    title: str
    summary: str
    unit: str
    width: int = WIDTH
    height: int = HEIGHT
    left: float = LEFT
    top: float = TOP
    right: float = WIDTH - RIGHT
    bottom: float = HEIGHT - BOTTOM
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    lines: list[Polyline] = field(default_factory=list)
    dots: list[Dot] = field(default_factory=list)
    legend: list[LegendKey] = field(default_factory=list)
    empty: bool = True
    """Nothing to show in the period (the chart says so)."""


def nice_scale(largest: float, *, whole: bool = False) -> tuple[float, float]:
    """The top of a y axis at or above ``largest`` and its step: 1, 2 or 5 × 10^k,
    at most five steps (``whole``: steps of at least 1, for counts)."""
    if largest <= 0:
        return 1.0, 1.0
    lowest = 0 if whole else math.floor(math.log10(largest)) - 1
    for exponent in range(lowest, 400):
        for mantissa in (1, 2, 5):
            step = round(mantissa * 10.0**exponent, 12)
            if step * 5 >= largest:
                return round(step * math.ceil(largest / step), 12), step
    return largest, largest


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _day_label(day: date) -> str:
    return f"{day:%b} {day.day}"


def _frame(
    chart_id: str,
    title: str,
    summary: str,
    unit: str,
    days: Sequence[date],
    top_value: float,
    *,
    whole: bool,
) -> tuple[Chart, float, float]:
    """A chart with its axes: the y scale's top and the width of one day."""
    chart = Chart(chart_id, title, summary, unit)
    top, step = nice_scale(top_value, whole=whole)
    height = chart.bottom - chart.top
    n = max(1, round(top / step))
    for i in range(n + 1):
        value = step * i
        y = chart.bottom - height * value / top
        chart.y_ticks.append(Tick(round(y, 1), _number(value)))
    band = (chart.right - chart.left) / max(1, len(days))
    every = max(1, math.ceil(len(days) / MAX_X_LABELS))
    for i, day in enumerate(days):
        if i % every == 0:
            chart.x_ticks.append(Tick(round(chart.left + band * (i + 0.5), 1), _day_label(day)))
    return chart, top, band


def _legend(chart: Chart, series: Sequence[Series]) -> None:
    for s in series:
        label = s.name if len(s.name) <= MAX_LEGEND else s.name[: MAX_LEGEND - 1] + "…"
        chart.legend.append(LegendKey(s.color, label, s.name))


def stacked_bars(
    chart_id: str, title: str, days: Sequence[date], series: Sequence[Series], unit: str
) -> Chart:
    """Daily bars, one segment per series, stacked in the order given."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(days))]
    grand = sum(totals)
    summary = (
        f"{title} per day from {days[0]} to {days[-1]}: {_number(grand)} {unit} in all"
        + "".join(f"; {s.name} {_number(sum(v or 0 for v in s.values))}" for s in series)
        + "."
    )
    chart, top, band = _frame(
        chart_id, title, summary, unit, days, max(totals, default=0), whole=True
    )
    _legend(chart, series)
    height = chart.bottom - chart.top
    width = max(1.0, band * 0.72)
    for i, day in enumerate(days):
        base = chart.bottom
        x = chart.left + band * i + (band - width) / 2
        for s in series:
            value = s.values[i] or 0
            if value <= 0:
                continue
            h = height * value / top
            base -= h
            chart.bars.append(
                Bar(
                    round(x, 2),
                    round(base, 2),
                    round(width, 2),
                    round(h, 2),
                    s.color,
                    f"{day}: {s.name} {_number(value)} (of {_number(totals[i])})",
                )
            )
    return _filled(chart, grand > 0)


def line_chart(
    chart_id: str, title: str, days: Sequence[date], series: Sequence[Series], unit: str
) -> Chart:
    """One line per series; a day without a value breaks the line."""
    known = [v for s in series for v in s.values if v is not None]
    summary = f"{title} per day from {days[0]} to {days[-1]}, in {unit}" + (
        "".join(
            f"; highest {s.name} {_number(max(v for v in s.values if v is not None))}"
            for s in series
            if any(v is not None for v in s.values)
        )
        + "."
        if known
        else ": nothing in this period."
    )
    chart, top, band = _frame(
        chart_id, title, summary, unit, days, max(known, default=0), whole=False
    )
    _legend(chart, series)
    height = chart.bottom - chart.top
    for s in series:
        run: list[str] = []
        for i, value in enumerate(s.values):
            if value is None:
                if run:
                    chart.lines.append(Polyline(" ".join(run), s.color))
                run = []
                continue
            x = round(chart.left + band * (i + 0.5), 1)
            y = round(chart.bottom - height * value / top, 1)
            run.append(f"{x},{y}")
            chart.dots.append(Dot(x, y, s.color, f"{days[i]}: {s.name} {_number(value)} {unit}"))
        if run:
            chart.lines.append(Polyline(" ".join(run), s.color))
    return _filled(chart, bool(known))


def _filled(chart: Chart, has_data: bool) -> Chart:
    chart.empty = not has_data
    return chart


def _top_keys(totals: dict[str, int], limit: int) -> tuple[list[str], list[str]]:
    """The ``limit`` largest keys (more than ``limit``: one fewer, and the rest)."""
    ranked = [k for k, v in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])) if v > 0]
    if len(ranked) <= limit:
        return ranked, []
    return ranked[: limit - 1], ranked[limit - 1 :]


def _wait_unit(report: StatsReport) -> tuple[str, float]:
    longest = max(
        (d.time_to_decision.p95_s or 0 for d in report.days),
        default=0.0,
    )
    if longest >= 2 * 3600:
        return "hours", 3600.0
    if longest >= 120:
        return "minutes", 60.0
    return "seconds", 1.0


SOURCE_NAMES = {"api": "Sync API", "job": "Jobs", "live": "Live frames"}
SOURCE_COLORS = {"api": BLUE, "job": TEAL, "live": VIOLET}
STOPPED_NAMES = {"rule": "Auto-stop rule", "person": "Person", "api": "API", "ended": "Ended"}
STOPPED_COLORS = {"rule": RED, "person": BLUE, "api": TEAL, "ended": SLATE}


def report_charts(report: StatsReport) -> list[Chart]:
    """The statistics page's charts, in the page's order."""
    days = [d.day for d in report.days]
    decision_colors = {"allow": GREEN, "review": AMBER, "block": RED, "escalate": PURPLE}

    def column(pick: str, key: str) -> list[float | None]:
        return [float(getattr(d, pick).get(key, 0)) for d in report.days]

    sources = [
        Series(SOURCE_NAMES.get(k, k), column("analysed", k), SOURCE_COLORS.get(k, SLATE))
        for k in report.totals.analysed
    ]
    automatic = [
        Series(k, column("automatic", k), decision_colors.get(k, SLATE))
        for k in report.totals.automatic
    ]
    people = [
        Series(k, column("people", k), decision_colors.get(k, SLATE)) for k in report.totals.people
    ]
    shown, rest = _top_keys(report.totals.alerts, MAX_STACKED)
    alerts = [
        Series(rule, column("alerts", rule), PALETTE[i % len(PALETTE)])
        for i, rule in enumerate(shown)
    ]
    if rest:
        other = [float(sum(d.alerts.get(r, 0) for r in rest)) for d in report.days]
        alerts.append(Series(f"{len(rest)} other rules", other, SLATE))
    stopped = [
        Series(STOPPED_NAMES.get(k, k), column("streams_stopped", k), STOPPED_COLORS.get(k, SLATE))
        for k in report.totals.streams_stopped
    ]
    unit, scale = _wait_unit(report)

    def waits(pick: str) -> list[float | None]:
        found = [getattr(d.time_to_decision, pick) for d in report.days]
        return [None if v is None else round(v / scale, 1) for v in found]

    return [
        stacked_bars("chart-analysed", "Items analysed", days, sources, "items"),
        stacked_bars("chart-automatic", "Decided by the policy", days, automatic, "items"),
        stacked_bars("chart-people", "Decided by people", days, people, "decisions"),
        stacked_bars("chart-alerts", "Alerts raised", days, alerts, "alerts"),
        stacked_bars("chart-stopped", "Streams stopped", days, stopped, "streams"),
        line_chart(
            "chart-wait",
            "Time to decision",
            days,
            [Series("p50", waits("p50_s"), BLUE), Series("p95", waits("p95_s"), RED)],
            unit,
        ),
    ]
