"""The worker: leases job messages, runs them through the same way into moderation as the
sync API (:class:`~bastion.pipeline.moderation.Moderation`) and stores the result, its
webhook deliveries, its review item (when the result is ``review``) and the queue
acknowledgement in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import or_, update

from bastion.delivery import outbox
from bastion.errors import BastionError
from bastion.jobs.config import JobsConfig
from bastion.jobs.queue import Leased
from bastion.jobs.service import TOPIC, JobService, event_payload, media_expired
from bastion.jobs.tables import Job
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.policies import PolicyBook
from bastion.review.service import ReviewService
from bastion.search.feed import SearchFeed

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class WorkerStats:
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    running: set[str] = field(default_factory=set)


class Worker:
    """Runs jobs until stopped; any number of workers may share one queue and database."""

    def __init__(
        self,
        moderation: Moderation,
        jobs: JobService,
        policies: PolicyBook,
        config: JobsConfig,
        *,
        review: ReviewService | None = None,
        search: SearchFeed | None = None,
    ) -> None:
        self.moderation = moderation
        self.jobs = jobs
        self.policies = policies
        self.config = config
        self.review = review
        """Where results that are ``review`` are queued (None: nowhere)."""
        self.search = search
        """Indexes succeeded jobs for search, in the background (None: not indexed)."""
        self.stats = WorkerStats()

    # claiming --------------------------------------------------------------
    def _claim(self, job_id: str) -> tuple[Job | None, float | None]:
        """Take the job: queued, or processing under an expired lease (its worker died).

        Returns the job, or None and how long until the lease of the worker holding it
        ends (None when there is nothing to run: cancelled, paused, finished, unknown).
        """
        now = _now()
        with self.jobs.sessions.begin() as s:
            res = s.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    or_(
                        Job.status == "queued",
                        (Job.status == "processing") & (Job.lease_until < now),
                    ),
                )
                .values(
                    status="processing",
                    attempts=Job.attempts + 1,
                    lease_until=now + timedelta(seconds=self.config.lease_s),
                    started_at=now,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            if res.rowcount == 1:  # type: ignore[attr-defined]
                return s.get(Job, job_id), None
            job = s.get(Job, job_id)
            if job is not None and job.status == "processing" and job.lease_until is not None:
                return None, max(0.0, (job.lease_until - now).total_seconds())
            return None, None

    def _heartbeat_sync(self, job_id: str, progress: float | None) -> str | None:
        """Extend the job's lease (and record progress); returns its status."""
        with self.jobs.sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is None:
                return None
            if job.status == "processing":
                job.lease_until = _now() + timedelta(seconds=self.config.lease_s)
                if progress is not None:
                    job.progress = round(progress, 4)
            return job.status

    # finishing -------------------------------------------------------------
    def _finish(
        self,
        msg: Leased,
        job_id: str,
        *,
        result: dict[str, Any] | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> bool:
        """Store the outcome (its webhooks, and its review item when the result is
        ``review``); True when the queue message was acknowledged in the same
        transaction."""
        status = "succeeded" if code is None else "failed"
        with self.jobs.sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is not None and job.status == "processing":
                now = _now()
                job.status, job.updated_at, job.finished_at = status, now, now
                job.lease_until = None
                if status == "succeeded":
                    job.result, job.progress = result, 1.0
                    if self.review is not None:
                        self.review.enqueue_job(s, job)
                else:
                    job.error_code, job.error_message = code, message
                if job.callback_url:
                    outbox.enqueue(
                        s,
                        job.tenant_id,
                        f"job.{status}",
                        job.callback_url,
                        event_payload(job),
                        subject_id=job.id,
                    )
            return self.jobs.queue.ack_in(s, msg)

    async def _finish_and_ack(self, msg: Leased, job_id: str, **outcome: Any) -> None:
        if not await asyncio.to_thread(self._finish, msg, job_id, **outcome):
            await self.jobs.queue.ack(msg)  # after the commit: a crash here only redelivers

    # running ---------------------------------------------------------------
    async def _analyze(self, job: Job, progress: Any) -> BaseModel:
        """The job's typed result (an image's, a video's or an audio file's)."""
        policy, lists = await asyncio.to_thread(self.policies.resolve, job.tenant_id, job.policy)
        path = self.jobs.media.path(job.media_sha256)
        if job.kind == "video":
            from bastion.jobs.video_job import moderate_video_job

            return await moderate_video_job(
                self.moderation, self.jobs, job, policy, lists, progress
            )
        if job.kind == "audio":
            from bastion.jobs.audio_job import moderate_audio_job

            return await moderate_audio_job(
                self.moderation, self.jobs, job, policy, lists, progress
            )
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as exc:
            raise media_expired(job.id) from exc
        res = await self.moderation.moderate_bytes(
            data,
            policy,
            tenant=job.tenant_id,
            extra_lists=lists,
            content_type=job.content_type,
            store=True,
        )
        return res

    async def handle(self, msg: Leased) -> None:
        job_id = str(msg.body.get("job_id", ""))
        job, busy_for = await asyncio.to_thread(self._claim, job_id)
        if job is None:
            if busy_for is not None:  # another worker holds it: look again when its lease ends
                await self.jobs.queue.defer(msg, delay_s=busy_for + 0.5)
            else:  # cancelled, paused or finished
                await self.jobs.queue.ack(msg)
            self.stats.skipped += 1
            return
        if job.attempts > self.config.max_attempts:  # its runs keep dying with their worker
            await asyncio.to_thread(
                self._fail_for_good,
                job_id,
                "attempts_exhausted",
                f"the job was started {job.attempts - 1} times and never finished",
            )
            await self.jobs.queue.ack(msg)
            self.stats.failed += 1
            return
        self.stats.running.add(job_id)
        latest: list[float | None] = [None]
        work = asyncio.create_task(self._analyze(job, lambda f: latest.__setitem__(0, f)))
        beat = asyncio.create_task(self._beat(msg, job_id, latest, work))
        try:
            typed = await work
            result = typed.model_dump(mode="json")
        except asyncio.CancelledError:
            if beat.done() and not beat.cancelled() and beat.result() == "cancelled":
                await self.jobs.queue.ack(msg)  # cancelled by the API: nothing more to do
                return
            # the worker is stopping: hand the job back at once rather than at lease end
            await asyncio.shield(self._hand_back(msg, job_id))
            raise
        except BastionError as exc:
            if exc.status < 500:  # the input is at fault: retrying cannot help
                await self._finish_and_ack(msg, job_id, code=exc.code, message=exc.message)
                self.stats.failed += 1
                return
            await self._retry(msg, job_id, exc.code, exc.message)
            return
        except Exception as exc:
            log.exception("job %s failed", job_id)
            await self._retry(msg, job_id, "internal_error", f"{type(exc).__name__}: {exc}")
            return
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await beat
            self.stats.running.discard(job_id)
        await self._finish_and_ack(msg, job_id, result=result)
        if self.search is not None:  # after the job is stored: never fails nor delays it
            # the typed result keeps what the stored JSON leaves out (image embeddings)
            await self.search.submit_or_wait(self.search.job(job, result, typed), "job")
        self.stats.succeeded += 1

    async def _hand_back(self, msg: Leased, job_id: str) -> None:
        def release() -> None:
            with self.jobs.sessions.begin() as s:
                job = s.get(Job, job_id)
                if job is not None and job.status == "processing":
                    job.status, job.lease_until = "queued", None
                    job.attempts = max(0, job.attempts - 1)

        try:
            await asyncio.to_thread(release)
            await self.jobs.queue.defer(msg, delay_s=0.0)
        except Exception:  # the lease runs out instead
            log.warning("could not hand job %s back", job_id, exc_info=True)

    async def _beat(
        self, msg: Leased, job_id: str, latest: list[float | None], work: asyncio.Task[Any]
    ) -> str:
        interval = max(0.05, min(self.config.lease_s / 3, 5.0))
        while True:
            await asyncio.sleep(interval)
            status = await asyncio.to_thread(self._heartbeat_sync, job_id, latest[0])
            await self.jobs.queue.extend(msg, lease_s=self.config.lease_s)
            if status == "cancelled":
                work.cancel()
                return "cancelled"

    async def _retry(self, msg: Leased, job_id: str, code: str, message: str) -> None:
        delay = self.config.retry_delay_s * 2 ** max(0, msg.attempt - 1)
        outcome = await self.jobs.queue.nack(msg, delay_s=delay, error=f"{code}: {message}")
        if outcome == "dead" or msg.attempt >= self.config.max_attempts:
            await asyncio.to_thread(self._fail_for_good, job_id, code, message)
            self.stats.failed += 1
        else:
            await asyncio.to_thread(self._requeue, job_id, message)
            self.stats.retried += 1

    def _requeue(self, job_id: str, message: str) -> None:
        with self.jobs.sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is not None and job.status == "processing":
                job.status, job.lease_until = "queued", None
                job.error_message = f"retrying after: {message}"

    def _fail_for_good(self, job_id: str, code: str, message: str) -> None:
        with self.jobs.sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is None or job.status != "processing":
                return
            now = _now()
            job.status, job.error_code, job.error_message = "failed", code, message
            job.updated_at = job.finished_at = now
            job.lease_until = None
            if job.callback_url:
                outbox.enqueue(
                    s,
                    job.tenant_id,
                    "job.failed",
                    job.callback_url,
                    event_payload(job),
                    subject_id=job.id,
                )

    # loop ------------------------------------------------------------------
    async def run_once(self, wait_s: float = 0.0) -> bool:
        """Lease and run one job; False when the queue had nothing ready."""
        msg = await self.jobs.queue.lease(TOPIC, lease_s=self.config.lease_s, wait_s=wait_s)
        if msg is None:
            return False
        await self.handle(msg)
        return True

    async def run_forever(self, stop: asyncio.Event) -> None:
        slots = asyncio.Semaphore(self.config.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            await slots.acquire()
            try:
                msg = await self.jobs.queue.lease(
                    TOPIC, lease_s=self.config.lease_s, wait_s=self.config.poll_s
                )
            except Exception:
                log.exception("queue lease failed")
                msg = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(1.0, self.config.poll_s))
            if msg is None:
                slots.release()
                continue
            task = asyncio.create_task(self.handle(msg))
            tasks.add(task)

            def done(t: asyncio.Task[None]) -> None:
                tasks.discard(t)
                slots.release()

            task.add_done_callback(done)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
