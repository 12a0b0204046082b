"""The audit log of tenants' heads and the tenants' promotion settings.

A :class:`ModelEvent` is one action on a tenant's head for a category, kept for good:
a promotion (``promote``, applied or refused by its checks), a ``rollback``, a
challenger set or cleared. It names the registered model, the versions the alias moved
from and to, whether the checks were overridden (``forced``, with the reason people
gave), the checks' figures, who did it and when. Rollbacks find the previous champion
here.

A :class:`ModelSettings` row holds a tenant's promotion settings: the categories it
marks high-severity (a candidate that recalls less of such a category than the head it
replaces is refused).

A :class:`HeadShadowCount` row adds up a challenger's shadow counts against a champion
(:mod:`bastion.registry.shadow`), over every process and restart: each process adds
what it counted since its last write (:mod:`bastion.registry.shadow_store`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.tables import Base
from bastion.store.types import UtcDateTime

PROMOTE: Final = "promote"
ROLLBACK: Final = "rollback"
SET_CHALLENGER: Final = "set_challenger"
CLEAR_CHALLENGER: Final = "clear_challenger"
ACTIONS: Final = (PROMOTE, ROLLBACK, SET_CHALLENGER, CLEAR_CHALLENGER)
"""What an event records."""
CHAMPION_MOVES: Final = (PROMOTE, ROLLBACK)
"""Actions that move the ``champion`` alias."""

APPLIED: Final = "applied"
REFUSED: Final = "refused"
OUTCOMES: Final = (APPLIED, REFUSED)


def utcnow() -> datetime:
    return datetime.now(UTC)


class ModelEvent(Base):
    __tablename__ = "model_events"
    __table_args__ = (
        Index("ix_model_events_tenant_created", "tenant_id", "created_at"),
        Index("ix_model_events_tenant_category_created", "tenant_id", "category", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    """``mev_``, the time in hex and a random suffix: ids sort as the events happened."""
    tenant_id: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64))
    """The taxonomy label the head decides."""
    model_name: Mapped[str] = mapped_column(String(200))
    """The registered model (``<prefix>.<tenant>.<category-slug>``)."""
    action: Mapped[str] = mapped_column(String(24))
    """``promote``, ``rollback``, ``set_challenger`` or ``clear_challenger``."""
    outcome: Mapped[str] = mapped_column(String(16))
    """``applied``, or ``refused`` (a promotion its checks turned down)."""
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The version the alias named before (none: it named no version)."""
    to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The version the alias names after (or would have: refused); none when cleared."""
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    """The promotion went ahead although its checks refused it."""
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why, in the words of whoever did it (required to force a promotion)."""
    checks: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """The promotion checks' figures and reasons (promotions only)."""
    actor: Mapped[str] = mapped_column(String(120))
    """Who: ``key:<id>``, ``user:<id>`` or ``cli:<name>``."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ModelSettings(Base):
    __tablename__ = "model_settings"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    high_severity: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """Taxonomy labels (an L1 label covers its L2 labels) whose recall a promotion may
    not lower."""
    updated_by: Mapped[str] = mapped_column(String(120))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class HeadShadowCount(Base):
    __tablename__ = "head_shadow_counts"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    """The taxonomy label the heads decide."""
    champion: Mapped[str] = mapped_column(String(32), primary_key=True)
    """The champion's version (``v<n>``; ``none`` when the tenant had none)."""
    challenger: Mapped[str] = mapped_column(String(32), primary_key=True)
    """The challenger's version (``v<n>``)."""
    scored: Mapped[int] = mapped_column(BigInteger, default=0)
    """Items both heads were scored on."""
    challenger_only: Mapped[int] = mapped_column(BigInteger, default=0)
    """Items the challenger flags and the champion does not."""
    champion_only: Mapped[int] = mapped_column(BigInteger, default=0)
    """Items the champion flags and the challenger does not."""
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    """When the first counts of the pair were written."""
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    """When counts of the pair were last added."""
