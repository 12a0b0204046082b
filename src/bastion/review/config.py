"""Settings of the review queue: its queues and how items are routed to them, the
reviewers' lease, the ``review.decided`` webhook and the longest note."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from bastion.policy import taxonomy

QUEUE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
QueueName = Annotated[str, StringConstraints(pattern=QUEUE_NAME_PATTERN)]
MAX_PRIORITY = 1_000_000


class QueueRoute(BaseModel):
    """A queue, and which items go to it."""

    model_config = ConfigDict(extra="forbid")

    name: QueueName = Field(description="Queue name (a-z, 0-9, '-', '_'; at most 64).")
    categories: list[str] = Field(
        default_factory=list,
        max_length=200,
        description="Taxonomy labels that send an item here (an L1 label covers its L2 "
        "labels): an item whose policy reasons fired on one of them.",
    )
    rules: list[str] = Field(
        default_factory=list,
        max_length=200,
        description="Live rule names that send an item raised by that rule here.",
    )
    priority: int = Field(
        0,
        ge=-MAX_PRIORITY,
        le=MAX_PRIORITY,
        description="Priority of the items routed here; higher is reviewed first.",
    )

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in taxonomy.CATEGORIES]
        if unknown:
            raise ValueError(f"unknown taxonomy labels: {unknown}")
        return value


class ReviewConfig(BaseModel):
    """The review queue: routes, lease, webhook, note length."""

    model_config = ConfigDict(extra="forbid")

    queues: list[QueueRoute] = Field(
        default_factory=list,
        max_length=100,
        description="Queues with the categories and rules routed to them. An item goes "
        "to the matching queue of highest priority (the first listed among equals); an "
        "item no queue matches goes to `default_queue`.",
    )
    default_queue: QueueName = Field(
        "default", description="Where items go that no queue of `queues` matches."
    )
    default_priority: int = Field(
        0,
        ge=-MAX_PRIORITY,
        le=MAX_PRIORITY,
        description="Priority of the items in `default_queue`.",
    )
    escalation_queue: QueueName = Field(
        "escalated",
        description="Where an escalated item goes (open again, for a senior reviewer).",
    )
    escalation_boost: int = Field(
        100,
        ge=0,
        le=MAX_PRIORITY,
        description="Added to an item's priority each time it is escalated.",
    )
    lease_s: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="How long a claimed item stays with its reviewer; after that anyone "
        "may claim it again.",
    )
    webhook_url: str | None = Field(
        None,
        max_length=2048,
        description="Where `review.decided` and `review.escalated` webhooks go (signed "
        "like every webhook); None sends none.",
    )
    max_note_chars: int = Field(
        2000, ge=0, le=100_000, description="Longest note a reviewer may add to a decision."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [q.name for q in self.queues]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"queue names used twice: {twice}")
        return self

    @property
    def queue_names(self) -> frozenset[str]:
        """Every queue an item can be in."""
        return frozenset(
            [q.name for q in self.queues] + [self.default_queue, self.escalation_queue]
        )
