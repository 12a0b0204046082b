"""The database side of de-duplication: look up, store, find near duplicates, purge.

Synchronous (SQLAlchemy sessions); :class:`~bastion.dedup.service.Dedup` calls it from
worker threads. Works the same on SQLite and PostgreSQL. Many processes may share the
tables: a result stored twice at once keeps the first, and hit counts are updated in
the database, not read and written back. Every lookup is limited to one tenant's rows
(the tenant is part of the key and of the PDQ band index), so a near duplicate is
only ever another item of the same tenant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bastion.dedup.config import DedupConfig
from bastion.dedup.pdqindex import PdqHash, band_codes, probe_codes
from bastion.dedup.tables import DedupBand, DedupEntry
from bastion.media.hashing import hamming
from bastion.results import ModerationResult

log = logging.getLogger(__name__)

MAX_CANDIDATES = 512
"""Most entries sharing a band with the query that are compared in full."""

_NOT_STORED = {"cached", "near_duplicate_of"}


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class NearMatch:
    """A stored result whose image is within the distance asked for."""

    result: ModerationResult
    sha256: str
    distance: int


@dataclass(frozen=True, slots=True)
class PurgeStats:
    other_model: int
    expired: int
    evicted: int

    @property
    def total(self) -> int:
        return self.other_model + self.expired + self.evicted


class ResultStore:
    """Stored results keyed by (tenant, scope, sha256), with an index of PDQ bands per
    tenant and scope."""

    def __init__(self, sessions: sessionmaker[Session], config: DedupConfig) -> None:
        self.sessions = sessions
        self.config = config

    # reading ---------------------------------------------------------------
    def _expired(self, created_at: datetime, now: datetime) -> bool:
        max_age = self.config.max_age_s
        return max_age is not None and created_at < now - timedelta(seconds=max_age)

    def _take(
        self, s: Session, entry_id: int, stored: dict[str, object], created_at: datetime
    ) -> ModerationResult | None:
        """The stored result, counted as a hit; None (and the row gone) when unusable."""
        now = _now()
        result = None
        if not self._expired(created_at, now):
            try:
                result = ModerationResult.model_validate(stored)
            except ValidationError:
                log.warning("stored result %s no longer validates; dropped", entry_id)
        if result is None:
            s.execute(delete(DedupEntry).where(DedupEntry.id == entry_id))
            return None
        s.execute(
            update(DedupEntry)
            .where(DedupEntry.id == entry_id)
            .values(hits=DedupEntry.hits + 1, used_at=now)
        )
        return result

    def get(self, sha256: str, scope: str, *, tenant: str) -> ModerationResult | None:
        """The result ``tenant`` stored for these bytes in this scope, if any."""
        with self.sessions.begin() as s:
            row = s.execute(
                select(DedupEntry.id, DedupEntry.result, DedupEntry.created_at).where(
                    DedupEntry.tenant_id == tenant,
                    DedupEntry.scope == scope,
                    DedupEntry.sha256 == sha256,
                )
            ).one_or_none()
            if row is None:
                return None
            return self._take(s, row.id, row.result, row.created_at)

    def nearest(
        self, pdq: PdqHash, scope: str, max_distance: int, *, tenant: str
    ) -> NearMatch | None:
        """The closest image ``tenant`` stored within ``max_distance`` PDQ bits, in this
        scope."""
        if pdq.quality < self.config.near_duplicate_min_quality:
            return None
        with self.sessions.begin() as s:
            codes = probe_codes(pdq.hex, max_distance)
            ids = (
                s.execute(
                    select(DedupBand.entry_id)
                    .where(
                        DedupBand.tenant_id == tenant,
                        DedupBand.scope == scope,
                        DedupBand.code.in_(codes),
                    )
                    .distinct()
                    .limit(MAX_CANDIDATES)
                )
                .scalars()
                .all()
            )
            if not ids:
                return None
            # a second query by primary key: joined, planners may scan the whole table
            rows = s.execute(
                select(DedupEntry.id, DedupEntry.sha256, DedupEntry.pdq).where(
                    DedupEntry.id.in_(ids), DedupEntry.tenant_id == tenant
                )
            ).all()
            scored = sorted(
                (hamming(pdq.hex, r.pdq), r.id, r.sha256) for r in rows if r.pdq is not None
            )
            for distance, entry_id, sha256 in scored:
                if distance > max_distance:
                    break
                row = s.execute(
                    select(DedupEntry.result, DedupEntry.created_at).where(
                        DedupEntry.id == entry_id
                    )
                ).one_or_none()
                if row is None:
                    continue
                result = self._take(s, entry_id, row.result, row.created_at)
                if result is not None:
                    return NearMatch(result, sha256, distance)
        return None

    # writing ---------------------------------------------------------------
    def put(
        self,
        sha256: str,
        scope: str,
        model_fp: str,
        result: ModerationResult,
        pdq: PdqHash | None,
        *,
        tenant: str,
        index_pdq: bool,
    ) -> bool:
        """Store ``tenant``'s result; False when one was stored for the same key meanwhile.

        With ``index_pdq`` (near-duplicate reuse on) a hash of sufficient quality gets
        its bands indexed so that later near duplicates find it.
        """
        now = _now()
        try:
            with self.sessions.begin() as s:
                entry = DedupEntry(
                    tenant_id=tenant,
                    sha256=sha256,
                    scope=scope,
                    model_fp=model_fp,
                    result=result.model_dump(mode="json", exclude=_NOT_STORED),
                    pdq=pdq.hex if pdq else None,
                    pdq_quality=pdq.quality if pdq else None,
                    hits=0,
                    created_at=now,
                    used_at=now,
                )
                s.add(entry)
                s.flush()
                if (
                    index_pdq
                    and pdq is not None
                    and pdq.quality >= self.config.near_duplicate_min_quality
                ):
                    s.add_all(
                        DedupBand(entry_id=entry.id, code=code, tenant_id=tenant, scope=scope)
                        for code in band_codes(pdq.hex)
                    )
        except IntegrityError:
            return False
        return True

    # purging ---------------------------------------------------------------
    def purge(self, model_fp: str) -> PurgeStats:
        """Drop results of other models, expired ones, and the least recently used
        beyond ``max_entries``. Their band rows go with them (ON DELETE CASCADE)."""
        now = _now()
        with self.sessions.begin() as s:
            other = s.execute(delete(DedupEntry).where(DedupEntry.model_fp != model_fp))
            expired_n = 0
            if self.config.max_age_s is not None:
                cutoff = now - timedelta(seconds=self.config.max_age_s)
                expired = s.execute(delete(DedupEntry).where(DedupEntry.created_at < cutoff))
                expired_n = expired.rowcount  # type: ignore[attr-defined]
            count = s.execute(select(func.count()).select_from(DedupEntry)).scalar_one()
            evicted_n = 0
            surplus = count - self.config.max_entries
            if surplus > 0:
                oldest = (
                    select(DedupEntry.id)
                    .order_by(DedupEntry.used_at, DedupEntry.id)
                    .limit(surplus)
                    .scalar_subquery()
                )
                evicted = s.execute(delete(DedupEntry).where(DedupEntry.id.in_(oldest)))
                evicted_n = evicted.rowcount  # type: ignore[attr-defined]
            return PurgeStats(other.rowcount, expired_n, evicted_n)  # type: ignore[attr-defined]

    def count(self) -> int:
        with self.sessions() as s:
            return int(s.execute(select(func.count()).select_from(DedupEntry)).scalar_one())
