"""Settings of live-stream moderation (``Settings.live``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bastion.live.reading.config import StreamReaderConfig
from bastion.live.spec import StreamSpec


class LiveConfig(BaseModel):
    """How streams are read, spread over workers, and how their alerts and stops go out."""

    model_config = ConfigDict(extra="forbid")

    reader: StreamReaderConfig = Field(
        default_factory=StreamReaderConfig, description="Connecting, decoding, reconnecting."
    )
    run_sessions: bool = Field(
        True, description="Run stream sessions in this process (`bastion up` and `bastion worker`)."
    )
    max_streams: int = Field(
        200, ge=0, le=100_000, description="Streams one process holds at most."
    )
    lease_s: float = Field(
        15.0,
        gt=0,
        description="A worker's claim on a stream; renewed while it runs, and taken over by "
        "another worker when it lapses (the worker died).",
    )
    claim_interval_s: float = Field(
        1.0, gt=0, le=60, description="How often a worker looks for streams without a worker."
    )
    db_threads: int = Field(
        4,
        ge=1,
        le=64,
        description="Threads of the pool the stream sessions' and frames' database work runs "
        "on (status writes, rule lookups, alerts), apart from the process's other work.",
    )
    default_interval_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Sampling interval of a stream no rule set applies to.",
    )
    stop_hook_url: str | None = Field(
        None,
        description="The platform's endpoint that ends a broadcast: called (signed like "
        "webhooks, retried) when a stream is stopped by a rule or a moderator.",
    )
    alert_webhook_url: str | None = Field(
        None,
        description="Where alert events (alert.created, alert.updated) are delivered as "
        "signed webhooks, retried like job callbacks.",
    )
    thumbnails: bool = Field(
        True, description="Keep a JPEG of the frames alerts are about and of the last one."
    )
    streams: list[StreamSpec] = Field(
        default_factory=list,
        description="Streams of the default tenant registered at start-up (as by "
        "POST /v1/streams; one already running is left as it is).",
    )
