"""The delivery outbox: enqueueing, claiming, recording attempts, redrive and listing.

Deliveries are rows of the ``deliveries`` table. :func:`enqueue` adds one inside the
caller's transaction, so whatever produced the event (a job result, say) and its
pending delivery commit together or not at all: a rolled-back transaction leaves no
delivery, and a committed one always has its delivery.

A transaction that makes a delivery due by :func:`redrive` says so in
``session.info[DUE_MARK]``, and a dispatcher watching the session factory looks at once
when it commits (new deliveries it notices by itself).

A dispatcher takes a due delivery with :func:`claim_due`: a conditional UPDATE
(``state = 'pending'`` and due, or ``state = 'delivering'`` with an expired lease)
that only one claimer can win, on SQLite and PostgreSQL alike (PostgreSQL also skips
rows another claimer has locked). The winner holds a lease (``lease_owner``,
``lease_until``); :func:`finish_attempt` applies the outcome only while that lease is
still its own.

What a receiver gets (the Standard Webhooks payload shape) is
``{"type": <event_type>, "timestamp": <enqueue time, ISO 8601>, "data": <payload>}``,
identical on every attempt; see :func:`event_body`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, cast

from sqlalchemy import CursorResult, and_, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from bastion.delivery.tables import (
    DEAD,
    DELIVERED,
    DELIVERING,
    DELIVERY_STATES,
    PENDING,
    Delivery,
    DeliveryAttempt,
)
from bastion.errors import InputError
from bastion.store.pages import check_limit
from bastion.store.types import to_utc

__all__ = [
    "DUE_MARK",
    "ClaimedDelivery",
    "DeliveryPage",
    "claim_due",
    "enqueue",
    "event_body",
    "finish_attempt",
    "get_delivery",
    "list_attempts",
    "list_deliveries",
    "new_webhook_id",
    "redrive",
]

Outcome = Literal["delivered", "retry", "dead"]
DUE_MARK: Final = "bastion.delivery.due"
"""Key of ``Session.info``: the session's transaction made deliveries due."""


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def new_webhook_id() -> str:
    """A ``webhook-id``: ``msg_`` and a random UUID in hex."""
    return "msg_" + uuid.uuid4().hex


def event_body(event_type: str, created_at: datetime, payload: dict[str, Any]) -> bytes:
    """The JSON body POSTed for a delivery (compact, UTF-8)."""
    stamp = to_utc(created_at).isoformat().replace("+00:00", "Z")
    envelope = {"type": event_type, "timestamp": stamp, "data": payload}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


# ---- producing ------------------------------------------------------------------


def enqueue(
    session: Session,
    tenant_id: str,
    event_type: str,
    url: str,
    payload: dict[str, Any],
    *,
    subject_id: str | None = None,
    now: datetime | None = None,
) -> Delivery:
    """Add a pending delivery to the caller's transaction and return it (flushed).

    Nothing is committed here: the delivery exists, and can be sent, only once the
    caller commits, together with the rest of its transaction. The URL is checked
    against the SSRF guard at every attempt, not here.
    """
    if not 1 <= len(event_type) <= 100:
        raise InputError("event_type must have 1 to 100 characters", code="invalid_event_type")
    if not isinstance(payload, dict):
        raise InputError("a webhook payload is a JSON object", code="invalid_payload")
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"the payload is not JSON: {exc}", code="invalid_payload") from exc
    at = _now(now)
    row = Delivery(
        tenant_id=tenant_id,
        event_type=event_type,
        webhook_id=new_webhook_id(),
        url=url,
        payload=payload,
        subject_id=subject_id,
        state=PENDING,
        attempts=0,
        next_attempt_at=at,
        created_at=at,
        schedule_started_at=at,
    )
    session.add(row)
    session.flush()
    return row


# ---- dispatching ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery a dispatcher holds, as it was when claimed."""

    id: int
    tenant_id: str
    event_type: str
    webhook_id: str
    url: str
    payload: dict[str, Any]
    attempts: int
    """Attempts of the current schedule, this one included."""
    created_at: datetime
    schedule_started_at: datetime
    lease_owner: str

    def body(self) -> bytes:
        return event_body(self.event_type, self.created_at, self.payload)


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(
        and_(Delivery.state == PENDING, Delivery.next_attempt_at <= now),
        and_(Delivery.state == DELIVERING, Delivery.lease_until < now),
    )


