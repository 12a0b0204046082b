"""The shape of a statistics report: what ``GET /v1/stats`` answers, what the portal
shows and what the CSV export writes, one row per day and metric."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from bastion.store.types import UtcTime

__all__ = [
    "AUTOMATIC",
    "PEOPLE",
    "STOPPED_BY",
    "Counts",
    "DayStats",
    "DecisionTime",
    "ModeratorStats",
    "RuleStats",
    "StatsReport",
]

AUTOMATIC = ("allow", "review", "block")
"""The policy's decisions."""
PEOPLE = ("allow", "block", "escalate")
"""What people decided: approve (allow), reject (block) or escalate."""
STOPPED_BY = ("rule", "person", "api", "ended")
"""Who stopped a stream: an auto-stop rule, a person in the portal, an API key (a
moderator through the API), or the platform saying the broadcast ended."""


class DecisionTime(BaseModel):
    """How long review items waited for their final decision (queued → decided)."""

    decided: int = Field(description="Review items decided.")
    p50_s: float | None = Field(description="Median wait in seconds (none decided: null).")
    p95_s: float | None = Field(description="95th percentile wait in seconds (nearest rank).")


class Counts(BaseModel):
    """What happened in a day, or in the whole period."""

    analysed: dict[str, int] = Field(
        description="Items moderated, by source: `api` (the synchronous API, one per "
        "image), `job` (finished jobs, one per image or video), `live` (live frames "
        "analysed, read or pushed)."
    )
    automatic: dict[str, int] = Field(
        description="The policy's decisions of those items: `allow`, `review`, `block`."
    )
    automatic_by_source: dict[str, dict[str, int]] = Field(
        description="`automatic` per source (the keys of `analysed`)."
    )
    people: dict[str, int] = Field(
        description="People's review decisions: `allow` (approve), `block` (reject), `escalate`."
    )
    people_by_source: dict[str, int] = Field(
        description="People's decisions by where they were taken: `moderator` (the "
        "portal or the review API) or `api` (`POST /v1/corrections`)."
    )
    alerts: dict[str, int] = Field(description="Alerts raised, per live rule.")
    streams_stopped: dict[str, int] = Field(
        description="Streams stopped: by an auto-stop `rule`, a `person` in the portal, "
        "an `api` key, or `ended` (the platform said the broadcast ended)."
    )
    time_to_decision: DecisionTime = Field(
        description="Review items decided (by the day of their decision) and their wait."
    )

    @property
    def analysed_total(self) -> int:
        return sum(self.analysed.values())

    @property
    def people_total(self) -> int:
        return sum(self.people.values())

    @property
    def alerts_total(self) -> int:
        return sum(self.alerts.values())

    @property
    def stopped_total(self) -> int:
        return sum(self.streams_stopped.values())


class DayStats(Counts):
    day: date = Field(description="The UTC day.")


class ModeratorStats(BaseModel):
    """One person's (or API key's) review decisions over the period."""

    actor: str = Field(description="`user:<id>` (a person) or `key:<id>` (an API key).")
    name: str = Field(description="The person's display name or user name, or the key's name.")
    allow: int = Field(description="Approved.")
    block: int = Field(description="Rejected.")
    escalate: int = Field(description="Escalated.")
    total: int = Field(description="Every decision.")


class RuleStats(BaseModel):
    """One live rule over the period."""

    rule: str = Field(description="The rule's name.")
    alerts: int = Field(description="Alerts it raised.")
    auto_stops: int = Field(description="Streams it stopped.")


class StatsReport(BaseModel):
    """A tenant's statistics per UTC day over a period (both ends included)."""

    model_config = ConfigDict(populate_by_name=True)

    tenant_id: str = Field(description="The tenant.")
    start: date = Field(alias="from", description="First day (UTC).")
    end: date = Field(alias="to", description="Last day (UTC), included.")
    generated_at: UtcTime = Field(description="When the report was computed.")
    totals: Counts = Field(description="The whole period.")
    days: list[DayStats] = Field(description="Every day of the period, oldest first.")
    moderators: list[ModeratorStats] = Field(description="Decisions per reviewer, most first.")
    rules: list[RuleStats] = Field(description="Alerts and auto-stops per rule, most first.")
