"""A tenant's statistics over a period of UTC days, computed from the tables.

- items analysed and the policy's decisions: ``daily_counts`` for the synchronous API
  and live frames (counted in memory, :mod:`bastion.stats.counter`), finished jobs from
  the ``jobs`` table (one per job, by the day it finished, with its result's decision);
- people's decisions: ``review_decisions`` by the day they were taken, by their
  ``source`` (a reviewer, or a correction through the API), per reviewer over the
  period;
- time to decision: ``review_items`` Bastion sent to review (the policy's decision was
  ``review``) decided that day, queued → decided, p50 and p95 (nearest rank). An item a
  correction created for an allowed or blocked result never waited and is left out;
- alerts per rule: ``alerts`` by the day they were raised;
- streams stopped: ``streams`` by ``stopped_at``, sorted by ``stopped_by``. A stream is
  one row: when it is started again its earlier stop is no longer stored, and no
  longer counted.

Days are grouped in the database (per dialect: PostgreSQL converts to UTC, SQLite
stores UTC text) except for the wait times, whose percentiles are taken here. Before a
report the process writes its own pending counts, so a report shows what this process
counted up to now (other processes' within their flush interval).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, String, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bastion.accounts.tables import User
from bastion.errors import InputError
from bastion.jobs.tables import Job
from bastion.live.tables import Alert, Stream
from bastion.review.tables import DECISION_SOURCES, ReviewDecision, ReviewItem
from bastion.stats.counter import MODERATED, SOURCES, DailyCounter
from bastion.stats.flush import FLUSH_INTERVAL_S, CountFlusher
from bastion.stats.report import (
    AUTOMATIC,
    PEOPLE,
    STOPPED_BY,
    Counts,
    DayStats,
    DecisionTime,
    ModeratorStats,
    RuleStats,
    StatsReport,
)
from bastion.stats.tables import DailyCount
from bastion.store.tables import ApiKey

__all__ = ["DEFAULT_DAYS", "MAX_DAYS", "InvalidPeriod", "Period", "StatsService"]

log = logging.getLogger(__name__)

DEFAULT_DAYS: Final = 30
MAX_DAYS: Final = 366
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class InvalidPeriod(InputError):
    """The period asked for is not a valid range of days."""

    code = "invalid_period"
    status = 400


def _parse_day(value: str, what: str) -> date:
    if not _DAY.fullmatch(value):
        raise InvalidPeriod(f"{what} must be a day as YYYY-MM-DD, not {value[:40]!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidPeriod(f"{what} is not a day of the calendar: {value!r}") from None


@dataclass(frozen=True)
class Period:
    """UTC days from ``start`` to ``end``, both included."""

    start: date
    end: date

    @classmethod
    def of(cls, start: str | None, end: str | None, *, today: date | None = None) -> Period:
        """The period ``start``–``end`` (``YYYY-MM-DD``): ``end`` defaults to today (UTC),
        ``start`` to :data:`DEFAULT_DAYS` days up to ``end``; at most :data:`MAX_DAYS`."""
        last = _parse_day(end, "to") if end else today or datetime.now(UTC).date()
        if last >= date.max:
            raise InvalidPeriod("to must be before 9999-12-31")
        first = _parse_day(start, "from") if start else None
        if first is None:
            first = last - timedelta(days=min(DEFAULT_DAYS - 1, (last - date.min).days))
        if first > last:
            raise InvalidPeriod(f"from ({first}) is after to ({last})")
        period = cls(first, last)
        if period.days > MAX_DAYS:
            raise InvalidPeriod(f"a period has at most {MAX_DAYS} days, not {period.days}")
        return period

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    @property
    def since(self) -> datetime:
        """The period's first instant."""
        return datetime.combine(self.start, time(), UTC)

    @property
    def until(self) -> datetime:
        """The instant after the period."""
        return datetime.combine(self.end + timedelta(days=1), time(), UTC)


