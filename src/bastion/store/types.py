"""Column types that make stored times the same on every database: aware UTC.

SQLite has no time zone type: it stores ``YYYY-MM-DD HH:MM:SS.ffffff`` and gives back
naive datetimes, while PostgreSQL's ``timestamptz`` gives back aware ones in the
session's time zone (which need not be UTC). :class:`UtcDateTime` hides both: every
value written is converted to UTC (a naive one is taken as UTC already), SQLite keeps
storing naive UTC text exactly as before, and every value read — whatever the
database — is an aware datetime in UTC. The DDL is the same ``DateTime(timezone=True)``
as before, so no migration is needed.

:data:`UtcTime` is the same promise for API responses and webhook payloads: a pydantic
field type that turns any datetime into aware UTC, so a time is always serialised
with its offset (``...Z``), never as a bare local-looking time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator
from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = ["UtcDateTime", "UtcTime", "to_utc"]


def to_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00: the nearest time Python can hold
        edge = datetime.min if value.year == datetime.min.year else datetime.max
        return edge.replace(tzinfo=UTC)


UtcTime = Annotated[datetime, AfterValidator(to_utc)]
"""A response field's time: always aware UTC, serialised as RFC 3339 with ``Z``."""


class UtcDateTime(TypeDecorator[datetime]):
    """A ``DateTime(timezone=True)`` that only ever holds and returns aware UTC times."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            return value  # left to the database's own type
        utc = to_utc(value)
        # SQLite's DateTime writes the wall-clock fields and drops any offset: hand it
        # the UTC fields so what it stores is UTC, as it always was.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite text that reached us unparsed
            value = datetime.fromisoformat(value)
        return to_utc(value)
