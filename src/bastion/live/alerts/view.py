"""An alert as clients see it: the JSON of ``GET /v1/alerts/{id}``, of the alert feed's
messages and of alert webhooks (one shape everywhere)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from bastion.live.tables import Alert
from bastion.store.types import UtcTime


class AlertLabel(BaseModel):
    name: str = Field(description="Taxonomy label that made the rule fire.")
    confidence: float = Field(description="Highest confidence seen for it on this alert, 0-100.")


class AlertEvidence(BaseModel):
    text: list[str] = Field(default_factory=list, description="Matched text or words.")
    urls: list[str] = Field(default_factory=list, description="Matched URLs.")
    frame_ms: int | None = Field(None, description="The frame's time in the stream (ms).")
    sampled_at: UtcTime | None = Field(
        None, description="When the frame was decoded (or pushed): alert lag = created_at − this."
    )


class AlertOut(BaseModel):
    """A rule that fired on a stream; repeated violations raise its ``count``."""

    id: str = Field(description="Alert id.")
    stream_id: str = Field(description="Your id of the stream.")
    channel: str = Field(description="The stream's channel.")
    rule_set: str | None = Field(description="The rule set the rule belongs to.")
    rule: str = Field(description="The rule that fired.")
    action: str = Field(description="'alert', 'review' or 'auto_stop'.")
    state: str = Field(description="open, acknowledged, dismissed or stream_stopped.")
    labels: list[AlertLabel] = Field(description="Matched labels, highest confidence seen.")
    reason: str = Field(description="Why the rule fired on the latest frame, for people.")
    evidence: AlertEvidence = Field(description="What matched on the latest frame.")
    thumbnail_url: str | None = Field(description="The latest matching frame, as a JPEG.")
    count: int = Field(description="Frames the rule fired on while the alert was open.")
    version: int = Field(description="Raised by every change.")
    first_at: UtcTime = Field(description="First violation.")
    last_at: UtcTime = Field(description="Latest violation.")
    created_at: UtcTime = Field(description="When the alert was raised.")
    updated_at: UtcTime = Field(description="Its latest change.")
    handled_by: str | None = Field(description="Who acknowledged, dismissed or stopped it.")

    @classmethod
    def of(cls, row: Alert) -> AlertOut:
        evidence = row.evidence or {}
        return cls(
            id=row.id,
            stream_id=row.stream_id,
            channel=row.channel,
            rule_set=row.rule_set,
            rule=row.rule,
            action=row.action,
            state=row.state,
            labels=[AlertLabel.model_validate(label) for label in row.labels or []],
            reason=row.reason,
            evidence=AlertEvidence(
                text=list(evidence.get("text") or []),
                urls=list(evidence.get("urls") or []),
                frame_ms=evidence.get("frame_ms"),
                sampled_at=(
                    datetime.fromtimestamp(evidence["sampled_at"], UTC)
                    if isinstance(evidence.get("sampled_at"), (int, float))
                    else None
                ),
            ),
            thumbnail_url=f"/v1/alerts/{row.id}/thumbnail" if row.thumbnail else None,
            count=row.count,
            version=row.version,
            first_at=row.first_at,
            last_at=row.last_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            handled_by=row.handled_by,
        )


def alert_json(row: Alert) -> dict[str, Any]:
    """The alert as a JSON-ready dict."""
    return AlertOut.of(row).model_dump(mode="json")
