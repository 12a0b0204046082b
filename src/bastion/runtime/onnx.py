"""onnxruntime sessions with the best available execution provider, CPU as the fallback."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import onnxruntime as ort

from bastion.runtime.config import RuntimeConfig

log = logging.getLogger(__name__)

_PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def select_providers(config: RuntimeConfig) -> list[str | tuple[str, dict[str, Any]]]:
    """Preferred providers that this onnxruntime build offers, CPU always last."""
    available = set(ort.get_available_providers())
    chosen: list[str | tuple[str, dict[str, Any]]] = []
    for key in config.providers:
        name = _PROVIDER_NAMES[key]
        if name not in available or key == "cpu":
            continue
        opts: dict[str, Any] = {"device_id": config.device_id}
        if key == "cuda" and config.gpu_mem_limit_mb is not None:
            # a hard cap on this session's CUDA arena, growing only as far as it needs
            opts.update(
                gpu_mem_limit=config.gpu_mem_limit_mb * 1024 * 1024,
                arena_extend_strategy="kSameAsRequested",
            )
        if key == "tensorrt":
            opts.update(
                trt_engine_cache_enable=True,
                trt_engine_cache_path=str(config.cache_dir / "trt"),
                trt_fp16_enable=True,
            )
            if config.gpu_mem_limit_mb is not None:
                opts["trt_max_workspace_size"] = config.gpu_mem_limit_mb * 1024 * 1024
        chosen.append((name, opts))
    chosen.append("CPUExecutionProvider")
    return chosen


def create_session(model: Path | bytes, config: RuntimeConfig) -> ort.InferenceSession:
    """An InferenceSession tuned for the cores available; falls back to CPU on provider errors."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = config.threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    spin = "1" if config.spin_wait else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    source = str(model) if isinstance(model, Path) else model
    providers = select_providers(config)
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=providers)
    except Exception:  # a GPU provider that fails to initialise must not take the service down
        if providers == ["CPUExecutionProvider"]:
            raise
        log.warning("GPU execution providers failed; falling back to CPU", exc_info=True)
        return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def active_provider(session: ort.InferenceSession) -> str:
    return str(session.get_providers()[0])
