"""A report as CSV: one row per day and metric (``day,metric,key,value``).

Metrics: ``analysed`` (key: the source), ``automatic`` (the policy's decision),
``automatic.<source>`` (the decision, per source), ``people`` (allow, block, escalate),
``people_source`` (``moderator`` or ``api``: a reviewer or a correction), ``alerts`` (the
rule), ``streams_stopped`` (who stopped them) and ``time_to_decision`` (``decided``,
``p50_s``, ``p95_s``; an empty value when nothing was decided). Every day has the same
rows, zeros included. Keys that came from people (rule names) are written so that a
spreadsheet shows them as text, never runs them as a formula.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

from bastion.stats.report import Counts, StatsReport

__all__ = ["HEADER", "csv_filename", "report_csv", "rows"]

HEADER = ("day", "metric", "key", "value")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    """``value`` as a spreadsheet shows text: a leading ``'`` before what would start a
    formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _day_rows(day: Counts, keys: dict[str, list[str]]) -> Iterator[tuple[str, str, str]]:
    for source in keys["analysed"]:
        yield "analysed", source, str(day.analysed.get(source, 0))
    for decision in keys["automatic"]:
        yield "automatic", decision, str(day.automatic.get(decision, 0))
    for source in keys["analysed"]:
        decisions = day.automatic_by_source.get(source, {})
        for decision in keys["automatic"]:
            yield f"automatic.{source}", decision, str(decisions.get(decision, 0))
    for name in ("people", "people_by_source", "alerts", "streams_stopped"):
        values: dict[str, int] = getattr(day, name)
        metric = "people_source" if name == "people_by_source" else name
        for key in keys[name]:
            yield metric, key, str(values.get(key, 0))
    waited = day.time_to_decision
    yield "time_to_decision", "decided", str(waited.decided)
    for key, seconds in (("p50_s", waited.p50_s), ("p95_s", waited.p95_s)):
        yield "time_to_decision", key, "" if seconds is None else f"{seconds:g}"


def rows(report: StatsReport) -> Iterator[tuple[str, str, str, str]]:
    """The CSV's rows after the header."""
    totals = report.totals
    keys = {
        "analysed": list(totals.analysed),
        "automatic": list(totals.automatic),
        "people": list(totals.people),
        "people_by_source": list(totals.people_by_source),
        "alerts": list(totals.alerts),
        "streams_stopped": list(totals.streams_stopped),
    }
    for day in report.days:
        stamp = day.day.isoformat()
        for metric, key, value in _day_rows(day, keys):
            yield stamp, metric, _text(key), value


def report_csv(report: StatsReport) -> str:
    """The whole CSV document (RFC 4180, CRLF line ends)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(rows(report))
    return out.getvalue()


def csv_filename(report: StatsReport) -> str:
    """``bastion-stats-<tenant>-<from>-<to>.csv``, with only safe characters."""
    tenant = re.sub(r"[^A-Za-z0-9_.-]", "_", report.tenant_id)[:64]
    return f"bastion-stats-{tenant}-{report.start.isoformat()}-{report.end.isoformat()}.csv"
