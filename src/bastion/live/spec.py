"""What a stream to moderate is: the body of POST /v1/streams, or an entry of
``live.streams`` in the settings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StreamSpec(BaseModel):
    """A stream to moderate (POST /v1/streams)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
        description="Your id of the broadcast (unique per tenant while it runs).",
    )
    channel: str = Field(
        min_length=1, max_length=256, description="Channel name; rule sets match it."
    )
    source_url: str | None = Field(
        None,
        max_length=4096,
        description="rtmp://, rtmps://, HLS .m3u8 or HTTP-FLV over http(s)://, rtsp:// or srt://. "
        "Leave out to push frames yourself (POST /v1/streams/{id}/frames).",
    )
    streamer_id: str | None = Field(None, max_length=128, description="Who broadcasts.")
    streamer_tier: str = Field(
        "standard",
        pattern=r"^[a-z][a-z0-9_-]{0,31}$",
        description="Reputation tier (rule sets scale the sampling interval by it, e.g. "
        "trusted streamers are sampled less often, new ones more).",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Anything of yours; sent back in alerts and hooks."
    )
