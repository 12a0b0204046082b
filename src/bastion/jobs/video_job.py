"""A video job: the configured limits and sampling, the job's overrides, linked thumbnails."""

from __future__ import annotations

from collections.abc import Callable

from bastion.jobs.audio_job import job_listening
from bastion.jobs.service import JobService
from bastion.jobs.tables import Job
from bastion.media.video_config import VideoOptions
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.video import VideoResult, moderate_video
from bastion.policy.model import Lists, Policy


def job_video_options(job: Job) -> VideoOptions:
    """The overrides stored on the job (none: the configured defaults)."""
    return VideoOptions.model_validate((job.options or {}).get("video") or {})


async def moderate_video_job(
    moderation: Moderation,
    jobs: JobService,
    job: Job,
    policy: Policy,
    lists: Lists | None,
    progress: Callable[[float], None] | None,
) -> VideoResult:
    """The job's result: the video result with each thumbnail as its API path."""
    config = jobs.video
    options = job_video_options(job)
    path = jobs.stored_media(job)
    thumbs = jobs.thumbnails.folder(job.id) if config.thumbnails else None
    listening = job_listening(job, policy)
    video = await moderate_video(
        moderation,
        path,
        policy,
        options.sampling(config),
        tenant=job.tenant_id,
        extra_lists=lists,
        early_stop_on_block=options.early_stop(config),
        progress=progress,
        thumbnails_dir=thumbs,
        limits=config.limits,
        concurrency=config.concurrency,
        reuse=config.reuse,
        language=listening.language,
        languages=listening.languages,
    )
    for frame in video.frames:
        if frame.thumbnail is not None:
            frame.thumbnail = jobs.thumbnails.url(job.id, frame.thumbnail)
    return video
