"""onnxruntime sessions with the best available execution provider, CPU as the fallback."""

from __future__ import annotations

import contextlib
import io
import logging
from functools import cache
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


def gpu_configured(config: RuntimeConfig) -> bool:
    """Whether sessions will be offered a GPU provider first (configured and in this
    onnxruntime build)."""
    return select_providers(config)[0] != "CPUExecutionProvider"


@cache
def _load_gpu_libraries() -> None:
    """Load the CUDA and cuDNN libraries of pip's ``nvidia-*`` packages, once, so that a
    pip-installed onnxruntime-gpu finds them without ``LD_LIBRARY_PATH`` (onnxruntime's
    own ``preload_dlls``; it does nothing for a CPU build, and libraries it cannot find
    are left to the system's search path)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said):  # it prints its warnings
            preload()
    except Exception:  # a failed preload leaves the system's search path
        log.info("onnxruntime could not preload the CUDA libraries", exc_info=True)
    if said.getvalue().strip():
        log.info("onnxruntime preloading CUDA libraries: %s", said.getvalue().strip())


def create_session(model: Path | bytes, config: RuntimeConfig) -> ort.InferenceSession:
    """An InferenceSession tuned for the cores available, on the first configured provider
    that starts: one that fails (TensorRT without its libraries, CUDA without a driver)
    is dropped and the next is tried with its own options, down to the CPU. (onnxruntime's
    own fallback is off: it retries TensorRT's failure on CUDA without the CUDA options,
    losing the device and the memory cap.)"""
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
    if providers != ["CPUExecutionProvider"]:
        _load_gpu_libraries()
    failed: list[str] = []
    for first in range(len(providers)):
        attempt = providers[first:]
        try:
            session = ort.InferenceSession(
                source, sess_options=opts, providers=attempt, enable_fallback=0
            )
        except Exception as exc:  # a GPU provider that fails must not take the service down
            if attempt == ["CPUExecutionProvider"]:
                raise
            name = attempt[0][0] if isinstance(attempt[0], tuple) else attempt[0]
            failed.append(f"{name}: {str(exc).strip()[:300]}")
            continue
        if failed:
            log.warning(
                "execution providers failed, running on %s: %s",
                active_provider(session),
                "; ".join(failed),
            )
        return session
    raise AssertionError("unreachable: the CPU provider is always last")


def active_provider(session: ort.InferenceSession) -> str:
    return str(session.get_providers()[0])
