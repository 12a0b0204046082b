"""Bastion's settings: defaults, then a YAML config file, then BASTION_* environment variables."""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Iterable
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from bastion.accounts.config import AccountsConfig
from bastion.analyzers import BUILT_IN, Analyzer
from bastion.analyzers.base import AnalyzerConfig
from bastion.aws.config import AwsConfig
from bastion.dedup.config import DedupConfig
from bastion.delivery.config import DeliveryConfig
from bastion.jobs.config import JobsConfig
from bastion.live.config import LiveConfig
from bastion.media.audio_config import AudioConfig
from bastion.media.fetch import FetchPolicy
from bastion.media.types import MediaLimits
from bastion.media.video_config import VideoConfig
from bastion.parsing.yaml_doc import YamlDocError, YamlLimits, load_yaml
from bastion.registry.config import RegistryConfig
from bastion.review.config import ReviewConfig
from bastion.runtime.config import RuntimeConfig
from bastion.samples.config import SamplesConfig
from bastion.search.config import SearchConfig
from bastion.training.config import TrainingJobsConfig

DEFAULT_ANALYZERS = ("nsfw", "labels", "ocr", "codes", "faces", "hashes", "speech", "toxicity")


def _analyzer_config_union(analyzers: Iterable[type[Analyzer[Any, Any]]]) -> Any:
    """The type of one ``analyzers`` entry: the config models of ``analyzers``, told apart
    by ``type`` (a pydantic discriminated union, so the JSON schema shows each one's fields).

    A bare type name is short for ``{type: name}``. An entry without a ``type``, or with
    one of none of ``analyzers``, is refused with a message naming it and the known types.
    """
    models = {cls.kind: cls.config_model for cls in analyzers}
    known = sorted(models)

    def entry(value: Any) -> Any:
        if isinstance(value, str):
            value = {"type": value}
        if isinstance(value, AnalyzerConfig):
            tag = value.type
        elif isinstance(value, dict) and "type" in value:
            tag = value["type"]
        else:
            raise ValueError("each analyzer needs a 'type'")
        if not isinstance(tag, str) or tag not in models:
            raise ValueError(f"unknown analyzer type {tag!r}; known: {known}")
        return value

    union = functools.reduce(operator.or_, dict.fromkeys(models.values()))
    return Annotated[union, Field(discriminator="type"), BeforeValidator(entry)]


if TYPE_CHECKING:
    AnyAnalyzerConfig = AnalyzerConfig
else:
    # the built-in analyzers, fixed once: kinds registered later never change the settings
    AnyAnalyzerConfig = _analyzer_config_union(BUILT_IN.values())


def _unique_names(configs: list[AnalyzerConfig]) -> list[AnalyzerConfig]:
    names = [c.name or c.type for c in configs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"analyzer names used twice: {sorted(dup)} (set 'name' to tell apart)")
    return configs


def _default_analyzers() -> list[AnalyzerConfig]:
    return [BUILT_IN[t].config_model.model_validate({"type": t}) for t in DEFAULT_ANALYZERS]


# The configuration file is read like every other YAML document: bounded, no aliases,
# no tags beyond plain data, no key given twice (see bastion.parsing.yaml_doc).
CONFIG_FILE_LIMITS = YamlLimits(max_bytes=1 << 20, max_depth=32, max_nodes=50_000)


class ConfigFileError(YamlDocError):
    """A configuration file Bastion does not read (its path, line and column in the message)."""

    code = "invalid_config_file"


class BoundedYamlSource(YamlConfigSettingsSource):
    """pydantic-settings' YAML file source, reading the file with Bastion's bounded loader."""

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        with file_path.open("rb") as f:
            data = f.read(CONFIG_FILE_LIMITS.max_bytes + 1)
        try:
            value = load_yaml(data, CONFIG_FILE_LIMITS, source=str(file_path))
        except YamlDocError as exc:
            raise ConfigFileError(
                exc.problem, exc.line, exc.column, source=str(file_path), code=exc.code
            ) from None
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigFileError(
                "the configuration file must be a YAML mapping", 1, 1, source=str(file_path)
            )
        return value


