"""Safe promotion and rollback of tenants' heads, with an audit log.

:class:`Promotions` moves a tenant's ``champion`` and ``challenger`` aliases for a
category (every moderating process follows within ``registry.refresh_s``), and records
every action in :class:`~bastion.registry.tables.ModelEvent`:

- :meth:`Promotions.promote` makes a version (by default the ``challenger``) the
  champion when it passes the checks of :mod:`bastion.registry.checks` (it beats the
  champion, or with no champion the baseline, on its own frozen held-out samples, and
  in a high-severity category recalls no less). A refusal is audited and raised as
  ``promotion_refused`` (409) with the figures and the reasons; ``force`` overrides the
  checks and needs a reason. The ``challenger`` alias is removed when it named the
  version promoted.
- :meth:`Promotions.rollback` moves the champion back to the one before it (from the
  audit log: the version the current champion was promoted over) or to a given version.
- :meth:`Promotions.set_challenger` and :meth:`Promotions.clear_challenger`.

A version that is not a usable head (its file does not match its checksum, or it fails
its dry run) is never aliased, forced or not: the processes would refuse to serve it.
Actions on one tenant's category are serialised within the process. Every method
blocks (the registry, the samples, the database): callers run them in a thread.
Another tenant's heads are not found: a registered model's name is the tenant's own.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bastion.errors import BastionError, InputError
from bastion.policy import taxonomy
from bastion.registry.checks import (
    PromotionChecks,
    baseline_of,
    blank,
    compare,
    embedding_of,
    held_out_ids,
    load_held_out,
    refuse,
)
from bastion.registry.config import PromotionConfig, category_slug
from bastion.registry.errors import HeadNotFound, HeadRefused
from bastion.registry.heads import CHALLENGER, CHAMPION, HeadRef, LoadedHead, load_head
from bastion.registry.store import HeadVersion, ModelRegistry
from bastion.registry.tables import (
    APPLIED,
    CLEAR_CHALLENGER,
    PROMOTE,
    REFUSED,
    ROLLBACK,
    SET_CHALLENGER,
    ModelEvent,
    ModelSettings,
)
from bastion.samples.errors import UnknownCategory
from bastion.samples.service import SampleService
from bastion.store.pages import newest_first

log = logging.getLogger(__name__)

MAX_REASON = 500
"""Longest reason (characters) an action may give."""

_SLUGS: dict[str, str] = {category_slug(c): c for c in taxonomy.CATEGORIES}


class PromotionRefused(BastionError):
    """The candidate did not pass the promotion checks; ``details`` has the figures
    (``checks``) and the reasons."""

    code = "promotion_refused"
    status = 409


class ReasonRequired(InputError):
    """Forcing a promotion (or rolling back) needs a reason, in people's words."""

    code = "reason_required"
    status = 422


class ReasonTooLong(InputError):
    code = "reason_too_long"
    status = 422


class NoChallenger(BastionError):
    """The category has no ``challenger`` to promote or clear."""

    code = "no_challenger"
    status = 409


class AlreadyChampion(BastionError):
    """The version is the champion already."""

    code = "already_champion"
    status = 409


class NothingToRollBack(BastionError):
    """The audit log names no earlier champion to go back to."""

    code = "nothing_to_roll_back"
    status = 409


def resolve_category(text: str) -> str:
    """A category as a path or a command line gives it: the taxonomy label itself
    (``Knives and Blades``) or its slug, as registered models are named
    (``knives-and-blades``); ``unknown_label`` (422) otherwise."""
    if text in taxonomy.CATEGORIES:
        return text
    found = _SLUGS.get(text)
    if found is None:
        raise UnknownCategory(f"not a taxonomy label or its slug: {text[:100]!r}")
    return found


@dataclass(frozen=True, slots=True)
class CategoryHeads:
    """A tenant's head for one category: every version, and what its aliases name."""

    category: str
    name: str
    versions: list[HeadVersion]

    @property
    def slug(self) -> str:
        return category_slug(self.category)

    def alias(self, alias: str) -> int | None:
        """The version ``alias`` names, or None."""
        return next((v.version for v in self.versions if alias in v.aliases), None)


