"""Settings of labelled samples: which analyzer's embedding samples keep, how often the
worker turns kept decisions into samples, and the bounds of an imported folder."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SamplesConfig(BaseModel):
    """Labelled samples: the embedding kept, collection, imports."""

    model_config = ConfigDict(extra="forbid")

    embedding_analyzer: str | None = Field(
        None,
        max_length=64,
        description="The analyzer (instance name) whose embedding of each sample is kept; "
        "default: the first configured image analyzer that makes embeddings (`labels`, "
        "the 1280-d EfficientNet-Lite0 features).",
    )
    collect_every_s: float = Field(
        30.0,
        gt=0,
        le=86400,
        description="Seconds between two rounds in which a worker turns decisions that "
        "kept their media into samples (and has samples follow later corrections).",
    )
    collect_batch: int = Field(
        64, ge=1, le=10_000, description="Decisions read from the database at a time."
    )
    import_concurrency: int = Field(
        8, ge=1, le=256, description="Files of an imported folder in flight at once."
    )
    max_json_bytes: int = Field(
        64 * 1024,
        ge=64,
        le=16 * 1024 * 1024,
        description="Largest labels file (JSON) beside an imported image.",
    )
