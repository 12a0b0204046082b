"""Pictures of a training report, laid out here and drawn as inline SVG by a template.

Geometry only, as :mod:`bastion.stats.charts` does for the statistics page: the head's
precision-recall curve with its operating point and the baseline's point, a confusion
matrix for the head and one for the baseline, and the learning curve (held-out F1 by
training samples). ``templates/fragments/training_charts.html`` writes the SVG, so the
category name and every other text goes through autoescaping; colours are presentation
attributes, never ``style=``. Every point and cell says its value in a ``<title>``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from bastion.stats.charts import BLUE, MAX_LEGEND, RED, Dot, LegendKey, Polyline, Tick
from bastion.training.evaluate import Confusion, EvaluationReport
from bastion.training.learning import LearningCurve

__all__ = [
    "Cell",
    "Key",
    "MatrixChart",
    "TrainingCharts",
    "XYChart",
    "confusion_chart",
    "learning_chart",
    "pr_chart",
    "training_charts",
]

XY_WIDTH, XY_HEIGHT = 420, 340
XY_LEFT, XY_RIGHT, XY_TOP, XY_BOTTOM = 56.0, 16.0, 14.0, 66.0
KEY_GAP = 18.0
CHAR_WIDTH = 6.4  # of an 11 px system-ui character, about, for laying out the legend
CELL = 110.0
MATRIX_LEFT, MATRIX_TOP = 96.0, 48.0
UNIT_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
HEAD_COLOR, BASELINE_COLOR = BLUE, RED
EMPTY_CELL = (247, 248, 250)
FULL_CELL = (36, 87, 214)


@dataclass(frozen=True)
class Key:
    """One legend entry drawn inside the chart: a swatch at ``x``, its label after it."""

    x: float
    y: float
    fill: str
    label: str
    title: str


@dataclass
class XYChart:
    """A chart with numeric axes in a ``width`` × ``height`` view box: lines, dots and
    their legend."""

    id: str
    title: str
    summary: str
    x_label: str
    y_label: str
    width: int = XY_WIDTH
    height: int = XY_HEIGHT
    left: float = XY_LEFT
    top: float = XY_TOP
    right: float = XY_WIDTH - XY_RIGHT
    bottom: float = XY_HEIGHT - XY_BOTTOM
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    lines: list[Polyline] = field(default_factory=list)
    dots: list[Dot] = field(default_factory=list)
    legend: list[Key] = field(default_factory=list)
    empty: bool = True

    def set_legend(self, keys: Sequence[LegendKey]) -> None:
        """Lay the keys out in a row under the x axis's label."""
        x, y = self.left, float(self.height - 12)
        self.legend = []
        for k in keys:
            self.legend.append(Key(round(x, 1), y, k.fill, k.label, k.title))
            x += 14 + CHAR_WIDTH * len(k.label) + KEY_GAP


@dataclass(frozen=True)
class Cell:
    """One cell of a confusion matrix, shaded by its share of the largest cell."""

    x: float
    y: float
    width: float
    height: float
    fill: str
    text: str
    text_x: float
    text_y: float
    text_fill: str
    title: str


@dataclass
class MatrixChart:
    """A 2 × 2 confusion matrix: rows are the truth, columns the decision."""

    id: str
    title: str
    summary: str
    width: int
    height: int
    cells: list[Cell]
    rows: list[Tick]
    """Row labels at their y (actual positive, actual negative)."""
    columns: list[Tick]
    """Column labels at their x (decided positive, decided negative)."""
    row_axis: str = "Actual"
    column_axis: str = "Decided"
    left: float = MATRIX_LEFT
    top: float = MATRIX_TOP


@dataclass
class TrainingCharts:
    """The report page's pictures, in the page's order."""

    pr: XYChart
    head_matrix: MatrixChart
    baseline_matrix: MatrixChart
    learning: XYChart | None = None


def _short(name: str) -> str:
    return name if len(name) <= MAX_LEGEND else name[: MAX_LEGEND - 1] + "…"


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def _unit_axes(chart: XYChart) -> None:
    """Ticks of a 0–1 x axis and a 0–1 y axis."""
    for v in UNIT_TICKS:
        chart.x_ticks.append(Tick(_x(chart, v), f"{v:g}"))
        chart.y_ticks.append(Tick(_y(chart, v), f"{v:g}"))


