"""Settings of webhook delivery: the retry schedule, timeouts, concurrency and polling.

How the retry settings turn into attempt times is :mod:`bastion.delivery.schedule`.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DeliveryConfig"]

HOUR = 3600.0


class DeliveryConfig(BaseModel):
    """Retry schedule, timeouts and concurrency of webhook deliveries."""

    model_config = ConfigDict(extra="forbid")

    initial_delay_s: float = Field(
        5.0, gt=0, description="Nominal delay before the first retry, in seconds."
    )
    backoff_factor: float = Field(
        3.0, ge=1, description="Each nominal delay is the previous one times this factor."
    )
    max_delay_s: float = Field(
        8 * HOUR, gt=0, description="Cap on one nominal delay between retries, in seconds."
    )
    max_attempts: int = Field(
        13, ge=1, le=100, description="Attempts (the first included) before a delivery is dead."
    )
    ttl_s: float = Field(
        48 * HOUR,
        gt=0,
        description="No attempt is scheduled later than this many seconds after the "
        "delivery was enqueued (or redriven); it is dead instead.",
    )
    request_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds one attempt may take in all: DNS, connecting, sending the "
        "body and receiving the response headers.",
    )
    concurrency: int = Field(16, ge=1, le=1000, description="Attempts in flight at once.")
    lease_s: float = Field(
        60.0,
        gt=0,
        description="How long a dispatcher owns a claimed delivery; another may take it "
        "over only after this (a crash leaves it to the others). At least twice "
        "request_timeout_s, so an attempt always ends well inside its lease.",
    )
    poll_interval_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Seconds between two looks for due deliveries when idle. Deliveries "
        "committed in the dispatcher's own process are sent at once; those of other "
        "processes, and retries falling due, wait for the next look.",
    )
    secret_grace_s: float = Field(
        24 * HOUR,
        ge=0,
        description="After a secret rotation, how long the previous secret keeps signing "
        "(every request carries both signatures meanwhile).",
    )
    user_agent: str = Field(
        "Bastion-Webhooks/1",
        min_length=1,
        max_length=256,
        pattern=r"^[\x20-\x7e]+$",
        description="User-Agent header of webhook requests.",
    )

    @model_validator(mode="after")
    def _lease_outlasts_attempt(self) -> Self:
        if self.lease_s < 2 * self.request_timeout_s:
            raise ValueError("lease_s must be at least twice request_timeout_s")
        return self
