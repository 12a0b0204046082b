"""Settings of the model registry: where the MLflow store is, how its models are named,
and how often running processes look for moved aliases."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.policy import taxonomy

Rule = Literal["interval", "estimate"]

LOCAL_STORE_DIR = "mlflow"
"""The folder of the local store inside Bastion's data dir."""


class PromotionConfig(BaseModel):
    """How a candidate is judged against the head it would replace."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Rule = Field(
        "interval",
        description="What beating the other head means: `interval` — the whole bootstrap "
        "interval of the F1 difference lies above zero (as the training report's "
        "`head_better`); `estimate` — the F1 difference itself is above zero.",
    )
    bootstrap_resamples: int = Field(
        2000,
        ge=100,
        le=100_000,
        description="Paired bootstrap resamples of the held-out set for the intervals.",
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Level of the bootstrap confidence intervals."
    )
    seed: int = Field(0, ge=0, description="Seed of the bootstrap: same samples, same figures.")


class RegistryConfig(BaseModel):
    """The MLflow registry tenant heads are logged to and served from.

    By default a local store inside the data dir (a SQLite ``mlflow.db`` and an
    ``artifacts`` folder beside it): nothing else to run, and nothing leaves the machine.
    """

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking and registry URI (an `http(s)://` MLflow server or a "
        "database URL); None keeps a local store in `<data_dir>/mlflow` (SQLite `mlflow.db` "
        "and an `artifacts` folder).",
    )
    artifact_location: str | None = Field(
        None,
        description="Where new experiments keep their artifacts when the tracking URI is a "
        "database (an MLflow server decides for itself); None: `<data_dir>/mlflow/artifacts`.",
    )
    model_prefix: str = Field(
        "bastion",
        pattern=r"^[A-Za-z0-9_\-]{1,40}$",
        description="First part of every registered model's name "
        "(`<prefix>.<tenant>.<category-slug>`) and experiment's name (`<prefix>.<tenant>`), "
        "so one MLflow server can hold several Bastion installations.",
    )
    refresh_s: float = Field(
        3.0,
        ge=0.2,
        le=3600,
        description="How often every moderating process checks the `champion` and "
        "`challenger` aliases and swaps in the heads they point to.",
    )
    promotion: PromotionConfig = Field(
        default_factory=PromotionConfig,
        description="How a candidate head is judged against the champion (or the baseline) "
        "before it may be promoted.",
    )

    def resolved_tracking_uri(self, data_dir: Path) -> str:
        """The tracking URI in use: the configured one, else the local SQLite store."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(data_dir / LOCAL_STORE_DIR / 'mlflow.db').resolve()}"

    def resolved_artifact_location(self, data_dir: Path) -> str | None:
        """Where new experiments put artifacts: configured, else the local folder unless
        the tracking URI is a server (which has its own)."""
        if self.artifact_location:
            return self.artifact_location
        if self.tracking_uri and self.tracking_uri.startswith(("http://", "https://")):
            return None
        return (data_dir / LOCAL_STORE_DIR / "artifacts").resolve().as_uri()

    def model_name(self, tenant: str, category: str) -> str:
        """The registered model of ``tenant``'s head for ``category``.

        Tenant ids hold no dots (checked here) and category slugs none either, so a name
        stands for one tenant and one category only: tenants never share a registered
        model.
        """
        return f"{self.model_prefix}.{check_tenant(tenant)}.{category_slug(category)}"

    def experiment_name(self, tenant: str) -> str:
        """The experiment that holds ``tenant``'s training runs."""
        return f"{self.model_prefix}.{check_tenant(tenant)}"


_TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


def check_tenant(tenant: str) -> str:
    """``tenant`` if it is a tenant id as the API accepts them (a-z, 0-9, '-', '_')."""
    if not _TENANT_ID.fullmatch(tenant):
        raise ValueError(f"not a tenant id: {tenant!r}")
    return tenant


def category_slug(category: str) -> str:
    """A taxonomy label as it appears in a model name: ``Tobacco Products`` →
    ``tobacco-products`` (unknown labels are refused)."""
    taxonomy.get(category)
    return re.sub(r"[^a-z0-9]+", "-", category.lower()).strip("-")
