"""Rekognition's stored-video operations as Bastion video jobs: ``StartContentModeration`` /
``GetContentModeration`` and ``StartLabelDetection`` / ``GetLabelDetection``.

Start reads ``Video.S3Object`` (:mod:`bastion.aws.s3`) into the job media store and
creates a video job exactly as ``POST /v1/jobs`` does (:meth:`JobService.create_stored`,
the tenant's default policy, the whole video analysed), so the same ``JobId`` is also
the native job (``GET /v1/jobs/{id}``). What the request asked for is kept in the job's
``options.rekognition``. ``ClientRequestToken`` is the job's idempotency key within the
tenant (the same token with other parameters: IdempotentParameterMismatchException).
``NotificationChannel.SNSTopicArn`` must be a topic of settings ``aws.topics`` shared
with the tenant; when the job ends, the completion message SNS would carry (``JobId``,
``Status``, ``API``, ``JobTag``, ``Timestamp``, ``Video``) goes to the topic's webhook
through Bastion's signed, retried webhook delivery (:func:`completion_message`).

Get answers ``JobStatus`` IN_PROGRESS | SUCCEEDED | FAILED and, once succeeded, the
``VideoMetadata`` and the detections of the analysed frames with their timestamps
(moderation labels in Rekognition's taxonomy, :mod:`bastion.aws.taxonomy`; descriptive
tags as labels), at least ``MinConfidence``, sorted by ``SortBy`` and aggregated by
``AggregateBy`` (``SEGMENTS``: consecutive analysed frames with the same label as one
detection with start, end and duration), paged by ``MaxResults`` (1 or more, at most
1000 returned) and ``NextToken``. A token is bound to its job, sort and aggregation and
carries a checksum: any other is InvalidPaginationTokenException. A job id unknown to
the tenant, or of the other operation, is ResourceNotFoundException.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio

from bastion.aws import taxonomy
from bastion.aws.call import AwsCall, AwsError, Handler, Params
from bastion.aws.s3 import S3Ref, parse_s3_object, read_s3_video
from bastion.errors import BastionError
from bastion.jobs.tables import Job
from bastion.media.fetch import check_url

CONTENT_MODERATION = "StartContentModeration"
LABEL_DETECTION = "StartLabelDetection"
MAX_RESULTS = 1000
DEFAULT_MIN_CONFIDENCE = 50.0

_TOKEN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_JOB_TAG = re.compile(r"^[a-zA-Z0-9_.\-:+=/]{1,1024}$")
_TOPIC_ARN = re.compile(r"^arn:aws:sns:.*:\w{12}:.+$")
_ROLE_ARN = re.compile(r"^arn:aws:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
_FILTERS = ("LabelInclusionFilters", "LabelExclusionFilters")
_CATEGORY_FILTERS = ("LabelCategoryInclusionFilters", "LabelCategoryExclusionFilters")


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message)


def _only(params: Params, allowed: Iterable[str], where: str = "the request") -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise _invalid(f"{where} has unknown fields: {', '.join(unknown)}")


def _string(params: Params, name: str, pattern: re.Pattern[str]) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise _invalid(f"{name} must match {pattern.pattern}")
    return value


def _percent(params: Params, name: str, default: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise _invalid(f"{name} must be a number from 0 to 100")
    return float(value)


# Start -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _StartRequest:
    api: str
    video: S3Ref
    min_confidence: float
    token: str | None
    job_tag: str | None
    topic_arn: str | None
    filters: dict[str, list[str]]
    fingerprint: str


def _label_settings(params: Params) -> dict[str, list[str]]:
    features = params.get("Features")
    if features is not None and (
        not isinstance(features, list)
        or len(features) > 1
        or any(f != "GENERAL_LABELS" for f in features)
    ):
        raise _invalid("Features may only be ['GENERAL_LABELS']")
    settings = params.get("Settings")
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise _invalid("Settings must be an object")
    _only(settings, ("GeneralLabels",), "Settings")
    general = settings.get("GeneralLabels") or {}
    if not isinstance(general, Mapping):
        raise _invalid("Settings.GeneralLabels must be an object")
    _only(general, _FILTERS + _CATEGORY_FILTERS, "Settings.GeneralLabels")
    for name in _CATEGORY_FILTERS:
        if general.get(name):
            raise _invalid(f"Settings.GeneralLabels.{name} is not supported by Bastion")
    out: dict[str, list[str]] = {}
    for name in _FILTERS:
        values = general.get(name)
        if values is None:
            continue
        if (
            not isinstance(values, list)
            or len(values) > 100
            or not all(isinstance(v, str) and 1 <= len(v) <= 100 for v in values)
        ):
            raise _invalid(f"Settings.GeneralLabels.{name} must be at most 100 label names")
        out[name] = list(values)
    return out


def _start_request(api: str, params: Params) -> _StartRequest:
    common = ("Video", "MinConfidence", "ClientRequestToken", "NotificationChannel", "JobTag")
    extra = ("Features", "Settings") if api == LABEL_DETECTION else ()
    _only(params, common + extra)
    video = params.get("Video")
    if not isinstance(video, Mapping) or "S3Object" not in video:
        raise _invalid("Video.S3Object is required: Bastion reads stored videos from buckets")
    _only(video, ("S3Object",), "Video")
    ref = parse_s3_object(video["S3Object"], where="Video.S3Object")
    channel = params.get("NotificationChannel")
    topic = None
    if channel is not None:
        if not isinstance(channel, Mapping):
            raise _invalid("NotificationChannel must be an object")
        _only(channel, ("SNSTopicArn", "RoleArn"), "NotificationChannel")
        topic = _string(channel, "SNSTopicArn", _TOPIC_ARN)
        role = _string(channel, "RoleArn", _ROLE_ARN)
        if topic is None or role is None:
            raise _invalid("NotificationChannel needs SNSTopicArn and RoleArn")
    filters = _label_settings(params) if api == LABEL_DETECTION else {}
    fingerprint = hashlib.sha256(
        json.dumps(
            {k: v for k, v in params.items() if k != "ClientRequestToken"},
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()
    return _StartRequest(
        api=api,
        video=ref,
        min_confidence=_percent(params, "MinConfidence", DEFAULT_MIN_CONFIDENCE),
        token=_string(params, "ClientRequestToken", _TOKEN),
        job_tag=_string(params, "JobTag", _JOB_TAG),
        topic_arn=topic,
        filters=filters,
        fingerprint=fingerprint,
    )


def _topic_url(call: AwsCall, arn: str | None) -> str | None:
    if arn is None:
        return None
    topic = call.svc.settings.aws.topics.get(arn)
    if topic is None or call.principal.tenant_id not in topic.tenants:
        raise _invalid(
            f"SNSTopicArn {arn!r} is not a topic of this tenant (settings aws.topics maps each "
            "topic to a webhook)"
        )
    return topic.url


def _options(req: _StartRequest) -> dict[str, Any]:
    aws: dict[str, Any] = {
        "api": req.api,
        "video": req.video.as_shape(),
        "min_confidence": req.min_confidence,
        "request": req.fingerprint,
    }
    if req.job_tag is not None:
        aws["job_tag"] = req.job_tag
    if req.topic_arn is not None:
        aws["topic_arn"] = req.topic_arn
    if req.filters:
        aws["filters"] = req.filters
    # Rekognition analyses the whole video: no stop at the first blocked frame
    return {"rekognition": aws, "video": {"stop_on_block": False}}


def _idempotency_key(req: _StartRequest) -> str | None:
    return None if req.token is None else f"rekognition:{req.api}:{req.token}"


def _same_request(job: Job, req: _StartRequest) -> str:
    stored = (job.options or {}).get("rekognition") or {}
    if stored.get("api") != req.api or stored.get("request") != req.fingerprint:
        raise AwsError(
            "IdempotentParameterMismatchException",
            "ClientRequestToken was used before with other parameters",
        )
    return job.id


async def _start(api: str, call: AwsCall, params: Params) -> dict[str, Any]:
    if not call.principal.has("moderate"):
        raise AwsError("AccessDeniedException", "this access key lacks the 'moderate' scope")
    req = _start_request(api, params)
    svc, tenant = call.svc, call.principal.tenant_id
    url = _topic_url(call, req.topic_arn)
    key = _idempotency_key(req)
    if key is not None:
        found = await anyio.to_thread.run_sync(svc.jobs.find_by_key, tenant, key)
        if found is not None:
            return {"JobId": _same_request(found, req)}
    if url is not None:
        try:
            await anyio.to_thread.run_sync(check_url, url, svc.settings.fetch_policy())
        except BastionError as exc:
            raise _invalid(f"the webhook of {req.topic_arn!r} is refused: {exc.message}") from None
    try:
        await anyio.to_thread.run_sync(svc.policies.resolve, tenant, None)
    except BastionError as exc:
        raise _invalid(f"the tenant's policy cannot be used: {exc.message}") from None
    limit = min(svc.settings.aws.max_s3_video_bytes, svc.settings.jobs_max_bytes)
    writer = await anyio.to_thread.run_sync(svc.jobs.media.writer, limit)
    try:
        await read_s3_video(call, req.video, writer.write, max_bytes=limit)
        stored = await anyio.to_thread.run_sync(writer.commit)
    finally:
        if not writer.finished:
            await anyio.to_thread.run_sync(writer.discard)
    job, created = await anyio.to_thread.run_sync(
        lambda: svc.jobs.create_stored(
            tenant,
            stored,
            kind="video",
            callback_url=url,
            idempotency_key=key,
            options=_options(req),
        )
    )
    return {"JobId": job.id if created else _same_request(job, req)}


async def start_content_moderation(call: AwsCall, params: Params) -> dict[str, Any]:
    """``StartContentModeration``: a video job moderating ``Video.S3Object``."""
    return await _start(CONTENT_MODERATION, call, params)


async def start_label_detection(call: AwsCall, params: Params) -> dict[str, Any]:
    """``StartLabelDetection``: a video job whose frames' tags are the labels."""
    return await _start(LABEL_DETECTION, call, params)


