"""The samples' one service: add, list and filter, read, delete, and training arrays.

Every read and write is scoped to a tenant: another tenant's sample is "not found".
Samples are added by an import (:meth:`SampleService.add`, in one transaction with its
embedding, and only while the tenant consents to keep media for training) or by the
collector from decisions (:meth:`~SampleService.pending`, :meth:`~SampleService.add`,
:meth:`~SampleService.follow`; :mod:`bastion.samples.collector`). Filters are those of
a librarian: only corrected samples, one source, a period of ``taken_at``, a category
(a taxonomy label; an L1 label covers its L2 labels).

Deleting a sample deletes its row and embeddings; a sample of a decision also releases
the item's kept media (:meth:`bastion.review.service.ReviewService.release_media`, in
the same transaction), so a collector does not make it again. The media file itself is
shared by every tenant (the store is content-addressed): it is removed at once only when
nothing else refers to those bytes — no sample of any tenant, no job whose media was not
purged, no review item other than the sample's own, and no decision that keeps them —
and it was not stored again in the last :data:`DELETE_GRACE_S` seconds (an upload of
the same bytes may be on its way to a row); otherwise retention removes it once nothing
wants it (:mod:`bastion.jobs.retention`).

:meth:`SampleService.dataset` gives the training arrays of one category: the vectors of
one embedding model, 1 where the sample has the category (or one of its L2 labels),
their times and ids, oldest first.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Text, and_, cast, delete, func, or_, select, true, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from bastion.errors import InputError, NotFound
from bastion.jobs.media_files import MediaStore
from bastion.jobs.tables import Job
from bastion.policy import taxonomy
from bastion.review.service import ReviewService
from bastion.review.tables import ReviewDecision, ReviewItem
from bastion.samples.embedding import EmbeddingModel, Vector, from_bytes, to_bytes
from bastion.samples.errors import (
    SampleMediaNotFound,
    SampleNotFound,
    TrainingConsentRequired,
    UnknownCategory,
)
from bastion.samples.tables import DECISIONS, SOURCES, Sample, SampleEmbedding
from bastion.store.pages import newest_first
from bastion.store.tables import Tenant
from bastion.store.types import to_utc

DELETE_GRACE_S = 300.0
"""Media stored (or stored again) this recently is left to retention when a sample is
deleted: an upload of the same bytes may not have its row yet."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def is_corrected(
    labels: Sequence[str],
    decision: str | None,
    model_labels: Sequence[str] | None,
    model_decision: str | None,
) -> bool:
    """People changed the models' labels, or decided otherwise than the models (no
    models' opinion: not corrected)."""
    if model_labels is None and model_decision is None:
        return False
    if model_labels is not None and set(labels) != set(model_labels):
        return True
    return decision is not None and model_decision is not None and decision != model_decision


def covered(labels: Sequence[str]) -> list[str]:
    """The labels with their L1 parents, sorted: the categories a sample is in."""
    return sorted(taxonomy.expand(labels))


@dataclass(frozen=True, slots=True)
class SampleFilter:
    """Which samples: one ``source``; labels given at or after ``since`` and before
    ``until``; in ``category`` (a taxonomy label, an L1 label covering its L2 labels);
    only ``corrected`` ones."""

    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    category: str | None = None
    corrected_only: bool = False

    def check(self) -> None:
        if self.source is not None and self.source not in SOURCES:
            raise InputError(f"source must be one of {list(SOURCES)}", code="invalid_source")
        if self.category is not None and self.category not in taxonomy.CATEGORIES:
            raise UnknownCategory(f"not a taxonomy label: {self.category[:100]!r}")

    def where(self, q: Any) -> Any:
        """``q`` (a select over :class:`Sample`) narrowed to this filter."""
        self.check()
        if self.source is not None:
            q = q.where(Sample.source == self.source)
        if self.since is not None:
            q = q.where(Sample.taken_at >= to_utc(self.since))
        if self.until is not None:
            q = q.where(Sample.taken_at < to_utc(self.until))
        if self.category is not None:
            quoted = json.dumps(self.category)  # as the JSON of a label list holds it
            q = q.where(cast(Sample.categories, Text).contains(quoted, autoescape=True))
        if self.corrected_only:
            q = q.where(Sample.corrected.is_(True))
        return q


@dataclass(frozen=True, slots=True)
class EmbeddingInfo:
    """Which embedding a sample carries."""

    model: EmbeddingModel
    analyzer: str
    dim: int


