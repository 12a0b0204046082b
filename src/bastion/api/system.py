"""Health, readiness, metrics and the analyzer catalogue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from bastion import __version__
from bastion.analyzers.base import AnalyzerInfo
from bastion.api.auth import Reader
from bastion.api.services import Services, services
from bastion.policy import taxonomy

router = APIRouter(tags=["system"])


class CategoryInfo(BaseModel):
    name: str
    parent: str | None
    level: int
    description: str
    detected_by: list[str] = Field(description="Analyzers that can emit this label.")


class AnalyzersResponse(BaseModel):
    analyzers: list[AnalyzerInfo]
    categories: list[CategoryInfo]
    undetectable: list[str] = Field(
        description="Taxonomy categories no installed analyzer can detect: never reported clean."
    )
    load_errors: dict[str, str]


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


@router.get("/readyz", summary="Readiness: models loaded and database reachable")
async def readyz(svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    from sqlalchemy import text

    db_ok = True
    try:
        with svc.db.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:
        db_ok = False
    ready = svc.engine.ready and db_ok
    body = {
        "status": "ready" if ready else "not_ready",
        "models_loaded": svc.engine.ready,
        "database": db_ok,
        "load_errors": svc.engine.load_errors,
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(svc: Annotated[Services, Depends(services)]) -> Response:
    for name, entry in svc.engine.batchers().items():
        svc.metrics.queue_depth.labels(name).set(entry.depth)
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/analyzers",
    response_model=AnalyzersResponse,
    tags=["moderation"],
    summary="Analyzers, model versions and the categories each can emit",
)
async def analyzers(_: Reader, svc: Annotated[Services, Depends(services)]) -> AnalyzersResponse:
    infos = svc.engine.infos()
    by_cat: dict[str, list[str]] = {}
    for info in infos:
        for cat in taxonomy.expand(info.categories):
            by_cat.setdefault(cat, []).append(info.name)
    for cat in ("Blocked Word", "Blocked Domain", "Illegal Ads"):
        by_cat.setdefault(cat, []).append("lists")
    cats = [
        CategoryInfo(
            name=c.name,
            parent=c.parent,
            level=c.level,
            description=c.description,
            detected_by=sorted(by_cat.get(c.name, [])),
        )
        for c in taxonomy.CATEGORIES.values()
    ]
    undetectable = [c.name for c in cats if not c.detected_by]
    return AnalyzersResponse(
        analyzers=infos,
        categories=cats,
        undetectable=undetectable,
        load_errors=svc.engine.load_errors,
    )
