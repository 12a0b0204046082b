"""The review tables: items waiting for a person, and the decisions people took.

A :class:`ReviewItem` is one piece of content Bastion sent to review: a job whose result
is ``review``, the alert of a live rule whose action is ``review``, or a synchronous
call's upload whose result is ``review`` (the call asked for it). It keeps what
sent it there (the policy reasons or the rule, and the labels' categories), a snapshot
of the moderation result with the policy's name and version at that time, and a
reference to the media a reviewer opens. Each source object is queued once
(``tenant_id``, ``source``, ``source_id`` is unique). An item is ``open``, ``claimed``
(by ``claimed_by`` until ``lease_expires_at``; claimable again after it) or ``decided``.

A :class:`ReviewDecision` is one reviewer's action on an item, kept for good as the
audit log: who (a user or an API key), approve, reject or escalate, the label
corrections, the note, and the models' decision and policy version the reviewer saw.
Its ``source`` says where it came from: ``moderator`` (the portal or the review API's
decide) or ``api`` (``POST /v1/corrections``, whose action is ``correct``); decisions
that decide an item (all but escalations) are the labelled samples of
``GET /v1/corrections``. ``media_kept`` says whether the item's media was kept as a
training sample (the tenant's ``training_consent`` at that time, and the item had media):
retention keeps such media (:mod:`bastion.jobs.retention`, the live thumbnail purge).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.tables import Base
from bastion.store.types import UtcDateTime

OPEN: Final = "open"
CLAIMED: Final = "claimed"
DECIDED: Final = "decided"
ITEM_STATES: Final = (OPEN, CLAIMED, DECIDED)
SOURCES: Final = ("job", "alert", "api")
ACTIONS: Final = ("approve", "reject", "escalate")
CORRECT: Final = "correct"
"""The action of a decision sent through ``POST /v1/corrections``."""
ACTOR_KINDS: Final = ("user", "key")
MODERATOR: Final = "moderator"
API: Final = "api"
DECISION_SOURCES: Final = (MODERATOR, API)
"""Where a decision came from: a moderator deciding a claimed item (portal or review
API), or a correction through the API."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class ReviewItem(Base):
    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("tenant_id", "source", "source_id", name="uq_review_items_source"),
        Index("ix_review_items_claim", "tenant_id", "queue", "status", "priority", "created_at"),
        Index("ix_review_items_tenant_created", "tenant_id", "created_at"),
        Index("ix_review_items_media", "media_sha256", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    queue: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=OPEN)
    source: Mapped[str] = mapped_column(String(16))
    """``job``, ``alert`` or ``api``."""
    source_id: Mapped[str] = mapped_column(String(128))
    """The job id, the alert id, or for a synchronous call ``upload:<media sha256>:<policy
    digest>`` (see :func:`bastion.review.service.upload_key`)."""
    rule: Mapped[str | None] = mapped_column(String(128), nullable=True)
    """The live rule that raised the alert (alerts only)."""
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """What sent the item to review: the policy reasons (rule, label, confidence, ...)."""
    categories: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """The taxonomy labels of those reasons and their L1 parents (what routing used)."""
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """The item's label names now: the models' labels, with reviewers' corrections."""
    model_decision: Mapped[str] = mapped_column(String(16), default="review")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """The moderation result when the item was queued (alerts: the alert)."""
    policy: Mapped[str | None] = mapped_column(String(64), nullable=True)
    policy_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    media: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """What a reviewer opens: ``{"kind": "job", "job_id", "sha256"}``, ``{"kind":
    "upload", "sha256"}`` (a synchronous call's bytes, in the job media store) or
    ``{"kind": "alert_thumbnail", "alert_id", "stream_pk", "name"}``."""
    media_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Media in the job media store (a job's or an upload's): retention keeps it while
    the item is not decided, and for good once a decision kept it (``media_kept``)."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    """``user:<id>`` or ``key:<id>`` of the reviewer holding (or last holding) the lease."""
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    claims: Mapped[int] = mapped_column(Integer, default=0)
    """How many times the item was claimed."""
    escalations: Mapped[int] = mapped_column(Integer, default=0)
    decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """The reviewers' final decision: ``allow`` or ``block`` (set when decided)."""
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class ReviewDecision(Base):
    __tablename__ = "review_decisions"
    __table_args__ = (
        Index("ix_review_decisions_item", "tenant_id", "item_id", "decided_at"),
        Index("ix_review_decisions_tenant_decided", "tenant_id", "decided_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(40))
    tenant_id: Mapped[str] = mapped_column(String(64))
    actor_kind: Mapped[str] = mapped_column(String(8))
    """``user`` (a person signed in) or ``key`` (an API key)."""
    actor_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    """``approve``, ``reject``, ``escalate`` or ``correct`` (a correction)."""
    source: Mapped[str] = mapped_column(String(16), default=MODERATOR, server_default=MODERATOR)
    """``moderator`` (the portal or the review API) or ``api`` (a correction)."""
    decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """``allow`` (approve), ``block`` (reject), None (escalate: still to decide)."""
    queue: Mapped[str] = mapped_column(String(64))
    """The queue the item was in when the action was taken."""
    escalated_to: Mapped[str | None] = mapped_column(String(64), nullable=True)
    labels_before: Mapped[list[Any]] = mapped_column(JSON, default=list)
    labels_after: Mapped[list[Any]] = mapped_column(JSON, default=list)
    added_labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    removed_labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")
    model_decision: Mapped[str] = mapped_column(String(16))
    model_versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """The analyzers' model versions of the result the reviewer saw."""
    policy: Mapped[str | None] = mapped_column(String(64), nullable=True)
    policy_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    media_kept: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The item's media is kept as a training sample: the tenant consented
    (``training_consent``) when this decision was taken, and the item has media.
    Cleared when the tenant deletes the item's sample (:mod:`bastion.samples`)."""
    overrode_claim: Mapped[str | None] = mapped_column(String(80), nullable=True)
    """A correction of an item someone held under a lease: who (``user:<id>`` or
    ``key:<id>``); the correction decided it in their place."""