def claim_due(
    session: Session, limit: int, *, lease_s: float, now: datetime | None = None
) -> list[ClaimedDelivery]:
    """Take up to ``limit`` due deliveries for ``lease_s`` seconds, oldest due first.

    Each one is claimed by its own conditional UPDATE, so of several concurrent
    claimers exactly one wins a given delivery. The claim counts as an attempt
    (``attempts`` + 1), so a delivery whose sending kills the dispatcher still runs
    out of attempts. Commit promptly: the claims belong to the session's transaction.
    """
    if limit <= 0:
        return []
    at = _now(now)
    query = (
        select(Delivery.id)
        .where(_due(at))
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    candidates = list(session.scalars(query))
    owner = uuid.uuid4().hex
    until = at + timedelta(seconds=lease_s)
    won: list[int] = []
    for delivery_id in candidates:
        result = session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, _due(at))
            .values(
                state=DELIVERING,
                lease_until=until,
                lease_owner=owner,
                attempts=Delivery.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
        if _rowcount(result) == 1:
            won.append(delivery_id)
    if not won:
        return []
    rows = session.scalars(
        select(Delivery)
        .where(Delivery.id.in_(won))
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .execution_options(populate_existing=True)
    ).all()
    return [
        ClaimedDelivery(
            id=r.id,
            tenant_id=r.tenant_id,
            event_type=r.event_type,
            webhook_id=r.webhook_id,
            url=r.url,
            payload=r.payload,
            attempts=r.attempts,
            created_at=r.created_at,
            schedule_started_at=r.schedule_started_at,
            lease_owner=owner,
        )
        for r in rows
    ]


def finish_attempt(
    session: Session,
    claimed: ClaimedDelivery,
    outcome: Outcome,
    *,
    attempted_at: datetime,
    latency_ms: int,
    status_code: int | None = None,
    error: str | None = None,
    last_error: str | None = None,
    next_attempt_at: datetime | None = None,
    now: datetime | None = None,
) -> bool:
    """Record one attempt and move the delivery on (delivered, pending again, or dead).

    The attempt row gets ``error``; the delivery's ``last_error`` gets ``last_error``
    (a summary such as why it is dead), ``error`` when not given. The attempt row is
    always written (the request was made); the delivery itself changes only if the
    claim's lease is still held. Returns whether it was.
    """
    at = _now(now)
    session.add(
        DeliveryAttempt(
            delivery_id=claimed.id,
            attempted_at=attempted_at,
            status_code=status_code,
            latency_ms=latency_ms,
            error=error,
        )
    )
    values: dict[str, Any] = {
        "lease_until": None,
        "lease_owner": None,
        "last_status": status_code,
        "last_error": last_error if last_error is not None else error,
    }
    if outcome == "delivered":
        values |= {"state": DELIVERED, "delivered_at": at, "next_attempt_at": None}
    elif outcome == "retry":
        if next_attempt_at is None:
            raise ValueError("a retry needs next_attempt_at")
        values |= {"state": PENDING, "next_attempt_at": next_attempt_at}
    else:
        values |= {"state": DEAD, "dead_at": at, "next_attempt_at": None}
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.id == claimed.id,
            Delivery.state == DELIVERING,
            Delivery.lease_owner == claimed.lease_owner,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


# ---- operating ------------------------------------------------------------------


def redrive(
    session: Session,
    ids: Iterable[int] | None = None,
    *,
    tenant_id: str | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> int:
    """Put dead deliveries back to pending with a fresh schedule; returns how many.

    Selects dead deliveries by ``ids`` and/or the filters (tenant, event type,
    enqueued in ``[since, until)``); at least one is required. Each keeps its
    ``webhook_id``; its ``attempts`` start again from 0 (earlier attempts stay in
    ``delivery_attempts``) and so do its schedule and TTL.
    """
    conditions: list[ColumnElement[bool]] = []
    if ids is not None:
        conditions.append(Delivery.id.in_(list(ids)))
    if tenant_id is not None:
        conditions.append(Delivery.tenant_id == tenant_id)
    if event_type is not None:
        conditions.append(Delivery.event_type == event_type)
    if since is not None:
        conditions.append(Delivery.created_at >= _now(since))
    if until is not None:
        conditions.append(Delivery.created_at < _now(until))
    if not conditions:
        raise InputError("redrive needs delivery ids or a filter", code="redrive_unfiltered")
    at = _now(now)
    result = session.execute(
        update(Delivery)
        .where(Delivery.state == DEAD, *conditions)
        .values(
            state=PENDING,
            attempts=0,
            next_attempt_at=at,
            schedule_started_at=at,
            dead_at=None,
            lease_until=None,
            lease_owner=None,
        )
        .execution_options(synchronize_session=False)
    )
    count = _rowcount(result)
    if count:
        session.info[DUE_MARK] = True
    return count


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    """One page of deliveries, newest first; pass ``next_cursor`` for the next page."""

    items: list[Delivery]
    next_cursor: str | None


def list_deliveries(
    session: Session,
    tenant_id: str,
    state: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> DeliveryPage:
    """A tenant's deliveries, newest first, optionally in one state or enqueued since a time."""
    if state is not None and state not in DELIVERY_STATES:
        raise InputError(f"state must be one of {list(DELIVERY_STATES)}", code="invalid_state")
    check_limit(limit)
    query = select(Delivery).where(Delivery.tenant_id == tenant_id)
    if state is not None:
        query = query.where(Delivery.state == state)
    if since is not None:
        query = query.where(Delivery.created_at >= _now(since))
    if cursor is not None:
        if not cursor.isascii() or not cursor.isdigit():
            raise InputError("invalid cursor", code="invalid_cursor")
        query = query.where(Delivery.id < int(cursor))
    rows = list(session.scalars(query.order_by(Delivery.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    items = rows[:limit]
    return DeliveryPage(items, str(items[-1].id) if more and items else None)


def get_delivery(session: Session, tenant_id: str, webhook_id: str) -> Delivery | None:
    """A tenant's delivery by its ``webhook_id``."""
    return session.scalars(
        select(Delivery).where(Delivery.tenant_id == tenant_id, Delivery.webhook_id == webhook_id)
    ).first()


def list_attempts(session: Session, delivery_id: int) -> list[DeliveryAttempt]:
    """Every attempt of a delivery, oldest first."""
    return list(
        session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == delivery_id)
            .order_by(DeliveryAttempt.id)
        )
    )
