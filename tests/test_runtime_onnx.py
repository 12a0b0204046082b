"""Execution providers: GPU providers first when the build has them, CPU always the fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from bastion.runtime import onnx as bort
from bastion.runtime.config import RuntimeConfig


def tiny_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def test_cpu_only_build_gets_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert bort.select_providers(RuntimeConfig()) == ["CPUExecutionProvider"]


def test_gpu_providers_come_first_in_configured_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(
        ort,
        "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    chosen = bort.select_providers(RuntimeConfig(cache_dir=tmp_path, device_id=1))
    names = [p[0] if isinstance(p, tuple) else p for p in chosen]
    assert names == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    first = chosen[0]
    assert isinstance(first, tuple)
    trt_opts = first[1]
    assert trt_opts["device_id"] == 1 and trt_opts["trt_engine_cache_path"].startswith(
        str(tmp_path)
    )
    only_cuda = bort.select_providers(RuntimeConfig(providers=["cuda", "cpu"]))
    assert [p[0] if isinstance(p, tuple) else p for p in only_cuda] == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def test_failing_gpu_provider_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ort.InferenceSession
    calls: list[Any] = []

    def session(model: Any, sess_options: Any = None, providers: Any = None, **kw: Any) -> Any:
        calls.append(providers)
        if providers != ["CPUExecutionProvider"]:
            raise RuntimeError("CUDA driver not found")
        return real(model, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(ort, "InferenceSession", session)
    sess = bort.create_session(tiny_model(), RuntimeConfig())
    assert bort.active_provider(sess) == "CPUExecutionProvider"
    assert len(calls) == 2
    out = sess.run(None, {"x": np.array([[-1.0, 0.5, 2.0]], dtype=np.float32)})[0]
    assert out.tolist() == [[0.0, 0.5, 2.0]]


def test_failing_tensorrt_leaves_cuda_with_its_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = ort.InferenceSession
    calls: list[Any] = []

    def session(model: Any, sess_options: Any = None, providers: Any = None, **kw: Any) -> Any:
        calls.append((providers, kw))
        if providers[0][0] == "TensorrtExecutionProvider":
            raise RuntimeError("libnvinfer.so.10: cannot open shared object file")
        return real(model, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(
        ort,
        "get_available_providers",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    monkeypatch.setattr(ort, "InferenceSession", session)
    config = RuntimeConfig(cache_dir=tmp_path, device_id=1, gpu_mem_limit_mb=512)
    bort.create_session(tiny_model(), config)
    assert len(calls) == 2
    # onnxruntime's own fallback is off: it would retry on CUDA without these options
    assert all(kw.get("enable_fallback") == 0 for _, kw in calls)
    cuda, cpu = calls[1][0]
    assert cuda[0] == "CUDAExecutionProvider" and cpu == "CPUExecutionProvider"
    assert cuda[1]["device_id"] == 1 and cuda[1]["gpu_mem_limit"] == 512 * 1024 * 1024


def test_session_threads_follow_config() -> None:
    sess = bort.create_session(tiny_model(), RuntimeConfig(intra_op_threads=1))
    assert sess.get_session_options().intra_op_num_threads == 1
    onnx.checker.check_model(onnx.load_from_string(tiny_model()))


def test_gpu_libraries_are_preloaded_once_and_only_for_gpu_providers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    preloads: list[str] = []

    def preload() -> None:
        preloads.append("preload")
        print("WARNING: cuDNN not found")  # what onnxruntime says goes to the log, not stdout

    monkeypatch.setattr(ort, "preload_dlls", preload, raising=False)
    bort._load_gpu_libraries.cache_clear()
    try:
        bort.create_session(tiny_model(), RuntimeConfig(providers=["cpu"]))
        assert preloads == []
        monkeypatch.setattr(
            ort,
            "get_available_providers",
            lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
        )
        real = ort.InferenceSession
        monkeypatch.setattr(
            ort,
            "InferenceSession",
            lambda model, sess_options=None, providers=None, **kw: real(
                model, sess_options=sess_options, providers=["CPUExecutionProvider"]
            ),
        )
        for _ in range(3):
            bort.create_session(tiny_model(), RuntimeConfig())
        assert preloads == ["preload"]
    finally:
        bort._load_gpu_libraries.cache_clear()