@dataclass(frozen=True, slots=True)
class Outcome:
    """An action done: its audit event, and (promotions) the checks' figures."""

    event: ModelEvent
    checks: PromotionChecks | None


@dataclass(frozen=True, slots=True)
class EventPage:
    """Audit events newest first; pass ``next_cursor`` for the next page."""

    events: list[ModelEvent]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class SeveritySettings:
    """The categories a tenant marks high-severity (an L1 label covers its L2 labels)."""

    high_severity: list[str]
    updated_by: str | None
    updated_at: datetime | None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _event_id() -> str:
    return f"mev_{time.time_ns():016x}{secrets.token_hex(6)}"


class Promotions:
    """Promotion, rollback and challengers of tenants' heads in ``registry``, judged on
    the tenants' ``samples`` and audited in the database of ``sessions``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        registry: ModelRegistry,
        samples: SampleService,
        config: PromotionConfig | None = None,
        *,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.sessions = sessions
        self.registry = registry
        self.samples = samples
        self.config = config or PromotionConfig()
        self.now = now
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    # ---- reading ---------------------------------------------------------------------
    def heads(self, tenant: str) -> list[CategoryHeads]:
        """The tenant's heads, one per category it registered, by category."""
        self._name(tenant, "Weapons")  # a tenant id the registry takes
        found = sorted(
            (h for h in self.registry.aliased_heads() if h.tenant == tenant),
            key=lambda h: h.category,
        )
        out = []
        for head in found:
            try:
                out.append(self.versions(tenant, head.category))
            except HeadNotFound:  # deleted meanwhile
                continue
        return out

    def versions(self, tenant: str, category: str) -> CategoryHeads:
        """Every version of the tenant's head for ``category``, newest first
        (``head_not_found`` when it has none)."""
        category = check_category(category)
        name = self._name(tenant, category)
        return CategoryHeads(category, name, self.registry.versions(tenant, category))

    def events(
        self,
        tenant: str,
        category: str | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> EventPage:
        """The tenant's audit events (of one category), newest first."""
        q = select(ModelEvent).where(ModelEvent.tenant_id == tenant)
        if category is not None:
            q = q.where(ModelEvent.category == check_category(category))
        with self.sessions() as s:
            rows, next_cursor = newest_first(
                s, q, ModelEvent.created_at, ModelEvent.id, limit=limit, cursor=cursor
            )
        return EventPage(rows, next_cursor)

    def check(self, tenant: str, category: str, version: int | None = None) -> PromotionChecks:
        """What :meth:`promote` would find, without promoting or recording anything."""
        category = check_category(category)
        self._name(tenant, category)
        champion = self.registry.alias_version(tenant, category, CHAMPION)
        version = self._candidate(tenant, category, version)
        listed, head = self._load_version(tenant, category, version)
        return self._checks(tenant, category, listed, head, champion)

    # ---- acting ----------------------------------------------------------------------
    def promote(
        self,
        tenant: str,
        category: str,
        version: int | None = None,
        *,
        force: bool = False,
        reason: str | None = None,
        by: str,
    ) -> Outcome:
        """Make ``version`` (None: the challenger) the champion if it passes the checks,
        or ``force`` it with a ``reason``. A refusal is audited, then raised as
        :class:`PromotionRefused` with the figures."""
        category = check_category(category)
        name = self._name(tenant, category)
        reason = _reason(reason, required=force, what="forcing a promotion")
        with self._lock(tenant, category):
            champion = self.registry.alias_version(tenant, category, CHAMPION)
            challenger = self.registry.alias_version(tenant, category, CHALLENGER)
            version = self._candidate(tenant, category, version, challenger)
            if version == champion:
                raise AlreadyChampion(f"version {version} of {name} is the champion already")
            listed, head = self._load_version(tenant, category, version)
            checks = self._checks(tenant, category, listed, head, champion)
            if not checks.passed and not force:
                with self.sessions.begin() as s:
                    event = self._add(
                        s,
                        tenant,
                        category,
                        PROMOTE,
                        champion,
                        version,
                        by=by,
                        outcome=REFUSED,
                        reason=reason,
                        checks=checks,
                    )
                raise PromotionRefused(
                    f"version {version} of {name} is not promoted: "
                    + "; ".join(r.message for r in checks.reasons),
                    details={
                        "event_id": event.id,
                        "reasons": [r.model_dump() for r in checks.reasons],
                        "checks": checks.model_dump(mode="json"),
                    },
                )
            with self.sessions.begin() as s:
                event = self._add(
                    s,
                    tenant,
                    category,
                    PROMOTE,
                    champion,
                    version,
                    by=by,
                    forced=force,
                    reason=reason,
                    checks=checks,
                )
                self.registry.set_alias(tenant, category, CHAMPION, version)
            if challenger == version:
                self._drop_challenger(tenant, category)
        log.info(
            "tenant %s %s: champion %s -> %s by %s%s",
            tenant,
            category,
            champion,
            version,
            by,
            " (forced)" if force else "",
        )
        return Outcome(event, checks)

    def rollback(
        self, tenant: str, category: str, version: int | None = None, *, reason: str, by: str
    ) -> Outcome:
        """Move the champion back to the version it was promoted over (from the audit
        log), or to ``version``; no checks, but a ``reason``."""
        category = check_category(category)
        name = self._name(tenant, category)
        why = _reason(reason, required=True, what="a rollback")
        with self._lock(tenant, category):
            champion = self.registry.alias_version(tenant, category, CHAMPION)
            if version is None:
                version = self._previous_champion(tenant, category, name, champion)
            if version == champion:
                raise AlreadyChampion(f"version {version} of {name} is the champion already")
            self._load_version(tenant, category, version)
            challenger = self.registry.alias_version(tenant, category, CHALLENGER)
            with self.sessions.begin() as s:
                event = self._add(
                    s, tenant, category, ROLLBACK, champion, version, by=by, reason=why
                )
                self.registry.set_alias(tenant, category, CHAMPION, version)
            if challenger == version:
                self._drop_challenger(tenant, category)
        log.info(
            "tenant %s %s: champion rolled back %s -> %s by %s",
            tenant,
            category,
            champion,
            version,
            by,
        )
        return Outcome(event, None)

    def set_challenger(
        self, tenant: str, category: str, version: int, *, by: str, reason: str | None = None
    ) -> Outcome:
        """Score ``version`` in shadow beside the champion."""
        category = check_category(category)
        name = self._name(tenant, category)
        why = _reason(reason, required=False, what="")
        with self._lock(tenant, category):
            champion = self.registry.alias_version(tenant, category, CHAMPION)
            if version == champion:
                raise AlreadyChampion(f"version {version} of {name} is the champion")
            self._load_version(tenant, category, version)
            before = self.registry.alias_version(tenant, category, CHALLENGER)
            with self.sessions.begin() as s:
                event = self._add(
                    s, tenant, category, SET_CHALLENGER, before, version, by=by, reason=why
                )
                self.registry.set_alias(tenant, category, CHALLENGER, version)
        return Outcome(event, None)

    def clear_challenger(
        self, tenant: str, category: str, *, by: str, reason: str | None = None
    ) -> Outcome:
        """Stop scoring the challenger (``no_challenger`` when there is none)."""
        category = check_category(category)
        name = self._name(tenant, category)
        why = _reason(reason, required=False, what="")
        with self._lock(tenant, category):
            before = self.registry.alias_version(tenant, category, CHALLENGER)
            if before is None:
                raise NoChallenger(f"{name} has no challenger")
            with self.sessions.begin() as s:
                event = self._add(
                    s, tenant, category, CLEAR_CHALLENGER, before, None, by=by, reason=why
                )
                self.registry.remove_alias(tenant, category, CHALLENGER)
        return Outcome(event, None)

    # ---- settings --------------------------------------------------------------------
    def severity(self, tenant: str) -> SeveritySettings:
        """The tenant's high-severity categories (none until it sets them)."""
        with self.sessions() as s:
            row = s.get(ModelSettings, tenant)
        if row is None:
            return SeveritySettings([], None, None)
        return SeveritySettings([str(c) for c in row.high_severity], row.updated_by, row.updated_at)

    def set_high_severity(
        self, tenant: str, categories: Sequence[str], *, by: str
    ) -> SeveritySettings:
        """Mark ``categories`` (taxonomy labels; an L1 label covers its L2 labels) as the
        tenant's high-severity ones, replacing the earlier set."""
        unknown = [c for c in categories if c not in taxonomy.CATEGORIES]
        if unknown:
            raise UnknownCategory(
                f"not taxonomy labels: {[c[:100] for c in unknown[:10]]}",
                details={"unknown": [c[:100] for c in unknown[:50]]},
            )
        chosen = [c for c in taxonomy.CATEGORIES if c in set(categories)]
        now = self.now()
        with self.sessions.begin() as s:
            row = s.get(ModelSettings, tenant, with_for_update=True)
            if row is None:
                row = ModelSettings(tenant_id=tenant, high_severity=chosen, updated_by=by)
                s.add(row)
            row.high_severity = chosen
            row.updated_by = by
            row.updated_at = now
        return SeveritySettings(chosen, by, now)

    def is_high_severity(self, tenant: str, category: str) -> bool:
        """Whether the tenant marks ``category`` or its L1 high-severity."""
        marked = set(self.severity(tenant).high_severity)
        return bool(marked & set(taxonomy.lineage(category)))

    # ---- internals -------------------------------------------------------------------
    def _name(self, tenant: str, category: str) -> str:
        try:
            return self.registry.model_name(tenant, category)
        except ValueError as exc:  # the registry refuses ids the API never makes
            raise InputError(str(exc), code="invalid_tenant_id", status=422) from None

    @contextmanager
    def _lock(self, tenant: str, category: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault((tenant, category), threading.Lock())
        with lock:
            yield

    def _candidate(
        self,
        tenant: str,
        category: str,
        version: int | None,
        challenger: int | None = None,
    ) -> int:
        if version is not None:
            return version
        if challenger is None:
            challenger = self.registry.alias_version(tenant, category, CHALLENGER)
        if challenger is None:
            name = self._name(tenant, category)
            raise NoChallenger(f"{name} has no challenger: name the version to promote")
        return challenger

    def _load_version(
        self, tenant: str, category: str, version: int
    ) -> tuple[HeadVersion, LoadedHead]:
        """The version as listed (with its metrics) and loaded as the processes would
        load it (``head_not_found``, ``head_refused``)."""
        listed = next(
            (v for v in self.registry.versions(tenant, category) if v.version == version), None
        )
        if listed is None:
            raise HeadNotFound(
                f"not in the registry: {self._name(tenant, category)} version {version}"
            )
        return listed, self._load(tenant, category, version)

    def _load(self, tenant: str, category: str, version: int) -> LoadedHead:
        found, data = self.registry.fetch(tenant, category, version)
        ref = HeadRef(tenant, category, found.name, version)
        return load_head(data, ref, sha256=found.sha256, threshold=found.threshold)

    def _checks(
        self,
        tenant: str,
        category: str,
        candidate: HeadVersion,
        head: LoadedHead,
        champion_version: int | None,
    ) -> PromotionChecks:
        high = self.is_high_severity(tenant, category)
        empty = blank(
            category, candidate.version, champion_version, high_severity=high, config=self.config
        )
        champion: LoadedHead | None = None
        if champion_version is not None:
            try:
                champion = self._load(tenant, category, champion_version)
            except (HeadNotFound, HeadRefused) as exc:
                return refuse(
                    empty,
                    "unreadable_head",
                    f"the champion, version {champion_version}, cannot be compared with: "
                    f"{exc.message}",
                )
        report = self.registry.report(tenant, category, candidate.version)
        ids = held_out_ids(report)
        if ids is None:
            return refuse(
                empty,
                "no_held_out_set",
                f"version {candidate.version} has no frozen held-out samples in its report "
                "to be judged on",
            )
        available = self.samples.embedding_models(tenant)
        candidate_model = embedding_of(head, available)
        champion_model = embedding_of(champion, available) if champion is not None else None
        if candidate_model is None or (champion is not None and champion_model is None):
            return refuse(
                empty,
                "no_embeddings",
                "the tenant's samples carry no embedding the heads read "
                f"({head.embedding_model or 'any'}"
                + (f", {champion.embedding_model or 'any'}" if champion else "")
                + ")",
            )
        models = [candidate_model] + ([champion_model] if champion_model is not None else [])
        data = load_held_out(self.samples, tenant, category, ids, models)
        for model, who in ((candidate_model, head), (champion_model, champion)):
            if model is None or who is None or not data.ids:
                continue
            if data.vectors[model].shape[1] != who.dim:
                return refuse(
                    empty,
                    "no_embeddings",
                    f"{model} vectors have {data.vectors[model].shape[1]} values, "
                    f"version {who.ref.version} reads {who.dim}",
                )
        return compare(
            category=category,
            candidate=head,
            champion=champion,
            baseline=baseline_of(candidate.metrics, report),
            held_out=data,
            frozen=len(ids),
            candidate_model=candidate_model,
            champion_model=champion_model,
            high_severity=high,
            config=self.config,
        )

    def _previous_champion(
        self, tenant: str, category: str, name: str, champion: int | None
    ) -> int:
        """The version the current champion was last promoted over."""
        if champion is None:
            raise NothingToRollBack(f"{name} has no champion to roll back")
        with self.sessions() as s:
            before = s.scalars(
                select(ModelEvent.from_version)
                .where(
                    ModelEvent.tenant_id == tenant,
                    ModelEvent.category == category,
                    ModelEvent.model_name == name,
                    ModelEvent.action == PROMOTE,
                    ModelEvent.outcome == APPLIED,
                    ModelEvent.to_version == champion,
                )
                .order_by(ModelEvent.created_at.desc(), ModelEvent.id.desc())
                .limit(1)
            ).first()
        if before is None:
            raise NothingToRollBack(
                f"the audit log names no champion of {name} before version {champion}: "
                "give the version to roll back to"
            )
        return int(before)

    def _drop_challenger(self, tenant: str, category: str) -> None:
        """Remove the challenger alias (it named the version now champion); a failure is
        logged, the promotion stands."""
        try:
            self.registry.remove_alias(tenant, category, CHALLENGER)
        except Exception as exc:
            log.warning("tenant %s %s: challenger alias not removed: %s", tenant, category, exc)

    def _add(
        self,
        s: Session,
        tenant: str,
        category: str,
        action: str,
        before: int | None,
        after: int | None,
        *,
        by: str,
        outcome: str = APPLIED,
        forced: bool = False,
        reason: str | None = None,
        checks: PromotionChecks | None = None,
    ) -> ModelEvent:
        """Add the event to ``s`` and flush it (so a failing insert stops the action
        before the registry is changed)."""
        event = ModelEvent(
            id=_event_id(),
            tenant_id=tenant,
            category=category,
            model_name=self._name(tenant, category),
            action=action,
            outcome=outcome,
            from_version=before,
            to_version=after,
            forced=forced,
            reason=reason,
            checks=checks.model_dump(mode="json") if checks is not None else None,
            actor=by[:120],
            created_at=self.now(),
        )
        s.add(event)
        s.flush()
        return event


def check_category(category: str) -> str:
    """``category`` if it is a taxonomy label (``unknown_label``, 422, otherwise)."""
    if category not in taxonomy.CATEGORIES:
        raise UnknownCategory(f"not a taxonomy label: {category[:100]!r}")
    return category


def _reason(reason: str | None, *, required: bool, what: str) -> str | None:
    text = (reason or "").strip()
    if len(text) > MAX_REASON:
        raise ReasonTooLong(f"a reason has at most {MAX_REASON} characters, not {len(text)}")
    if required and not text:
        raise ReasonRequired(f"{what} needs a reason (at most {MAX_REASON} characters)")
    return text or None
