"""Video settings: limits and default sampling (shared by job workers and `bastion scan`),
and the per-job overrides a client may ask for.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bastion.errors import InputError
from bastion.media.video import VideoLimits, VideoSampling

__all__ = ["FrameReuse", "VideoConfig", "VideoOptions"]


class FrameReuse(BaseModel):
    """When a sampled frame reuses the analysis of the last analysed frame.

    A frame is compared with the last frame that was analysed (not with the previous
    reused one, so a slow drift adds up until it is analysed): it reuses that frame's
    analysis only when its 64-bit difference hash is within ``max_hash_distance`` bits
    and no cell of a coarse grey picture (``grid``×``grid`` cells) moved by more than
    ``max_cell_difference`` grey levels, so that a line of text or a code appearing on
    an unchanged scene is analysed. A frame ``max_reuse_s`` after the last analysed one
    is analysed whatever it looks like.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        description="Reuse the last analysed frame's analysis for a sampled frame that did "
        "not change (false: every sampled frame is analysed).",
    )
    max_hash_distance: int = Field(
        2,
        ge=0,
        le=64,
        description="Most bits the frame's 64-bit difference hash (dHash) may differ in from "
        "the analysed frame's.",
    )
    grid: int = Field(
        48,
        ge=8,
        le=256,
        description="Cells per side of the coarse grey picture compared cell by cell "
        "(the frame area-averaged to grid×grid); more cells notice smaller changes.",
    )
    max_cell_difference: float = Field(
        6.0,
        ge=0,
        le=255,
        description="Most grey levels (0-255) any cell of the coarse picture may move by; "
        "a line of small text moves the cells it covers by tens of levels.",
    )
    max_reuse_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Longest time after the last analysed frame that its analysis is "
        "reused: a later frame is analysed even when it looks the same.",
    )


class VideoConfig(BaseModel):
    """How videos are checked and which of their frames are analysed."""

    model_config = ConfigDict(extra="forbid")

    limits: VideoLimits = Field(
        default_factory=VideoLimits,
        description="Bytes, resolution, pixels, duration and decoded frames accepted.",
    )
    sampling: VideoSampling = Field(
        default_factory=VideoSampling,
        description="Default choice of analysed frames (every N seconds, keyframes or scene "
        "changes; max_frames); a job may override part of it.",
    )
    early_stop_on_block: bool = Field(
        False,
        description="Stop analysing a video once one of its frames is blocked "
        "(a job may override it with stop_on_block).",
    )
    concurrency: int = Field(8, ge=1, le=256, description="Frames of one video analysed at once.")
    reuse: FrameReuse = Field(
        default_factory=FrameReuse,
        description="Sampled frames that did not change from the last analysed one reuse "
        "its analysis instead of running every model again (frames' `reused_from`).",
    )
    thumbnails: bool = Field(
        True,
        description="Keep a small JPEG of each flagged frame of a video job, linked from its "
        "result and served at /v1/jobs/{id}/thumbnails/{name}.",
    )


class VideoOptions(BaseModel):
    """Per-job (or per-scan) overrides of the configured video sampling."""

    model_config = ConfigDict(extra="forbid")

    sample_every: float | None = Field(
        None, gt=0, le=3600, description="Analyse one frame every this many seconds."
    )
    keyframes_only: bool | None = Field(
        None, description="Analyse keyframes only (true) or not (false: one frame per interval)."
    )
    max_frames: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Most frames analysed; at most the configured sampling.max_frames.",
    )
    stop_on_block: bool | None = Field(None, description="Stop analysing once a frame is blocked.")

    @model_validator(mode="after")
    def _one_mode(self) -> Self:
        if self.keyframes_only and self.sample_every is not None:
            raise ValueError("keyframes_only and sample_every exclude each other")
        return self

    @classmethod
    def parse(cls, values: dict[str, Any]) -> VideoOptions:
        """Validate request values; bad ones raise a 400 with code ``invalid_video_options``."""
        try:
            return cls.model_validate({k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            raise InputError(
                "invalid video options: "
                + "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors()
                ),
                code="invalid_video_options",
                details={
                    "errors": [{"loc": list(e["loc"]), "message": e["msg"]} for e in exc.errors()]
                },
            ) from exc

    def check(self, config: VideoConfig) -> None:
        """Refuse what the configuration does not allow (400 ``invalid_video_options``)."""
        cap = config.sampling.max_frames
        if self.max_frames is not None and self.max_frames > cap:
            raise InputError(
                f"max_frames may be at most {cap} (the configured sampling.max_frames)",
                code="invalid_video_options",
                details={"max_frames": self.max_frames, "limit": cap},
            )

    def is_empty(self) -> bool:
        return not self.model_dump(exclude_none=True)

    def sampling(self, config: VideoConfig) -> VideoSampling:
        """The configured sampling with these overrides applied (max_frames clamped)."""
        base = config.sampling
        update: dict[str, Any] = {}
        if self.keyframes_only:
            update["mode"] = "keyframes"
        elif self.sample_every is not None or (
            self.keyframes_only is False and base.mode == "keyframes"
        ):
            update["mode"] = "interval"
        if self.sample_every is not None:
            update["interval_s"] = self.sample_every
        if self.max_frames is not None:
            update["max_frames"] = min(self.max_frames, base.max_frames)
        if not update:
            return base
        return VideoSampling.model_validate({**base.model_dump(), **update})

    def early_stop(self, config: VideoConfig) -> bool:
        if self.stop_on_block is None:
            return config.early_stop_on_block
        return self.stop_on_block
