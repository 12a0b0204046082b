"""Keyset pagination, newest first, over a table's ``created_at`` and ``id`` columns.

The cursor is the last row's ``(created_at, id)``, opaque to clients (base64 JSON); a
page asks for one row more than it shows to know whether another page follows. Every
listing's page size is bounded by :data:`MAX_PAGE` (:func:`check_limit`).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from bastion.errors import InputError


class _Keyed(Protocol):
    created_at: datetime
    id: str


R = TypeVar("R", bound=_Keyed)

MAX_PAGE = 500
"""Most rows one page of any listing holds."""


def check_limit(limit: int) -> None:
    """Refuse a page size outside 1..:data:`MAX_PAGE` (``invalid_limit``)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"limit must be between 1 and {MAX_PAGE}", code="invalid_limit")


def encode_cursor(row: _Keyed) -> str:
    raw = json.dumps([row.created_at.isoformat(), row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(created), str(row_id)
    except (ValueError, TypeError) as exc:
        raise InputError("invalid cursor", code="invalid_cursor") from exc


def newest_first(
    session: Session,
    query: Select[R],
    created_at: InstrumentedAttribute[Any],
    row_id: InstrumentedAttribute[Any],
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[R], str | None]:
    """One page of ``query``'s rows, newest first, and the cursor of the next (or None)."""
    check_limit(limit)
    if cursor is not None:
        created, last_id = decode_cursor(cursor)
        query = query.where(
            or_(created_at < created, and_(created_at == created, row_id < last_id))
        )
    query = query.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]) if more and rows else None
