"""The ``daily_counts`` table: counts kept in memory, added up per tenant, UTC day, name
and key (see :mod:`bastion.stats.counter`).

``name`` says what was counted (``moderated.api``, ``moderated.live``: items moderated
by that source) and ``key`` which kind of it (the policy's decision: ``allow``,
``review``, ``block``).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Date, String
from sqlalchemy.orm import Mapped, mapped_column

from bastion.store.tables import Base


class DailyCount(Base):
    __tablename__ = "daily_counts"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
