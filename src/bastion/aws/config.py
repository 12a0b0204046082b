"""Settings ``aws``: the Rekognition-compatible endpoint's limits and where ``S3Object``
inputs are read from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AwsConfig(BaseModel):
    """The Rekognition-compatible endpoint (``POST /`` with ``X-Amz-Target``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Answer the Rekognition JSON 1.1 protocol on `POST /`.")
    region: str = Field(
        "us-east-1",
        pattern=r"^[a-z0-9-]{1,32}$",
        description="The region clients sign for (the credential scope's region); requests "
        "signed for another region are refused as AWS does.",
    )
    max_image_bytes: int = Field(
        5 * 1024 * 1024,
        gt=0,
        description="Largest image sent as bytes (Rekognition: 5 MB); "
        "ImageTooLargeException beyond.",
    )
    max_s3_image_bytes: int = Field(
        15 * 1024 * 1024,
        gt=0,
        description="Largest image read from an S3 object (Rekognition: 15 MB).",
    )
    min_image_side: int = Field(
        80, ge=1, description="Smallest image width and height in pixels (Rekognition: 80)."
    )
    max_clock_skew_s: int = Field(
        900,
        ge=1,
        description="How far a request's signing time may be from the server's clock "
        "(AWS: 15 minutes).",
    )
