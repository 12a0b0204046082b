"""Tenants' rule sets in the database.

Every write raises the tenant's row in ``rule_revisions`` first, in the same
transaction: that row lock serialises a tenant's writers (so the name and channel
checks below cannot race) and the new revision tells every :class:`RuleBook` that
the rule sets changed. A tenant holds at most :data:`MAX_RULE_SETS` rule sets.

A stored rule set that no longer validates (saved before a check was added, e.g. a
regular expression RE2 cannot run) is left out of listings and of the rule book, with
a warning in the log; reading it by id answers 409 ``rule_set_outdated``, and saving
it again with a valid body repairs it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from bastion.errors import BastionError, NotFound
from bastion.rules.errors import Issue, Path, RuleSetConflict
from bastion.rules.loader import spec_data, spec_version
from bastion.rules.spec import MAX_RULE_SETS, RuleSetSpec
from bastion.rules.tables import RuleRevision, RuleSetRow

ImportMode = Literal["replace", "merge"]
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredRuleSet:
    """A rule set as stored: its id, validated spec and content version."""

    id: int
    tenant_id: str
    spec: RuleSetSpec
    version: str
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.spec.name

    @classmethod
    def of(cls, row: RuleSetRow) -> StoredRuleSet:
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            spec=RuleSetSpec.model_validate(row.spec),
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import did, by rule set name."""

    mode: ImportMode
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    rule_sets: list[StoredRuleSet] = field(default_factory=list)


def _not_found(rule_set_id: int) -> NotFound:
    return NotFound(f"rule set {rule_set_id} not found", code="rule_set_not_found")


def _too_many(count: int) -> BastionError:
    return BastionError(
        f"a tenant may keep at most {MAX_RULE_SETS} rule sets; this would make {count}",
        code="too_many_rule_sets",
        status=409,
        details={"max_rule_sets": MAX_RULE_SETS},
    )


def _valid(rows: Iterable[RuleSetRow]) -> list[StoredRuleSet]:
    """The rows that still validate; the others are logged and left out."""
    out: list[StoredRuleSet] = []
    for row in rows:
        try:
            out.append(StoredRuleSet.of(row))
        except ValidationError as exc:
            log.warning(
                "rule set %s of tenant %s no longer validates and is not applied: %s",
                row.id,
                row.tenant_id,
                str(exc).splitlines()[0],
            )
    return out


def _fill(row: RuleSetRow, spec: RuleSetSpec, now: datetime) -> None:
    row.name = spec.name
    row.channel = spec.channel
    row.channel_pattern = spec.channel_pattern
    row.priority = spec.priority
    row.enabled = spec.enabled
    row.spec = spec_data(spec)
    row.version = spec_version(spec)
    row.updated_at = now


