"""Settings of result de-duplication."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DedupConfig(BaseModel):
    """Stored results, their bounds, and near-duplicate reuse."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        description="Store analysis results in the database and reuse them for the same bytes "
        "under the same policy and model versions, across requests, workers and restarts.",
    )
    max_entries: int = Field(
        100_000,
        ge=1,
        description="Most stored results; the least recently used beyond it are purged.",
    )
    max_age_s: float | None = Field(
        30 * 24 * 3600.0,
        gt=0,
        description="Stored results older than this are not reused and are purged; "
        "null keeps them until max_entries evicts them.",
    )
    purge_interval_s: float = Field(
        600.0,
        gt=0,
        description="How often expired, surplus and other-model results are purged "
        "(also at start-up, and after every max_entries / 10 new results).",
    )
    near_duplicate_max_distance: int | None = Field(
        None,
        ge=0,
        le=31,
        description="Reuse the result of a stored image whose PDQ hash differs in at most this "
        "many of its 256 bits (8 is a good start); null turns near-duplicate reuse off. Only "
        "images stored while it is on can be found.",
    )
    near_duplicate_min_quality: int = Field(
        50,
        ge=0,
        le=100,
        description="PDQ quality (0-100) both images need for a near-duplicate match; flat, "
        "featureless images score low and never match.",
    )
    frame_cache_size: int = Field(
        1024,
        ge=0,
        description="Video frame results kept in memory apart from image results, so that long "
        "videos do not evict them (0 disables).",
    )
