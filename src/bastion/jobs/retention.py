"""Media retention: job media and thumbnails are deleted once no longer wanted.

A stored file is deleted when it has not been wanted (uploaded again) for
``jobs.media_retention_s`` and no job using it is queued, processing or paused or
was created within that time, no review item that has not been decided yet refers
to it (a reviewer must be able to open it), and no decision kept it as a training
sample (``media_kept``: its tenant consented to keep such media when the item was
decided; without consent a decided item's media goes as any other), and no labelled
sample of any tenant refers to it (:mod:`bastion.samples`); the jobs that
used it are marked (``media_purged_at``), and retrying one of them fails with
``media_expired``. A job's thumbnail folder goes when it is that old and the job is not
active. Files left in ``.incoming/`` by uploads that died are deleted after an hour.
With search, the search documents of the jobs whose media went are deleted with it,
and those of live streams' frames once older than the retention period (the live
thumbnails they show go then too).

Every step is safe with several processes sweeping at once and with uploads and
retries happening meanwhile (see :meth:`bastion.jobs.media_files.MediaStore.remove`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, select, update

from bastion.jobs.config import JobsConfig
from bastion.jobs.service import JobService
from bastion.jobs.tables import FINAL_STATES, Job
from bastion.review.tables import DECIDED, ReviewDecision, ReviewItem
from bastion.samples.tables import Sample
from bastion.search.indexer import SearchIndexer

log = logging.getLogger(__name__)

ACTIVE_STATES = ("queued", "processing", "paused")
INCOMING_GRACE_S = 3600.0


@dataclass
class SweepReport:
    """What one sweep deleted."""

    media_removed: int = 0
    jobs_marked: int = 0
    thumbnails_removed: int = 0
    incoming_removed: int = 0
    search_documents_removed: int = 0

    def __bool__(self) -> bool:
        return any(
            (
                self.media_removed,
                self.jobs_marked,
                self.thumbnails_removed,
                self.incoming_removed,
                self.search_documents_removed,
            )
        )


class MediaRetention:
    """Deletes expired job media and thumbnails; :meth:`run_forever` sweeps periodically."""

    def __init__(
        self, jobs: JobService, config: JobsConfig, *, search: SearchIndexer | None = None
    ) -> None:
        self.jobs = jobs
        self.config = config
        self.search = search
        """Where the search documents of purged media go from (None: no search)."""

    def sweep(self) -> SweepReport:
        retention = self.config.media_retention_s
        cutoff_ts = time.time() - retention
        cutoff = datetime.fromtimestamp(cutoff_ts, UTC)
        report = SweepReport()
        media = self.jobs.media
        for sha, mtime in list(media.stored()):
            if mtime >= cutoff_ts:
                continue
            if media.remove(
                sha, older_than_s=retention, in_use=lambda d: self._media_in_use(d, cutoff)
            ):
                report.media_removed += 1
                marked = self._mark_purged(sha)
                report.jobs_marked += len(marked)
                report.search_documents_removed += self._unindex(marked)
        for job_id, folder in list(self.jobs.thumbnails.folders()):
            try:
                if folder.stat().st_mtime >= cutoff_ts:
                    continue
            except FileNotFoundError:
                continue
            if not self._job_active(job_id) and self.jobs.thumbnails.remove(job_id):
                report.thumbnails_removed += 1
        report.incoming_removed = media.remove_stale_incoming(INCOMING_GRACE_S)
        if self.search is not None:  # live frames past the live thumbnails' retention
            try:
                report.search_documents_removed += self.search.delete_media_kind_before(
                    "stream", cutoff
                )
            except Exception:  # the next sweep tries again
                log.exception("deleting live streams' search documents past retention failed")
        return report

    def _unindex(self, jobs: list[tuple[str, str]]) -> int:
        """Delete the search documents of the jobs (tenant, job id) whose media went."""
        if self.search is None:
            return 0
        try:
            return sum(self.search.delete_media(tenant, job_id) for tenant, job_id in jobs)
        except Exception:
            log.exception("deleting the search documents of purged jobs failed")
            return 0

    def _media_in_use(self, sha256: str, cutoff: datetime) -> bool:
        # Lock every job using the media: a retry in flight is waited for and then seen.
        with self.jobs.sessions.begin() as s:
            rows = s.execute(
                select(Job.status, Job.created_at)
                .where(Job.media_sha256 == sha256)
                .with_for_update()
            ).all()
            in_review = s.scalar(
                select(ReviewItem.id)
                .where(ReviewItem.media_sha256 == sha256, ReviewItem.status != DECIDED)
                .limit(1)
            )
            kept = s.scalar(
                select(ReviewDecision.id)
                .join(
                    ReviewItem,
                    and_(
                        ReviewItem.id == ReviewDecision.item_id,
                        ReviewItem.tenant_id == ReviewDecision.tenant_id,
                    ),
                )
                .where(ReviewItem.media_sha256 == sha256, ReviewDecision.media_kept.is_(True))
                .limit(1)
            )
            sample = s.scalar(select(Sample.id).where(Sample.media_sha256 == sha256).limit(1))
        if in_review is not None or kept is not None or sample is not None:
            return True
        return any(status in ACTIVE_STATES or created >= cutoff for status, created in rows)

    def _mark_purged(self, sha256: str) -> list[tuple[str, str]]:
        """Mark the finished jobs of a deleted media; their (tenant, job id)."""
        where = (
            (Job.media_sha256 == sha256)
            & Job.media_purged_at.is_(None)
            & Job.status.in_(FINAL_STATES)
        )
        with self.jobs.sessions.begin() as s:
            marked = [
                (str(tenant), str(job_id))
                for tenant, job_id in s.execute(
                    select(Job.tenant_id, Job.id).where(where).with_for_update()
                )
            ]
            if marked:
                s.execute(
                    update(Job)
                    .where(Job.id.in_([job_id for _, job_id in marked]))
                    .values(media_purged_at=datetime.now(UTC))
                    .execution_options(synchronize_session=False)
                )
            return marked

    def _job_active(self, job_id: str) -> bool:
        with self.jobs.sessions() as s:
            status = s.scalar(select(Job.status).where(Job.id == job_id))
        return status in ACTIVE_STATES

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Sweep every ``jobs.media_sweep_s`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                report = await asyncio.to_thread(self.sweep)
                if report:
                    log.info("media retention: %s", report)
            except Exception:
                log.exception("media retention sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.media_sweep_s)
