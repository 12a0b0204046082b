"""The stream feed: every change of a stream's tile, pushed to the subscribers of its tenant.

The portal's live view shows each stream's status, counters, open alerts and latest
frame without reloading. Streams are written by stream workers and by whichever API
process took a pushed frame, so, like the alert feed (:mod:`bastion.live.alerts.feed`),
this feed watches the database: every ``poll_s`` while anyone is subscribed it reads
the subscribed tenants' streams whose ``updated_at`` is at or after its watermark less
``overlap_s``, and the streams whose alerts changed in that window (an alert raised,
counted again or closed changes the stream's open alerts and latest frame). Each is
turned into a tile (:mod:`bastion.live.stream_view`) and sent as
``{"type": "stream.updated", "stream": {...}}`` when its JSON differs from the last one
sent for that stream, so the overlap sends nothing twice while a change written late
(e.g. the alert counter a pushed frame adds after its alert) still goes out.

Subscriptions are the alert feed's :class:`~bastion.live.alerts.feed.Subscription`:
bounded queues, and one that falls behind is closed without holding the others up.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bastion.live.alerts.feed import DatabaseFeed, FeedConfig
from bastion.live.stream_view import StreamViews, stream_json
from bastion.live.tables import Alert, Stream

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Change:
    tenant_id: str
    id: str
    at: datetime
    """The newest change of the stream or of its alerts."""
    stream: dict[str, Any]
    digest: str


def _digest(value: dict[str, Any]) -> str:
    raw = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


class StreamFeed(DatabaseFeed):
    what = "stream changes"

    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: FeedConfig | None = None,
        views: StreamViews | None = None,
    ) -> None:
        super().__init__(sessions, config)
        self.views = views or StreamViews(sessions)
        """How streams are read as tiles (the live view reads them the same way)."""
        self._sent: dict[str, tuple[str, datetime]] = {}

    # polling --------------------------------------------------------------------
    def _read(self, tenants: list[str], cutoff: datetime) -> list[_Change]:
        """Tiles of the streams that changed, or whose alerts did, at or after ``cutoff``
        (in a worker thread)."""
        with self.sessions() as s:
            rows = {
                row.id: row
                for row in s.scalars(
                    select(Stream).where(Stream.tenant_id.in_(tenants), Stream.updated_at >= cutoff)
                )
            }
            alert_changes: dict[str, datetime] = {
                pk: at
                for pk, at in s.execute(
                    select(Alert.stream_pk, func.max(Alert.updated_at))
                    .where(Alert.tenant_id.in_(tenants), Alert.updated_at >= cutoff)
                    .group_by(Alert.stream_pk)
                )
            }
            missing = [pk for pk in alert_changes if pk not in rows]
            if missing:
                for row in s.scalars(select(Stream).where(Stream.id.in_(missing))):
                    rows[row.id] = row
            ordered = sorted(rows.values(), key=lambda r: (r.updated_at, r.id))
            tiles = self.views.tiles_of(s, ordered, alert_changes)
        changes = []
        for tile in tiles:
            shown = stream_json(tile)
            row = tile.stream
            changes.append(_Change(row.tenant_id, row.id, tile.changed_at, shown, _digest(shown)))
        changes.sort(key=lambda c: (c.at, c.id))
        return changes

    async def poll_once(self) -> int:
        """Read changes once and fan them out; returns how many tiles were sent."""
        tenants = sorted(self._subs)
        if not tenants:  # nobody listens: start afresh with the next subscriber
            self._watermark = None
            self._sent.clear()
            return 0
        if self._watermark is None:
            self._watermark = datetime.now(UTC)
        cutoff = self._watermark - timedelta(seconds=self.config.overlap_s)
        changes = await asyncio.to_thread(self._read, tenants, cutoff)
        self.stats.polls += 1
        if not self._subs:
            return 0
        fanned = 0
        for change in changes:
            self._watermark = max(self._watermark, change.at)
            seen = self._sent.get(change.id)
            if seen is not None and seen[0] == change.digest:
                self._sent[change.id] = (change.digest, max(seen[1], change.at))
                continue
            self._sent[change.id] = (change.digest, change.at)
            message = json.dumps({"type": "stream.updated", "stream": change.stream})
            self._fan_out(change.tenant_id, message)
            fanned += 1
        prune_before = self._watermark - timedelta(seconds=self.config.overlap_s)
        for pk in [k for k, (_, at) in self._sent.items() if at < prune_before]:
            del self._sent[pk]
        self.stats.sent += fanned
        return fanned
