"""Runtime settings: threads, execution providers, where derived model files are cached,
and where models run (``backend``: in this process, or as Ray Serve deployments)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

Provider = Literal["tensorrt", "cuda", "cpu"]
Int8Weights = Literal["auto", "8bit", "7bit"]
_DEFAULT_PROVIDERS: tuple[Provider, ...] = ("tensorrt", "cuda", "cpu")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bastion"


class RayDeployment(BaseModel):
    """How one analyzer's model is served on Ray Serve: replicas, resources, batching."""

    model_config = ConfigDict(extra="forbid")

    num_replicas: int | None = Field(
        None,
        ge=1,
        description="A fixed number of replicas (1 when neither this nor autoscaling bounds "
        "are set).",
    )
    min_replicas: int | None = Field(
        None, ge=0, description="Autoscaling: fewest replicas (set with max_replicas)."
    )
    max_replicas: int | None = Field(
        None, ge=1, description="Autoscaling: most replicas (set with min_replicas)."
    )
    target_ongoing_requests: float = Field(
        16.0,
        gt=0,
        description="Autoscaling: requests in flight per replica that Serve aims for.",
    )
    num_cpus: float = Field(1.0, ge=0, description="CPUs Ray reserves for each replica.")
    num_gpus: float = Field(
        0.0,
        ge=0,
        description="GPUs Ray reserves for each replica; a fraction (0.25) shares a GPU "
        "between replicas, which then need gpu_mem_limit_mb.",
    )
    gpu_mem_limit_mb: int | None = Field(
        None,
        ge=64,
        description="Cap on each onnxruntime CUDA memory arena of a replica (one per model "
        "session), in MiB. Ray's "
        "fractional num_gpus only schedules; it does not isolate GPU memory.",
    )
    max_batch_size: int = Field(
        16, ge=1, le=1024, description="Most requests a replica gathers into one model call."
    )
    batch_wait_timeout_s: float = Field(
        0.004,
        ge=0,
        le=10,
        description="How long a replica waits for more requests before running a batch.",
    )
    max_concurrent_batches: int = Field(
        1, ge=1, le=64, description="Batches one replica may run at once."
    )
    max_ongoing_requests: int | None = Field(
        None,
        ge=1,
        description="Requests Serve sends one replica at once; at least max_batch_size × "
        "max_concurrent_batches, or batches never fill (Serve's default of 5 caps them at "
        "5). None: exactly that product.",
    )

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        bounds = (self.min_replicas, self.max_replicas)
        if (bounds[0] is None) != (bounds[1] is None):
            raise ValueError("set both min_replicas and max_replicas for autoscaling, or neither")
        if bounds[0] is not None and bounds[1] is not None:
            if bounds[0] > bounds[1]:
                raise ValueError("min_replicas must not exceed max_replicas")
            if self.num_replicas is not None:
                raise ValueError("num_replicas and autoscaling bounds exclude each other")
        needed = self.max_batch_size * self.max_concurrent_batches
        if self.max_ongoing_requests is not None and self.max_ongoing_requests < needed:
            raise ValueError(
                f"max_ongoing_requests ({self.max_ongoing_requests}) must be at least "
                f"max_batch_size × max_concurrent_batches ({self.max_batch_size} × "
                f"{self.max_concurrent_batches} = {needed}): a replica is never sent more "
                "requests than that, so its batches could not fill"
            )
        if 0 < self.num_gpus < 1 and self.gpu_mem_limit_mb is None:
            raise ValueError(
                f"num_gpus {self.num_gpus} shares a GPU between replicas but does not "
                "isolate its memory: set gpu_mem_limit_mb to cap each replica's CUDA arena"
            )
        return self

    def ongoing(self) -> int:
        """Requests Serve may send one replica at once."""
        return self.max_ongoing_requests or self.max_batch_size * self.max_concurrent_batches

    def serve_options(self) -> dict[str, Any]:
        """These settings as Ray Serve deployment options."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            actor["num_gpus"] = self.num_gpus
        opts: dict[str, Any] = {
            "ray_actor_options": actor,
            "max_ongoing_requests": self.ongoing(),
        }
        if self.min_replicas is not None and self.max_replicas is not None:
            opts["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
            }
        else:
            opts["num_replicas"] = self.num_replicas or 1
        return opts


class RayConfig(BaseModel):
    """Where and how analyzers' models run on Ray Serve (``runtime.backend: ray``).

    With no ``address``, a Ray of this process's own is started for development: bound to
    the loopback interface, on free ports (never Redis's 6379), without token
    authentication, and the analyzers are deployed onto it. With an ``address``, the
    deployments are expected on that cluster (``bastion models serve --ray-address``).
    A cluster with token authentication (``ray start`` turns it on) needs
    ``RAY_AUTH_MODE=token`` and the token, as ``RAY_AUTH_TOKEN`` or a file named by
    ``RAY_AUTH_TOKEN_PATH`` (or ``auth_token_path`` here), in every Bastion process.
    """

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        None,
        description="Ray cluster address (host:port of its GCS, or ray://...); None starts a "
        "local Ray on loopback for development.",
    )
    namespace: str = Field("bastion", min_length=1, description="Ray namespace of Bastion's apps.")
    app_prefix: str = Field(
        "bastion-",
        description="Each analyzer is its own Serve application, named this prefix + the "
        "analyzer's name.",
    )
    analyzers: list[str] | None = Field(
        None,
        description="Analyzers served on Ray; None: all enabled ones. The others run in "
        "this process.",
    )
    default: RayDeployment = Field(
        default_factory=RayDeployment, description="Deployment options of every analyzer."
    )
    deployments: dict[str, RayDeployment] = Field(
        default_factory=dict,
        description="Deployment options by analyzer name, replacing the default for it.",
    )
    request_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Longest wait for one item's answer, retries included; then "
        "model_unavailable (503).",
    )
    deploy_timeout_s: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="Longest wait for a deployment's replicas to run (loading models, "
        "waiting for CPUs/GPUs); then the analyzer is model_unavailable.",
    )
    retries: int = Field(
        1,
        ge=0,
        le=5,
        description="Times an item is sent again when its replica died or was unreachable.",
    )
    local_num_cpus: int | None = Field(
        None, ge=1, description="CPUs of the local development Ray; None: all cores."
    )
    auth_token_path: Path | None = Field(
        None,
        description="File holding the cluster's authentication token; sets "
        "RAY_AUTH_MODE=token for this process when given.",
    )

    def options_for(self, analyzer: str) -> RayDeployment:
        """The deployment options of ``analyzer``."""
        return self.deployments.get(analyzer, self.default)

    def serves(self, analyzer: str) -> bool:
        """Whether ``analyzer`` runs on Ray."""
        return self.analyzers is None or analyzer in self.analyzers


class RuntimeConfig(BaseModel):
    """How models run."""

    model_config = ConfigDict(extra="forbid")

    providers: list[Provider] = Field(
        default_factory=lambda: list(_DEFAULT_PROVIDERS),
        description="Execution providers in order of preference; unavailable ones are skipped "
        "and CPU is always the last resort.",
    )
    intra_op_threads: int = Field(
        0, ge=0, description="Threads per onnxruntime session; 0 = number of CPU cores."
    )
    batch_concurrency: int = Field(
        0,
        ge=0,
        le=64,
        description="Batches of one analyzer that run at the same time (analyzers that allow "
        "it). 0 (auto): cores ÷ intra_op_threads, at least 1: one batch at a time while each "
        "session uses every core, one per core when sessions run on one thread each.",
    )
    preprocess_workers: int = Field(
        0, ge=0, description="Threads that decode and preprocess images; 0 = cores + 2."
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        description="Where derived model files (e.g. ONNX exports) are built and kept.",
    )
    spin_wait: bool = Field(
        False,
        description="Let onnxruntime worker threads spin while idle: a little lower latency for "
        "a lone request, but wasted CPU when several models run at once (the usual case).",
    )
    int8_weights: Int8Weights = Field(
        "auto",
        description="Int8 on this CPU. auto: 8-bit weights where int8 dot products are exact "
        "(x86 with VNNI or AMX, other architectures); on x86 CPUs without VNNI (AVX2 only), "
        "whose kernels sum int8 products in 16 bits and saturate, analyzers set to int8 run "
        "their float model. 7bit: int8 there anyway with 7-bit weights (exact, but scores "
        "drift further from float); 8bit: full-range weights everywhere.",
    )
    int8_on_gpu: bool = Field(
        False,
        description="Run analyzers set to int8 precision in int8 also where a GPU provider "
        "(CUDA, TensorRT) is configured and available. Off: they run their float model there, "
        "which on CUDA was both faster and closer to the CPU's outputs (bench/RESULTS.md).",
    )
    device_id: int = Field(0, ge=0, description="GPU index for the CUDA/TensorRT providers.")
    gpu_mem_limit_mb: int | None = Field(
        None,
        ge=64,
        description="Cap on each onnxruntime session's CUDA memory arena, in MiB (None: no "
        "cap). Replicas on Ray set it from their deployment's gpu_mem_limit_mb.",
    )
    backend: Literal["local", "ray"] = Field(
        "local",
        description="Where models run: local (batched in this process) or ray (Ray Serve "
        "deployments, see ray; needs the ray extra).",
    )
    ray: RayConfig = Field(
        default_factory=RayConfig, description="Ray Serve settings, used when backend is ray."
    )

    def threads(self) -> int:
        return self.intra_op_threads or (os.cpu_count() or 1)

    def concurrency(self) -> int:
        """Batches of one analyzer that may run at once."""
        return self.batch_concurrency or max(1, (os.cpu_count() or 1) // self.threads())

    def workers(self) -> int:
        return self.preprocess_workers or ((os.cpu_count() or 1) + 2)