class UrlFetchConfig(BaseModel):
    """Guards for URL inputs (and, later, callback URLs)."""

    model_config = ConfigDict(extra="forbid")

    allow_private: bool = Field(
        False, description="Allow private, loopback and link-local addresses (on-premise set-ups)."
    )
    allow_hosts: list[str] = Field(
        default_factory=list, description="Host names or CIDRs allowed even when private."
    )
    timeout_s: float = Field(10.0, gt=0, le=300, description="Total time for one download.")
    max_redirects: int = Field(3, ge=0, le=10, description="Redirects followed (each re-checked).")


class IntakeConfig(BaseModel):
    """How request bodies are received: read deadlines, and the bytes they may hold at once.

    The deadlines count only the time the server waits for the client, so a slow handler
    never counts against a fast client.
    """

    model_config = ConfigDict(extra="forbid")

    body_read_timeout_s: float = Field(
        600.0,
        gt=0,
        le=86_400,
        description="Longest time to receive one request body (time spent waiting for the "
        "client); a slower body gets 408 `body_too_slow` and the connection is closed.",
    )
    body_grace_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="Seconds at the start of a body before min_body_rate applies.",
    )
    min_body_rate: int = Field(
        10_000,
        ge=0,
        description="Average bytes per second a body must keep after body_grace_s "
        "(0 disables); a slower sender gets 408 `body_too_slow`.",
    )
    max_buffered_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=1024 * 1024,
        description="Bytes of request bodies held in memory at once by requests being read "
        "or waiting for analysis; a body that does not fit gets 503 `overloaded`. A request "
        "counts only the bytes it has received, so slow senders hold next to nothing.",
    )
    max_spooled_bytes: int = Field(
        8 * 1024 * 1024 * 1024,
        ge=1024 * 1024,
        description="Bytes of job uploads (POST /v1/jobs) being received onto disk at once; "
        "an upload that does not fit gets 503 `overloaded`.",
    )


