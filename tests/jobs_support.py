"""Helpers for job tests: an app with its lifespan, waiting for a job, small videos."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from bastion.api.app import create_app
from bastion.api.services import Services
from bastion.config import Settings
from bastion.pipeline.engine import Engine
from tests.conftest import ADMIN_KEY

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
CODES_POLICY = """name: codes-only
description: QR codes and barcodes against a blocked domain
analyzers: [codes]
rules:
  - name: illegal-ads
    categories: [Blocked Domain]
    block: 50
lists:
  blocked_domains: [evil.example]
"""


@asynccontextmanager
async def running(settings: Settings, engine: Engine) -> AsyncIterator[tuple[FastAPI, Any]]:
    """The app (lifespan started) and an httpx client talking to it in-process."""
    app = create_app(settings, engine=engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bastion", timeout=60
        ) as client:
            yield app, client


def services_of(app: FastAPI) -> Services:
    svc: Services = app.state.services
    return svc


async def wait_for(
    client: httpx.AsyncClient,
    job_id: str,
    states: set[str],
    timeout: float = 60,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body: dict[str, Any] = (
            await client.get(f"/v1/jobs/{job_id}", headers=headers or AUTH)
        ).json()
        if body["status"] in states:
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def qr_video(path: Path, seconds: int = 10, qr_from: float = 3, qr_to: float = 6) -> Path:
    """A 5 fps video of a photo with a QR code to a blocked domain from ``qr_from`` s."""
    from tests.test_media_video import qr_frames, write_video

    if not path.exists():
        write_video(path, qr_frames(seconds, qr_from, qr_to), fps=5)
    return path
