"""The portal's routes in one router, and its static files, for the API app to include."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from bastion.portal import push
from bastion.portal.headers import PortalHeaders
from bastion.portal.pages import (
    account,
    alerts,
    lists,
    live,
    models,
    policies,
    review,
    rules,
    search,
    signin,
    stats,
    training,
    users,
)
from bastion.portal.templating import STATIC


def install(app: FastAPI) -> None:
    """Serve the portal from ``app``: pages, push channel, static files, headers."""
    router = APIRouter(include_in_schema=False)
    pages = (signin, push, live, alerts, review, rules, policies, lists, users, account, stats)
    for module in (*pages, models, training, search):
        router.include_router(module.router)
    app.include_router(router)
    app.mount("/portal/static", StaticFiles(directory=STATIC), name="portal-static")
    app.add_middleware(PortalHeaders)
