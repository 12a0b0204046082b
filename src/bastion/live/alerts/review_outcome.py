"""What a decision on an alert's review item does to the alert and its stream.

A live rule whose action is ``review`` raises an alert and queues it for review. When a
person (or a correction) decides the item, the alert follows in the same transaction:
approve (``allow``: not a violation) dismisses it; reject (``block``: a violation)
acknowledges it, or, when the reviewer asked to stop the stream, stops the stream (the
platform's stop hook is called) and the alert is ``stream_stopped``. Escalating leaves
the alert as it is. An alert already closed (dismissed, stopped) is left alone. Each
change is an ``alert.updated`` event with its webhook, as when the alerts API does it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from bastion.live.alerts.service import AlertService
from bastion.live.tables import OPEN_ALERT_STATES, Alert, Stream
from bastion.review.tables import ReviewDecision, ReviewItem

MAX_REASON = 500


class AlertReviewOutcome:
    """Applies review decisions to the alerts their items came from."""

    def __init__(self, alerts: AlertService) -> None:
        self.alerts = alerts

    def apply_in(
        self, s: Session, item: ReviewItem, decision: ReviewDecision, *, stop_stream: bool
    ) -> None:
        """Move the item's alert on in the caller's transaction (see the module)."""
        if item.source != "alert" or decision.decision not in ("allow", "block"):
            return
        alert = s.get(Alert, item.source_id)
        if alert is None or alert.tenant_id != item.tenant_id:
            return
        stream = s.get(Stream, alert.stream_pk, with_for_update=True)
        s.refresh(alert, with_for_update=True)
        if alert.state not in OPEN_ALERT_STATES:
            return
        by = f"{decision.actor_kind}:{decision.actor_id}"
        alert.handled_by = by
        if decision.decision == "allow":
            alert.state = "dismissed"
        elif stop_stream and stream is not None:
            reason = f"{alert.rule}: {alert.reason}"[:MAX_REASON]
            self.alerts.stop_stream_in(s, stream, by=by, reason=reason, alert_id=alert.id)
            if alert.state == "stream_stopped":  # closed with its stream, event sent
                return
            alert.state = "stream_stopped"
        elif alert.state == "open":
            alert.state = "acknowledged"
        alert.version += 1
        alert.updated_at = datetime.now(UTC)
        self.alerts.events.changed(s, alert, stream)
