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
``review.lease_s``, leaving out the items a reviewer skipped (``exclude``); the
portal's pages read a tenant's queues with their counts (:meth:`~ReviewService.queue_counts`)
and its audit log (:meth:`~ReviewService.decision_log`). Of any number of concurrent
claimers exactly one gets a given item:
on PostgreSQL the candidate is selected ``FOR UPDATE SKIP LOCKED`` (claimers skip each
other's rows instead of waiting), on SQLite one conditional ``UPDATE ... WHERE id =
(SELECT ...) RETURNING`` picks and takes it in a single statement (SQLite runs one
writer at a time).

Only the holder of an item's lease, while the lease holds, may decide or release it;
an admin may decide any undecided item. A decision is stored as a
:class:`~bastion.review.tables.ReviewDecision` (the audit log), moves the item on and
queues its webhook (:mod:`bastion.review.events`) in the same transaction. Approve
decides ``allow``, reject ``block``; escalate sends the item, open again, to the
escalation queue with its priority raised by ``review.escalation_boost``. What a
decision does beyond the queue is a :class:`DecisionOutcome` wired in when the process
is built (an alert's item: the alert is dismissed or acknowledged, or its stream
stopped), applied in the same transaction.

A correction (:meth:`ReviewService.correct`, ``POST /v1/corrections``) has the effect of
a moderator's decision on any job with a result, review item or stored result of the
tenant, whoever holds it: it decides the target's item (recording whose claim it
overrode), creates the item already decided when there is none (so every correction is
in the audit log), or adds a decision to an item decided before and makes its decision
and labels the corrected ones. Every decision records whether the item's media is kept
as a training sample (the tenant's ``training_consent`` then, and the item has media);
:meth:`ReviewService.samples` lists decisions and corrections as labelled samples. This
service is the one place that writes decisions.

Every read and write is scoped to a tenant: another tenant's item is "not found".
Times come from the ``now`` callable, so tests move the clock instead of sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy import CursorResult, Text, and_, case, cast, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from bastion.dedup.tables import DedupEntry
from bastion.errors import InputError
from bastion.jobs.tables import Job
from bastion.live.alerts.view import alert_json
from bastion.live.tables import Alert
from bastion.policy import taxonomy
from bastion.review import events
from bastion.review.config import MAX_PRIORITY, ReviewConfig
from bastion.review.errors import (
    ConflictingLabels,
    CorrectionTargetNotFound,
    CorrectionTargetNotReady,
    InvalidCorrectionLabels,
    InvalidCorrectionTarget,
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
    API,
    CLAIMED,
    CORRECT,
    DECIDED,
    DECISION_SOURCES,
    ITEM_STATES,
    MODERATOR,
    OPEN,
    SOURCES,
    ReviewDecision,
    ReviewItem,
)
from bastion.store.pages import check_limit, decode_cursor, encode_cursor, newest_first
from bastion.store.tables import Tenant
from bastion.store.types import to_utc

MAX_LABEL_CHANGES = 50
MAX_EXCLUDED = 200
"""Most items one claim may leave out (see :meth:`ReviewService.claim_next`)."""
Action = Literal["approve", "reject", "escalate"]
_OUTCOME: dict[str, str | None] = {"approve": "allow", "reject": "block", "escalate": None}
OUTCOMES = ("allow", "block")
"""What a correction may decide."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _rowcount(result: Any) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0


class DecisionOutcome(Protocol):
    """What else a decision changes, in the deciding transaction (an alert's item: the
    alert and its stream, :mod:`bastion.live.alerts.review_outcome`)."""

    def apply_in(
        self, s: Session, item: ReviewItem, decision: ReviewDecision, *, stop_stream: bool
    ) -> None: ...


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


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """One queue of a tenant as reviewers see it (:meth:`ReviewService.queue_counts`)."""

    name: str
    open: int
    """Items anyone may claim now: open, or claimed under a lease that ran out."""
    claimed: int
    """Items held under a lease that still holds."""
    decided: int
    top_priority: int | None
    """The highest priority among the undecided items (None when there are none)."""
    oldest_at: datetime | None
    """When the oldest undecided item was queued."""
    configured: bool
    """A queue of the settings (or one left over from a route since removed)."""


@dataclass(frozen=True, slots=True)
class DecisionPage:
    """Decisions newest first; pass ``next_cursor`` for the next page."""

    decisions: list[ReviewDecision]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class CorrectionTarget:
    """What a correction is of: exactly one of a job (``job_id``), a review item
    (``review_id``), or the media of a stored result (``media_sha256``: the newest result
    the tenant stored for those bytes, or the newest under ``policy``)."""

    job_id: str | None = None
    review_id: str | None = None
    media_sha256: str | None = None
    policy: str | None = None

    def check(self) -> None:
        """``invalid_correction_target`` unless exactly one target is named (and a
        policy only with media)."""
        named = [n for n in (self.job_id, self.review_id, self.media_sha256) if n is not None]
        if len(named) != 1:
            raise InvalidCorrectionTarget("name exactly one of job_id, review_id, media_sha256")
        if self.policy is not None and self.media_sha256 is None:
            raise InvalidCorrectionTarget("policy selects a stored result: name media_sha256")

    def describe(self) -> str:
        if self.job_id is not None:
            return f"job {self.job_id!r}"
        if self.review_id is not None:
            return f"review item {self.review_id!r}"
        under = "" if self.policy is None else f" under policy {self.policy!r}"
        return f"stored result of media {self.media_sha256!r}{under}"


@dataclass(frozen=True, slots=True)
class Correction:
    """A correction taken: the item as it is now, its new decision, and whether the
    item was created for it."""

    item: ReviewItem
    decision: ReviewDecision
    item_created: bool


@dataclass(frozen=True, slots=True)
class Sample:
    """One labelled sample: a decision that decided an item, and the item."""

    decision: ReviewDecision
    item: ReviewItem


@dataclass(frozen=True, slots=True)
class SamplePage:
    """Samples newest first; pass ``next_cursor`` for the next page."""

    samples: list[Sample]
    next_cursor: str | None


@dataclass(slots=True)
class _Key:
    """A decision's place in the newest-first order, as :func:`encode_cursor` takes it."""

    created_at: datetime
    id: str


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
        self._outcomes: list[DecisionOutcome] = []

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
        """The live thumbnails of undecided items, and of items a decision kept as a
        training sample (``media_kept``), as ``(stream pk, name)``: what
        :meth:`bastion.live.thumbnails.LiveThumbnails.purge` must leave (every tenant)."""
        kept = (
            select(ReviewDecision.id)
            .where(
                ReviewDecision.tenant_id == ReviewItem.tenant_id,
                ReviewDecision.item_id == ReviewItem.id,
                ReviewDecision.media_kept.is_(True),
            )
            .exists()
        )
        with self.sessions() as s:
            rows = s.scalars(
                select(ReviewItem.media).where(
                    ReviewItem.source == "alert",
                    or_(ReviewItem.status != DECIDED, kept),
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

    def queue_counts(self, tenant_id: str, queue: str | None = None) -> list[QueueCounts]:
        """The tenant's queues (those of the settings, and any other that has items) with
        their counts, in the settings' order (routes, default, escalation), then by name;
        only ``queue`` when given."""
        now = self.now()
        expired = func.sum(case((ReviewItem.lease_expires_at <= now, 1), else_=0))
        q = select(
            ReviewItem.queue,
            ReviewItem.status,
            func.count(),
            expired,
            func.max(ReviewItem.priority),
            func.min(ReviewItem.created_at),
        ).where(ReviewItem.tenant_id == tenant_id)
        if queue is not None:
            q = q.where(ReviewItem.queue == queue)
        with self.sessions() as s:
            rows = s.execute(q.group_by(ReviewItem.queue, ReviewItem.status)).all()
        configured = [r.name for r in self.config.queues]
        configured += [self.config.default_queue, self.config.escalation_queue]
        names = list(dict.fromkeys(configured))
        names += sorted({str(row[0]) for row in rows} - set(names))
        if queue is not None:
            names = [n for n in names if n == queue]
        out = []
        for name in names:
            mine = [row for row in rows if row[0] == name]
            count = {str(st): int(n or 0) for _, st, n, _, _, _ in mine}
            lapsed = sum(int(x or 0) for _, st, _, x, _, _ in mine if st == CLAIMED)
            undecided = [row for row in mine if row[1] != DECIDED]
            priorities = [int(row[4]) for row in undecided if row[4] is not None]
            oldest = [to_utc(row[5]) for row in undecided if row[5] is not None]
            out.append(
                QueueCounts(
                    name=name,
                    open=count.get(OPEN, 0) + lapsed,
                    claimed=count.get(CLAIMED, 0) - lapsed,
                    decided=count.get(DECIDED, 0),
                    top_priority=max(priorities) if priorities else None,
                    oldest_at=min(oldest) if oldest else None,
                    configured=name in configured,
                )
            )
        return out

    def decision_log(
        self, tenant_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> DecisionPage:
        """Every decision of the tenant, newest first (the tenant's audit log)."""
        check_limit(limit)
        q = select(ReviewDecision).where(ReviewDecision.tenant_id == tenant_id)
        if cursor is not None:
            at, last_id = decode_cursor(cursor)
            q = q.where(
                or_(
                    ReviewDecision.decided_at < at,
                    and_(ReviewDecision.decided_at == at, ReviewDecision.id < last_id),
                )
            )
        q = q.order_by(ReviewDecision.decided_at.desc(), ReviewDecision.id.desc())
        with self.sessions() as s:
            rows = list(s.scalars(q.limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more and rows:
            last = rows[-1]
            raw = json.dumps([to_utc(last.decided_at).isoformat(), last.id]).encode()
            next_cursor = base64.urlsafe_b64encode(raw).decode()
        return DecisionPage(rows, next_cursor)

    # ---- claiming ----------------------------------------------------------------
    def claim_next(
        self, tenant_id: str, queue: str, who: Reviewer, *, exclude: Collection[str] = ()
    ) -> ReviewItem:
        """Take the queue's next item for ``review.lease_s``: highest priority, then
        oldest; an open item, or a claimed one whose lease ran out, other than the items
        of ``exclude`` (those a reviewer skipped; at most :data:`MAX_EXCLUDED`).
        ``nothing_to_review`` when there is none."""
        if len(exclude) > MAX_EXCLUDED:
            raise InputError(
                f"at most {MAX_EXCLUDED} items may be left out of a claim",
                code="too_many_excluded",
                status=422,
            )
        now = self.now()
        claimable = and_(
            ReviewItem.tenant_id == tenant_id,
            ReviewItem.queue == queue,
            or_(
                ReviewItem.status == OPEN,
                and_(ReviewItem.status == CLAIMED, ReviewItem.lease_expires_at < now),
            ),
        )
        if exclude:
            claimable = and_(claimable, ReviewItem.id.not_in(sorted(set(exclude))))
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
        stop_stream: bool = False,
    ) -> tuple[ReviewItem, ReviewDecision]:
        """Approve (``allow``), reject (``block``) or escalate an item; the lease holder
        while the lease holds, or an admin. Label corrections are taxonomy names.
        ``stop_stream`` (reject only, an alert's item) also stops the alert's stream."""
        if action not in ACTIONS:
            raise InputError(
                f"action must be one of {list(ACTIONS)}", code="invalid_action", status=422
            )
        if stop_stream and action != "reject":
            raise InputError(
                "stop_stream goes with the reject action only",
                code="stop_stream_not_applicable",
                status=422,
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
            if stop_stream and item.source != "alert":
                raise InputError(
                    "stop_stream applies to the items of live alerts only",
                    code="stop_stream_not_applicable",
                    status=422,
                )
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
            decision = self._record(
                s,
                item,
                who,
                action=action,
                decision=_OUTCOME[action],
                source=MODERATOR,
                labels=(before, after),
                added=[n for n in add if n not in before],
                removed=[n for n in remove if n in before],
                note=note,
                now=now,
                escalated_to=escalated_to,
            )
            s.refresh(item)
            self._apply_outcomes(s, item, decision, stop_stream=stop_stream)
            events.send(s, self.config.webhook_url, item, decision)
            return item, decision

    # ---- corrections -------------------------------------------------------------
    def correct(
        self,
        tenant_id: str,
        target: CorrectionTarget,
        who: Reviewer,
        decision: str,
        *,
        labels: Sequence[str] | None = None,
        add_labels: Sequence[str] = (),
        remove_labels: Sequence[str] = (),
        note: str = "",
        media_stored: Callable[[str], bool] | None = None,
    ) -> Correction:
        """Decide ``target`` as ``decision`` (``allow`` or ``block``) with the right
        labels: ``labels`` (the full set) or ``add_labels`` / ``remove_labels`` (taxonomy
        names). Decides the target's item whatever its state or whoever holds it, or
        creates it already decided; the decision's source is ``api``. An item decided
        before takes the corrected decision and labels and keeps its ``decided_at`` (when
        people first decided it). ``media_stored(sha256)`` says whether a stored
        result's bytes are in the job media store (a new item of such a result refers to
        them as its media)."""
        target.check()
        if decision not in OUTCOMES:
            raise InputError(
                f"decision must be one of {list(OUTCOMES)}", code="invalid_decision", status=422
            )
        full: list[str] | None = None
        add: list[str] = []
        remove: list[str] = []
        if labels is not None:
            if add_labels or remove_labels:
                raise InvalidCorrectionLabels(
                    "give either labels (the full set) or add_labels and remove_labels"
                )
            full, _ = _check_labels(labels, ())
        else:
            add, remove = _check_labels(add_labels, remove_labels)
        if len(note) > self.config.max_note_chars:
            raise NoteTooLong(
                f"a note has at most {self.config.max_note_chars} characters",
                details={"max_chars": self.config.max_note_chars},
            )
        for attempt in range(2):
            try:
                with self.sessions.begin() as s:
                    item, created = self._correction_item(s, tenant_id, target, media_stored)
                    now = self.now()
                    before = list(item.labels or [])
                    if full is not None:
                        after = [n for n in before if n in full]
                        after += [n for n in full if n not in before]
                    else:
                        after = [n for n in before if n not in remove]
                        after += [n for n in add if n not in before]
                    overrode = None
                    lease = item.lease_expires_at
                    if (
                        item.status == CLAIMED
                        and lease is not None
                        and to_utc(lease) > now
                        and item.claimed_by != who.ref
                    ):
                        overrode = item.claimed_by
                    row = self._record(
                        s,
                        item,
                        who,
                        action=CORRECT,
                        decision=decision,
                        source=API,
                        labels=(before, after),
                        added=[n for n in after if n not in before],
                        removed=[n for n in before if n not in after],
                        note=note,
                        now=now,
                        overrode_claim=overrode,
                    )
                    item.status = DECIDED
                    item.decision = decision
                    item.labels = after
                    item.lease_expires_at = None
                    item.updated_at = now
                    if item.decided_at is None:
                        item.decided_at = now
                    s.flush()
                    self._apply_outcomes(s, item, row, stop_stream=False)
                    events.send(s, self.config.webhook_url, item, row)
                    return Correction(item, row, created)
            except IntegrityError:  # the item was created by a concurrent correction
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _correction_item(
        self,
        s: Session,
        tenant_id: str,
        target: CorrectionTarget,
        media_stored: Callable[[str], bool] | None,
    ) -> tuple[ReviewItem, bool]:
        """The target's item, locked for this transaction, and False; or the item created
        for it (still to decide) and True."""
        if target.review_id is not None:
            return self._lock(s, tenant_id, target.review_id, target), False
        if target.job_id is not None:
            job = s.get(Job, target.job_id)
            if job is None or job.tenant_id != tenant_id:
                raise CorrectionTargetNotFound(f"no {target.describe()} to correct")
            if not job.result:
                raise CorrectionTargetNotReady(
                    f"job {job.id!r} has no result to correct yet (it is {job.status})"
                )
            item, created = self.enqueue(
                s,
                tenant_id=tenant_id,
                source="job",
                source_id=job.id,
                **_of_result(job.result),
                model_decision=str(job.result.get("decision") or "review"),
                media={"kind": "job", "job_id": job.id, "sha256": job.media_sha256},
                media_sha256=job.media_sha256,
            )
        else:
            sha = str(target.media_sha256)
            stored = s.scalars(
                select(DedupEntry.result)
                .where(DedupEntry.tenant_id == tenant_id, DedupEntry.sha256 == sha)
                .order_by(DedupEntry.created_at.desc(), DedupEntry.id.desc())
            ).all()
            results = [
                r for r in stored if target.policy is None or r.get("policy") == target.policy
            ]
            if not results:  # no stored result (any more): a synchronous call's item
                found = s.scalars(
                    select(ReviewItem.id)
                    .where(
                        ReviewItem.tenant_id == tenant_id,
                        ReviewItem.source == "api",
                        ReviewItem.media_sha256 == sha,
                        true() if target.policy is None else ReviewItem.policy == target.policy,
                    )
                    .order_by(ReviewItem.created_at.desc(), ReviewItem.id.desc())
                    .limit(1)
                ).first()
                if found is None:
                    raise CorrectionTargetNotFound(f"no {target.describe()} to correct")
                return self._lock(s, tenant_id, found, target), False
            result = results[0]
            kept = media_stored is not None and media_stored(sha)
            item, created = self.enqueue(
                s,
                tenant_id=tenant_id,
                source="api",
                source_id=upload_key(sha, result.get("policy"), result.get("policy_version")),
                **_of_result(result),
                model_decision=str(result.get("decision") or "review"),
                media={"kind": "upload", "sha256": sha} if kept else None,
                media_sha256=sha,
            )
        if created:
            return item, True
        return self._lock(s, tenant_id, item.id, target), False

    def _lock(
        self, s: Session, tenant_id: str, item_id: str, target: CorrectionTarget
    ) -> ReviewItem:
        """The tenant's item, read after writing to it: the row stays locked until the
        transaction ends on PostgreSQL, and on SQLite the write takes the database's
        write lock first, so no decision slips in between reading and deciding."""
        touched = s.execute(
            update(ReviewItem)
            .where(ReviewItem.id == item_id, ReviewItem.tenant_id == tenant_id)
            .values(updated_at=self.now())
            .execution_options(synchronize_session=False)
        )
        if _rowcount(touched) != 1:
            raise CorrectionTargetNotFound(f"no {target.describe()} to correct")
        item = s.get(ReviewItem, item_id, populate_existing=True)
        assert item is not None
        return item

    def samples(
        self,
        tenant_id: str,
        *,
        source: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        label: str | None = None,
        corrected_only: bool = False,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SamplePage:
        """The tenant's decisions that decided an item (escalations left out) with their
        items, newest first: the labelled samples. ``source`` (``moderator`` or ``api``);
        decided at or after ``since`` and before ``until``; ``label`` among the labels
        before or after; ``corrected_only``: the labels or the decision differ from
        what they were (the models' decision)."""
        check_limit(limit)
        if source is not None and source not in DECISION_SOURCES:
            raise InputError(
                f"source must be one of {list(DECISION_SOURCES)}", code="invalid_source"
            )
        if label is not None and label not in taxonomy.CATEGORIES:
            raise UnknownLabel(f"not a taxonomy label: {label!r}")
        d = ReviewDecision
        q = (
            select(d, ReviewItem)
            .join(ReviewItem, and_(ReviewItem.id == d.item_id, ReviewItem.tenant_id == d.tenant_id))
            .where(d.tenant_id == tenant_id, d.decision.is_not(None))
        )
        if source is not None:
            q = q.where(d.source == source)
        if since is not None:
            q = q.where(d.decided_at >= to_utc(since))
        if until is not None:
            q = q.where(d.decided_at < to_utc(until))
        if label is not None:
            quoted = json.dumps(label)  # as the JSON of a label list holds it
            q = q.where(
                or_(
                    cast(d.labels_before, Text).contains(quoted, autoescape=True),
                    cast(d.labels_after, Text).contains(quoted, autoescape=True),
                )
            )
        if corrected_only:
            q = q.where(
                or_(
                    cast(d.added_labels, Text) != "[]",
                    cast(d.removed_labels, Text) != "[]",
                    d.decision != d.model_decision,
                )
            )
        if cursor is not None:
            at, last_id = decode_cursor(cursor)
            q = q.where(or_(d.decided_at < at, and_(d.decided_at == at, d.id < last_id)))
        q = q.order_by(d.decided_at.desc(), d.id.desc()).limit(limit + 1)
        with self.sessions() as s:
            rows = [Sample(row[0], row[1]) for row in s.execute(q).all()]
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more and rows:
            last = rows[-1].decision
            next_cursor = encode_cursor(_Key(to_utc(last.decided_at), last.id))
        return SamplePage(rows, next_cursor)

    def _record(
        self,
        s: Session,
        item: ReviewItem,
        who: Reviewer,
        *,
        action: str,
        decision: str | None,
        source: str,
        labels: tuple[list[str], list[str]],
        added: list[str],
        removed: list[str],
        note: str,
        now: datetime,
        escalated_to: str | None = None,
        overrode_claim: str | None = None,
    ) -> ReviewDecision:
        """Add a decision on ``item`` to the audit log (in ``s``'s transaction). A
        decision that decides the item keeps its media as a training sample when the
        tenant consents now and the item has media."""
        result = item.result or {}
        versions = result.get("versions")
        consent = decision is not None and item.media is not None
        if consent:
            consent = bool(
                s.scalar(select(Tenant.training_consent).where(Tenant.id == item.tenant_id))
            )
        before, after = labels
        row = ReviewDecision(
            id="rvd_" + uuid.uuid4().hex,
            item_id=item.id,
            tenant_id=item.tenant_id,
            actor_kind=who.kind,
            actor_id=who.id,
            action=action,
            source=source,
            decision=decision,
            queue=item.queue,
            escalated_to=escalated_to,
            labels_before=before,
            labels_after=after,
            added_labels=added,
            removed_labels=removed,
            note=note,
            model_decision=item.model_decision,
            model_versions=versions if isinstance(versions, dict) else {},
            policy=item.policy,
            policy_version=item.policy_version,
            decided_at=now,
            media_kept=consent,
            overrode_claim=overrode_claim,
        )
        s.add(row)
        s.flush()
        return row

    def release_media(self, s: Session, tenant_id: str, item_id: str) -> int:
        """The item's media is no longer kept as a training sample (its sample was
        deleted): clear ``media_kept`` on the tenant's decisions of the item, in the
        caller's transaction, so retention treats the media as any other. Returns how
        many decisions changed. A later decision that keeps it makes a sample again."""
        changed = s.execute(
            update(ReviewDecision)
            .where(
                ReviewDecision.tenant_id == tenant_id,
                ReviewDecision.item_id == item_id,
                ReviewDecision.media_kept.is_(True),
            )
            .values(media_kept=False)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(changed)

    # ---- helpers -----------------------------------------------------------------
    def add_outcome(self, outcome: DecisionOutcome) -> None:
        """Have ``outcome`` apply every decision from now on (wired once, when the
        process is built: the alerts service exists only after this one)."""
        self._outcomes.append(outcome)

    def _apply_outcomes(
        self, s: Session, item: ReviewItem, decision: ReviewDecision, *, stop_stream: bool
    ) -> None:
        for outcome in self._outcomes:
            outcome.apply_in(s, item, decision, stop_stream=stop_stream)

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
