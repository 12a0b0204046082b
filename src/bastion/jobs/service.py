"""The job lifecycle: create, read, list, cancel, pause, resume, retry.

Creating a job stores its media in the content-addressed folder and writes the job row
and its queue message in one transaction, so an accepted job is never lost.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bastion.delivery import outbox
from bastion.errors import BastionError, InputError, NotFound
from bastion.jobs.media_files import MediaStore, StoredMedia
from bastion.jobs.queue import Queue
from bastion.jobs.tables import FINAL_STATES, JOB_STATES, Job
from bastion.jobs.thumbnails import ThumbnailStore
from bastion.media.audio import is_audio
from bastion.media.audio_config import AudioConfig
from bastion.media.video import is_video
from bastion.media.video_config import VideoConfig
from bastion.store.pages import newest_first

if TYPE_CHECKING:
    from bastion.config import Settings

TOPIC = "jobs"


def event_payload(job: Job) -> dict[str, Any]:
    """What a job's webhook carries: its id, status, metadata and result or error (a job
    started through the Rekognition endpoint: the completion message SNS would carry)."""
    if (job.options or {}).get("rekognition"):
        from bastion.aws.video import completion_message

        return completion_message(job)
    body: dict[str, Any] = {
        "job_id": job.id,
        "status": job.status,
        "kind": job.kind,
        "metadata": job.meta or {},
    }
    if job.status == "succeeded":
        body["result"] = job.result
    if job.error_code:
        body["error"] = {"code": job.error_code, "message": job.error_message}
    return body


def _kind(head: bytes) -> str:
    """The job kind of media stored without the API's checks (a video container with
    sound and no picture stays a ``video``: the API's upload tells those apart)."""
    if is_video(head):
        return "video"
    return "audio" if is_audio(head) else "image"


def media_expired(job_id: str) -> BastionError:
    """410 ``media_expired``: the media a job runs on was deleted by retention."""
    return BastionError(
        f"the media of job {job_id} is no longer stored (retention)",
        code="media_expired",
        status=410,
    )


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


