"""The statistics page: a period picker, charts, reviewers and rules, and the CSV.

Any signed-in person may look (viewers included). The page and its CSV come from the
same report as ``GET /v1/stats`` (:class:`bastion.stats.service.StatsService`); the
charts are laid out by :mod:`bastion.stats.charts` and drawn as inline SVG by the
template, so they need no script. A period that is not valid is said on the page,
with the form to correct it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from bastion.api.services import Services, services
from bastion.portal.people import Viewer
from bastion.portal.templating import render
from bastion.stats.charts import report_charts
from bastion.stats.export import csv_filename, report_csv
from bastion.stats.service import InvalidPeriod

router = APIRouter()
Svc = Annotated[Services, Depends(services)]
QUICK = (("7 days", 7), ("30 days", 30), ("90 days", 90), ("A year", 366))


def duration(seconds: float | None) -> str:
    """A wait for people: seconds, minutes or hours; a dash when there is none."""
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _blank(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


@router.get("/portal/stats", include_in_schema=False)
async def stats_page(
    request: Request,
    who: Viewer,
    svc: Svc,
    start: Annotated[str | None, Query(alias="from", max_length=32)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=32)] = None,
) -> Response:
    today = datetime.now(UTC).date()
    quick = [(label, today - timedelta(days=n - 1), today) for label, n in QUICK]
    context: dict[str, object] = {"quick": quick, "seconds": duration, "report": None}
    try:
        period = svc.stats.period(_blank(start), _blank(end))
    except InvalidPeriod as exc:
        context["error"] = exc
        return render(request, "stats.html", context, status=exc.status)
    report = await run_in_threadpool(svc.stats.report, who.tenant_id, period)
    context.update(report=report, charts=report_charts(report))
    return render(request, "stats.html", context)


@router.get("/portal/stats.csv", include_in_schema=False)
async def stats_csv(
    who: Viewer,
    svc: Svc,
    start: Annotated[str | None, Query(alias="from", max_length=32)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=32)] = None,
) -> Response:
    period = svc.stats.period(_blank(start), _blank(end))
    report = await run_in_threadpool(svc.stats.report, who.tenant_id, period)
    return Response(
        report_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{csv_filename(report)}"'},
    )
