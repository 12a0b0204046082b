"""Job tests' shared parts: a policy that blocks QR codes to a domain, waiting for a job,
and the files a job left on disk."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from tests.support.auth import AUTH

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


async def wait_for(
    client: httpx.AsyncClient,
    job_id: str,
    states: set[str],
    timeout: float = 60,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The job (``GET /v1/jobs/{id}``) once its status is one of ``states``."""
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
    """Every file below ``folder`` (none when it does not exist), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
