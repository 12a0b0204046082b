"""Async jobs: POST /v1/jobs, status, listing, cancel/pause/resume/retry, deliveries, secrets.

A job is an image, a video or audio (``kind``); an audio job's result is the
:class:`~bastion.pipeline.audio.AudioResult`, and the transcript of an audio job or of
a video job's sound is served as subtitles (``/v1/jobs/{id}/subtitles.srt`` and
``.vtt``). A policy that names no analyzer of audio cannot take audio (422
``no_audio_analyzer``).

The options of ``POST /v1/jobs`` (:class:`JobOptions`) come from the query string or,
with a multipart body, from form fields alike; the same option given both ways with
different values is 422 ``conflicting_field``, an unknown query parameter or form field
422 ``unknown_field``. ``metadata`` and every JSON body are parsed with bounds on size,
items and depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from bastion.api.auth import Admin, Moderator, Reader
from bastion.api.errors import validated
from bastion.api.inputs import (
    FIELD_MAX_BYTES,
    MediaRef,
    check_query,
    declared_length,
    inline_json_bytes,
    is_json,
    merge_field,
    parse_ref,
    read_body,
)
from bastion.api.job_upload import receive_job_media, replayed_form_fields
from bastion.api.params import DbIdList, IdPath, IsoDatetime, SinceQuery
from bastion.api.services import Services, services
from bastion.delivery import outbox, signing
from bastion.delivery.tables import Delivery
from bastion.errors import BastionError, InputError, NotFound, UnsupportedMediaType
from bastion.jobs.audio_job import Listening, check_language
from bastion.jobs.tables import Job
from bastion.media.fetch import check_url
from bastion.media.video_config import VideoOptions
from bastion.parsing.json_doc import InvalidJson, parse_json_async
from bastion.pipeline.audio import NoAudioAnalyzer, has_audio_analyzer
from bastion.policy.model import LANGUAGE_CODE, Policy
from bastion.results import TranscriptSegment
from bastion.store.types import UtcTime
from bastion.text.subtitles import to_srt, to_vtt

router = APIRouter(prefix="/v1", tags=["jobs"])
Svc = Annotated[Services, Depends(services)]


class AttemptOut(BaseModel):
    attempted_at: UtcTime
    status_code: int | None
    latency_ms: float | None
    error: str | None


class DeliveryOut(BaseModel):
    id: int
    webhook_id: str
    event_type: str
    url: str
    state: str
    attempts: int
    next_attempt_at: UtcTime | None
    last_status: int | None
    last_error: str | None
    created_at: UtcTime
    history: list[AttemptOut] = Field(default_factory=list)


class JobOut(BaseModel):
    id: str
    status: str
    kind: str
    progress: float = Field(description="0–1 while processing.")
    policy: str | None
    callback_url: str | None
    metadata: dict[str, Any]
    media_sha256: str
    created_at: UtcTime
    started_at: UtcTime | None
    finished_at: UtcTime | None
    attempts: int
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    options: dict[str, Any] | None = Field(
        None,
        description="What the request chose beyond the defaults (video sampling, the spoken "
        "language).",
    )
    media_purged_at: UtcTime | None = Field(
        None, description="When retention deleted the media; the job can no longer be retried."
    )
    status_url: str
    deliveries: list[DeliveryOut] = Field(default_factory=list)

    @classmethod
    def of(cls, job: Job, request: Request, deliveries: list[DeliveryOut] | None = None) -> JobOut:
        error = {"code": job.error_code, "message": job.error_message} if job.error_code else None
        return cls(
            id=job.id,
            status=job.status,
            kind=job.kind,
            progress=job.progress,
            policy=job.policy,
            callback_url=job.callback_url,
            metadata=job.meta or {},
            media_sha256=job.media_sha256,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            attempts=job.attempts,
            error=error,
            result=job.result,
            options=job.options,
            media_purged_at=job.media_purged_at,
            status_url=str(request.url_for("get_job", job_id=job.id)),
            deliveries=deliveries or [],
        )


class JobList(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None


def _delivery_out(d: Any, history: list[Any] | None = None) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        webhook_id=d.webhook_id,
        event_type=d.event_type,
        url=d.url,
        state=d.state,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        last_status=d.last_status,
        last_error=d.last_error,
        created_at=d.created_at,
        history=[
            AttemptOut(
                attempted_at=a.attempted_at,
                status_code=a.status_code,
                latency_ms=a.latency_ms,
                error=a.error,
            )
            for a in history or []
        ],
    )


def _job_deliveries(svc: Services, tenant_id: str, job_id: str) -> list[DeliveryOut]:
    with svc.db_sessions() as s:
        rows = s.scalars(
            select(Delivery)
            .where(Delivery.tenant_id == tenant_id, Delivery.subject_id == job_id)
            .order_by(Delivery.id)
        )
        return [_delivery_out(d, outbox.list_attempts(s, d.id)) for d in rows]


METADATA_MAX_BYTES = 64 * 1024
METADATA_MAX_DEPTH = 16
METADATA_MAX_ITEMS = 2000


_LANGUAGE_HELP = (
    "Audio and the sound of videos: the spoken language (ISO 639-1, e.g. 'es'), "
    "transcribed in it rather than detected; default: the policy's `speech.language`."
)


_LANGUAGES_HELP = (
    "Audio and the sound of videos: the languages speech may be in, separated by commas "
    "(ISO 639-1, e.g. 'en,es'); the language is detected among these alone. Default: "
    "the policy's `speech.languages`."
)
_LANGUAGES_PATTERN = r"^[a-z]{2,3}(,[a-z]{2,3}){0,19}$"


class JobOptions(BaseModel):
    """What a job request may choose, as query parameters or as multipart form fields."""

    model_config = ConfigDict(extra="forbid")

    policy: str | None = Field(None, max_length=64, description="Policy name.")
    callback_url: str | None = Field(
        None, max_length=2048, description="Where the result is sent (a signed webhook)."
    )
    metadata: str | None = Field(
        None,
        max_length=METADATA_MAX_BYTES,
        description="A JSON object echoed in the job and its webhooks "
        f"(at most {METADATA_MAX_DEPTH} levels, {METADATA_MAX_ITEMS} items).",
    )
    sample_every: float | None = Field(
        None, description="Videos: analyse one frame every this many seconds."
    )
    keyframes_only: bool | None = Field(
        None, description="Videos: analyse keyframes only (fastest)."
    )
    max_frames: int | None = Field(
        None, description="Videos: most frames analysed (at most the configured maximum)."
    )
    stop_on_block: bool | None = Field(None, description="Videos: stop at the first blocked frame.")
    language: str | None = Field(
        None,
        pattern=LANGUAGE_CODE,
        description=_LANGUAGE_HELP,
    )
    languages: str | None = Field(
        None,
        pattern=_LANGUAGES_PATTERN,
        description=_LANGUAGES_HELP,
    )


_OPTION_NAMES = frozenset(JobOptions.model_fields)
_FORM_FIELDS = {
    name: METADATA_MAX_BYTES if name == "metadata" else FIELD_MAX_BYTES for name in _OPTION_NAMES
}


async def _check_json_body(request: Request, svc: Services) -> None:
    """A JSON body is small: even a repeated request's must be one Bastion takes (a
    replayed form is checked by :func:`replayed_form_fields`; a raw upload's media is not
    read again)."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if not is_json(ctype):
        return
    async with svc.admission.memory.hold(declared_length(request)) as held:
        limit = inline_json_bytes(svc.settings.limits.max_bytes)
        await parse_ref(await read_body(request, limit, held, what="a JSON body"))


