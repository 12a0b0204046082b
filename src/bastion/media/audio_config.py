"""Audio settings: the limits and analysis windows of audio jobs, read by the job workers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bastion.media.audio import AudioLimits

__all__ = ["AudioConfig"]


class AudioConfig(BaseModel):
    """How audio files are checked and cut into windows for analysis."""

    model_config = ConfigDict(extra="forbid")

    limits: AudioLimits = Field(
        default_factory=AudioLimits,
        description="Bytes, duration, packets and decoding time accepted for one audio file.",
    )
    window_s: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Length of each analysed window, in seconds (Whisper reads 30 s at a time).",
    )
    concurrency: int = Field(
        2, ge=1, le=64, description="Windows of one audio file analysed at once."
    )
