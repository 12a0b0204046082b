"""Alerts: raised when a stream's rule fires, worked by moderators.

One alert per stream and rule while it is ``open`` or ``acknowledged``: a rule that
fires again on the same stream raises that alert's ``count`` (keeping the highest
confidence of each label and the newest frame and evidence) instead of raising another.
A ``dismissed`` or ``stream_stopped`` alert is closed; the rule firing again raises a
new one. An alert's ``action`` is the strongest its rule had while it was open
(``alert`` < ``review`` < ``auto_stop``). Moderators move alerts on::

    open ──acknowledge──▶ acknowledged
    open | acknowledged ──dismiss──▶ dismissed
    open | acknowledged ──stop──▶ stream_stopped  (the stream is stopped, its hook called)

Every change raises ``version`` and ``updated_at``, which the alert feed
(:mod:`bastion.live.alerts.feed`) watches; webhooks go out as :mod:`bastion.live.alerts.events`
describes.

Writes lock the stream's row first, then its alerts (the order stream sessions use
too), so concurrent raises on one stream cannot create two alerts for one rule and
a moderator's stop cannot deadlock with a session's auto-stop on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bastion.errors import InputError, NotFound
from bastion.live.alerts.events import BUMP_EVENT_INTERVAL_S, AlertEvents
from bastion.live.config import LiveConfig
from bastion.live.streams import StreamService
from bastion.live.tables import ALERT_STATES, OPEN_ALERT_STATES, Alert, Stream
from bastion.rules import RuleMatch
from bastion.rules.spec import action_strength
from bastion.store.pages import newest_first

_MAX_REASON = 2000


def _now() -> datetime:
    return datetime.now(UTC)


def merge_labels(old: list[Any], new: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """Labels of both, each at its highest confidence, highest first."""
    best: dict[str, float] = {}
    for item in old:
        best[str(item["name"])] = float(item["confidence"])
    for name, confidence in new:
        best[name] = max(best.get(name, float("-inf")), float(confidence))
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"name": name, "confidence": confidence} for name, confidence in ranked]


def _evidence(match: RuleMatch, frame_ms: int | None, sampled_at: float | None) -> dict[str, Any]:
    return {
        "text": list(match.text),
        "urls": list(match.urls),
        "frame_ms": frame_ms,
        "sampled_at": sampled_at,  # Unix time the frame was decoded or received
    }


def _invalid(alert: Alert, action: str) -> InputError:
    return InputError(
        f"alert {alert.id} is {alert.state}; it cannot be {action}",
        code="invalid_transition",
        status=409,
    )


@dataclass(frozen=True, slots=True)
class AlertPage:
    """Alerts newest first; pass ``next_cursor`` for the next page."""

    alerts: list[Alert]
    next_cursor: str | None


class AlertService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: LiveConfig,
        streams: StreamService,
        *,
        bump_event_interval_s: float = BUMP_EVENT_INTERVAL_S,
    ) -> None:
        self.sessions = sessions
        self.config = config
        self.streams = streams
        self.events = AlertEvents(config.alert_webhook_url, bump_event_interval_s)

    # raising ------------------------------------------------------------------
    def raise_in(
        self,
        session: Session,
        stream: Stream,
        match: RuleMatch,
        *,
        rule_set: str | None,
        thumbnail: str | None,
        frame_ms: int | None,
        sampled_at: float | None = None,
    ) -> tuple[Alert, bool]:
        """Raise (or count again) the alert of ``match`` inside the caller's transaction.

        Returns the alert and True when it is new. On a stream that is stopped already
        (a frame analysed while it was being stopped) the alert is recorded closed,
        as ``stream_stopped``, so no open alert outlives its stream.
        """
        s = session
        row = s.scalars(select(Stream).where(Stream.id == stream.id).with_for_update()).first()
        if row is None:
            raise NotFound(f"stream {stream.stream_id!r} not found", code="stream_not_found")
        now = _now()
        alert = s.scalars(
            select(Alert)
            .where(
                Alert.stream_pk == row.id,
                Alert.rule == match.rule,
                Alert.state.in_(OPEN_ALERT_STATES),
            )
            .order_by(Alert.created_at.desc())
            .with_for_update()
        ).first()
        if alert is not None:
            alert.count += 1
            alert.last_at = now
            alert.labels = merge_labels(alert.labels or [], match.labels)
            alert.reason = match.reason[:_MAX_REASON]
            alert.evidence = _evidence(match, frame_ms, sampled_at)
            if thumbnail is not None:
                alert.thumbnail = thumbnail
            if action_strength(match.action) > action_strength(alert.action):
                alert.action = match.action  # the rule was made stronger meanwhile
            alert.version += 1
            alert.updated_at = now
            self.events.bumped(s, alert, row, now)
            return alert, False
        stopped = row.desired == "stopped"
        alert = Alert(
            id="alr_" + uuid.uuid4().hex,
            tenant_id=row.tenant_id,
            stream_pk=row.id,
            stream_id=row.stream_id,
            channel=row.channel,
            rule_set=rule_set if rule_set is not None else match.rule_set,
            rule=match.rule,
            action=match.action,
            state="stream_stopped" if stopped else "open",
            labels=merge_labels([], match.labels),
            reason=match.reason[:_MAX_REASON],
            evidence=_evidence(match, frame_ms, sampled_at),
            thumbnail=thumbnail,
            count=1,
            version=1,
            first_at=now,
            last_at=now,
            created_at=now,
            updated_at=now,
            handled_by=row.stopped_by if stopped else None,
        )
        s.add(alert)
        self.events.created(s, alert, row)
        return alert, True

    def stop_stream_in(
        self,
        session: Session,
        stream: Stream,
        *,
        by: str,
        reason: str,
        call_hook: bool = True,
        alert_id: str | None = None,
    ) -> bool:
        """:meth:`StreamService.stop_in`, and ``alert.updated`` for each alert it closed."""
        s = session
        s.flush()
        was_open = list(
            s.scalars(
                select(Alert.id).where(
                    Alert.stream_pk == stream.id, Alert.state.in_(OPEN_ALERT_STATES)
                )
            )
        )
        stopped = self.streams.stop_in(
            s, stream, by=by, reason=reason, call_hook=call_hook, alert_id=alert_id
        )
        for pk in was_open:
            alert = s.get(Alert, pk)
            if alert is not None and alert.state == "stream_stopped":
                self.events.changed(s, alert, stream)
        return stopped

    def stop_stream(
        self, tenant_id: str, stream_id: str, *, by: str, reason: str, call_hook: bool = True
    ) -> Stream:
        """Stop a stream by its id (API, moderators), with its alerts' webhooks."""
        with self.sessions.begin() as s:
            row = self.streams.locked(s, tenant_id, stream_id)
            self.stop_stream_in(s, row, by=by, reason=reason, call_hook=call_hook)
            return row

    # reading ------------------------------------------------------------------
    def list(
        self,
        tenant_id: str,
        *,
        state: str | None = None,
        stream_id: str | None = None,
        channel: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        rule: str | None = None,
        states: Sequence[str] | None = None,
    ) -> AlertPage:
        """A tenant's alerts, newest first; ``since``: changed at or after that time;
        ``states``: in any of these states (with ``state``, in both)."""
        wanted = [*([state] if state is not None else []), *(states or [])]
        if any(s not in ALERT_STATES for s in wanted):
            raise InputError(f"state must be one of {list(ALERT_STATES)}", code="invalid_state")
        q = select(Alert).where(Alert.tenant_id == tenant_id)
        if state is not None:
            q = q.where(Alert.state == state)
        if states is not None:
            q = q.where(Alert.state.in_(list(states)))
        if rule is not None:
            q = q.where(Alert.rule == rule)
        if stream_id is not None:
            q = q.where(Alert.stream_id == stream_id)
        if channel is not None:
            q = q.where(Alert.channel == channel)
        if since is not None:
            q = q.where(Alert.updated_at >= since)
        with self.sessions() as s:
            rows, next_cursor = newest_first(
                s, q, Alert.created_at, Alert.id, limit=limit, cursor=cursor
            )
        return AlertPage(rows, next_cursor)

    def get(self, tenant_id: str, alert_id: str) -> Alert:
        with self.sessions() as s:
            return self._find(s, tenant_id, alert_id)

    @staticmethod
    def _find(s: Session, tenant_id: str, alert_id: str, *, lock: bool = False) -> Alert:
        alert = s.get(Alert, alert_id, with_for_update=lock)
        if alert is None or alert.tenant_id != tenant_id:
            raise NotFound(f"alert {alert_id!r} not found", code="alert_not_found")
        return alert

    # moderating ---------------------------------------------------------------
    def _locked(self, s: Session, tenant_id: str, alert_id: str) -> tuple[Alert, Stream | None]:
        """The alert and its stream, locked in that order of tables: stream, then alert."""
        alert = self._find(s, tenant_id, alert_id)
        stream = s.get(Stream, alert.stream_pk, with_for_update=True)
        s.refresh(alert, with_for_update=True)
        return alert, stream

    def _move(self, tenant_id: str, alert_id: str, by: str, to: str, verb: str) -> Alert:
        allowed = ("open",) if to == "acknowledged" else OPEN_ALERT_STATES
        with self.sessions.begin() as s:
            alert, stream = self._locked(s, tenant_id, alert_id)
            if alert.state not in allowed:
                raise _invalid(alert, verb)
            alert.state, alert.handled_by = to, by
            alert.version += 1
            alert.updated_at = _now()
            self.events.changed(s, alert, stream)
            return alert

    def acknowledge(self, tenant_id: str, alert_id: str, by: str) -> Alert:
        """open → acknowledged: a moderator is on it."""
        return self._move(tenant_id, alert_id, by, "acknowledged", "acknowledged")

    def dismiss(self, tenant_id: str, alert_id: str, by: str) -> Alert:
        """open | acknowledged → dismissed: not a violation, or dealt with."""
        return self._move(tenant_id, alert_id, by, "dismissed", "dismissed")

    def stop(self, tenant_id: str, alert_id: str, by: str) -> Alert:
        """open | acknowledged → stream_stopped: stop the stream (its hook is called)."""
        with self.sessions.begin() as s:
            alert, stream = self._locked(s, tenant_id, alert_id)
            if alert.state not in OPEN_ALERT_STATES:
                raise _invalid(alert, "stopped")
            alert.handled_by = by
            if stream is not None:
                reason = f"{alert.rule}: {alert.reason}"[:_MAX_REASON]
                self.stop_stream_in(s, stream, by=by, reason=reason, alert_id=alert.id)
            if alert.state != "stream_stopped":  # the stream had been stopped already
                alert.state = "stream_stopped"
                alert.version += 1
                alert.updated_at = _now()
                self.events.changed(s, alert, stream)
            return alert