def _form_options(fields: dict[str, str]) -> JobOptions:
    given = {k: v for k, v in fields.items() if v != ""}  # an empty form field is no value
    return validated(JobOptions, given, "the form fields do not validate")


def _merge(query: JobOptions, form: JobOptions) -> JobOptions:
    values = {
        name: merge_field(name, getattr(query, name), getattr(form, name))
        for name in JobOptions.model_fields
    }
    return JobOptions.model_construct(**values)


@dataclass(frozen=True)
class _Prepared:
    metadata: dict[str, Any]
    options: dict[str, Any] | None


async def _metadata(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    if len(text) > METADATA_MAX_BYTES:
        raise InputError(
            f"metadata is longer than {METADATA_MAX_BYTES} characters", code="invalid_metadata"
        )
    try:
        meta = await parse_json_async(
            text, max_depth=METADATA_MAX_DEPTH, max_items=METADATA_MAX_ITEMS
        )
    except InvalidJson as exc:
        raise InputError(
            f"metadata must be a JSON object: {exc.message}", code="invalid_metadata"
        ) from None
    except BastionError as exc:  # too deep, too many items
        raise BastionError(
            f"metadata: {exc.message}", code=exc.code, status=exc.status, details=exc.details
        ) from None
    if not isinstance(meta, dict):
        raise InputError("metadata must be a JSON object", code="invalid_metadata")
    return meta


async def _prepare(options: JobOptions, svc: Services) -> _Prepared:
    """Check the options (400/422) and turn them into what a job stores."""
    meta = await _metadata(options.metadata)
    video = VideoOptions.parse(
        {
            "sample_every": options.sample_every,
            "keyframes_only": options.keyframes_only,
            "max_frames": options.max_frames,
            "stop_on_block": options.stop_on_block,
        }
    )
    video.check(svc.settings.video)
    stored: dict[str, Any] = {}
    if not video.is_empty():
        stored["video"] = video.model_dump(exclude_none=True)
    audio = _audio_options(options)
    if audio:
        stored["audio"] = audio
    if options.callback_url:
        await run_in_threadpool(check_url, options.callback_url, svc.settings.fetch_policy())
    return _Prepared(meta, stored or None)


def _check_sound(svc: Services, kind: str, policy: Policy, options: JobOptions) -> None:
    """Audio needs an analyzer of audio in the policy (422 ``no_audio_analyzer``); a
    forced language, or the languages detection is restricted to, must be ones its
    speech analyzers transcribe (400 ``unsupported_language``)."""
    engine = svc.moderation.engine
    if kind == "audio" and not has_audio_analyzer(engine, policy):
        raise NoAudioAnalyzer(
            f"the policy {policy.name!r} names no analyzer of audio, so it cannot moderate "
            "audio (add 'speech' to its analyzers)",
            details={"policy": policy.name},
        )
    if kind in {"audio", "video"}:
        check_language(engine, policy, Listening.of(_audio_options(options), policy))


def _audio_options(options: JobOptions) -> dict[str, Any]:
    """The job's ``audio`` options as stored: what the request chose of the language."""
    audio: dict[str, Any] = {}
    if options.language is not None:
        audio["language"] = options.language
    if options.languages is not None:
        audio["languages"] = list(dict.fromkeys(options.languages.split(",")))
    return audio


def _job_body() -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    fields = JobOptions.model_json_schema()["properties"]
    return {
        "requestBody": {
            "description": "The image, video or audio: a multipart `file` (or `url`), the raw "
            'body, or JSON `{"url": ...}` / `{"base64": ...}`. Every option may be a query '
            "parameter or, with a multipart body, a form field.",
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "url": {
                                "type": "string",
                                "maxLength": 4096,
                                "description": "Instead of a file: an http(s) URL to fetch.",
                            },
                            **fields,
                        },
                        "additionalProperties": False,
                    }
                },
                "video/*": binary,
                "audio/*": binary,
                "image/*": binary,
                "application/octet-stream": binary,
                "application/json": {"schema": MediaRef.model_json_schema()},
            },
        }
    }


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobOut,
    openapi_extra=_job_body(),
    summary="Queue an image, a video or audio for moderation",
)
async def create_job(
    request: Request,
    response: Response,
    who: Moderator,
    svc: Svc,
    policy: Annotated[str | None, Query(max_length=64)] = None,
    callback_url: Annotated[str | None, Query(max_length=2048)] = None,
    metadata: Annotated[
        str | None,
        Query(max_length=METADATA_MAX_BYTES, description="JSON object echoed in webhooks."),
    ] = None,
    sample_every: Annotated[
        float | None, Query(description="Videos: analyse one frame every this many seconds.")
    ] = None,
    keyframes_only: Annotated[
        bool | None, Query(description="Videos: analyse keyframes only (fastest).")
    ] = None,
    max_frames: Annotated[
        int | None,
        Query(description="Videos: most frames analysed (at most the configured maximum)."),
    ] = None,
    stop_on_block: Annotated[
        bool | None, Query(description="Videos: stop at the first blocked frame.")
    ] = None,
    language: Annotated[
        str | None, Query(pattern=LANGUAGE_CODE, description=_LANGUAGE_HELP)
    ] = None,
    languages: Annotated[
        str | None, Query(pattern=_LANGUAGES_PATTERN, description=_LANGUAGES_HELP)
    ] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobOut:
    """The media is the raw body, a multipart ``file`` or a URL (JSON ``url`` or a form
    field); it is streamed to disk, at most ``jobs_max_bytes``. Video options override
    the configured sampling for this job; ``language`` forces the spoken language of
    audio and of a video's sound. Every option may also be a form field."""
    check_query(request, _OPTION_NAMES)
    options = JobOptions.model_construct(
        policy=policy,
        callback_url=callback_url,
        metadata=metadata,
        sample_every=sample_every,
        keyframes_only=keyframes_only,
        max_frames=max_frames,
        stop_on_block=stop_on_block,
        language=language,
        languages=languages,
    )
    prepared = await _prepare(options, svc)  # bad query options fail before the body is read
    if idempotency_key is not None:  # a repeated request: answer without reading its media
        found = await run_in_threadpool(svc.jobs.find_by_key, who.tenant_id, idempotency_key)
        if found is not None:
            await _check_json_body(request, svc)
            fields = await replayed_form_fields(
                request, svc.settings, svc.admission, form_fields=_FORM_FIELDS
            )
            if fields:
                await _prepare(_merge(options, _form_options(fields)), svc)
            response.status_code = 200
            response.headers["Location"] = str(request.url_for("get_job", job_id=found.id))
            return JobOut.of(found, request)
    # The upload streams to disk under the budget of uploads being received; it takes no
    # analysis slot, so a slow uploader holds nothing the image path needs.
    async with receive_job_media(
        request, svc.settings, svc.jobs.media, svc.admission, form_fields=_FORM_FIELDS
    ) as item:
        if item.fields:
            options = _merge(options, _form_options(item.fields))
            prepared = await _prepare(options, svc)
        policy_used, _ = await run_in_threadpool(
            svc.policies.resolve, who.tenant_id, options.policy
        )
        stored = await item.commit()  # settles the kind: audio in an MP4 or WebM is audio
        await run_in_threadpool(_check_sound, svc, item.kind, policy_used, options)
        job, created = await run_in_threadpool(
            lambda: svc.jobs.create_stored(
                who.tenant_id,
                stored,
                kind=item.kind,
                content_type=item.content_type,
                policy=options.policy,
                callback_url=options.callback_url,
                metadata=prepared.metadata,
                idempotency_key=idempotency_key,
                options=prepared.options,
            )
        )
    if not created:
        response.status_code = 200
    response.headers["Location"] = str(request.url_for("get_job", job_id=job.id))
    return JobOut.of(job, request)


@router.get("/jobs/{job_id}", response_model=JobOut, name="get_job")
async def get_job(job_id: str, request: Request, who: Reader, svc: Svc) -> JobOut:
    job = await run_in_threadpool(svc.jobs.get, who.tenant_id, job_id)
    deliveries = await run_in_threadpool(_job_deliveries, svc, who.tenant_id, job_id)
    return JobOut.of(job, request, deliveries)


@router.get(
    "/jobs/{job_id}/thumbnails/{name}",
    response_class=FileResponse,
    summary="A JPEG thumbnail of a flagged video frame (linked from the job's result)",
    responses={200: {"content": {"image/jpeg": {}}}},
)
async def get_thumbnail(job_id: str, name: str, who: Reader, svc: Svc) -> FileResponse:
    job = await run_in_threadpool(svc.jobs.get, who.tenant_id, job_id)
    path = svc.jobs.thumbnails.path(job.id, name)
    if path is None or not await run_in_threadpool(path.is_file):
        if job.media_purged_at is not None:
            raise BastionError(
                f"the thumbnails of job {job_id} were deleted after the retention period",
                code="media_expired",
                status=410,
            )
        raise NotFound(f"job {job_id} has no thumbnail {name!r}", code="thumbnail_not_found")
    return FileResponse(
        path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"}
    )


def _transcript(job: Job) -> list[TranscriptSegment]:
    """The transcript of a succeeded job's result: an audio job's, a video job's sound's.

    409 ``job_not_succeeded`` before the job succeeded (or when it failed or was
    cancelled); 404 ``no_transcript`` when its result has none (an image, a video whose
    sound was not analysed)."""
    if job.status != "succeeded":
        raise BastionError(
            f"job {job.id} is {job.status}: subtitles come with its result",
            code="job_not_succeeded",
            status=409,
            details={"status": job.status},
        )
    result = job.result or {}
    heard = result.get("audio") if job.kind == "video" else result
    segments = heard.get("transcript") if isinstance(heard, dict) else None
    if not isinstance(segments, list):
        raise NotFound(
            f"job {job.id} has no transcript (no sound was analysed)", code="no_transcript"
        )
    return [TranscriptSegment.model_validate(seg) for seg in segments]


_SUBTITLES = {
    "srt": ("application/x-subrip; charset=utf-8", to_srt),
    "vtt": ("text/vtt; charset=utf-8", to_vtt),
}


def _subtitles_route(fmt: str) -> Any:
    media_type, write = _SUBTITLES[fmt]

    async def subtitles(job_id: str, who: Reader, svc: Svc) -> PlainTextResponse:
        job = await run_in_threadpool(svc.jobs.get, who.tenant_id, job_id)
        text = await run_in_threadpool(lambda: write(_transcript(job)))
        return PlainTextResponse(text, media_type=media_type)

    subtitles.__name__ = f"job_subtitles_{fmt}"
    return subtitles


for _fmt, (_media_type, _) in _SUBTITLES.items():
    router.add_api_route(
        f"/jobs/{{job_id}}/subtitles.{_fmt}",
        _subtitles_route(_fmt),
        methods=["GET"],
        response_class=PlainTextResponse,
        summary=f"The transcript of an audio job or of a video job's sound as {_fmt.upper()} "
        "subtitles",
        responses={200: {"content": {_media_type.split(";")[0]: {}}}},
    )


@router.get("/jobs", response_model=JobList)
async def list_jobs(
    request: Request,
    who: Reader,
    svc: Svc,
    status: str | None = None,
    since: SinceQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> JobList:
    page = await run_in_threadpool(
        lambda: svc.jobs.list(who.tenant_id, status=status, since=since, limit=limit, cursor=cursor)
    )
    return JobList(jobs=[JobOut.of(j, request) for j in page.jobs], next_cursor=page.next_cursor)


def _action(name: str) -> Any:
    async def act(job_id: str, request: Request, who: Moderator, svc: Svc) -> JobOut:
        job = await run_in_threadpool(getattr(svc.jobs, name), who.tenant_id, job_id)
        return JobOut.of(job, request)

    act.__name__ = f"{name}_job"
    return act


for _name in ("cancel", "pause", "resume", "retry"):
    router.add_api_route(
        f"/jobs/{{job_id}}/{_name}",
        _action(_name),
        methods=["POST"],
        response_model=JobOut,
        summary=f"{_name.capitalize()} a job",
    )


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
    next_cursor: str | None


@router.get("/deliveries", response_model=DeliveryList, tags=["webhooks"])
async def list_deliveries(
    who: Reader,
    svc: Svc,
    state: str | None = None,
    since: SinceQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> DeliveryList:
    def run() -> DeliveryList:
        with svc.db_sessions() as s:
            page = outbox.list_deliveries(s, who.tenant_id, state, since, limit, cursor)
            return DeliveryList(
                deliveries=[_delivery_out(d) for d in page.items], next_cursor=page.next_cursor
            )

    return await run_in_threadpool(run)


class RedriveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: DbIdList | None = None
    event_type: str | None = None
    since: IsoDatetime | None = None
    until: IsoDatetime | None = None


@router.post("/deliveries/{delivery_id}/redrive", tags=["webhooks"])
async def redrive_one(delivery_id: IdPath, who: Moderator, svc: Svc) -> dict[str, int]:
    def run() -> int:
        with svc.db_sessions.begin() as s:
            return outbox.redrive(s, [delivery_id], tenant_id=who.tenant_id)

    n = await run_in_threadpool(run)
    if n == 0:
        raise NotFound(f"no dead delivery {delivery_id}", code="delivery_not_found")
    return {"redriven": n}


REDRIVE_MAX_BYTES = 1024 * 1024
REDRIVE_MAX_ITEMS = 10_000


async def _redrive_body(request: Request, svc: Services) -> RedriveIn:
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype and not is_json(ctype):
        raise UnsupportedMediaType(f"content-type {ctype!r} is not accepted: send JSON")
    async with svc.admission.memory.hold(declared_length(request)) as held:
        try:
            raw = await read_body(request, REDRIVE_MAX_BYTES, held, what="the body")
        except BastionError as exc:
            if exc.status != 413:
                raise
            raise BastionError(
                exc.message, code="request_too_large", status=413, details=exc.details
            ) from None
        payload = await parse_json_async(raw, max_depth=3, max_items=REDRIVE_MAX_ITEMS)
    if payload is None:
        raise InputError("send a JSON object (`{}` redrives every dead delivery)", status=422)
    return validated(RedriveIn, payload, "the body does not validate")


@router.post(
    "/deliveries/redrive",
    tags=["webhooks"],
    summary="Redrive dead deliveries in bulk",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": RedriveIn.model_json_schema()}},
        }
    },
)
async def redrive_many(request: Request, who: Moderator, svc: Svc) -> dict[str, int]:
    body = await _redrive_body(request, svc)

    def run() -> int:
        with svc.db_sessions.begin() as s:
            return outbox.redrive(
                s,
                body.ids,
                tenant_id=who.tenant_id,
                event_type=body.event_type,
                since=body.since,
                until=body.until,
            )

    return {"redriven": await run_in_threadpool(run)}


@router.get("/webhooks/secret", tags=["webhooks"], summary="The tenant's signing secret")
async def webhook_secret(who: Admin, svc: Svc) -> dict[str, str]:
    def run() -> str:
        with svc.db_sessions.begin() as s:
            return signing.get_or_create_secret(s, who.tenant_id)

    return {"secret": await run_in_threadpool(run)}


@router.post(
    "/webhooks/secret/rotate",
    tags=["webhooks"],
    summary="Rotate the signing secret (the old one still signs during the grace period)",
)
async def rotate_secret(who: Admin, svc: Svc) -> dict[str, str]:
    def run() -> str:
        with svc.db_sessions.begin() as s:
            return signing.rotate(s, who.tenant_id, svc.settings.delivery.secret_grace_s)

    return {"secret": await run_in_threadpool(run)}
