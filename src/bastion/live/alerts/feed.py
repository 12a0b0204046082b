"""The alert feed: every alert change, pushed to the WebSocket subscribers of its tenant.

Alerts are written by stream workers, possibly on other machines, so the feed watches
the database rather than listening in process: every ``poll_s`` (while anyone is
subscribed) it reads the subscribed tenants' alerts whose ``updated_at`` is at or
after its watermark (the newest ``updated_at`` it has seen) less ``overlap_s``, through
the ``ix_alerts_tenant_updated`` index. The overlap catches changes that commit after
newer ones were seen and writers whose clocks run a little behind; several changes
with one timestamp are fine too, because the feed remembers which ``(id, version)``
it has sent and sends each once. A change is ``alert.created`` for an alert the feed
has not sent before and that was created within the window, ``alert.updated``
otherwise.

Subscribers have bounded queues: one that falls ``queue_size`` messages behind is
disconnected (it should reconnect and list what it missed with ``GET /v1/alerts?since=``)
and never holds the others up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bastion.live.alerts.view import alert_json
from bastion.live.tables import Alert

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 1013
CLOSE_RESTART = 1012


class FeedConfig(BaseModel):
    """How the alert feed watches the alerts table and treats its subscribers."""

    model_config = ConfigDict(extra="forbid")

    poll_s: float = Field(0.2, gt=0, le=10, description="Seconds between two reads of changes.")
    overlap_s: float = Field(
        5.0,
        ge=0,
        le=600,
        description="How far before the newest change seen each read looks again: covers "
        "transactions that commit late and writers' clocks up to this far behind.",
    )
    queue_size: int = Field(
        500,
        ge=1,
        le=100_000,
        description="Messages a subscriber may fall behind before it is disconnected.",
    )
    keepalive_s: float = Field(
        20.0, gt=0, le=600, description="A ping message goes out after this long without one."
    )


@dataclass(eq=False)
class Subscription:
    """One subscriber's queue of JSON messages."""

    tenant_id: str
    limit: int
    messages: deque[str] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int = 1000
    close_reason: str = ""

    def offer(self, message: str) -> bool:
        """Queue a message; False when the subscriber is too far behind (it is closed)."""
        if self.closed.is_set():
            return False
        if len(self.messages) >= self.limit:
            self.messages.clear()
            self.close(CLOSE_TOO_SLOW, f"more than {self.limit} alert messages behind")
            return False
        self.messages.append(message)
        self.ready.set()
        return True

    def close(self, code: int, reason: str) -> None:
        if not self.closed.is_set():
            self.close_code, self.close_reason = code, reason
            self.closed.set()
            self.ready.set()

    async def next(self, timeout: float) -> list[str]:
        """The queued messages, waiting up to ``timeout`` for one; [] when none came."""
        if not self.messages:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready.wait(), timeout)
        self.ready.clear()
        taken = list(self.messages)
        self.messages.clear()
        return taken


@dataclass(frozen=True, slots=True)
class _Change:
    tenant_id: str
    id: str
    version: int
    created_at: datetime
    updated_at: datetime
    alert: dict[str, object] | None
    """None when this version was sent already."""


@dataclass
class FeedStats:
    polls: int = 0
    sent: int = 0
    """(id, version) pairs fanned out."""
    dropped: int = 0
    """Subscribers disconnected for being too slow."""
    errors: int = 0


class DatabaseFeed:
    """What every feed that watches the database shares: subscriptions per tenant,
    fan-out to them (a subscriber too far behind is dropped), and the loop that calls
    :meth:`poll_once` every ``poll_s`` until stopped. Subclasses read their changes."""

    what = "changes"
    """What the feed reads, for its log lines."""

    def __init__(self, sessions: sessionmaker[Session], config: FeedConfig | None = None) -> None:
        self.sessions = sessions
        self.config = config or FeedConfig()
        self.stats = FeedStats()
        self._subs: dict[str, set[Subscription]] = {}
        self._watermark: datetime | None = None

    # subscribers ----------------------------------------------------------------
    def subscribe(self, tenant_id: str) -> Subscription:
        sub = Subscription(tenant_id, self.config.queue_size)
        self._subs.setdefault(tenant_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.tenant_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.tenant_id]

    def subscribers(self, tenant_id: str | None = None) -> int:
        if tenant_id is not None:
            return len(self._subs.get(tenant_id, ()))
        return sum(len(s) for s in self._subs.values())

    def close_all(self, code: int, reason: str) -> None:
        for subs in self._subs.values():
            for sub in subs:
                sub.close(code, reason)

    def _fan_out(self, tenant_id: str, message: str) -> None:
        subs = self._subs.get(tenant_id)
        if not subs:
            return
        for sub in list(subs):
            if not sub.offer(message):
                self.stats.dropped += 1
                subs.discard(sub)
        if not subs:
            self._subs.pop(tenant_id, None)

    # polling --------------------------------------------------------------------
    async def poll_once(self) -> int:
        """Read changes once and fan them out; how many went out."""
        raise NotImplementedError

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set, then close every subscription."""
        try:
            while not stop.is_set():
                try:
                    await self.poll_once()
                except Exception:
                    self.stats.errors += 1
                    log.exception("reading %s failed; retrying", self.what)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.poll_s)
        finally:
            self.close_all(CLOSE_RESTART, "server shutting down")


class AlertFeed(DatabaseFeed):
    what = "alert changes"

    def __init__(self, sessions: sessionmaker[Session], config: FeedConfig | None = None) -> None:
        super().__init__(sessions, config)
        self._sent: dict[str, tuple[int, datetime]] = {}

    # polling --------------------------------------------------------------------
    def _read(self, tenants: list[str], cutoff: datetime) -> list[_Change]:
        """Changes at or after ``cutoff`` (in a worker thread); JSON only for unsent ones."""
        query = (
            select(Alert)
            .where(Alert.tenant_id.in_(tenants), Alert.updated_at >= cutoff)
            .order_by(Alert.updated_at, Alert.id)
        )
        changes: list[_Change] = []
        with self.sessions() as s:
            for row in s.scalars(query):
                seen = self._sent.get(row.id)
                fresh = seen is None or row.version > seen[0]
                changes.append(
                    _Change(
                        row.tenant_id,
                        row.id,
                        row.version,
                        row.created_at,
                        row.updated_at,
                        alert_json(row) if fresh else None,
                    )
                )
        return changes

    async def poll_once(self) -> int:
        """Read changes once and fan them out; returns how many (id, version) were new."""
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
            self._watermark = max(self._watermark, change.updated_at)
            if change.alert is None:
                continue
            seen = self._sent.get(change.id)
            if seen is not None and seen[0] >= change.version:
                continue
            created = change.version == 1 or (seen is None and change.created_at >= cutoff)
            kind = "alert.created" if created else "alert.updated"
            self._sent[change.id] = (change.version, change.updated_at)
            self._fan_out(change.tenant_id, json.dumps({"type": kind, "alert": change.alert}))
            fanned += 1
        prune_before = self._watermark - timedelta(seconds=self.config.overlap_s)
        for alert_id in [k for k, (_, at) in self._sent.items() if at < prune_before]:
            del self._sent[alert_id]
        self.stats.sent += fanned
        return fanned
