"""Review webhooks: ``review.decided`` and ``review.escalated`` through the delivery outbox.

Each is queued inside the transaction that records the decision (see
:mod:`bastion.delivery.outbox`), so a decision and its webhook commit together or not at
all, and it is signed and retried like every webhook. A correction
(``POST /v1/corrections``) sends ``review.decided`` too: its ``source`` is ``api`` and its
action ``correct`` (a moderator's decision: ``moderator``).

What a receiver gets in ``data``::

    {"item": {id, queue, priority, status, source, source_id, rule, reasons,
              categories, labels, model_decision, decision, created_at, decided_at},
     "decision": {id, action, source, decision, note, labels_before, labels_after,
                  added_labels, removed_labels, escalated_to, decided_at, media_kept,
                  overrode_claim},
     "by": {"kind": "user" | "key", "id": ...},
     "policy": {"name": ..., "version": ...}}
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bastion.delivery import outbox
from bastion.review.tables import ReviewDecision, ReviewItem
from bastion.store.types import to_utc

DECIDED = "review.decided"
ESCALATED = "review.escalated"


def _time(value: datetime | None) -> str | None:
    return None if value is None else to_utc(value).isoformat().replace("+00:00", "Z")


def item_summary(item: ReviewItem) -> dict[str, Any]:
    """The item without its result snapshot (which ``GET /v1/reviews/{id}`` has)."""
    return {
        "id": item.id,
        "queue": item.queue,
        "priority": item.priority,
        "status": item.status,
        "source": item.source,
        "source_id": item.source_id,
        "rule": item.rule,
        "reasons": item.reasons,
        "categories": item.categories,
        "labels": item.labels,
        "model_decision": item.model_decision,
        "decision": item.decision,
        "created_at": _time(item.created_at),
        "decided_at": _time(item.decided_at),
    }


def event_payload(item: ReviewItem, decision: ReviewDecision) -> dict[str, Any]:
    return {
        "item": item_summary(item),
        "decision": {
            "id": decision.id,
            "action": decision.action,
            "source": decision.source,
            "decision": decision.decision,
            "note": decision.note,
            "labels_before": decision.labels_before,
            "labels_after": decision.labels_after,
            "added_labels": decision.added_labels,
            "removed_labels": decision.removed_labels,
            "escalated_to": decision.escalated_to,
            "decided_at": _time(decision.decided_at),
            "media_kept": decision.media_kept,
            "overrode_claim": decision.overrode_claim,
        },
        "by": {"kind": decision.actor_kind, "id": decision.actor_id},
        "policy": {"name": decision.policy, "version": decision.policy_version},
    }


def send(s: Session, url: str | None, item: ReviewItem, decision: ReviewDecision) -> None:
    """Queue the decision's webhook in ``s``'s transaction (nothing when ``url`` is None)."""
    if url is None:
        return
    event = ESCALATED if decision.action == "escalate" else DECIDED
    outbox.enqueue(s, item.tenant_id, event, url, event_payload(item, decision), subject_id=item.id)
