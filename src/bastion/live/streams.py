"""Streams: registration, status, claiming by workers, and stopping.

A stream is a row in ``streams``. Workers *claim* streams that want to run and have no
live claim (a lease, like jobs): a worker that dies stops renewing, and another one
takes its streams over within ``live.lease_s``. Stopping a stream — by an ``auto_stop``
rule, a moderator, or the API — marks it stopped, closes its open alerts as
``stream_stopped`` and, when ``live.stop_hook_url`` is set, queues a signed call to the
platform's stop hook through the webhook outbox (retried like every webhook), all in
one transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bastion.delivery import outbox
from bastion.errors import BastionError, InputError, NotFound
from bastion.live.config import LiveConfig
from bastion.live.reading.source import parse_source
from bastion.live.spec import StreamSpec
from bastion.live.tables import OPEN_ALERT_STATES, STREAM_STATES, Alert, Stream
from bastion.media.fetch import FetchPolicy, check_url
from bastion.store.repo import DEFAULT_TENANT

STREAM_SCHEMES = ("rtmp", "rtmps", "http", "https", "rtsp", "rtsps", "srt")


def _now() -> datetime:
    return datetime.now(UTC)


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamReport:
    """What a running session writes back now and then (``status`` None: unchanged)."""

    status: str | None
    reason: str | None = None
    code: str | None = None
    counters: dict[str, int] | None = None
    last_frame_ms: int | None = None
    last_frame_at: datetime | None = None
    last_thumbnail: str | None = None


class StreamService:
    def __init__(
        self, sessions: sessionmaker[Session], config: LiveConfig, url_policy: FetchPolicy
    ) -> None:
        self.sessions = sessions
        self.config = config
        self.url_policy = url_policy.model_copy(update={"schemes": STREAM_SCHEMES})

    # registration -------------------------------------------------------------
    def check_source(self, url: str) -> None:
        """Refuse sources that are not stream URLs or point at private addresses (SSRF)."""
        parse_source(url)
        check_url(url, self.url_policy)

    def register_configured(self, specs: Sequence[StreamSpec]) -> None:
        """Register the streams of the configuration (``live.streams``) for the default
        tenant; one that cannot be registered is logged and skipped, the others go on."""
        for spec in specs:
            try:
                _, created = self.register(DEFAULT_TENANT, spec)
            except Exception as exc:
                log.error("stream %s from the configuration was not registered: %s", spec.id, exc)
                continue
            if created:
                log.info("stream %s (%s) registered from the configuration", spec.id, spec.channel)

    def register(self, tenant_id: str, spec: StreamSpec) -> tuple[Stream, bool]:
        """The stream, and False when it was already running under that id (unchanged)."""
        if spec.source_url is not None:
            self.check_source(spec.source_url)
        now = _now()
        with self.sessions.begin() as s:
            row = s.scalars(
                select(Stream)
                .where(Stream.tenant_id == tenant_id, Stream.stream_id == spec.id)
                .with_for_update()
            ).first()
            given_up = row is not None and row.status in ("offline", "error")
            if row is not None and row.desired == "running" and not given_up:
                same = (row.channel, row.source_url) == (spec.channel, spec.source_url)
                if not same:
                    raise InputError(
                        f"stream {spec.id!r} is running with another channel or source; "
                        "end it first (DELETE /v1/streams/{id})",
                        code="stream_exists",
                        status=409,
                    )
                return row, False
            if row is None:
                row = Stream(id="str_" + uuid.uuid4().hex, tenant_id=tenant_id, stream_id=spec.id)
                row.created_at = now
                s.add(row)
            row.channel, row.source_url = spec.channel, spec.source_url
            row.streamer_id, row.streamer_tier = spec.streamer_id, spec.streamer_tier
            row.meta = spec.metadata
            row.desired, row.status = "running", "starting" if spec.source_url else "live"
            row.status_reason = row.status_code = None
            row.owner, row.lease_until = None, None
            row.counters, row.last_sample_s, row.last_hash = {}, None, None
            row.stopped_at, row.stopped_by = None, None
            row.updated_at = now
            s.flush()
            return row, True

    def get(self, tenant_id: str, stream_id: str) -> Stream:
        with self.sessions() as s:
            row = s.scalars(
                select(Stream).where(Stream.tenant_id == tenant_id, Stream.stream_id == stream_id)
            ).first()
            if row is None:
                raise NotFound(f"stream {stream_id!r} not found", code="stream_not_found")
            return row

    def get_by_pk(self, pk: str) -> Stream | None:
        with self.sessions() as s:
            return s.get(Stream, pk)

    def find(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        channel: str | None = None,
        include_ended: bool = False,
        limit: int = 100,
    ) -> list[Stream]:
        if status is not None and status not in STREAM_STATES:
            raise InputError(f"status must be one of {list(STREAM_STATES)}", code="invalid_status")
        q = select(Stream).where(Stream.tenant_id == tenant_id)
        if status is not None:
            q = q.where(Stream.status == status)
        elif not include_ended:
            q = q.where(Stream.desired == "running")
        if channel is not None:
            q = q.where(Stream.channel == channel)
        with self.sessions() as s:
            return list(s.scalars(q.order_by(Stream.created_at.desc()).limit(limit)))

    # stopping -----------------------------------------------------------------
    @staticmethod
    def locked(s: Session, tenant_id: str, stream_id: str) -> Stream:
        """The stream's row, locked for the caller's transaction; 404 when unknown."""
        row = s.scalars(
            select(Stream)
            .where(Stream.tenant_id == tenant_id, Stream.stream_id == stream_id)
            .with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"stream {stream_id!r} not found", code="stream_not_found")
        return row

    def stop_in(
        self,
        s: Session,
        row: Stream,
        *,
        by: str,
        reason: str,
        call_hook: bool = True,
        alert_id: str | None = None,
    ) -> bool:
        """Stop inside the caller's transaction; False when it was stopped already."""
        if row.desired == "stopped" and row.status == "stopped":
            return False
        now = _now()
        row.desired, row.status, row.status_reason = "stopped", "stopped", reason
        row.status_code = None
        row.stopped_at, row.stopped_by, row.updated_at = now, by, now
        row.lease_until = None  # ``owner`` stays: the last worker, whose final counters count
        for alert in s.scalars(
            select(Alert).where(Alert.stream_pk == row.id, Alert.state.in_(OPEN_ALERT_STATES))
        ):
            alert.state, alert.updated_at = "stream_stopped", now
            alert.version += 1
            alert.handled_by = alert.handled_by or by
        if call_hook and self.config.stop_hook_url:
            outbox.enqueue(
                s,
                row.tenant_id,
                "stream.stop",
                self.config.stop_hook_url,
                {
                    "stream_id": row.stream_id,
                    "channel": row.channel,
                    "streamer_id": row.streamer_id,
                    "metadata": row.meta or {},
                    "stopped_by": by,
                    "reason": reason,
                    "alert_id": alert_id,
                },
                subject_id=row.id,
            )
        return True

    # workers ------------------------------------------------------------------
    def claim(self, owner: str, limit: int) -> list[Stream]:
        """Take up to ``limit`` streams that want to run and have no live claim."""
        if limit <= 0:
            return []
        now = _now()
        claimable = and_(
            Stream.desired == "running",
            Stream.source_url.is_not(None),
            Stream.status.not_in(("offline", "error")),  # given up: until registered again
            or_(Stream.lease_until.is_(None), Stream.lease_until < now),
        )
        taken: list[Stream] = []
        with self.sessions.begin() as s:
            candidates = list(
                s.scalars(
                    select(Stream.id).where(claimable).order_by(Stream.created_at).limit(limit)
                )
            )
            for pk in candidates:
                res = s.execute(
                    update(Stream)
                    .where(Stream.id == pk, claimable)
                    .values(owner=owner, lease_until=now + timedelta(seconds=self.config.lease_s))
                    .execution_options(synchronize_session=False)
                )
                if res.rowcount == 1:  # type: ignore[attr-defined]
                    row = s.get(Stream, pk)
                    if row is not None:
                        s.refresh(row)
                        taken.append(row)
        return taken

    def renew(self, owner: str, pks: list[str]) -> set[str]:
        """Extend our claims; returns the streams still ours and still wanted running."""
        if not pks:
            return set()
        now = _now()
        with self.sessions.begin() as s:
            s.execute(
                update(Stream)
                .where(Stream.id.in_(pks), Stream.owner == owner, Stream.desired == "running")
                .values(lease_until=now + timedelta(seconds=self.config.lease_s))
                .execution_options(synchronize_session=False)
            )
            return set(
                s.scalars(
                    select(Stream.id).where(
                        Stream.id.in_(pks), Stream.owner == owner, Stream.desired == "running"
                    )
                )
            )

    def release(self, owner: str, pk: str) -> None:
        """Give a stream back (this worker is stopping) so another takes it at once."""
        with self.sessions.begin() as s:
            s.execute(
                update(Stream)
                .where(Stream.id == pk, Stream.owner == owner)
                .values(owner=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )

    def report(self, pk: str, owner: str | None, report: StreamReport) -> bool:
        """Write a session's status back; False when the stream is no longer ours."""
        return pk not in self.report_many([(pk, owner, report)])

    def report_many(self, reports: Sequence[tuple[str, str | None, StreamReport]]) -> set[str]:
        """Write the status of many sessions back in one transaction (``(stream pk,
        owner, report)`` each); returns the streams among them that are no longer their
        session's (stopped, deleted or taken over). The rows are locked in key order, so
        two writers never wait on each other in a circle."""
        if not reports:
            return set()
        lost: set[str] = set()
        with self.sessions.begin() as s:
            rows = {
                row.id: row
                for row in s.scalars(
                    select(Stream)
                    .where(Stream.id.in_(sorted({pk for pk, _, _ in reports})))
                    .order_by(Stream.id)
                    .with_for_update()
                )
            }
            now = _now()
            for pk, owner, report in reports:
                if not _apply_report(rows.get(pk), owner, report, now):
                    lost.add(pk)
        return lost


def _apply_report(
    row: Stream | None, owner: str | None, report: StreamReport, now: datetime
) -> bool:
    """One session's report onto its row; False when the row is no longer the session's."""
    if row is None or (owner is not None and row.owner != owner):
        return False
    # counters and the last frame are kept even once the stream was stopped
    if report.counters is not None:
        row.counters = dict(report.counters)
    if report.last_frame_at is not None:
        row.last_frame_at = report.last_frame_at
        row.last_frame_ms = report.last_frame_ms
    if report.last_thumbnail is not None:
        row.last_thumbnail = report.last_thumbnail
    if row.desired != "running":
        return False
    if report.status is not None:
        row.status = report.status
        row.status_reason, row.status_code = report.reason, report.code
    row.updated_at = now
    return True


def stream_not_running(stream: Stream) -> BastionError:
    return InputError(
        f"stream {stream.stream_id!r} is {stream.status}", code="stream_not_running", status=409
    )
