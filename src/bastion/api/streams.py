"""Live streams: register, list, end, stop; frames pushed by the platform."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, computed_field

from bastion.api.auth import Moderator, Reader
from bastion.api.inputs import declared_length, read_single
from bastion.api.params import MAX_DB_ID, json_body_doc, json_model
from bastion.api.services import Services, services
from bastion.errors import NotFound
from bastion.live.counters import stream_counters
from bastion.live.spec import StreamSpec
from bastion.live.tables import Stream
from bastion.results import ModerationResult
from bastion.store.types import UtcTime

router = APIRouter(prefix="/v1", tags=["streams"])
Svc = Annotated[Services, Depends(services)]


class StreamOut(BaseModel):
    id: str = Field(description="Your id of the stream.")
    channel: str
    source_url: str | None = Field(description="None: frames are pushed by the platform.")
    streamer_id: str | None
    streamer_tier: str
    metadata: dict[str, Any]
    status: str = Field(description="starting, live, reconnecting, offline, stopped or error.")
    status_reason: str | None
    status_code: str | None = Field(description="Stable code of the last failure, if any.")
    worker: str | None = Field(description="The worker reading it now.")
    counters: dict[str, int] = Field(
        description="frames_decoded, frames_sampled, frames_skipped_similar, "
        "frames_analyzed, alerts, frames_dropped, reconnects (pushed streams: "
        "frames_received instead of frames_decoded). frames_analysed, the former name of "
        "frames_analyzed, is still served with the same value; it will be removed."
    )
    last_frame_at: UtcTime | None = Field(description="When the last sampled frame came.")
    last_frame_ms: int | None = Field(description="Its time in the stream (ms).")
    thumbnail_url: str | None = Field(description="The last analysed frame, as a JPEG.")
    created_at: UtcTime
    updated_at: UtcTime
    stopped_at: UtcTime | None
    stopped_by: str | None = Field(description="api, a moderator, or rule:<name>.")


def stream_out(row: Stream) -> StreamOut:
    thumb = f"/v1/streams/{row.stream_id}/thumbnail" if row.last_thumbnail is not None else None
    return StreamOut(
        id=row.stream_id,
        channel=row.channel,
        source_url=row.source_url,
        streamer_id=row.streamer_id,
        streamer_tier=row.streamer_tier,
        metadata=row.meta or {},
        status=row.status,
        status_reason=row.status_reason,
        status_code=row.status_code,
        worker=row.owner,
        counters=stream_counters(row.counters),
        last_frame_at=row.last_frame_at,
        last_frame_ms=row.last_frame_ms,
        thumbnail_url=thumb,
        created_at=row.created_at,
        updated_at=row.updated_at,
        stopped_at=row.stopped_at,
        stopped_by=row.stopped_by,
    )


class StreamList(BaseModel):
    streams: list[StreamOut]


class RuleMatchOut(BaseModel):
    rule: str
    action: str
    reason: str


class FrameOut(BaseModel):
    analyzed: bool = Field(description="False: skipped (see `skipped`).")
    skipped: str | None = Field(
        description="interval (too soon after the last sampled frame) or similar (the "
        "perceptual hash is within the rule set's threshold of the last analysed frame)."
    )
    distance: int | None = Field(description="Hash bits from the last analysed frame.")
    matches: list[RuleMatchOut] = Field(default_factory=list, description="Rules that fired.")
    alert_ids: list[str] = Field(default_factory=list)
    stopped: bool = Field(False, description="An auto_stop rule stopped the stream.")
    result: ModerationResult | None = None
    stream: StreamOut

    # marked deprecated in the OpenAPI document only: pydantic's own ``deprecated`` would
    # warn on every answer served
    @computed_field(  # type: ignore[prop-decorator]
        description="Former name of `analyzed`, still served for one release.",
        json_schema_extra={"deprecated": True},
    )
    @property
    def analysed(self) -> bool:
        return self.analyzed


@router.post(
    "/streams", response_model=StreamOut, status_code=201, openapi_extra=json_body_doc(StreamSpec)
)
async def register_stream(
    request: Request, who: Moderator, svc: Svc, response: Response
) -> StreamOut:
    """Start moderating a stream (or, without `source_url`, accept its pushed frames).
    Registering a running id again with the same channel and source changes nothing (200)."""
    spec = await json_model(request, StreamSpec)  # bounded, parsed off the event loop
    row, created = await run_in_threadpool(svc.streams.register, who.tenant_id, spec)
    if not created:
        response.status_code = 200
    return stream_out(row)


@router.get("/streams", response_model=StreamList)
async def list_streams(
    who: Reader,
    svc: Svc,
    status: Annotated[str | None, Query(description="Only streams in this state.")] = None,
    channel: Annotated[str | None, Query(max_length=256)] = None,
    include_ended: Annotated[bool, Query(description="Also stopped streams.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> StreamList:
    rows = await run_in_threadpool(
        lambda: svc.streams.find(
            who.tenant_id,
            status=status,
            channel=channel,
            include_ended=include_ended,
            limit=limit,
        )
    )
    return StreamList(streams=[stream_out(r) for r in rows])


@router.get("/streams/{stream_id}", response_model=StreamOut)
async def get_stream(stream_id: str, who: Reader, svc: Svc) -> StreamOut:
    return stream_out(await run_in_threadpool(svc.streams.get, who.tenant_id, stream_id))


@router.delete("/streams/{stream_id}", response_model=StreamOut)
async def end_stream(stream_id: str, who: Moderator, svc: Svc) -> StreamOut:
    """The broadcast ended: stop watching it (the stop hook is not called)."""
    row = await run_in_threadpool(
        lambda: svc.alerts.stop_stream(
            who.tenant_id, stream_id, by="api", reason="ended", call_hook=False
        )
    )
    return stream_out(row)


@router.post("/streams/{stream_id}/stop", response_model=StreamOut)
async def stop_stream(stream_id: str, who: Moderator, svc: Svc) -> StreamOut:
    """Stop a broadcast: calls the platform's stop hook and closes its open alerts."""
    row = await run_in_threadpool(
        lambda: svc.alerts.stop_stream(
            who.tenant_id, stream_id, by=f"key:{who.key_id}", reason="stopped by a moderator"
        )
    )
    return stream_out(row)


