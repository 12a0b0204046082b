"""The de-duplication tests' app settings and their view of the stored results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from bastion.api.services import Services
from bastion.config import Settings
from bastion.dedup.tables import DedupEntry
from bastion.jobs.config import JobsConfig
from tests.support.settings import make_settings


def settings_for(data_dir: Path, database_url: str | None = None, **kw: Any) -> Settings:
    """Settings of an app whose jobs no worker runs, unless ``jobs`` says otherwise."""
    kw.setdefault("jobs", JobsConfig(run_worker=False))
    return make_settings(data_dir, database_url=database_url, **kw)


def rows(svc: Services, sha256: str | None = None) -> list[DedupEntry]:
    """The stored results (of one media hash, when given)."""
    with svc.db_sessions() as s:
        q = select(DedupEntry)
        if sha256 is not None:
            q = q.where(DedupEntry.sha256 == sha256)
        return list(s.execute(q).scalars())
