"""The training-run table: a tenant's request to train a head, and how it went.

A :class:`TrainingRun` is created ``queued`` by ``POST /v1/training/runs`` (or
``bastion train``); a worker of the jobs role claims it (``running``, ``claimed_by``
until ``heartbeat_at`` + the lease), reports its ``stage`` and ``progress`` as it goes,
and finishes it ``succeeded`` (with the registered model's name and version, the
metrics, the report) or ``failed`` (with a stable ``error_code``). A run whose worker
died (no heartbeat within the lease) is claimed again, up to ``max_attempts`` claims,
then failed: accepted work is never dropped silently.

``held_out_ids`` are the sample ids of the run's frozen held-out split: promotion
compares heads on exactly these samples. ``baseline_coverage`` is the fraction of
held-out samples for which Bastion's decision today (the baseline) was known.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import JSON, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.tables import Base
from bastion.store.types import UtcDateTime

QUEUED: Final = "queued"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
STATUSES: Final = (QUEUED, RUNNING, SUCCEEDED, FAILED)
FINISHED: Final = (SUCCEEDED, FAILED)


def utcnow() -> datetime:
    return datetime.now(UTC)


class TrainingRun(Base):
    __tablename__ = "training_runs"
    __table_args__ = (
        Index("ix_training_runs_tenant_created", "tenant_id", "created_at"),
        Index("ix_training_runs_status_created", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    """``trn_`` and a random suffix."""
    tenant_id: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64))
    """The taxonomy label (L1 or L2) the head decides."""
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    """0 to 1, through the stages."""
    stage: Mapped[str] = mapped_column(String(200), default=QUEUED)
    """What the run is doing now, in words."""
    stages: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    """The stages of its latest attempt as each started, in order: ``{"stage", "progress",
    "at"}`` (ISO time) each, so that a run too quick to watch still shows its way."""
    filters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Which samples: ``source``, ``since``, ``until``, ``corrected_only``."""
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Overrides of the training configuration (TrainingConfig fields)."""
    embedding_model: Mapped[str] = mapped_column(String(160))
    """``<model>@<version>`` of the embeddings the head is trained on."""
    requested_by: Mapped[str] = mapped_column(String(120))
    """``user:<id>``, ``key:<id>`` or ``cli:<name>``."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    """The worker running it (the latest claim)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """How many times a worker claimed it."""
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    """The registered model the head is a version of (succeeded runs)."""
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    held_out_ids: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    """The sample ids of the frozen held-out split."""
    baseline_coverage: Mapped[float | None] = mapped_column(Float, nullable=True)
    """The fraction of held-out samples whose baseline decision was known."""