@dataclass(frozen=True, slots=True)
class SampleView:
    """A sample and the embeddings it carries."""

    sample: Sample
    embeddings: list[EmbeddingInfo]


@dataclass(frozen=True, slots=True)
class SamplePage:
    """Samples newest first (by when they were made); pass ``next_cursor`` for the next
    page."""

    samples: list[SampleView]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class DeletedSample:
    """A sample deleted: its media's sha256, and whether the file went with it (False:
    something else still wants the bytes, or retention will remove them)."""

    id: str
    media_sha256: str | None
    media_deleted: bool


@dataclass(frozen=True, slots=True)
class NewEmbedding:
    """An embedding to store with a sample."""

    model: EmbeddingModel
    analyzer: str
    vector: Vector


@dataclass(frozen=True, slots=True)
class NewSample:
    """What a new sample is made of."""

    tenant_id: str
    labels: list[str]
    decision: str | None
    source: str
    taken_by: str
    taken_at: datetime
    media_sha256: str | None = None
    media_kind: str | None = None
    media_format: str | None = None
    model_labels: list[str] | None = None
    model_decision: str | None = None
    origin: str | None = None
    review_item_id: str | None = None
    review_decision_id: str | None = None
    embeddings: list[NewEmbedding] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Pending:
    """A decision a sample should follow: the latest decision of an item a decision
    kept the media of, with no sample following it yet."""

    decision: ReviewDecision
    item: ReviewItem
    sample_id: str | None
    """The item's sample when it has one (it follows an older decision)."""
    model_labels: list[str]
    """The models' labels: the item's labels before its first decision."""


@dataclass(frozen=True, slots=True)
class Dataset:
    """One category's training arrays, oldest first."""

    X: npt.NDArray[np.float32]
    """``n × d`` embeddings (``0 × 0`` when no sample has one)."""
    y: npt.NDArray[np.int64]
    """1 where the sample has the category (or one of its L2 labels), else 0."""
    taken_at: npt.NDArray[np.datetime64]
    """When each sample's labels were given (``datetime64[us]``, UTC)."""
    ids: list[str]
    category: str
    model: EmbeddingModel
    missing: int
    """Samples of the filter without an embedding of ``model`` (left out)."""


