"""Settings for jobs and their worker."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class JobsConfig(BaseModel):
    """How jobs run."""

    model_config = ConfigDict(extra="forbid")

    run_worker: bool = Field(
        True, description="Run a worker (and the webhook dispatcher) inside `bastion up`."
    )
    concurrency: int = Field(2, ge=1, le=256, description="Jobs one worker runs at once.")
    lease_s: float = Field(
        60.0, gt=0, description="A job's lease; renewed while it runs, expires if its worker dies."
    )
    max_attempts: int = Field(
        5, ge=1, le=100, description="Runs of a job that fails for an internal reason."
    )
    retry_delay_s: float = Field(5.0, ge=0, description="First retry delay; doubles each time.")
    poll_s: float = Field(0.2, gt=0, le=30, description="Idle wait between queue polls.")
    media_retention_s: float = Field(
        7 * 24 * 3600, gt=0, description="How long uploaded job media is kept."
    )
