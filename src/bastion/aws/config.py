"""Settings ``aws``: the Rekognition-compatible endpoint's limits and where ``S3Object``
inputs are read from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

_BUCKET_NAME = r"^[0-9A-Za-z.\-_]{3,255}$"
_TENANTS_HELP = (
    "The tenants that may read this bucket, by id. Required: a bucket is readable by no "
    "tenant unless it is named here, so one tenant cannot read another's objects."
)


class FolderBucket(BaseModel):
    """A bucket served from a local folder: the object name is a path relative to it."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["folder"] = Field(description="A local folder.")
    path: Path = Field(
        description="The folder; object names are relative paths under it (absolute paths, "
        "`..` and symbolic links leading out of it are refused)."
    )
    tenants: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, description=_TENANTS_HELP
    )


class S3StoreBucket(BaseModel):
    """A bucket of an S3-compatible object store (MinIO, Ceph, Amazon S3, ...)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["s3"] = Field(description="An S3-compatible store.")
    endpoint_url: str = Field(
        max_length=2048,
        pattern=r"^https?://",
        description="The store's URL, e.g. `https://minio.internal:9000`. Checked against the "
        "outbound address policy (`url_fetch`: private addresses need `allow_hosts`) at "
        "every read.",
    )
    region: str = Field("us-east-1", pattern=r"^[a-z0-9-]{1,32}$", description="Signing region.")
    bucket: str | None = Field(
        None,
        pattern=_BUCKET_NAME,
        description="The bucket's name in the store (default: the name clients use).",
    )
    access_key_id: str = Field(min_length=1, max_length=128, description="Access key id.")
    secret_access_key: SecretStr = Field(description="Secret access key.")
    tenants: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, description=_TENANTS_HELP
    )
    connect_timeout_s: float = Field(5.0, gt=0, le=120, description="Seconds to connect.")
    read_timeout_s: float = Field(
        30.0, gt=0, le=600, description="Seconds allowed between two reads."
    )
    total_timeout_s: float = Field(
        600.0, gt=0, le=86400, description="Seconds allowed for reading one object."
    )


BucketConfig = Annotated[FolderBucket | S3StoreBucket, Field(discriminator="kind")]
"""Where a bucket named in an ``S3Object`` is read from (``kind``: folder | s3)."""


class TopicConfig(BaseModel):
    """Where completion notifications sent to an SNS topic ARN are delivered."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=2048,
        pattern=r"^https?://",
        description="The webhook URL that receives the notifications (signed, retried "
        "Bastion webhook deliveries).",
    )
    tenants: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, description="The tenants that may name this topic in a NotificationChannel."
    )


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
    secret_seed: SecretStr | None = Field(
        None,
        min_length=32,
        description="The master secret access keys' secrets are derived from (at least 32 "
        "characters; every process and host serving the same database needs the same one). "
        "Unset: a random one kept in `aws-secret-seed` in the data dir (created once, mode "
        "0600). Changing it invalidates every issued secret.",
    )
    max_s3_video_bytes: int = Field(
        10 * 1024**3,
        gt=0,
        description="Largest video read from an S3 object (Rekognition: 10 GB); also bounded "
        "by `jobs_max_bytes`. VideoTooLargeException beyond.",
    )
    buckets: dict[Annotated[str, Field(pattern=_BUCKET_NAME)], BucketConfig] = Field(
        default_factory=dict,
        description="The buckets `S3Object` inputs may name, each a local folder or a bucket "
        "of an S3-compatible store, and the tenants allowed to read it. Any other bucket is "
        "InvalidS3ObjectException.",
    )
    topics: dict[
        Annotated[str, Field(pattern=r"^arn:aws:sns:.*:\w{12}:.+$", max_length=1024)],
        TopicConfig,
    ] = Field(
        default_factory=dict,
        description="SNS topic ARNs a video job's `NotificationChannel` may name, each mapped "
        "to the webhook that receives the completion message. Any other topic is "
        "InvalidParameterException.",
    )
