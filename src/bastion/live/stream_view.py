"""A stream as people watch it: its row with its open alerts and its latest frame.

The portal's live view and the stream feed (:mod:`bastion.live.stream_feed`) both show a
stream as a *tile*: status, channel, counters, how many of its alerts are still open
(``open`` or ``acknowledged``), whether one of them is about explicit or gory content
(so its picture is shown blurred), and the latest analysed frame. A stream Bastion reads
itself keeps that frame in its row (``last_thumbnail``); a stream whose frames the
platform pushes keeps only the frames its rules fired on, so its latest is the newest
frame of its alerts. :class:`StreamViews` reads tiles for a tenant in a few queries,
whatever the number of streams.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, sessionmaker

from bastion.errors import InputError, NotFound
from bastion.live.counters import stream_counters
from bastion.live.tables import OPEN_ALERT_STATES, STREAM_STATES, Alert, Stream
from bastion.policy import taxonomy

SENSITIVE_CATEGORIES = frozenset({"Explicit Nudity", "Violence", "Visually Disturbing"})
"""L1 categories whose media people see blurred until they ask (explicit or gory)."""

MAX_TILES = 500


def sensitive(labels: Iterable[str]) -> bool:
    """Whether any of ``labels`` (taxonomy names, L1 or L2) is explicit or gory."""
    for name in labels:
        category = taxonomy.CATEGORIES.get(name)
        if category is None:
            continue
        if (category.parent or category.name) in SENSITIVE_CATEGORIES:
            return True
    return False


def label_names(labels: Sequence[Any] | None) -> list[str]:
    """The names of an alert's stored labels (``[{"name", "confidence"}]``)."""
    return [str(item.get("name", "")) for item in labels or [] if isinstance(item, dict)]


@dataclass(frozen=True, slots=True)
class StreamTile:
    """One stream with what its tile shows besides its row."""

    stream: Stream
    open_alerts: int
    sensitive: bool
    """One of its open alerts fired on explicit or gory labels."""
    frame: str | None
    """The latest analysed frame's thumbnail name (under the stream's folder), if any."""
    changed_at: datetime
    """The newest change of the stream or of one of its alerts."""

    @property
    def frame_version(self) -> str | None:
        """Changes whenever the latest frame does (the thumbnail's content digest)."""
        return self.frame[:12] if self.frame else None


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def thumbnail_path(stream_id: str, version: str | None) -> str | None:
    """The portal's URL of a stream's latest frame; the version makes browsers fetch
    the new picture when it changes."""
    if version is None:
        return None
    return f"/portal/streams/{stream_id}/thumbnail?v={version}"


def stream_json(tile: StreamTile) -> dict[str, Any]:
    """A tile as the stream feed sends it (``{"type": "stream.updated", "stream": ...}``)."""
    row = tile.stream
    return {
        "id": row.id,
        "stream_id": row.stream_id,
        "channel": row.channel,
        "status": row.status,
        "status_reason": row.status_reason,
        "counters": stream_counters(row.counters),
        "last_frame_at": _iso(row.last_frame_at),
        "thumbnail_url": thumbnail_path(row.stream_id, tile.frame_version),
        "open_alerts": tile.open_alerts,
        "sensitive": tile.sensitive,
        "updated_at": _iso(row.updated_at),
        "stopped_at": _iso(row.stopped_at),
        "stopped_by": row.stopped_by,
    }


class StreamViews:
    """Reads streams as tiles; the portal's way to its live view."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def tiles(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        channel: str | None = None,
        include_ended: bool = False,
        limit: int = 200,
    ) -> list[StreamTile]:
        """A tenant's streams, newest first: those in ``status``, else those still wanted
        running (and the stopped ones too with ``include_ended``)."""
        if status is not None and status not in STREAM_STATES:
            raise InputError(f"status must be one of {list(STREAM_STATES)}", code="invalid_status")
        q = select(Stream).where(Stream.tenant_id == tenant_id)
        if status is not None:
            q = q.where(Stream.status == status)
        elif not include_ended:
            q = q.where(Stream.desired == "running")
        q = q.where(Stream.channel == channel) if channel is not None else q
        q = q.order_by(Stream.created_at.desc(), Stream.id).limit(max(1, min(limit, MAX_TILES)))
        with self.sessions() as s:
            return self.tiles_of(s, list(s.scalars(q)))

    def tile(self, tenant_id: str, stream_id: str) -> StreamTile:
        """One stream's tile; 404 ``stream_not_found`` for another tenant's or none."""
        with self.sessions() as s:
            row = s.scalars(
                select(Stream).where(Stream.tenant_id == tenant_id, Stream.stream_id == stream_id)
            ).first()
            if row is None:
                raise NotFound(f"stream {stream_id!r} not found", code="stream_not_found")
            return self.tiles_of(s, [row])[0]

    def channels(self, tenant_id: str, limit: int = 200) -> list[str]:
        """The channels of a tenant's streams, for filters."""
        q = (
            select(Stream.channel)
            .distinct()
            .where(Stream.tenant_id == tenant_id)
            .order_by(Stream.channel)
            .limit(limit)
        )
        with self.sessions() as s:
            return list(s.scalars(q))

    def tiles_of(
        self,
        s: Session,
        rows: Sequence[Stream],
        alert_changes: dict[str, datetime] | None = None,
    ) -> list[StreamTile]:
        """Tiles of ``rows`` (in ``s``), in their order; ``alert_changes`` gives, per
        stream key, the newest alert change the caller saw."""
        pks = [row.id for row in rows]
        if not pks:
            return []
        counts: dict[str, int] = {}
        flagged: set[str] = set()
        for pk, labels in s.execute(
            select(Alert.stream_pk, Alert.labels).where(
                Alert.stream_pk.in_(pks), Alert.state.in_(OPEN_ALERT_STATES)
            )
        ):
            counts[pk] = counts.get(pk, 0) + 1
            if sensitive(label_names(labels)):
                flagged.add(pk)
        frames = {row.id: row.last_thumbnail for row in rows if row.last_thumbnail}
        pushed = [pk for pk in pks if pk not in frames]
        if pushed:
            newest = (
                select(Alert.stream_pk, func.max(Alert.updated_at).label("at"))
                .where(Alert.stream_pk.in_(pushed), Alert.thumbnail.is_not(None))
                .group_by(Alert.stream_pk)
                .subquery()
            )
            q = select(Alert.stream_pk, Alert.thumbnail).join(
                newest, and_(Alert.stream_pk == newest.c.stream_pk, Alert.updated_at == newest.c.at)
            )
            for pk, name in s.execute(q):
                if name:
                    frames.setdefault(pk, name)
        changes = alert_changes or {}
        return [
            StreamTile(
                stream=row,
                open_alerts=counts.get(row.id, 0),
                sensitive=row.id in flagged,
                frame=frames.get(row.id),
                changed_at=max(row.updated_at, changes.get(row.id, row.updated_at)),
            )
            for row in rows
        ]