# Get ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _GetRequest:
    job_id: str
    max_results: int
    token: str | None
    sort_by: str
    aggregate_by: str


def _get_request(params: Params) -> _GetRequest:
    _only(params, ("JobId", "MaxResults", "NextToken", "SortBy", "AggregateBy"))
    job_id = params.get("JobId")
    if not isinstance(job_id, str) or not _TOKEN.match(job_id):
        raise _invalid("JobId is required: 1 to 64 letters, digits, '-' and '_'")
    max_results = params.get("MaxResults", MAX_RESULTS)
    if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
        raise _invalid("MaxResults must be an integer of at least 1")
    token = params.get("NextToken")
    if token is not None and (not isinstance(token, str) or len(token) > 255):
        raise AwsError("InvalidPaginationTokenException", "NextToken is not a token Bastion gave")
    sort_by = params.get("SortBy", "TIMESTAMP")
    if sort_by not in ("NAME", "TIMESTAMP"):
        raise _invalid("SortBy must be NAME or TIMESTAMP")
    aggregate_by = params.get("AggregateBy", "TIMESTAMPS")
    if aggregate_by not in ("TIMESTAMPS", "SEGMENTS"):
        raise _invalid("AggregateBy must be TIMESTAMPS or SEGMENTS")
    return _GetRequest(job_id, min(max_results, MAX_RESULTS), token, sort_by, aggregate_by)