@router.post("/streams/{stream_id}/frames", response_model=FrameOut)
async def push_frame(
    stream_id: str,
    request: Request,
    who: Moderator,
    svc: Svc,
    timestamp_ms: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_DB_ID,
            description="The frame's time in the stream (default: when it arrived).",
        ),
    ] = None,
) -> FrameOut:
    """A frame sampled by your app: the stream's rules apply as to a stream Bastion reads."""
    svc.admission.check()  # a full server refuses before reading the body
    async with svc.admission.memory.hold(declared_length(request)) as held:
        # the body is read before a slot is taken: a slow sender holds no slot
        item = await read_single(request, svc.settings, None, held=held)
        async with svc.admission.slot(), svc.inflight:
            pushed = await svc.pushed_frames.push(
                who.tenant_id,
                stream_id,
                item.data,
                content_type=item.content_type,
                timestamp_ms=timestamp_ms,
            )
    outcome = pushed.outcome
    return FrameOut(
        analyzed=outcome is not None,
        skipped=pushed.skipped,
        distance=pushed.distance,
        matches=[
            RuleMatchOut(rule=m.rule, action=m.action, reason=m.reason)
            for m in (outcome.matches if outcome else [])
        ],
        alert_ids=outcome.alert_ids if outcome else [],
        stopped=outcome.stopped if outcome else False,
        result=outcome.result if outcome else None,
        stream=stream_out(pushed.stream),
    )


@router.get("/streams/{stream_id}/thumbnail", response_class=FileResponse)
async def stream_thumbnail(stream_id: str, who: Reader, svc: Svc) -> FileResponse:
    row = await run_in_threadpool(svc.streams.get, who.tenant_id, stream_id)
    if row.last_thumbnail is None:
        raise NotFound(f"stream {stream_id!r} has no thumbnail yet", code="thumbnail_not_found")
    path = svc.live_thumbnails.path(row.id, row.last_thumbnail)
    if not path.is_file():
        raise NotFound(f"stream {stream_id!r} has no thumbnail yet", code="thumbnail_not_found")
    return FileResponse(path, media_type="image/jpeg")


@router.get(
    "/streams/{stream_id}/thumbnails/{name}",
    response_class=FileResponse,
    summary="A JPEG of an analysed frame of the stream (linked from search results)",
    responses={200: {"content": {"image/jpeg": {}}}},
)
async def stream_frame_thumbnail(stream_id: str, name: str, who: Reader, svc: Svc) -> FileResponse:
    row = await run_in_threadpool(svc.streams.get, who.tenant_id, stream_id)
    path = svc.live_thumbnails.path(row.id, name)
    if not await run_in_threadpool(path.is_file):  # never saved, or past retention
        raise NotFound(
            f"stream {stream_id!r} has no thumbnail {name!r}", code="thumbnail_not_found"
        )
    return FileResponse(
        path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"}
    )