class RuleStore:
    """Create, read, change and import a tenant's rule sets."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    # ---- reads -----------------------------------------------------------
    def revision(self, tenant_id: str) -> int:
        """The tenant's rules revision (0 before the first change)."""
        with self.sessions() as s:
            found = s.scalar(
                select(RuleRevision.revision).where(RuleRevision.tenant_id == tenant_id)
            )
            return int(found or 0)

    def rule_sets(self, tenant_id: str) -> list[StoredRuleSet]:
        with self.sessions() as s:
            rows = s.scalars(
                select(RuleSetRow).where(RuleSetRow.tenant_id == tenant_id).order_by(RuleSetRow.id)
            )
            return _valid(rows)

    def snapshot(self, tenant_id: str) -> tuple[int, list[StoredRuleSet]]:
        """The revision and the rule sets, read in one transaction."""
        with self.sessions.begin() as s:
            revision = s.scalar(
                select(RuleRevision.revision).where(RuleRevision.tenant_id == tenant_id)
            )
            rows = s.scalars(
                select(RuleSetRow).where(RuleSetRow.tenant_id == tenant_id).order_by(RuleSetRow.id)
            )
            return int(revision or 0), _valid(rows)

    def get(self, tenant_id: str, rule_set_id: int) -> StoredRuleSet:
        with self.sessions() as s:
            row = s.get(RuleSetRow, rule_set_id)
            if row is None or row.tenant_id != tenant_id:
                raise _not_found(rule_set_id)
            try:
                return StoredRuleSet.of(row)
            except ValidationError as exc:
                raise BastionError(
                    f"rule set {rule_set_id} was saved before a check it fails was added: "
                    f"{str(exc).splitlines()[0]}; save it again (PUT) to repair it",
                    code="rule_set_outdated",
                    status=409,
                ) from None

    # ---- writes ----------------------------------------------------------
    def _bump(self, s: Session, tenant_id: str, now: datetime) -> None:
        dialect = s.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = insert(RuleRevision).values(tenant_id=tenant_id, revision=1, updated_at=now)
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=[RuleRevision.tenant_id],
                set_={"revision": RuleRevision.revision + 1, "updated_at": now},
            )
        )

    def _rows(self, s: Session, tenant_id: str) -> list[RuleSetRow]:
        return list(
            s.scalars(
                select(RuleSetRow).where(RuleSetRow.tenant_id == tenant_id).order_by(RuleSetRow.id)
            )
        )

    @staticmethod
    def _clashes(spec: RuleSetSpec, others: Sequence[RuleSetRow], prefix: Path = ()) -> list[Issue]:
        out: list[Issue] = []
        for row in others:
            if row.name == spec.name:
                out.append(
                    Issue((*prefix, "name"), f"a rule set named {spec.name!r} exists (id {row.id})")
                )
            if spec.channel is not None and row.channel == spec.channel:
                out.append(
                    Issue(
                        (*prefix, "channel"),
                        f"channel {spec.channel!r} already has rule set {row.name!r} (id {row.id})",
                    )
                )
        return out

    def create(self, tenant_id: str, spec: RuleSetSpec) -> StoredRuleSet:
        now = datetime.now(UTC)
        with self.sessions.begin() as s:
            self._bump(s, tenant_id, now)
            rows = self._rows(s, tenant_id)
            clashes = self._clashes(spec, rows)
            if clashes:
                raise RuleSetConflict(clashes)
            if len(rows) >= MAX_RULE_SETS:
                raise _too_many(len(rows) + 1)
            row = RuleSetRow(tenant_id=tenant_id, created_at=now)
            _fill(row, spec, now)
            s.add(row)
            s.flush()
            return StoredRuleSet.of(row)

    def update(self, tenant_id: str, rule_set_id: int, spec: RuleSetSpec) -> StoredRuleSet:
        now = datetime.now(UTC)
        with self.sessions.begin() as s:
            self._bump(s, tenant_id, now)
            rows = self._rows(s, tenant_id)
            row = next((r for r in rows if r.id == rule_set_id), None)
            if row is None:
                raise _not_found(rule_set_id)
            clashes = self._clashes(spec, [r for r in rows if r.id != rule_set_id])
            if clashes:
                raise RuleSetConflict(clashes)
            _fill(row, spec, now)
            s.flush()
            return StoredRuleSet.of(row)

    def delete(self, tenant_id: str, rule_set_id: int) -> StoredRuleSet:
        now = datetime.now(UTC)
        with self.sessions.begin() as s:
            self._bump(s, tenant_id, now)
            row = s.get(RuleSetRow, rule_set_id)
            if row is None or row.tenant_id != tenant_id:
                raise _not_found(rule_set_id)
            gone = StoredRuleSet.of(row)
            s.delete(row)
            return gone

    def import_rule_sets(
        self, tenant_id: str, specs: Sequence[RuleSetSpec], *, mode: ImportMode
    ) -> ImportSummary:
        """Write ``specs`` in one transaction, matched to stored rule sets by name.

        ``replace``: afterwards the tenant has exactly these rule sets (others deleted).
        ``merge``: these are created or updated, others are kept. ``specs`` must be
        validated together (names and channels unique among them)."""
        now = datetime.now(UTC)
        summary = ImportSummary(mode=mode)
        with self.sessions.begin() as s:
            self._bump(s, tenant_id, now)
            rows = self._rows(s, tenant_id)
            by_name = {r.name: r for r in rows}
            names = {spec.name for spec in specs}
            kept = [] if mode == "replace" else [r for r in rows if r.name not in names]
            clashes: list[Issue] = []
            for i, spec in enumerate(specs):
                clashes += self._clashes(spec, kept, ("rule_sets", i))
            if clashes:
                raise RuleSetConflict(clashes)
            if len(kept) + len(names) > MAX_RULE_SETS:
                raise _too_many(len(kept) + len(names))
            if mode == "replace":
                for row in rows:
                    if row.name not in names:
                        summary.deleted.append(row.name)
                        s.delete(row)
                s.flush()
            written: list[RuleSetRow] = []
            for spec in specs:
                found = by_name.get(spec.name)
                if found is None:
                    found = RuleSetRow(tenant_id=tenant_id, created_at=now)
                    _fill(found, spec, now)
                    s.add(found)
                    summary.created.append(spec.name)
                elif found.version != spec_version(spec):
                    _fill(found, spec, now)
                    summary.updated.append(spec.name)
                else:
                    summary.unchanged.append(spec.name)
                written.append(found)
            s.flush()
            summary.rule_sets.extend(
                StoredRuleSet.of(r) for r in sorted(written, key=lambda r: r.id)
            )
        return summary