class Settings(BaseSettings):
    """Everything Bastion reads at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="BASTION_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    host: str = Field("127.0.0.1", description="Address the API listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port the API listens on.")
    data_dir: Path = Field(Path("data"), description="Where the database and media live.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default SQLite in the data dir (PostgreSQL supported)."
    )
    admin_api_key: SecretStr | None = Field(
        None, description="A fixed initial admin key for automated set-ups (stored hashed)."
    )
    allow_private_urls: bool = Field(
        False, description="Shortcut for url_fetch.allow_private (BASTION_ALLOW_PRIVATE_URLS=1)."
    )
    url_fetch: UrlFetchConfig = Field(default_factory=UrlFetchConfig)
    limits: MediaLimits = Field(default_factory=MediaLimits)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    analyzers: Annotated[list[AnyAnalyzerConfig], AfterValidator(_unique_names)] = Field(
        default_factory=_default_analyzers,
        description="Analyzer instances to load, each with its own settings; `type` picks "
        "the analyzer (a bare type name is short for `{type: name}`).",
    )
    policies_dir: Path | None = Field(
        None, description="A folder of extra YAML policies offered to every tenant."
    )
    max_batch_items: int = Field(64, ge=1, le=1000, description="Most items in /v1/moderate/batch.")
    max_inflight: int = Field(
        32, ge=1, description="Requests analysed at once; more wait in a queue."
    )
    max_queued: int = Field(
        128,
        ge=1,
        description="Requests admitted at once (analysed or waiting, bodies in memory); "
        "more get 503 `overloaded`. Memory stays below about max_queued × limits.max_bytes.",
    )
    jobs: JobsConfig = Field(default_factory=JobsConfig, description="Async jobs and workers.")
    video: VideoConfig = Field(
        default_factory=VideoConfig,
        description="Video limits and default frame sampling (video jobs and `bastion scan`).",
    )
    audio: AudioConfig = Field(
        default_factory=AudioConfig,
        description="Audio limits and analysis windows (audio jobs).",
    )
    delivery: DeliveryConfig = Field(
        default_factory=DeliveryConfig, description="Webhook delivery: retries, timeouts."
    )
    jobs_max_bytes: int = Field(
        200 * 1024 * 1024, ge=1, description="Largest upload accepted by POST /v1/jobs (videos)."
    )
    max_request_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="Largest request body of any kind (a batch of base64 images included).",
    )
    intake: IntakeConfig = Field(
        default_factory=IntakeConfig,
        description="Request bodies: read deadlines (408 `body_too_slow`) and the memory and "
        "disk they may hold at once (503 `overloaded`).",
    )
    result_cache_size: int = Field(
        4096, ge=0, description="Results kept in memory by content hash (0 disables)."
    )
    dedup: DedupConfig = Field(
        default_factory=DedupConfig,
        description="Stored results reused across requests and restarts; near duplicates.",
    )
    live: LiveConfig = Field(
        default_factory=LiveConfig,
        description="Live streams: readers, workers' claims, stop hook, alert webhooks.",
    )
    accounts: AccountsConfig = Field(
        default_factory=AccountsConfig,
        description="People's accounts (the moderator portal): session lifetimes, lockout "
        "after wrong passwords, sign-in rate limits, the session cookie.",
    )
    review: ReviewConfig = Field(
        default_factory=ReviewConfig,
        description="The review queue: queues and routing, reviewers' lease, the "
        "`review.decided` webhook, the longest note.",
    )
    samples: SamplesConfig = Field(
        default_factory=SamplesConfig,
        description="Labelled samples: the embedding they keep, how often workers turn "
        "kept decisions into samples, the bounds of an imported folder.",
    )
    registry: RegistryConfig = Field(
        default_factory=RegistryConfig,
        description="The model registry (MLflow) of tenants' heads: where it is, how models "
        "are named, how often processes follow the `champion`/`challenger` aliases.",
    )
    training: TrainingJobsConfig = Field(
        default_factory=TrainingJobsConfig,
        description="Training runs of tenants' heads: the workers' lease, time limit and "
        "retries, and the default training settings.",
    )
    search: SearchConfig = Field(
        default_factory=SearchConfig,
        description="Search over a tenant's media (`/v1/search`, the portal's search page): "
        "what is indexed as media is analysed, and how queries are ranked.",
    )
    aws: AwsConfig = Field(
        default_factory=AwsConfig,
        description="The Amazon Rekognition-compatible endpoint (`POST /`, AWS JSON 1.1, "
        "Signature Version 4): limits and where `S3Object` inputs are read from.",
    )
    log_level: str = Field("INFO", description="Python logging level.")
    preload: bool = Field(
        True, description="Load every model at start-up rather than on first use."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = settings_cls.model_config.get("yaml_file") or os.environ.get("BASTION_CONFIG")
        if config_file:
            sources.append(BoundedYamlSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'bastion.db').resolve()}"

    @property
    def fetch(self) -> UrlFetchConfig:
        if self.allow_private_urls and not self.url_fetch.allow_private:
            return self.url_fetch.model_copy(update={"allow_private": True})
        return self.url_fetch

    def fetch_policy(self) -> FetchPolicy:
        """The address policy and limits of every outbound fetch: URL inputs, webhooks,
        stop hooks and live sources."""
        f = self.fetch
        return FetchPolicy(
            allow_private=f.allow_private,
            allow_hosts=f.allow_hosts,
            max_bytes=self.limits.max_bytes,
            total_timeout_s=f.timeout_s,
            max_redirects=f.max_redirects,
        )


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings with precedence: ``overrides`` > environment > config file > defaults.

    The config file is ``config_file`` or the path in ``BASTION_CONFIG``.
    """
    clean = {k: v for k, v in overrides.items() if v is not None}
    if config_file is None:
        return Settings(**clean)
    if not config_file.is_file():
        raise FileNotFoundError(f"config file not found: {config_file}")
    cls = type(
        "FileSettings",
        (Settings,),
        {"model_config": SettingsConfigDict(**{**Settings.model_config, "yaml_file": config_file})},
    )
    return cls(**clean)  # type: ignore[no-any-return]
