"""A tenant's statistics per UTC day: ``GET /v1/stats`` (JSON) and ``GET /v1/stats.csv``.

Both take the period as ``from`` and ``to`` (``YYYY-MM-DD``, UTC days, both included;
default: the 30 days up to today; at most 366 days) and need the ``read`` scope. What
is counted and where it comes from: :mod:`bastion.stats.service`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from bastion.api.auth import Reader
from bastion.api.services import Services, services
from bastion.stats.export import csv_filename, report_csv
from bastion.stats.report import StatsReport

router = APIRouter(prefix="/v1", tags=["stats"])
Svc = Annotated[Services, Depends(services)]
_DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
FromQuery = Annotated[
    str | None,
    Query(
        alias="from",
        pattern=_DAY,
        description="First UTC day, YYYY-MM-DD (default: 29 days before `to`).",
    ),
]
ToQuery = Annotated[
    str | None,
    Query(alias="to", pattern=_DAY, description="Last UTC day, included (default: today)."),
]
_CSV: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One row per day and metric: `day,metric,key,value`.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "headers": {
            "Content-Disposition": {
                "description": "`attachment; filename=...`",
                "schema": {"type": "string"},
            }
        },
    }
}


async def _report(svc: Services, tenant_id: str, start: str | None, end: str | None) -> StatsReport:
    period = svc.stats.period(start, end)
    return await run_in_threadpool(svc.stats.report, tenant_id, period)


@router.get(
    "/stats",
    response_model=StatsReport,
    summary="Statistics per day: items analysed, decisions, alerts, stopped streams",
)
async def get_stats(
    who: Reader, svc: Svc, start: FromQuery = None, end: ToQuery = None
) -> StatsReport:
    """Items analysed per source and the policy's decisions, people's decisions, alerts
    per rule, streams stopped, time to decision (p50/p95), per UTC day and over the
    period, with decisions per reviewer and alerts per rule."""
    return await _report(svc, who.tenant_id, start, end)


@router.get(
    "/stats.csv",
    response_class=Response,
    responses=_CSV,
    summary="The same statistics as CSV, one row per day and metric",
)
async def get_stats_csv(
    who: Reader, svc: Svc, start: FromQuery = None, end: ToQuery = None
) -> Response:
    report = await _report(svc, who.tenant_id, start, end)
    return Response(
        report_csv(report),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{csv_filename(report)}"'},
    )
