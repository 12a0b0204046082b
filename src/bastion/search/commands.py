"""``bastion search``: index stored job results again, and delete a tenant's index.

These commands work on the database and data folder of the settings directly, as
``bastion keys`` does. ``reindex`` walks the jobs that succeeded (media analysed before
search existed, or indexed under other settings) and indexes each from its stored
result, oldest first; jobs whose media went with retention are left out (their
documents went with it). Stored results keep no image embeddings, so media indexed
this way is found by words and meaning, not by find-similar. ``purge`` deletes
everything indexed of one tenant (Bastion has no tenant deletion yet: this is its
search part).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, sessionmaker

from bastion.config import Settings, load_settings
from bastion.jobs.tables import Job
from bastion.search.feed import SearchFeed

if TYPE_CHECKING:
    from bastion.pipeline.engine import Engine

search_app = typer.Typer(
    help="Search over tenants' media: index stored job results again, purge a tenant's index.",
    no_args_is_help=True,
)
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file.", envvar="BASTION_CONFIG")
]
BATCH = 200
"""Jobs read per query while reindexing."""


@dataclass
class LocalSearch:
    """Search opened by a command: the database's sessions and the feed into it."""

    sessions: sessionmaker[Session]
    feed: SearchFeed


@contextlib.asynccontextmanager
async def open_search(
    settings: Settings, engine: Engine | None = None
) -> AsyncIterator[LocalSearch]:
    """Migrate the database of ``settings`` and open search on it (``engine``: the
    command's own, whose analyzers name the image space; None: one made here, loading
    no model); ``search_disabled`` when ``search.enabled`` is off. The vector indexes
    are saved on the way out."""
    from bastion.bootstrap import bootstrap
    from bastion.jobs.media_files import MediaStore
    from bastion.jobs.thumbnails import ThumbnailStore
    from bastion.pipeline.engine import Engine
    from bastion.runtime.metrics import Metrics
    from bastion.search.build import build_feed, build_search
    from bastion.search.errors import SearchDisabled
    from bastion.store.db import session_factory

    if not settings.search.enabled:
        raise SearchDisabled("search is off (search.enabled)")
    boot = await asyncio.to_thread(bootstrap, settings, create_admin_key=False)
    own = None
    if engine is None:
        own = engine = Engine(settings.model_copy(update={"preload": False}), Metrics())
    sessions = session_factory(boot.db)
    try:
        indexer = build_search(settings, engine, sessions)
        assert indexer is not None  # enabled
        feed = build_feed(
            settings,
            indexer,
            engine,
            job_thumbnails=ThumbnailStore(settings.data_dir / "thumbnails"),
            job_media=MediaStore(settings.data_dir / "media").path,
            metrics=engine.metrics,
        )
        assert feed is not None
        try:
            yield LocalSearch(sessions, feed)
        finally:
            await feed.drain()
            await asyncio.to_thread(indexer.flush)
    finally:
        if own is not None:
            await own.close()
        boot.db.dispose()


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config, preload=False)
    except Exception as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _reindexable(tenant: str | None) -> list[ColumnElement[bool]]:
    where = [Job.status == "succeeded", Job.media_purged_at.is_(None)]
    if tenant is not None:
        where.append(Job.tenant_id == tenant)
    return where


def _jobs(sessions: sessionmaker[Session], tenant: str | None) -> Iterator[list[Job]]:
    """The jobs to index again, a batch at a time, in the order they were created."""
    where = _reindexable(tenant)
    last: tuple[datetime, str] | None = None
    while True:
        query = select(Job).where(*where)
        if last is not None:
            query = query.where(
                (Job.created_at > last[0]) | ((Job.created_at == last[0]) & (Job.id > last[1]))
            )
        with sessions() as session:
            batch = list(session.scalars(query.order_by(Job.created_at, Job.id).limit(BATCH)))
            session.expunge_all()
        if not batch:
            return
        last = (batch[-1].created_at, batch[-1].id)
        yield batch


async def reindex_jobs(local: LocalSearch, tenant: str | None, progress: Progress | None) -> int:
    """Index the stored results of the jobs that succeeded (of ``tenant``, or of every
    tenant); how many were indexed."""
    with local.sessions() as session:
        total = session.scalar(select(func.count()).select_from(Job).where(*_reindexable(tenant)))
    task = progress.add_task("indexing jobs", total=total or 0) if progress is not None else None
    indexed = 0
    for batch in await asyncio.to_thread(lambda: list(_jobs(local.sessions, tenant))):
        for job in batch:
            if job.result is not None and await local.feed.job(job, job.result, source="reindex"):
                indexed += 1
            if progress is not None and task is not None:
                progress.advance(task)
    return indexed


@search_app.command("reindex")
def reindex(
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant's jobs (default: every tenant's).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Index the stored results of jobs that succeeded, for media analysed before search
    existed: labels, tags, text, codes, URLs and transcripts (no image embeddings: those
    are not stored)."""
    settings = _settings(config)

    async def run() -> int:
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
        )
        async with open_search(settings) as local:
            with progress:
                return await reindex_jobs(local, tenant, progress)

    indexed = _run(run())
    err.print(f"indexed {indexed} jobs")


@search_app.command("purge")
def purge(
    tenant: Annotated[str, typer.Option(help="The tenant whose index is deleted.")],
    config: ConfigOpt = None,
) -> None:
    """Delete everything indexed of a tenant (documents, vectors, vector index files)."""
    settings = _settings(config)

    async def run() -> int:
        async with open_search(settings) as local:
            return await asyncio.to_thread(local.feed.indexer.delete_tenant, tenant)

    removed = _run(run())
    err.print(f"deleted {removed} search documents of tenant {tenant}")


def _run(work: Coroutine[Any, Any, int]) -> int:
    from bastion.errors import BastionError

    try:
        return asyncio.run(work)
    except BastionError as exc:
        err.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(2) from exc