def _x(chart: XYChart, fraction: float) -> float:
    return round(chart.left + (chart.right - chart.left) * fraction, 1)


def _y(chart: XYChart, value: float) -> float:
    return round(chart.bottom - (chart.bottom - chart.top) * value, 1)


def pr_chart(report: EvaluationReport, chart_id: str = "chart-pr") -> XYChart:
    """The head's held-out precision-recall curve, its point at the threshold and the
    baseline's point."""
    head, base = report.head, report.baseline
    chart = XYChart(
        chart_id,
        f"Precision and recall: {report.category}",
        f"Held-out precision-recall curve of the head for {report.category} "
        f"(average precision {_fmt(report.average_precision)}); at its threshold "
        f"{report.threshold:.3f} precision {_fmt(head.precision)}, recall "
        f"{_fmt(head.recall)}; {report.baseline_name}: precision {_fmt(base.precision)}, "
        f"recall {_fmt(base.recall)}.",
        "Recall",
        "Precision",
    )
    _unit_axes(chart)
    points = sorted(report.pr_curve, key=lambda p: (p.recall, -p.precision))
    if points:
        chart.lines.append(
            Polyline(
                " ".join(f"{_x(chart, p.recall)},{_y(chart, p.precision)}" for p in points),
                HEAD_COLOR,
            )
        )
    chart.dots.append(
        Dot(
            _x(chart, head.recall),
            _y(chart, head.precision),
            HEAD_COLOR,
            f"Head at threshold {report.threshold:.3f}: precision {_fmt(head.precision)}, "
            f"recall {_fmt(head.recall)}, F1 {_fmt(head.f1)}",
        )
    )
    chart.dots.append(
        Dot(
            _x(chart, base.recall),
            _y(chart, base.precision),
            BASELINE_COLOR,
            f"{report.baseline_name}: precision {_fmt(base.precision)}, recall "
            f"{_fmt(base.recall)}, F1 {_fmt(base.f1)}",
        )
    )
    chart.set_legend(
        [
            LegendKey(HEAD_COLOR, "Head", "The head: curve over thresholds, dot at its threshold"),
            LegendKey(BASELINE_COLOR, _short(report.baseline_name), report.baseline_name),
        ]
    )
    chart.empty = False
    return chart


def _shade(share: float) -> tuple[str, str]:
    """A cell's fill (light to the head's blue by ``share``) and a readable text colour."""
    rgb = [round(e + (f - e) * share) for e, f in zip(EMPTY_CELL, FULL_CELL, strict=True)]
    fill = "#{:02x}{:02x}{:02x}".format(*rgb)
    return fill, "#ffffff" if share > 0.5 else "#1d2939"


def confusion_chart(confusion: Confusion, title: str, chart_id: str) -> MatrixChart:
    """A confusion matrix: actual positive/negative by decided positive/negative."""
    total = confusion.tp + confusion.fp + confusion.fn + confusion.tn
    largest = max(confusion.tp, confusion.fp, confusion.fn, confusion.tn, 1)
    layout = (
        (0, 0, confusion.tp, "positive", "positive", "true positives"),
        (0, 1, confusion.fn, "positive", "negative", "false negatives"),
        (1, 0, confusion.fp, "negative", "positive", "false positives"),
        (1, 1, confusion.tn, "negative", "negative", "true negatives"),
    )
    cells: list[Cell] = []
    for row, col, count, actual, decided, name in layout:
        fill, ink = _shade(count / largest)
        x, y = MATRIX_LEFT + col * CELL, MATRIX_TOP + row * CELL
        share = f" ({100 * count / total:.0f}%)" if total else ""
        cells.append(
            Cell(
                x,
                y,
                CELL,
                CELL,
                fill,
                f"{count:,}",
                x + CELL / 2,
                y + CELL / 2 + 6,
                ink,
                f"Actually {actual}, decided {decided}: {count:,} {name}{share}",
            )
        )
    return MatrixChart(
        id=chart_id,
        title=title,
        summary=(
            f"{title}: {confusion.tp:,} true positives, {confusion.fn:,} false negatives, "
            f"{confusion.fp:,} false positives, {confusion.tn:,} true negatives."
        ),
        width=int(MATRIX_LEFT + 2 * CELL + 12),
        height=int(MATRIX_TOP + 2 * CELL + 12),
        cells=cells,
        rows=[
            Tick(MATRIX_TOP + CELL / 2 + 4, "positive"),
            Tick(MATRIX_TOP + CELL * 1.5 + 4, "negative"),
        ],
        columns=[
            Tick(MATRIX_LEFT + CELL / 2, "positive"),
            Tick(MATRIX_LEFT + CELL * 1.5, "negative"),
        ],
    )