def _token_check(job_id: str, body: str) -> str:
    return hmac.new(job_id.encode(), body.encode(), hashlib.sha256).hexdigest()[:20]


def _make_token(req: _GetRequest, offset: int) -> str:
    body = base64.urlsafe_b64encode(
        json.dumps([offset, req.sort_by, req.aggregate_by], separators=(",", ":")).encode()
    ).decode()
    return f"{body}.{_token_check(req.job_id, body)}"


def _offset(req: _GetRequest, total: int) -> int:
    if req.token is None:
        return 0
    bad = AwsError(
        "InvalidPaginationTokenException",
        "NextToken is not one this job's results gave with this SortBy and AggregateBy",
    )
    body, _, check = req.token.partition(".")
    if not hmac.compare_digest(check, _token_check(req.job_id, body)):
        raise bad
    try:
        offset, sort_by, aggregate_by = json.loads(base64.urlsafe_b64decode(body.encode()))
    except (ValueError, TypeError):
        raise bad from None
    if (
        not isinstance(offset, int)
        or not 0 < offset <= total
        or (sort_by, aggregate_by) != (req.sort_by, req.aggregate_by)
    ):
        raise bad
    return offset


def _job(call: AwsCall, req: _GetRequest, api: str) -> Job:
    try:
        job = call.svc.jobs.get(call.principal.tenant_id, req.job_id)
    except BastionError:
        job = None
    if job is None or ((job.options or {}).get("rekognition") or {}).get("api") != api:
        raise AwsError("ResourceNotFoundException", f"no {api} job {req.job_id!r}")
    return job


def job_status(job: Job) -> str:
    """Rekognition's name of a job's status."""
    if job.status == "succeeded":
        return "SUCCEEDED"
    if job.status in ("failed", "cancelled"):
        return "FAILED"
    return "IN_PROGRESS"


