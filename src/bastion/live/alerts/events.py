"""Alert webhooks: ``alert.created`` and ``alert.updated`` through the delivery outbox.

Events are queued inside the transaction that changes the alert, so an alert change and
its event commit together (see :mod:`bastion.delivery.outbox`). Every state change sends
``alert.updated``. A repeated violation (the counter going up) does not, or a stream
that keeps breaking a rule would flood the receiver: it sends ``alert.updated`` only
when the alert's previous event is at least ``bump_interval_s`` old. The latest count
always goes out with the next state change.

What a receiver gets in ``data``: ``{"alert": <the alert, as GET /v1/alerts/{id}>,
"stream": {"id", "channel", "streamer_id", "metadata"}}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastion.delivery import outbox
from bastion.delivery.tables import Delivery
from bastion.live.alerts.view import alert_json
from bastion.live.tables import Alert, Stream

BUMP_EVENT_INTERVAL_S = 60.0
"""Default: at most one ``alert.updated`` a minute for an alert's counter alone."""
CREATED = "alert.created"
UPDATED = "alert.updated"


def event_payload(alert: Alert, stream: Stream | None) -> dict[str, Any]:
    about: dict[str, Any] = {"id": alert.stream_id, "channel": alert.channel}
    if stream is not None:
        about |= {"streamer_id": stream.streamer_id, "metadata": stream.meta or {}}
    return {"alert": alert_json(alert), "stream": about}


class AlertEvents:
    """Queues alert webhooks when ``url`` is set; does nothing otherwise."""

    def __init__(self, url: str | None, bump_interval_s: float = BUMP_EVENT_INTERVAL_S) -> None:
        self.url = url
        self.bump_interval_s = bump_interval_s

    def _send(self, s: Session, event: str, alert: Alert, stream: Stream | None) -> None:
        if self.url is None:
            return
        s.flush()
        outbox.enqueue(
            s, alert.tenant_id, event, self.url, event_payload(alert, stream), subject_id=alert.id
        )

    def created(self, s: Session, alert: Alert, stream: Stream | None) -> None:
        self._send(s, CREATED, alert, stream)

    def changed(self, s: Session, alert: Alert, stream: Stream | None) -> None:
        """The alert's state changed."""
        self._send(s, UPDATED, alert, stream)

    def bumped(self, s: Session, alert: Alert, stream: Stream | None, now: datetime) -> bool:
        """The counter went up: an update unless the previous event is too recent."""
        if self.url is None:
            return False
        last = s.scalar(
            select(func.max(Delivery.created_at)).where(
                Delivery.tenant_id == alert.tenant_id, Delivery.subject_id == alert.id
            )
        )
        if last is not None and (now - last).total_seconds() < self.bump_interval_s:
            return False
        self._send(s, UPDATED, alert, stream)
        return True
