"""Settings of one measurement of Bastion on a labelled folder."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EvalConfig"]


class EvalConfig(BaseModel):
    """How the confidence intervals of a measurement are computed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resamples: int = Field(
        2000,
        ge=100,
        le=100_000,
        description="Bootstrap resamples of the images for the confidence intervals; the "
        "same resamples score every category and the decision (a paired bootstrap).",
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Level of the confidence intervals."
    )
    seed: int = Field(
        0, ge=0, description="Seed of the bootstrap: same images, same seed, same intervals."
    )