def _utc_day(column: Any, dialect: str) -> ColumnElement[str]:
    """``YYYY-MM-DD`` of a stored time, in UTC."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD", type_=String)
    return func.date(column, type_=String)  # SQLite keeps UTC as text


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile (0 < p ≤ 100) of ascending values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def decision_time(waits: Iterable[float]) -> DecisionTime:
    ordered = sorted(waits)
    p50, p95 = percentile(ordered, 50), percentile(ordered, 95)
    return DecisionTime(
        decided=len(ordered),
        p50_s=round(p50, 1) if p50 is not None else None,
        p95_s=round(p95, 1) if p95 is not None else None,
    )


def stopped_kind(by: str | None) -> tuple[str, str | None]:
    """Who stopped a stream (see :data:`bastion.stats.report.STOPPED_BY`), and the rule
    when a rule did."""
    by = by or ""
    if by.startswith("rule:"):
        return "rule", by.removeprefix("rule:")
    if by.startswith("user:"):
        return "person", None
    if by.startswith("key:"):
        return "api", None
    return "ended", None  # ``api``: DELETE /v1/streams/{id}, the broadcast ended


@dataclass
class _Tally:
    """Counts as they are read, by day (None: the whole period)."""

    sources: dict[date, dict[str, dict[str, int]]]
    people: dict[date, dict[str, int]]
    people_source: dict[date, dict[str, int]]
    alerts: dict[date, dict[str, int]]
    stopped: dict[date, dict[str, int]]
    waits: dict[date, list[float]]

    @classmethod
    def empty(cls) -> _Tally:
        def by_day() -> Any:
            return defaultdict(lambda: defaultdict(int))

        return cls(
            sources=defaultdict(lambda: {s: dict.fromkeys(AUTOMATIC, 0) for s in SOURCES}),
            people=by_day(),
            people_source=by_day(),
            alerts=by_day(),
            stopped=by_day(),
            waits=defaultdict(list),
        )

    def counts(self, days: Sequence[date]) -> Counts:
        sources = {s: dict.fromkeys(AUTOMATIC, 0) for s in SOURCES}
        people = dict.fromkeys(PEOPLE, 0)
        people_source = dict.fromkeys(DECISION_SOURCES, 0)
        alerts: dict[str, int] = defaultdict(int)
        stopped = dict.fromkeys(STOPPED_BY, 0)
        waits: list[float] = []
        for day in days:
            for source, decisions in self.sources.get(day, {}).items():
                target = sources.setdefault(source, dict.fromkeys(AUTOMATIC, 0))
                for decision, n in decisions.items():
                    target[decision] = target.get(decision, 0) + n
            for tally, into in (
                (self.people, people),
                (self.people_source, people_source),
                (self.alerts, alerts),
                (self.stopped, stopped),
            ):
                for key, n in tally.get(day, {}).items():
                    into[key] = into.get(key, 0) + n
            waits.extend(self.waits.get(day, ()))
        automatic = dict.fromkeys(AUTOMATIC, 0)
        for decisions in sources.values():
            for decision, n in decisions.items():
                automatic[decision] = automatic.get(decision, 0) + n
        return Counts(
            analysed={s: sum(d.values()) for s, d in sources.items()},
            automatic=automatic,
            automatic_by_source=sources,
            people=people,
            people_by_source=dict(people_source),
            alerts=dict(sorted(alerts.items(), key=lambda kv: (-kv[1], kv[0]))),
            streams_stopped=stopped,
            time_to_decision=decision_time(waits),
        )


class StatsService:
    """Reports of a tenant's statistics, and the writing of this process's counts."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        counter: DailyCounter | None = None,
        *,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self.sessions = sessions
        self.flusher = (
            CountFlusher(counter, sessions, flush_interval_s) if counter is not None else None
        )

    # this process's counts ---------------------------------------------------
    async def run_forever(self, stop: asyncio.Event) -> None:
        """Write this process's counts every few seconds until ``stop``, then once more."""
        if self.flusher is not None:
            await self.flusher.run_forever(stop)

    async def flush(self) -> None:
        """Write this process's pending counts now (at shutdown: after the last item)."""
        if self.flusher is not None:
            await self.flusher.flush_now()

    # reports -------------------------------------------------------------------
    def period(self, start: str | None, end: str | None) -> Period:
        return Period.of(start, end)

    def report(self, tenant_id: str, period: Period) -> StatsReport:
        """``tenant_id``'s statistics over ``period`` (blocking)."""
        if self.flusher is not None:
            try:
                self.flusher.flush()
            except SQLAlchemyError:
                log.warning("daily counts not written before a report", exc_info=True)
        tally = _Tally.empty()
        with self.sessions() as s:
            dialect = s.get_bind().dialect.name
            self._moderated(s, tenant_id, period, tally)
            self._jobs(s, tenant_id, period, tally, dialect)
            self._people(s, tenant_id, period, tally, dialect)
            self._waits(s, tenant_id, period, tally)
            rule_alerts = self._alerts(s, tenant_id, period, tally, dialect)
            rule_stops = self._stops(s, tenant_id, period, tally, dialect)
            moderators = self._moderators(s, tenant_id, period)
        days = period.dates()
        daily = [DayStats(day=d, **tally.counts([d]).model_dump()) for d in days]
        rules = [
            RuleStats(rule=r, alerts=rule_alerts.get(r, 0), auto_stops=rule_stops.get(r, 0))
            for r in set(rule_alerts) | set(rule_stops)
        ]
        rules.sort(key=lambda r: (-r.alerts, -r.auto_stops, r.rule))
        return StatsReport(
            tenant_id=tenant_id,
            start=period.start,
            end=period.end,
            generated_at=datetime.now(UTC),
            totals=tally.counts(days),
            days=daily,
            moderators=moderators,
            rules=rules,
        )

    # the tables ----------------------------------------------------------------
    @staticmethod
    def _moderated(s: Session, tenant_id: str, period: Period, tally: _Tally) -> None:
        rows = s.execute(
            select(DailyCount.day, DailyCount.name, DailyCount.key, DailyCount.count).where(
                DailyCount.tenant_id == tenant_id,
                DailyCount.day >= period.start,
                DailyCount.day <= period.end,
                DailyCount.name.startswith(MODERATED, autoescape=True),
            )
        )
        for day, name, key, n in rows:
            source = name.removeprefix(MODERATED)
            decisions = tally.sources[day].setdefault(source, dict.fromkeys(AUTOMATIC, 0))
            decisions[key] = decisions.get(key, 0) + n

    @staticmethod
    def _jobs(s: Session, tenant_id: str, period: Period, tally: _Tally, dialect: str) -> None:
        day = _utc_day(Job.finished_at, dialect)
        decision = Job.result["decision"].as_string()
        rows = s.execute(
            select(day, decision, func.count())
            .where(
                Job.tenant_id == tenant_id,
                Job.status == "succeeded",
                Job.finished_at >= period.since,
                Job.finished_at < period.until,
            )
            .group_by(day, decision)
        )
        for text, found, n in rows:
            if found in AUTOMATIC:  # every finished job's result has a decision
                tally.sources[date.fromisoformat(text)]["job"][found] += n

    @staticmethod
    def _people(s: Session, tenant_id: str, period: Period, tally: _Tally, dialect: str) -> None:
        day = _utc_day(ReviewDecision.decided_at, dialect)
        columns = (day, ReviewDecision.decision, ReviewDecision.source)
        rows = s.execute(
            select(*columns, func.count())
            .where(
                ReviewDecision.tenant_id == tenant_id,
                ReviewDecision.decided_at >= period.since,
                ReviewDecision.decided_at < period.until,
            )
            .group_by(*columns)
        )
        for text, decision, source, n in rows:
            at = date.fromisoformat(text)
            tally.people[at][decision or "escalate"] += n
            tally.people_source[at][source] += n

    @staticmethod
    def _waits(s: Session, tenant_id: str, period: Period, tally: _Tally) -> None:
        rows = s.execute(
            select(ReviewItem.created_at, ReviewItem.decided_at)
            .where(
                ReviewItem.tenant_id == tenant_id,
                ReviewItem.model_decision == "review",
                ReviewItem.decided_at >= period.since,
                ReviewItem.decided_at < period.until,
            )
            .execution_options(yield_per=2000)
        )
        for created, decided in rows:
            if decided is not None:
                wait = max(0.0, (decided - created).total_seconds())
                tally.waits[decided.astimezone(UTC).date()].append(wait)

    @staticmethod
    def _alerts(
        s: Session, tenant_id: str, period: Period, tally: _Tally, dialect: str
    ) -> dict[str, int]:
        day = _utc_day(Alert.created_at, dialect)
        rows = s.execute(
            select(day, Alert.rule, func.count())
            .where(
                Alert.tenant_id == tenant_id,
                Alert.created_at >= period.since,
                Alert.created_at < period.until,
            )
            .group_by(day, Alert.rule)
        )
        per_rule: dict[str, int] = defaultdict(int)
        for text, rule, n in rows:
            tally.alerts[date.fromisoformat(text)][rule] += n
            per_rule[rule] += n
        return per_rule

    @staticmethod
    def _stops(
        s: Session, tenant_id: str, period: Period, tally: _Tally, dialect: str
    ) -> dict[str, int]:
        day = _utc_day(Stream.stopped_at, dialect)
        rows = s.execute(
            select(day, Stream.stopped_by, func.count())
            .where(
                Stream.tenant_id == tenant_id,
                Stream.stopped_at >= period.since,
                Stream.stopped_at < period.until,
            )
            .group_by(day, Stream.stopped_by)
        )
        per_rule: dict[str, int] = defaultdict(int)
        for text, by, n in rows:
            kind, rule = stopped_kind(by)
            tally.stopped[date.fromisoformat(text)][kind] += n
            if rule is not None:
                per_rule[rule] += n
        return per_rule

    @staticmethod
    def _moderators(s: Session, tenant_id: str, period: Period) -> list[ModeratorStats]:
        rows = s.execute(
            select(
                ReviewDecision.actor_kind,
                ReviewDecision.actor_id,
                ReviewDecision.decision,
                func.count(),
            )
            .where(
                ReviewDecision.tenant_id == tenant_id,
                ReviewDecision.decided_at >= period.since,
                ReviewDecision.decided_at < period.until,
            )
            .group_by(ReviewDecision.actor_kind, ReviewDecision.actor_id, ReviewDecision.decision)
        )
        counts: dict[tuple[str, str], dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(PEOPLE, 0)
        )
        for kind, actor_id, decision, n in rows:
            counts[(kind, actor_id)][decision or "escalate"] += n
        names = _actor_names(s, tenant_id, list(counts))
        found = [
            ModeratorStats(
                actor=f"{kind}:{actor_id}",
                name=names.get((kind, actor_id), f"{kind}:{actor_id}"),
                allow=c["allow"],
                block=c["block"],
                escalate=c["escalate"],
                total=sum(c.values()),
            )
            for (kind, actor_id), c in counts.items()
        ]
        found.sort(key=lambda m: (-m.total, m.name, m.actor))
        return found


def _actor_names(
    s: Session, tenant_id: str, actors: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """People's display names (else user names) and keys' names, within the tenant."""
    names: dict[tuple[str, str], str] = {}
    users = [a for k, a in actors if k == "user"]
    keys = [a for k, a in actors if k == "key"]
    for i in range(0, len(users), 500):
        for uid, username, display in s.execute(
            select(User.id, User.username, User.display_name).where(
                User.tenant_id == tenant_id, User.id.in_(users[i : i + 500])
            )
        ):
            names[("user", uid)] = display or username
    for i in range(0, len(keys), 500):
        for kid, name in s.execute(
            select(ApiKey.id, ApiKey.name).where(
                ApiKey.tenant_id == tenant_id, ApiKey.id.in_(keys[i : i + 500])
            )
        ):
            names[("key", kid)] = name or f"API key {kid}"
    return names