class SampleService:
    """A tenant's samples on the database of ``sessions``, media in ``media``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        media: MediaStore,
        review: ReviewService,
        *,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.sessions = sessions
        self.media = media
        self.review = review
        self.now = now

    # ---- consent -------------------------------------------------------------------
    def check_consent(self, tenant_id: str, s: Session | None = None) -> None:
        """``training_consent_required`` unless the tenant consents to keep media for
        training; ``not_found`` for an unknown tenant."""
        query = select(Tenant.training_consent).where(Tenant.id == tenant_id)
        if s is None:
            with self.sessions() as own:
                consent = own.scalar(query)
        else:
            consent = s.scalar(query)
        if consent is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        if not consent:
            raise TrainingConsentRequired(
                f"tenant {tenant_id!r} has not consented to keep media for training: an "
                "admin of the tenant turns training_consent on (PATCH /v1/tenant) first"
            )

    # ---- adding --------------------------------------------------------------------
    def add(self, new: NewSample, *, consent: bool = True) -> Sample:
        """Store ``new`` and its embeddings in one transaction. ``consent``: refuse
        (``training_consent_required``) unless the tenant consents now (imports; a
        decision's consent was checked when it was taken)."""
        if new.source not in SOURCES:
            raise InputError(f"source must be one of {list(SOURCES)}", code="invalid_source")
        if new.decision is not None and new.decision not in DECISIONS:
            raise InputError(f"decision must be one of {list(DECISIONS)}", code="invalid_decision")
        now = self.now()
        with self.sessions.begin() as s:
            if consent:
                self.check_consent(new.tenant_id, s)
            row = Sample(
                id="smp_" + uuid.uuid4().hex,
                tenant_id=new.tenant_id,
                media_sha256=new.media_sha256,
                media_kind=new.media_kind,
                media_format=new.media_format,
                labels=list(new.labels),
                categories=covered(new.labels),
                decision=new.decision,
                model_labels=new.model_labels,
                model_decision=new.model_decision,
                corrected=is_corrected(
                    new.labels, new.decision, new.model_labels, new.model_decision
                ),
                source=new.source,
                taken_by=new.taken_by,
                taken_at=to_utc(new.taken_at),
                origin=new.origin,
                review_item_id=new.review_item_id,
                review_decision_id=new.review_decision_id,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            for e in new.embeddings:
                s.add(
                    SampleEmbedding(
                        sample_id=row.id,
                        tenant_id=new.tenant_id,
                        model=e.model.name,
                        version=e.model.version,
                        analyzer=e.analyzer,
                        dim=int(e.vector.size),
                        vector=to_bytes(e.vector),
                        created_at=now,
                    )
                )
            s.flush()
        return row

    def with_media(self, tenant_id: str, sha256: str) -> str | None:
        """The id of a sample of the tenant with these bytes, or None."""
        with self.sessions() as s:
            return s.scalar(
                select(Sample.id)
                .where(Sample.tenant_id == tenant_id, Sample.media_sha256 == sha256)
                .limit(1)
            )

    # ---- following decisions ---------------------------------------------------------
    def pending(self, limit: int, tenant_id: str | None = None) -> list[Pending]:
        """Up to ``limit`` decisions samples should follow, oldest first (every tenant,
        or ``tenant_id``'s): the latest deciding decision of each item one of whose
        decisions kept its media, when the item has no sample or its sample follows an
        older decision."""
        d = aliased(ReviewDecision, name="d")
        kept = aliased(ReviewDecision, name="kept")
        newer = _newer_decision(d.tenant_id, d.item_id, d.decided_at, d.id)
        keeps = (
            select(kept.id)
            .where(
                kept.tenant_id == d.tenant_id,
                kept.item_id == d.item_id,
                kept.media_kept.is_(True),
            )
            .exists()
        )
        q = (
            select(d, ReviewItem, Sample.id)
            .join(ReviewItem, and_(ReviewItem.id == d.item_id, ReviewItem.tenant_id == d.tenant_id))
            .outerjoin(
                Sample, and_(Sample.tenant_id == d.tenant_id, Sample.review_item_id == d.item_id)
            )
            .where(
                d.decision.is_not(None),
                ~newer,
                keeps,
                or_(
                    Sample.id.is_(None),
                    Sample.review_decision_id.is_(None),
                    Sample.review_decision_id != d.id,
                ),
                true() if tenant_id is None else d.tenant_id == tenant_id,
            )
            .order_by(d.decided_at, d.id)
            .limit(limit)
        )
        out = []
        with self.sessions() as s:
            for decision, item, sample_id in s.execute(q).all():
                first = s.scalars(
                    select(ReviewDecision.labels_before)
                    .where(
                        ReviewDecision.tenant_id == decision.tenant_id,
                        ReviewDecision.item_id == decision.item_id,
                    )
                    .order_by(ReviewDecision.decided_at, ReviewDecision.id)
                    .limit(1)
                ).first()
                out.append(Pending(decision, item, sample_id, [str(n) for n in first or []]))
        return out

    def follow(self, pending: Pending) -> bool:
        """Move the item's sample on to ``pending``'s decision (its labels, decision and
        who and when); False when a newer decision came meanwhile, or the sample went."""
        d = pending.decision
        assert pending.sample_id is not None
        labels = [str(n) for n in d.labels_after or []]
        newer = _newer_decision(d.tenant_id, d.item_id, d.decided_at, d.id)
        with self.sessions.begin() as s:
            if s.scalar(select(newer)):
                return False
            changed = s.execute(
                update(Sample)
                .where(Sample.id == pending.sample_id, Sample.tenant_id == d.tenant_id)
                .values(
                    labels=labels,
                    categories=covered(labels),
                    decision=d.decision,
                    model_labels=pending.model_labels,
                    model_decision=d.model_decision,
                    corrected=is_corrected(
                        labels, d.decision, pending.model_labels, d.model_decision
                    ),
                    source=d.source,
                    taken_by=f"{d.actor_kind}:{d.actor_id}",
                    taken_at=to_utc(d.decided_at),
                    review_decision_id=d.id,
                    updated_at=self.now(),
                )
                .execution_options(synchronize_session=False)
            )
            return int(getattr(changed, "rowcount", 0) or 0) == 1

    # ---- reading -----------------------------------------------------------------
    def list_samples(
        self,
        tenant_id: str,
        filters: SampleFilter | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SamplePage:
        """The tenant's samples of ``filters``, newest first."""
        q = (filters or SampleFilter()).where(select(Sample).where(Sample.tenant_id == tenant_id))
        with self.sessions() as s:
            rows, next_cursor = newest_first(
                s, q, Sample.created_at, Sample.id, limit=limit, cursor=cursor
            )
            infos = _embedding_infos(s, tenant_id, [r.id for r in rows])
        return SamplePage([SampleView(r, infos.get(r.id, [])) for r in rows], next_cursor)

    def iterate(self, tenant_id: str, filters: SampleFilter | None = None) -> Iterator[SampleView]:
        """Every sample of ``filters``, newest first, a page at a time."""
        cursor: str | None = None
        while True:
            page = self.list_samples(tenant_id, filters, limit=200, cursor=cursor)
            yield from page.samples
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def count(self, tenant_id: str, filters: SampleFilter | None = None) -> int:
        q = (filters or SampleFilter()).where(
            select(func.count()).select_from(Sample).where(Sample.tenant_id == tenant_id)
        )
        with self.sessions() as s:
            return int(s.scalar(q) or 0)

    def get(self, tenant_id: str, sample_id: str) -> SampleView:
        with self.sessions() as s:
            row = s.get(Sample, sample_id)
            if row is None or row.tenant_id != tenant_id:
                raise SampleNotFound(f"sample {sample_id!r} not found")
            infos = _embedding_infos(s, tenant_id, [row.id])
        return SampleView(row, infos.get(row.id, []))

    def embedding(self, tenant_id: str, sample_id: str, model: EmbeddingModel) -> Vector | None:
        """The sample's embedding of ``model``, or None when it has none."""
        with self.sessions() as s:
            row = s.get(SampleEmbedding, (sample_id, model.name, model.version))
            if row is None or row.tenant_id != tenant_id:
                return None
            return from_bytes(row.vector, row.dim)

    def media_path(self, tenant_id: str, sample_id: str) -> Path:
        """Where the sample's media is stored (the file may be gone since);
        ``sample_media_not_found`` when it has none."""
        sample = self.get(tenant_id, sample_id).sample
        if sample.media_sha256 is None:
            raise SampleMediaNotFound(f"sample {sample_id} has no media")
        return self.media.path(sample.media_sha256)

    def embedding_models(self, tenant_id: str) -> list[tuple[EmbeddingModel, int]]:
        """The embedding models the tenant's samples carry, with how many each."""
        with self.sessions() as s:
            rows = s.execute(
                select(SampleEmbedding.model, SampleEmbedding.version, func.count())
                .where(SampleEmbedding.tenant_id == tenant_id)
                .group_by(SampleEmbedding.model, SampleEmbedding.version)
                .order_by(SampleEmbedding.model, SampleEmbedding.version)
            ).all()
        return [(EmbeddingModel(str(m), str(v)), int(n)) for m, v, n in rows]

    def dataset(
        self,
        tenant_id: str,
        category: str,
        embedding_model: EmbeddingModel | str,
        filters: SampleFilter | None = None,
    ) -> Dataset:
        """The training arrays of ``category`` over the tenant's samples of ``filters``
        (their category filter aside: every sample is a positive or a negative) that
        carry an embedding of ``embedding_model``, oldest first."""
        if category not in taxonomy.CATEGORIES:
            raise UnknownCategory(f"not a taxonomy label: {category[:100]!r}")
        model = (
            EmbeddingModel.parse(embedding_model)
            if isinstance(embedding_model, str)
            else embedding_model
        )
        base = filters or SampleFilter()
        chosen = SampleFilter(base.source, base.since, base.until, None, base.corrected_only)
        q = chosen.where(
            select(
                Sample.id,
                Sample.categories,
                Sample.taken_at,
                SampleEmbedding.vector,
                SampleEmbedding.dim,
            )
            .join(
                SampleEmbedding,
                and_(
                    SampleEmbedding.sample_id == Sample.id,
                    SampleEmbedding.tenant_id == Sample.tenant_id,
                    SampleEmbedding.model == model.name,
                    SampleEmbedding.version == model.version,
                ),
            )
            .where(Sample.tenant_id == tenant_id)
        ).order_by(Sample.taken_at, Sample.id)
        with self.sessions() as s:
            rows = s.execute(q).all()
        total = self.count(tenant_id, chosen)
        dim = int(rows[0][4]) if rows else 0
        vectors = [from_bytes(r[3], int(r[4])) for r in rows]
        if any(v.shape != (dim,) for v in vectors):
            raise ValueError(f"embeddings of {model} differ in size")
        x = np.stack(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)
        y = np.array([1 if category in (r[1] or []) else 0 for r in rows], dtype=np.int64)
        times = np.array(
            [np.datetime64(to_utc(r[2]).replace(tzinfo=None), "us") for r in rows],
            dtype="datetime64[us]",
        )
        return Dataset(
            X=x.astype(np.float32, copy=False),
            y=y,
            taken_at=times,
            ids=[str(r[0]) for r in rows],
            category=category,
            model=model,
            missing=total - len(rows),
        )

    # ---- deleting ----------------------------------------------------------------
    def delete(self, tenant_id: str, sample_id: str) -> DeletedSample:
        """Delete the tenant's sample and its embeddings; a sample of a decision releases
        the item's kept media. Its media file goes too unless something else wants the
        bytes (see the module notes)."""
        with self.sessions.begin() as s:
            row = s.get(Sample, sample_id, with_for_update=True)
            if row is None or row.tenant_id != tenant_id:
                raise SampleNotFound(f"sample {sample_id!r} not found")
            sha, item_id = row.media_sha256, row.review_item_id
            s.execute(
                delete(SampleEmbedding).where(
                    SampleEmbedding.sample_id == sample_id,
                    SampleEmbedding.tenant_id == tenant_id,
                )
            )
            s.delete(row)
            if item_id is not None:
                self.review.release_media(s, tenant_id, item_id)
        if sha is None:
            return DeletedSample(sample_id, None, False)
        removed = self.media.remove(
            sha,
            older_than_s=DELETE_GRACE_S,
            in_use=lambda digest: self.media_wanted(digest, tenant_id, item_id),
        )
        return DeletedSample(sample_id, sha, removed)

    def media_wanted(
        self, sha256: str, tenant_id: str | None = None, own_item: str | None = None
    ) -> bool:
        """Anything of any tenant refers to these bytes: a sample, a job whose media was
        not purged, a review item (other than ``own_item`` of ``tenant_id``: the decided
        item whose sample was just deleted), a decision that keeps them."""
        with self.sessions() as s:
            if s.scalar(select(Sample.id).where(Sample.media_sha256 == sha256).limit(1)):
                return True
            job = select(Job.id).where(Job.media_sha256 == sha256, Job.media_purged_at.is_(None))
            if s.scalar(job.limit(1)):
                return True
            items = select(ReviewItem.id).where(ReviewItem.media_sha256 == sha256)
            if own_item is not None:
                items = items.where(
                    or_(ReviewItem.id != own_item, ReviewItem.tenant_id != tenant_id)
                )
            if s.scalar(items.limit(1)):
                return True
            kept = (
                select(ReviewDecision.id)
                .join(
                    ReviewItem,
                    and_(
                        ReviewItem.id == ReviewDecision.item_id,
                        ReviewItem.tenant_id == ReviewDecision.tenant_id,
                    ),
                )
                .where(ReviewItem.media_sha256 == sha256, ReviewDecision.media_kept.is_(True))
            )
            return bool(s.scalar(select(kept.exists())))


def _newer_decision(tenant_id: Any, item_id: Any, decided_at: Any, decision_id: Any) -> Any:
    """EXISTS: a decision of the same item taken after the one given by its columns (or
    values), ties broken by id."""
    later = aliased(ReviewDecision, name="later")
    return (
        select(later.id)
        .where(
            later.tenant_id == tenant_id,
            later.item_id == item_id,
            later.decision.is_not(None),
            or_(
                later.decided_at > decided_at,
                and_(later.decided_at == decided_at, later.id > decision_id),
            ),
        )
        .exists()
    )


def _embedding_infos(
    s: Session, tenant_id: str, sample_ids: list[str]
) -> dict[str, list[EmbeddingInfo]]:
    out: dict[str, list[EmbeddingInfo]] = {}
    if not sample_ids:
        return out
    rows = s.execute(
        select(
            SampleEmbedding.sample_id,
            SampleEmbedding.model,
            SampleEmbedding.version,
            SampleEmbedding.analyzer,
            SampleEmbedding.dim,
        )
        .where(SampleEmbedding.tenant_id == tenant_id, SampleEmbedding.sample_id.in_(sample_ids))
        .order_by(SampleEmbedding.model, SampleEmbedding.version)
    ).all()
    for sid, model, version, analyzer, dim in rows:
        out.setdefault(str(sid), []).append(
            EmbeddingInfo(EmbeddingModel(str(model), str(version)), str(analyzer), int(dim))
        )
    return out
