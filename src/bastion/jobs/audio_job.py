"""An audio job: the configured audio limits and windows, the spoken language the request
or the policy chose, the whole :class:`~bastion.pipeline.audio.AudioResult` as result.

The language a job forces (or the languages it restricts detection to) comes from its
``language`` / ``languages`` options (stored in ``options["audio"]``), else from the
policy's ``speech`` options, else it is detected among all; :func:`job_listening` says
which, for the sound of video jobs too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bastion.analyzers.base import ContentKind
from bastion.analyzers.speech import SpeechAnalyzer
from bastion.jobs.service import JobService
from bastion.jobs.tables import Job
from bastion.pipeline.audio import AudioResult, moderate_audio
from bastion.pipeline.engine import Engine
from bastion.pipeline.moderation import Moderation
from bastion.policy.model import Lists, Policy

__all__ = ["Listening", "check_language", "job_listening", "moderate_audio_job"]


@dataclass(frozen=True)
class Listening:
    """How speech is listened to: a forced language, or detection among some languages
    (neither: detected among all, or as the speech analyzer is configured)."""

    language: str | None = None
    languages: tuple[str, ...] | None = None

    @classmethod
    def of(cls, options: Mapping[str, Any] | None, policy: Policy) -> Listening:
        """The request's choice (``options``: the job's ``audio`` options) when it made
        one, else the policy's ``speech`` options."""
        options = options or {}
        language, languages = options.get("language"), options.get("languages")
        if language is None and languages is None and policy.speech is not None:
            language, languages = policy.speech.language, policy.speech.languages
        return cls(
            language if isinstance(language, str) else None,
            tuple(languages) if isinstance(languages, list | tuple) else None,
        )


def job_listening(job: Job, policy: Policy) -> Listening:
    """How the job's speech is listened to: its own options, else its policy's."""
    return Listening.of((job.options or {}).get("audio"), policy)


def check_language(engine: Engine, policy: Policy, listening: Listening) -> None:
    """Raise :class:`~bastion.models.whisper.UnsupportedLanguage` (400
    ``unsupported_language``) when a speech analyzer of ``policy`` cannot transcribe
    the language asked for (a Whisper model that hears English alone, a code Whisper
    does not know, a forced language outside the allowed ones), so a job asking for it
    is refused at once rather than failing later."""
    if listening.language is None and listening.languages is None:
        return
    for name in engine.analyzers_for(
        [n for n in policy.analyzers if n in engine.analyzers], ContentKind.AUDIO_WINDOW
    ):
        analyzer = engine.analyzers[name]
        if isinstance(analyzer, SpeechAnalyzer):
            analyzer.transcriber.plan(listening.language, listening.languages)


async def moderate_audio_job(
    moderation: Moderation,
    jobs: JobService,
    job: Job,
    policy: Policy,
    lists: Lists | None,
    progress: Callable[[float], None] | None,
) -> AudioResult:
    """The job's result: the audio result (stored as JSON)."""
    config = jobs.audio
    path = jobs.stored_media(job)
    listening = job_listening(job, policy)
    heard = await moderate_audio(
        moderation,
        path,
        policy,
        lists,
        tenant=job.tenant_id,
        window_s=config.window_s,
        language=listening.language,
        languages=listening.languages,
        progress=progress,
        limits=config.limits,
        concurrency=config.concurrency,
    )
    return heard
