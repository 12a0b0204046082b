"""Settings for jobs and their worker."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class RabbitConfig(BaseModel):
    """The RabbitMQ queue backend (``jobs.queue: rabbitmq``)."""

    model_config = ConfigDict(extra="forbid")

    url: SecretStr = Field(
        SecretStr("amqp://guest:guest@127.0.0.1:5672/"),
        description="AMQP URL of the broker (amqps:// for TLS).",
    )
    prefix: str = Field(
        "bastion",
        pattern=r"^[A-Za-z0-9_.-]{1,100}$",
        description="Prefix of every exchange and queue Bastion declares.",
    )
    retry_delays_s: list[float] = Field(
        default_factory=lambda: [1.0, 5.0, 30.0, 120.0, 600.0, 3600.0],
        min_length=1,
        description="The retry delay ladder: one TTL queue per rung; a retry waits for the "
        "smallest rung at least as long as asked (the top rung at most).",
    )
    delivery_limit: int = Field(
        20,
        ge=1,
        description="Deliveries of one message (x-delivery-limit) before the broker "
        "dead-letters it: stops a message that kills its consumers every time.",
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="Timeout of the first connect.")
    reconnect_interval_s: float = Field(
        5.0, gt=0, le=300, description="Pause between reconnection attempts after a drop."
    )
    publish_timeout_s: float = Field(10.0, gt=0, description="Wait for a publisher confirm.")
    relay_poll_s: float = Field(
        1.0, gt=0, description="How often the outbox relay looks for unsent messages."
    )
    max_dead_listed: int = Field(
        1000, ge=1, description="Most dead letters read when listing or redriving."
    )


class JobsConfig(BaseModel):
    """How jobs run."""

    model_config = ConfigDict(extra="forbid")

    queue: Literal["embedded", "rabbitmq"] = Field(
        "embedded",
        description="Queue backend: 'embedded' (a table in Bastion's database) or 'rabbitmq'.",
    )
    rabbitmq: RabbitConfig = Field(
        default_factory=RabbitConfig, description="RabbitMQ settings (when queue is rabbitmq)."
    )
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
        7 * 24 * 3600,
        gt=0,
        description="How long job media and thumbnails are kept after they were last wanted "
        "(never deleted while a job using them is queued, processing or paused).",
    )
    media_sweep_s: float = Field(
        600.0, gt=0, description="Seconds between two retention sweeps of job media."
    )
