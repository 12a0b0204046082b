"""Training as a user drives it: a labelled folder on disk, and a run followed over the API.

:func:`write_labelled_folder` writes generated images (:mod:`tests.support.spam_images`)
in the layout ``bastion samples import`` reads: each JPEG with its labels file beside
it, the label, the decision and the time the label was given. :func:`follow_run` polls
``GET /v1/training/runs/{id}`` until the run finished, keeping every state it was seen
in (so a test sees its progress move).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from tests.support.labelled import SPAM_LABEL
from tests.support.media import encode
from tests.support.spam_images import SpamSample

FINISHED = ("succeeded", "failed")


def write_labelled_folder(
    root: Path, made: Iterable[SpamSample], *, label: str = SPAM_LABEL
) -> list[Path]:
    """Write ``made`` under ``root`` as ``<n>.jpg`` + ``<n>.json`` (spam labelled
    ``label`` and blocked, the rest unlabelled and allowed); the images' paths."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, sample in enumerate(made):
        path = root / f"{i:03d}.jpg"
        path.write_bytes(encode(sample.rgb, "JPEG", quality=90))
        labels = {
            "labels": [label] if sample.spam else [],
            "decision": "block" if sample.spam else "allow",
            "taken_at": sample.taken_at.isoformat(),
        }
        path.with_suffix(".json").write_text(json.dumps(labels))
        paths.append(path)
    return paths


async def follow_run(
    client: httpx.AsyncClient, run_id: str, headers: dict[str, str], timeout: float = 400
) -> list[dict[str, Any]]:
    """Every state the run was seen in (a new one when its status, progress or stage
    changed), polling until it finished."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await client.get(f"/v1/training/runs/{run_id}", headers=headers)
        assert r.status_code == 200, r.text
        now = r.json()
        if not seen or (now["status"], now["progress"], now["stage"]) != (
            seen[-1]["status"],
            seen[-1]["progress"],
            seen[-1]["stage"],
        ):
            seen.append(now)
        if now["status"] in FINISHED:
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s: {seen[-3:]}")