def _video_metadata(result: Mapping[str, Any]) -> dict[str, Any]:
    media = result.get("media") or {}
    meta: dict[str, Any] = {
        "Format": media.get("format"),
        "Codec": media.get("codec"),
        "DurationMillis": media.get("duration_ms"),
        "FrameRate": media.get("fps"),
        "FrameHeight": media.get("height"),
        "FrameWidth": media.get("width"),
    }
    return {k: v for k, v in meta.items() if v is not None}


Detection = tuple[int, str, float, dict[str, Any]]
"""One detection before shaping: timestamp, name, confidence, the rest of its item."""


def _segments(
    frames: list[int], found: list[Detection]
) -> list[tuple[int, int, str, float, dict[str, Any]]]:
    """Consecutive analysed frames with the same name merged: (start, end, name, best, rest)."""
    position = {ts: i for i, ts in enumerate(frames)}
    by_name: dict[str, list[Detection]] = {}
    for det in sorted(found, key=lambda d: d[0]):
        by_name.setdefault(det[1], []).append(det)
    out: list[tuple[int, int, str, float, dict[str, Any]]] = []
    for name, dets in by_name.items():
        run: list[Detection] = []
        for det in dets:
            if run and position[det[0]] > position[run[-1][0]] + 1:
                out.append(_segment(name, run))
                run = []
            run.append(det)
        out.append(_segment(name, run))
    return out


def _segment(name: str, run: list[Detection]) -> tuple[int, int, str, float, dict[str, Any]]:
    return run[0][0], run[-1][0], name, max(d[2] for d in run), run[0][3]


def _items(
    req: _GetRequest,
    result: Mapping[str, Any],
    detect: Callable[[Mapping[str, Any]], list[tuple[str, float, dict[str, Any]]]],
    shape: Callable[[str, float, dict[str, Any]], dict[str, Any]],
    item_key: str,
) -> list[dict[str, Any]]:
    frames = result.get("frames") or []
    found: list[Detection] = []
    stamps: list[int] = []
    for frame in frames:
        ts = int(frame.get("timestamp_ms") or 0)
        if stamps and stamps[-1] == ts:
            continue  # two frames on one millisecond: the first stands for both
        stamps.append(ts)
        found.extend((ts, name, conf, rest) for name, conf, rest in detect(frame))
    items: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    if req.aggregate_by == "SEGMENTS":
        for start, end, name, conf, rest in _segments(stamps, found):
            item = {
                "Timestamp": start,
                "StartTimestampMillis": start,
                "EndTimestampMillis": end,
                "DurationMillis": end - start,
                item_key: shape(name, conf, rest),
            }
            items.append(((start, name), item))
    else:
        for ts, name, conf, rest in found:
            items.append(((ts, name), {"Timestamp": ts, item_key: shape(name, conf, rest)}))
    if req.sort_by == "NAME":
        items.sort(key=lambda kv: (kv[0][1], kv[0][0]))
    else:
        items.sort(key=lambda kv: kv[0])
    return [item for _, item in items]


async def _get(
    api: str,
    call: AwsCall,
    params: Params,
    detect: Callable[[Job], Callable[[Mapping[str, Any]], list[tuple[str, float, dict[str, Any]]]]],
    shape: Callable[[str, float, dict[str, Any]], dict[str, Any]],
    item_key: str,
    list_key: str,
) -> dict[str, Any]:
    req = _get_request(params)
    job = await anyio.to_thread.run_sync(_job, call, req, api)
    aws = (job.options or {}).get("rekognition") or {}
    out: dict[str, Any] = {"JobStatus": job_status(job), "JobId": job.id}
    out["Video"] = {"S3Object": aws.get("video") or {}}
    if aws.get("job_tag"):
        out["JobTag"] = aws["job_tag"]
    out["GetRequestMetadata"] = {"SortBy": req.sort_by, "AggregateBy": req.aggregate_by}
    if job.status in ("failed", "cancelled"):
        out["StatusMessage"] = job.error_message or f"the job was {job.status}"
    if job.status != "succeeded" or not job.result:
        if req.token is not None:
            _offset(req, 0)  # no results yet: no token is valid
        return out
    items = await anyio.to_thread.run_sync(
        lambda: _items(req, job.result or {}, detect(job), shape, item_key)
    )
    start = _offset(req, len(items))
    end = start + req.max_results
    out["VideoMetadata"] = _video_metadata(job.result)
    out[list_key] = items[start:end]
    if end < len(items):
        out["NextToken"] = _make_token(req, end)
    return out