class JobService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        queue: Queue,
        media: MediaStore,
        *,
        thumbnails: ThumbnailStore | None = None,
        video: VideoConfig | None = None,
        audio: AudioConfig | None = None,
    ) -> None:
        self.sessions = sessions
        self.queue = queue
        self.media = media
        self.thumbnails = thumbnails or ThumbnailStore(media.root.parent / "thumbnails")
        self.video = video or VideoConfig()
        self.audio = audio or AudioConfig()

    @classmethod
    def from_settings(
        cls, settings: Settings, sessions: sessionmaker[Session], queue: Queue
    ) -> JobService:
        """Media and thumbnails under the data folder, the configured video and audio settings."""
        return cls(
            sessions,
            queue,
            MediaStore(settings.data_dir / "media"),
            thumbnails=ThumbnailStore(settings.data_dir / "thumbnails"),
            video=settings.video,
            audio=settings.audio,
        )

    def create(
        self,
        tenant_id: str,
        data: bytes,
        *,
        content_type: str | None = None,
        policy: str | None = None,
        callback_url: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Job, bool]:
        """The job and whether it was created now (False: same idempotency key seen before)."""
        if idempotency_key is not None:
            found = self._by_key(tenant_id, idempotency_key)
            if found is not None:
                return found, False
        stored = self.media.store(data)
        return self.create_stored(
            tenant_id,
            stored,
            kind=_kind(stored.head),
            content_type=content_type,
            policy=policy,
            callback_url=callback_url,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )

    def create_stored(
        self,
        tenant_id: str,
        media: StoredMedia,
        *,
        kind: str,
        content_type: str | None = None,
        policy: str | None = None,
        callback_url: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[Job, bool]:
        """A job for media already in the store (streamed there by the API)."""
        if idempotency_key is not None:
            found = self._by_key(tenant_id, idempotency_key)
            if found is not None:
                return found, False
        now = datetime.now(UTC)
        job = Job(
            id=new_job_id(),
            tenant_id=tenant_id,
            status="queued",
            kind=kind,
            media_sha256=media.sha256,
            media_bytes=media.size,
            content_type=content_type,
            policy=policy,
            callback_url=callback_url,
            meta=metadata or {},
            idempotency_key=idempotency_key,
            options=options or None,
            progress=0.0,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        try:
            with self.sessions.begin() as s:
                s.add(job)
                self.queue.add(s, TOPIC, {"job_id": job.id})
        except IntegrityError:
            # a concurrent request with the same idempotency key won the race
            if idempotency_key is not None:
                found = self._by_key(tenant_id, idempotency_key)
                if found is not None:
                    return found, False
            raise
        return job, True

    def stored_media(self, job: Job) -> Path:
        """The path of the job's stored media; 410 ``media_expired`` when retention
        deleted it."""
        path = self.media.path(job.media_sha256)
        if not path.is_file():
            raise media_expired(job.id)
        return path

    def find_by_key(self, tenant_id: str, key: str) -> Job | None:
        """The tenant's job created with this idempotency key, if any."""
        return self._by_key(tenant_id, key)

    def _by_key(self, tenant_id: str, key: str) -> Job | None:
        with self.sessions() as s:
            return s.scalars(
                select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key)
            ).first()

    def get(self, tenant_id: str, job_id: str) -> Job:
        with self.sessions() as s:
            job = s.get(Job, job_id)
            if job is None or job.tenant_id != tenant_id:
                raise NotFound(f"job {job_id!r} not found", code="job_not_found")
            return job

    def list(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        if status is not None and status not in JOB_STATES:
            raise InputError(f"status must be one of {list(JOB_STATES)}", code="invalid_status")
        q = select(Job).where(Job.tenant_id == tenant_id)
        if status is not None:
            q = q.where(Job.status == status)
        if since is not None:
            q = q.where(Job.created_at >= since)
        with self.sessions() as s:
            rows, next_cursor = newest_first(
                s, q, Job.created_at, Job.id, limit=limit, cursor=cursor
            )
        return JobPage(rows, next_cursor)

    def _transition(
        self,
        tenant_id: str,
        job_id: str,
        allowed: tuple[str, ...],
        to: str,
        *,
        enqueue: bool = False,
    ) -> Job:
        with self.sessions.begin() as s:
            job = s.get(Job, job_id, with_for_update=True)
            if job is None or job.tenant_id != tenant_id:
                raise NotFound(f"job {job_id!r} not found", code="job_not_found")
            if job.status not in allowed:
                raise InputError(
                    f"a {job.status} job cannot become {to}", code="invalid_transition", status=409
                )
            if enqueue and (
                job.media_purged_at is not None or not self.media.exists(job.media_sha256)
            ):
                raise BastionError(
                    f"the media of job {job_id} was deleted after the retention period; "
                    "submit it again as a new job",
                    code="media_expired",
                    status=410,
                )
            job.status = to
            job.updated_at = datetime.now(UTC)
            if to in FINAL_STATES:
                job.finished_at = job.updated_at
            if to == "cancelled" and job.callback_url:
                outbox.enqueue(
                    s,
                    job.tenant_id,
                    "job.cancelled",
                    job.callback_url,
                    event_payload(job),
                    subject_id=job.id,
                )
            if enqueue:
                job.error_code = job.error_message = None
                job.progress, job.attempts, job.finished_at = 0.0, 0, None
                self.queue.add(s, TOPIC, {"job_id": job.id})
            return job

    def cancel(self, tenant_id: str, job_id: str) -> Job:
        return self._transition(tenant_id, job_id, ("queued", "processing", "paused"), "cancelled")

    def pause(self, tenant_id: str, job_id: str) -> Job:
        return self._transition(tenant_id, job_id, ("queued",), "paused")

    def resume(self, tenant_id: str, job_id: str) -> Job:
        return self._transition(tenant_id, job_id, ("paused",), "queued", enqueue=True)

    def retry(self, tenant_id: str, job_id: str) -> Job:
        return self._transition(tenant_id, job_id, ("failed", "cancelled"), "queued", enqueue=True)