def _sample_axis(sizes: Sequence[int]) -> tuple[bool, float, float]:
    """Whether the samples axis is logarithmic, and its ends."""
    low, high = min(sizes), max(sizes)
    if low == high:
        return False, 0.0, float(high) * 1.1 or 1.0
    if high / max(low, 1) >= 10:
        return True, math.log10(max(low, 1)) - 0.1, math.log10(high) + 0.1
    pad = (high - low) * 0.05
    return False, max(0.0, low - pad), high + pad


def learning_chart(curve: LearningCurve, chart_id: str = "chart-learning") -> XYChart:
    """Held-out F1 of the head by training samples, with the baseline's F1 as a line."""
    sizes = [p.samples for p in curve.points]
    described = "; ".join(f"{p.samples:,} samples F1 {_fmt(p.f1)}" for p in curve.points)
    chart = XYChart(
        chart_id,
        f"F1 by training samples: {curve.category}",
        f"Held-out F1 of the head for {curve.category} by training samples"
        + (f": {described}" if described else ": no head trained")
        + f"; {curve.baseline_name} F1 {_fmt(curve.baseline_f1)}.",
        "Training samples",
        "F1",
    )
    for v in UNIT_TICKS:
        chart.y_ticks.append(Tick(_y(chart, v), f"{v:g}"))
    chart.set_legend(
        [
            LegendKey(HEAD_COLOR, "Head", "Head trained on that many samples"),
            LegendKey(BASELINE_COLOR, _short(curve.baseline_name), curve.baseline_name),
        ]
    )
    if not sizes:
        return chart
    log, low, high = _sample_axis(sizes)

    def at(size: int) -> float:
        value = math.log10(max(size, 1)) if log else float(size)
        return _x(chart, (value - low) / (high - low))

    for size in sizes:
        chart.x_ticks.append(Tick(at(size), f"{size:,}"))
    chart.lines.append(
        Polyline(" ".join(f"{at(p.samples)},{_y(chart, p.f1)}" for p in curve.points), HEAD_COLOR)
    )
    base_y = _y(chart, curve.baseline_f1)
    chart.lines.append(Polyline(f"{chart.left},{base_y} {chart.right},{base_y}", BASELINE_COLOR))
    for p in curve.points:
        chart.dots.append(
            Dot(
                at(p.samples),
                _y(chart, p.f1),
                HEAD_COLOR,
                f"{p.samples:,} samples ({p.positives:,} positive): F1 {_fmt(p.f1)}, precision "
                f"{_fmt(p.precision)}, recall {_fmt(p.recall)}, trained in {p.train_seconds:.1f} s",
            )
        )
    chart.empty = False
    return chart


def training_charts(report: EvaluationReport, curve: LearningCurve | None = None) -> TrainingCharts:
    """The pictures of a report (and of its learning curve, when there is one)."""
    return TrainingCharts(
        pr=pr_chart(report),
        head_matrix=confusion_chart(
            report.head.confusion, f"Head: {report.category}", "chart-confusion-head"
        ),
        baseline_matrix=confusion_chart(
            report.baseline.confusion,
            f"{report.baseline_name}: {report.category}",
            "chart-confusion-baseline",
        ),
        learning=learning_chart(curve) if curve is not None else None,
    )