def _moderation_detect(
    job: Job,
) -> Callable[[Mapping[str, Any]], list[tuple[str, float, dict[str, Any]]]]:
    least = float(((job.options or {}).get("rekognition") or {}).get("min_confidence", 50.0))

    def detect(frame: Mapping[str, Any]) -> list[tuple[str, float, dict[str, Any]]]:
        named = [
            (str(label.get("name")), float(label.get("confidence", 0)))
            for label in frame.get("labels") or []
        ]
        return [
            (
                s.label.name,
                s.confidence,
                {"ParentName": s.label.parent, "TaxonomyLevel": s.label.level},
            )
            for s in taxonomy.to_v7(named)
            if s.confidence >= least
        ]

    return detect


def _moderation_shape(name: str, confidence: float, mapped: dict[str, Any]) -> dict[str, Any]:
    return {**mapped, "Name": name, "Confidence": round(confidence, 3)}


def _label_detect(
    job: Job,
) -> Callable[[Mapping[str, Any]], list[tuple[str, float, dict[str, Any]]]]:
    aws = (job.options or {}).get("rekognition") or {}
    least = float(aws.get("min_confidence", 50.0))
    filters = aws.get("filters") or {}
    include = {n.lower() for n in filters.get("LabelInclusionFilters") or []}
    exclude = {n.lower() for n in filters.get("LabelExclusionFilters") or []}

    def detect(frame: Mapping[str, Any]) -> list[tuple[str, float, dict[str, Any]]]:
        best: dict[str, float] = {}
        for tag in frame.get("tags") or []:
            name = str(tag.get("name", ""))
            conf = float(tag.get("confidence", 0))
            key = name.lower()
            if not name or ":" in name or conf < least or key in exclude:
                continue  # "product:" hints are not labels
            if include and key not in include:
                continue
            best[name] = max(best.get(name, 0.0), conf)
        return [(name, conf, {}) for name, conf in best.items()]

    return detect


def _label_shape(name: str, confidence: float, _: dict[str, Any]) -> dict[str, Any]:
    return {"Name": name, "Confidence": round(confidence, 3), "Instances": [], "Parents": []}


async def get_content_moderation(call: AwsCall, params: Params) -> dict[str, Any]:
    """``GetContentModeration``: the job's status and its moderation labels over time."""
    out = await _get(
        CONTENT_MODERATION,
        call,
        params,
        _moderation_detect,
        _moderation_shape,
        "ModerationLabel",
        "ModerationLabels",
    )
    out["ModerationModelVersion"] = taxonomy.MODEL_VERSION
    return out


async def get_label_detection(call: AwsCall, params: Params) -> dict[str, Any]:
    """``GetLabelDetection``: the job's status and its frames' labels over time."""
    out = await _get(LABEL_DETECTION, call, params, _label_detect, _label_shape, "Label", "Labels")
    out["LabelModelVersion"] = "bastion-labels"
    return out


# notification ------------------------------------------------------------------------------


def completion_message(job: Job) -> dict[str, Any]:
    """What SNS would deliver when a Rekognition video job ends: the notification envelope
    with the completion message (``JobId``, ``Status``, ``API``, ``JobTag``, ``Timestamp``
    in epoch milliseconds, ``Video``) as its JSON ``Message``."""
    aws = (job.options or {}).get("rekognition") or {}
    video = aws.get("video") or {}
    at = job.finished_at or job.updated_at or datetime.now(UTC)
    status = job_status(job)
    message: dict[str, Any] = {
        "JobId": job.id,
        "Status": "SUCCEEDED" if status == "SUCCEEDED" else "FAILED",
        "API": aws.get("api", ""),
        "Timestamp": int(at.timestamp() * 1000),
        "Video": {"S3ObjectName": video.get("Name", ""), "S3Bucket": video.get("Bucket", "")},
    }
    if aws.get("job_tag"):
        message["JobTag"] = aws["job_tag"]
    return {
        "Type": "Notification",
        "MessageId": f"{job.id}-{job.status}",
        "TopicArn": aws.get("topic_arn", ""),
        "Message": json.dumps(message, separators=(",", ":")),
        "Timestamp": at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


OPERATIONS: Mapping[str, Handler] = {
    "StartContentModeration": start_content_moderation,
    "GetContentModeration": get_content_moderation,
    "StartLabelDetection": start_label_detection,
    "GetLabelDetection": get_label_detection,
}
"""The video operations by name (``X-Amz-Target: RekognitionService.<name>``)."""
