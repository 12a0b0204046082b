"""Runtime settings: threads, execution providers, where derived model files are cached."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Provider = Literal["tensorrt", "cuda", "cpu"]
_DEFAULT_PROVIDERS: tuple[Provider, ...] = ("tensorrt", "cuda", "cpu")


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bastion"


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
    device_id: int = Field(0, ge=0, description="GPU index for the CUDA/TensorRT providers.")

    def threads(self) -> int:
        return self.intra_op_threads or (os.cpu_count() or 1)

    def workers(self) -> int:
        return self.preprocess_workers or ((os.cpu_count() or 1) + 2)
