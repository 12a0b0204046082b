"""The review queue's one service: queue items, list them, claim, decide, release.

:meth:`ReviewService.enqueue` runs inside the caller's transaction, so a job's result and
its review item (or an alert and its item) commit together; the same source object is
queued once. Items come from three places: jobs whose result is ``review``
(:meth:`~ReviewService.enqueue_job`, in the worker's finishing transaction), alerts of
live rules whose action is ``review`` (:meth:`~ReviewService.enqueue_alert`, in the
transaction that raises the alert), and ``POST /v1/moderate?review=true`` calls whose
result is ``review`` (:meth:`~ReviewService.enqueue_upload`, once per tenant, media and
policy). Reviewers take items with :meth:`ReviewService.claim_next`: the open item
of highest priority, oldest first (or one whose lease ran out), under a lease of
``review.lease_s``. Of any number of concurrent claimers exactly one gets a given item:
on PostgreSQL the candidate is selected ``FOR UPDATE SKIP LOCKED`` (claimers skip each
other's rows instead of waiting), on SQLite one conditional ``UPDATE ... WHERE id =
(SELECT ...) RETURNING`` picks and takes it in a single statement (SQLite runs one
writer at a time).

Only the holder of an item's lease, while the lease holds, may decide or release it;
an admin may decide any undecided item. A decision is stored as a
:class:`~bastion.review.tables.ReviewDecision` (the audit log), moves the item on and
queues its webhook (:mod:`bastion.review.events`) in the same transaction. Approve
decides ``allow``, reject ``block``; escalate sends the item, open again, to the
escalation queue with its priority raised by ``review.escalation_boost``.

Every read and write is scoped to a tenant: another tenant's item is "not found".
Times come from the ``now`` callable, so tests move the clock instead of sleeping.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import CursorResult, and_, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from bastion.errors import InputError
from bastion.jobs.tables import Job
from bastion.live.alerts.view import alert_json
from bastion.live.tables import Alert
from bastion.policy import taxonomy
from bastion.review import events
from bastion.review.config import MAX_PRIORITY, ReviewConfig
from bastion.review.errors import (
    ConflictingLabels,
    NoteTooLong,
    NothingToReview,
    ReviewAlreadyDecided,
    ReviewLeaseLost,
    ReviewNotFound,
    UnknownLabel,
    UnknownQueue,
)
from bastion.review.routing import route, with_parents
from bastion.review.tables import (
    ACTIONS,
    CLAIMED,
    DECIDED,
    ITEM_STATES,
    OPEN,
    SOURCES,
    ReviewDecision,
    ReviewItem,
)
from bastion.store.pages import newest_first

MAX_LABEL_CHANGES = 50
Action = Literal["approve", "reject", "escalate"]
_OUTCOME: dict[str, str | None] = {"approve": "allow", "reject": "block", "escalate": None}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _rowcount(result: Any) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0


@dataclass(frozen=True, slots=True)
class Reviewer:
    """Who acts on an item: a person signed in (``user``) or an API key (``key``);
    ``admin`` may decide items whose lease they do not hold."""

    kind: Literal["user", "key"]
    id: str
    admin: bool = False

    @property
    def ref(self) -> str:
        """How the reviewer is written in ``claimed_by``: ``user:<id>`` or ``key:<id>``."""
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True, slots=True)
class ReviewPage:
    """Items newest first; pass ``next_cursor`` for the next page."""

    items: list[ReviewItem]
    next_cursor: str | None


def upload_key(media_sha256: str, policy: Any, policy_version: Any) -> str:
    """The ``source_id`` of a synchronous call's item: the media's sha256 and a digest
    of the policy's name and version. The same bytes moderated again under the same
    policy (the same result) find the item queued before; under a changed policy they
    are a new item."""
    of_policy = hashlib.sha256(f"{policy}\0{policy_version}".encode()).hexdigest()[:16]
    return f"upload:{media_sha256}:{of_policy}"


def _of_result(result: dict[str, Any]) -> dict[str, Any]:
    """What an item keeps of a moderation result (as JSON): the reasons, their labels,
    the labels, the result and its policy."""
    reasons = [r for r in result.get("reasons") or [] if isinstance(r, dict)]
    return {
        "reasons": reasons,
        "categories": [str(r["label"]) for r in reasons if r.get("label")],
        "labels": _names(result.get("labels") or []),
        "result": result,
        "policy": result.get("policy"),
        "policy_version": result.get("policy_version"),
    }


def _names(labels: Iterable[Any]) -> list[str]:
    """Label names in order, each once (from labels as dicts or as names)."""
    seen: dict[str, None] = {}
    for label in labels:
        name = label.get("name") if isinstance(label, dict) else label
        if isinstance(name, str) and name:
            seen.setdefault(name, None)
    return list(seen)


class ReviewService:
    """Review items and decisions on the database of ``sessions``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: ReviewConfig,
        *,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.sessions = sessions
        self.config = config
        self.now = now

    # ---- queueing ----------------------------------------------------------------
    def enqueue(
        self,
        s: Session,
        *,
        tenant_id: str,
        source: str,
        source_id: str,
        reasons: Sequence[dict[str, Any]] = (),
        categories: Iterable[str] = (),
        labels: Iterable[str] = (),
        rule: str | None = None,
        result: dict[str, Any] | None = None,
        model_decision: str = "review",
        policy: str | None = None,
        policy_version: str | None = None,
        media: dict[str, Any] | None = None,
        media_sha256: str | None = None,
    ) -> tuple[ReviewItem, bool]:
        """Queue an item in the caller's transaction; the item and True when it is new,
        the item queued before for the same source and False otherwise."""
        if source not in SOURCES:
            raise InputError(f"source must be one of {list(SOURCES)}", code="invalid_source")
        found = s.scalars(
            select(ReviewItem).where(
                ReviewItem.tenant_id == tenant_id,
                ReviewItem.source == source,
                ReviewItem.source_id == source_id,
            )
        ).first()
        if found is not None:
            return found, False
        expanded = with_parents(categories)
        queue, priority = route(self.config, expanded, rule)
        now = self.now()
        item = ReviewItem(
            id="rev_" + uuid.uuid4().hex,
            tenant_id=tenant_id,
            queue=queue,
            priority=priority,
            status=OPEN,
            source=source,
            source_id=source_id,
            rule=rule,
            reasons=list(reasons),
            categories=expanded,
            labels=_names(labels),
            model_decision=model_decision,
            result=result,
            policy=policy,
            policy_version=policy_version,
            media=media,
            media_sha256=media_sha256,
            created_at=now,
            updated_at=now,
            claims=0,
            escalations=0,
        )
        s.add(item)
        s.flush()
        return item, True

    def enqueue_job(self, s: Session, job: Job) -> ReviewItem | None:
        """Queue a finished job whose result is ``review`` (None for any other result)."""
        result = job.result
        if not result or result.get("decision") != "review":
            return None
        item, _ = self.enqueue(
            s,
            tenant_id=job.tenant_id,
            source="job",
            source_id=job.id,
            **_of_result(result),
            media={"kind": "job", "job_id": job.id, "sha256": job.media_sha256},
            media_sha256=job.media_sha256,
        )
        return item

    def enqueue_upload(
        self, tenant_id: str, result: dict[str, Any], media_sha256: str
    ) -> tuple[ReviewItem, bool] | None:
        """Queue the ``review`` result of a synchronous call whose bytes are in the job
        media store under ``media_sha256``, in a transaction of its own; None for any
        other result. One item per tenant, media and policy (see :func:`upload_key`):
        the item and True when it is new, the item queued before and False otherwise,
        also when the same call raced this one."""
        if result.get("decision") != "review":
            return None
        key = upload_key(media_sha256, result.get("policy"), result.get("policy_version"))
        for attempt in range(2):
            try:
                with self.sessions.begin() as s:
                    return self.enqueue(
                        s,
                        tenant_id=tenant_id,
                        source="api",
                        source_id=key,
                        **_of_result(result),
                        media={"kind": "upload", "sha256": media_sha256},
                        media_sha256=media_sha256,
                    )
            except IntegrityError:  # queued by a concurrent call: read it the next time
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def enqueue_alert(self, s: Session, alert: Alert) -> ReviewItem:
        """Queue a live alert (routed by its rule and labels); its frame is the media."""
        labels = _names(alert.labels or [])
        media = None
        if alert.thumbnail is not None:
            media = {
                "kind": "alert_thumbnail",
                "alert_id": alert.id,
                "stream_pk": alert.stream_pk,
                "name": alert.thumbnail,
            }
        reason = {"rule": alert.rule, "rule_set": alert.rule_set, "reason": alert.reason}
        item, _ = self.enqueue(
            s,
            tenant_id=alert.tenant_id,
            source="alert",
            source_id=alert.id,
            reasons=[reason],
            categories=labels,
            labels=labels,
            rule=alert.rule,
            result=alert_json(alert),
            media=media,
        )
        return item

    # ---- reading -----------------------------------------------------------------
    def kept_thumbnails(self) -> set[tuple[str, str]]:
        """The live thumbnails undecided items show, as ``(stream pk, name)``: what
        :meth:`bastion.live.thumbnails.LiveThumbnails.purge` must leave (every tenant)."""
        with self.sessions() as s:
            rows = s.scalars(
                select(ReviewItem.media).where(
                    ReviewItem.source == "alert",
                    ReviewItem.status != DECIDED,
                    ReviewItem.media.is_not(None),
                )
            )
            return {
                (str(m["stream_pk"]), str(m["name"]))
                for m in rows
                if isinstance(m, dict) and m.get("kind") == "alert_thumbnail"
            }

    def list_items(
        self,
        tenant_id: str,
        *,
        queue: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> ReviewPage:
        """A tenant's items, newest first, optionally of one queue or in one status."""
        if status is not None and status not in ITEM_STATES:
            raise InputError(f"status must be one of {list(ITEM_STATES)}", code="invalid_status")
        q = select(ReviewItem).where(ReviewItem.tenant_id == tenant_id)
        if queue is not None:
            q = q.where(ReviewItem.queue == queue)
        if status is not None:
            q = q.where(ReviewItem.status == status)
        with self.sessions() as s:
            rows, next_cursor = newest_first(
                s, q, ReviewItem.created_at, ReviewItem.id, limit=limit, cursor=cursor
            )
        return ReviewPage(rows, next_cursor)

    def get(self, tenant_id: str, item_id: str) -> ReviewItem:
        with self.sessions() as s:
            return _find(s, tenant_id, item_id)

    def decisions(self, tenant_id: str, item_id: str) -> list[ReviewDecision]:
        """The item's decisions, oldest first (the audit log)."""
        with self.sessions() as s:
            _find(s, tenant_id, item_id)
            return list(
                s.scalars(
                    select(ReviewDecision)
                    .where(ReviewDecision.tenant_id == tenant_id, ReviewDecision.item_id == item_id)
                    .order_by(ReviewDecision.decided_at, ReviewDecision.id)
                )
            )

    # ---- claiming ----------------------------------------------------------------
    def claim_next(self, tenant_id: str, queue: str, who: Reviewer) -> ReviewItem:
        """Take the queue's next item for ``review.lease_s``: highest priority, then
        oldest; an open item, or a claimed one whose lease ran out.
        ``nothing_to_review`` when there is none."""
        now = self.now()
        claimable = and_(
            ReviewItem.tenant_id == tenant_id,
            ReviewItem.queue == queue,
            or_(
                ReviewItem.status == OPEN,
                and_(ReviewItem.status == CLAIMED, ReviewItem.lease_expires_at < now),
            ),
        )
        pick = (
            select(ReviewItem.id)
            .where(claimable)
            .order_by(ReviewItem.priority.desc(), ReviewItem.created_at, ReviewItem.id)
            .limit(1)
        )
        values = {
            "status": CLAIMED,
            "claimed_by": who.ref,
            "lease_expires_at": now + timedelta(seconds=self.config.lease_s),
            "claims": ReviewItem.claims + 1,
            "updated_at": now,
        }
        with self.sessions.begin() as s:
            self._check_queue(s, tenant_id, queue)
            item_id: str | None
            if s.get_bind().dialect.name == "postgresql":
                item_id = s.scalar(pick.with_for_update(skip_locked=True))
                if item_id is not None:
                    s.execute(
                        update(ReviewItem)
                        .where(ReviewItem.id == item_id)
                        .values(**values)
                        .execution_options(synchronize_session=False)
                    )
            else:
                item_id = s.scalar(
                    update(ReviewItem)
                    .where(ReviewItem.id == pick.scalar_subquery(), claimable)
                    .values(**values)
                    .returning(ReviewItem.id)
                    .execution_options(synchronize_session=False)
                )
            if item_id is None:
                raise NothingToReview(f"nothing to review in queue {queue!r}")
            item = s.get(ReviewItem, item_id, populate_existing=True)
            assert item is not None
            return item

    def release(self, tenant_id: str, item_id: str, who: Reviewer) -> ReviewItem:
        """Hand a claimed item back to its queue (the lease holder, or an admin)."""
        now = self.now()
        with self.sessions.begin() as s:
            item = _find(s, tenant_id, item_id, lock=True)
            if item.status == DECIDED:
                raise ReviewAlreadyDecided(f"review item {item_id} is decided")
            changed = s.execute(
                update(ReviewItem)
                .where(
                    ReviewItem.id == item.id,
                    ReviewItem.status != DECIDED,
                    self._may_act(who, now),
                )
                .values(status=OPEN, claimed_by=None, lease_expires_at=None, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if _rowcount(changed) != 1:
                raise self._refusal(s, item)
            s.refresh(item)
            return item

    # ---- deciding ----------------------------------------------------------------
    def decide(
        self,
        tenant_id: str,
        item_id: str,
        who: Reviewer,
        action: str,
        *,
        add_labels: Sequence[str] = (),
        remove_labels: Sequence[str] = (),
        note: str = "",
    ) -> tuple[ReviewItem, ReviewDecision]:
        """Approve (``allow``), reject (``block``) or escalate an item; the lease holder
        while the lease holds, or an admin. Label corrections are taxonomy names."""
        if action not in ACTIONS:
            raise InputError(
                f"action must be one of {list(ACTIONS)}", code="invalid_action", status=422
            )
        add, remove = _check_labels(add_labels, remove_labels)
        if len(note) > self.config.max_note_chars:
            raise NoteTooLong(
                f"a note has at most {self.config.max_note_chars} characters",
                details={"max_chars": self.config.max_note_chars},
            )
        now = self.now()
        with self.sessions.begin() as s:
            item = _find(s, tenant_id, item_id, lock=True)
            if item.status == DECIDED:
                raise ReviewAlreadyDecided(f"review item {item_id} is decided")
            before = list(item.labels or [])
            after = [n for n in before if n not in remove] + [n for n in add if n not in before]
            values: dict[str, Any] = {"labels": after, "updated_at": now, "lease_expires_at": None}
            escalated_to = None
            if action == "escalate":
                escalated_to = self.config.escalation_queue
                values |= {
                    "status": OPEN,
                    "queue": escalated_to,
                    "priority": min(MAX_PRIORITY, item.priority + self.config.escalation_boost),
                    "claimed_by": None,
                    "escalations": ReviewItem.escalations + 1,
                }
            else:
                values |= {"status": DECIDED, "decision": _OUTCOME[action], "decided_at": now}
            changed = s.execute(
                update(ReviewItem)
                .where(
                    ReviewItem.id == item.id,
                    ReviewItem.status != DECIDED,
                    self._may_act(who, now),
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if _rowcount(changed) != 1:
                raise self._refusal(s, item)
            result = item.result or {}
            versions = result.get("versions")
            decision = ReviewDecision(
                id="rvd_" + uuid.uuid4().hex,
                item_id=item.id,
                tenant_id=tenant_id,
                actor_kind=who.kind,
                actor_id=who.id,
                action=action,
                decision=_OUTCOME[action],
                queue=item.queue,
                escalated_to=escalated_to,
                labels_before=before,
                labels_after=after,
                added_labels=[n for n in add if n not in before],
                removed_labels=[n for n in remove if n in before],
                note=note,
                model_decision=item.model_decision,
                model_versions=versions if isinstance(versions, dict) else {},
                policy=item.policy,
                policy_version=item.policy_version,
                decided_at=now,
            )
            s.add(decision)
            s.flush()
            s.refresh(item)
            events.send(s, self.config.webhook_url, item, decision)
            return item, decision

    # ---- helpers -----------------------------------------------------------------
    def _may_act(self, who: Reviewer, now: datetime) -> ColumnElement[bool]:
        """The item may be changed by ``who``: an admin always, anyone else while
        holding its lease."""
        holds = and_(
            ReviewItem.status == CLAIMED,
            ReviewItem.claimed_by == who.ref,
            ReviewItem.lease_expires_at > now,
        )
        return true() if who.admin else holds

    @staticmethod
    def _refusal(s: Session, item: ReviewItem) -> Exception:
        s.refresh(item)
        if item.status == DECIDED:
            return ReviewAlreadyDecided(f"review item {item.id} is decided")
        return ReviewLeaseLost(
            f"you do not hold the lease of review item {item.id}: claim it again"
        )

    def _check_queue(self, s: Session, tenant_id: str, queue: str) -> None:
        """A configured queue, or one that still has items (of a route since removed)."""
        if queue in self.config.queue_names:
            return
        used = s.scalar(
            select(ReviewItem.id)
            .where(
                ReviewItem.tenant_id == tenant_id,
                ReviewItem.queue == queue,
                ReviewItem.status != DECIDED,
            )
            .limit(1)
        )
        if used is None:
            known = sorted(self.config.queue_names)
            raise UnknownQueue(f"no review queue {queue!r}; queues: {known}")


def _find(s: Session, tenant_id: str, item_id: str, *, lock: bool = False) -> ReviewItem:
    item = s.get(ReviewItem, item_id, with_for_update=lock)
    if item is None or item.tenant_id != tenant_id:
        raise ReviewNotFound(f"review item {item_id!r} not found")
    return item


def _check_labels(add: Sequence[str], remove: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(add) + len(remove) > MAX_LABEL_CHANGES:
        raise InputError(
            f"at most {MAX_LABEL_CHANGES} label changes per decision",
            code="too_many_labels",
            status=422,
        )
    unknown = sorted({n for n in [*add, *remove] if n not in taxonomy.CATEGORIES})
    if unknown:
        raise UnknownLabel(
            f"not taxonomy labels: {unknown[:10]}", details={"unknown": unknown[:10]}
        )
    both = sorted(set(add) & set(remove))
    if both:
        raise ConflictingLabels(f"labels both added and removed: {both}")
    return list(dict.fromkeys(add)), list(dict.fromkeys(remove))
