"""The shipped models on a GPU execution provider against the CPU, side by side.

Each model is opened twice through Bastion's own :func:`~bastion.runtime.onnx.
create_session`: once with ``providers: [cpu]`` (the baseline, every core) and once with
the default preference ``[tensorrt, cuda, cpu]``, so the run also shows which provider
Bastion really ends up on (a TensorRT provider whose libraries are missing must leave
CUDA, not the CPU). For each batch size: images/s over ``--seconds`` after a warm-up,
the GPU/CPU ratio, and how far the GPU's first output is from the CPU's on the same
inputs (real photos scaled to the model's input). Model-only: decoding, preprocessing
and HTTP are not in these figures.

    .venv/bin/python -m bench.bench_gpu [--batches 1,8,32] [--seconds 3]
    .venv/bin/python -m bench.bench_gpu --models-dir DIR   # DIR/<model>.onnx files

Without a GPU build of onnxruntime the second session is the CPU again and the ratio
is about 1 (the run says so).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image

from bastion.runtime.config import RuntimeConfig
from bastion.runtime.onnx import active_provider, create_session
from bastion.runtime.quantize import calibration_frames

Model = Path | bytes
# the spatial size each model is fed at (its own input, or the analyzer's default)
SIDES: dict[str, tuple[int, int]] = {
    "open-nsfw": (224, 224),
    "open-nsfw-int8": (224, 224),
    "image-safety-classifier-s": (224, 224),
    "efficientnet-lite0": (224, 224),
    "efficientnet-lite0-int8": (224, 224),
    "retinaface": (640, 640),
    "ppocr-det": (960, 960),
    "ppocr-rec": (48, 320),
}


def _installed_models(cache_dir: Path) -> dict[str, Callable[[], Model]]:
    """Where the analyzers find their models on this machine (each built on demand)."""
    from bastion.analyzers.base import RuntimeContext
    from bastion.analyzers.faces import _retinaface_weights
    from bastion.analyzers.labels import LabelsAnalyzer, LabelsConfig
    from bastion.analyzers.nsfw import (
        OPEN_NSFW,
        NsfwAnalyzer,
        NsfwConfig,
        open_nsfw_path,
        safety_path,
    )
    from bastion.analyzers.ocr import OcrConfig, bundled_models_dir
    from bastion.models import efficientnet_export

    context = RuntimeContext(RuntimeConfig(cache_dir=cache_dir))

    def need(path: Path | None) -> Path:
        if path is None or not path.is_file():
            raise FileNotFoundError("model package not installed")
        return path

    def effnet() -> Path:
        return efficientnet_export.export(cache_dir, efficientnet_export.weights_path())

    def effnet_int8() -> Model:
        return LabelsAnalyzer(LabelsConfig(precision="int8"), context)._quantized(effnet())

    def open_nsfw_int8() -> Model:
        nsfw = NsfwAnalyzer(NsfwConfig(), context)
        nsfw._model_versions()
        return nsfw._model_file(OPEN_NSFW, need(open_nsfw_path()))

    ocr = OcrConfig()
    ocr_dir = bundled_models_dir() or Path("/nonexistent")
    return {
        "open-nsfw": lambda: need(open_nsfw_path()),
        "open-nsfw-int8": open_nsfw_int8,
        "image-safety-classifier-s": lambda: need(safety_path()),
        "efficientnet-lite0": effnet,
        "efficientnet-lite0-int8": effnet_int8,
        "retinaface": _retinaface_weights,
        "ppocr-det": lambda: need(ocr_dir / ocr.det_model),
        "ppocr-rec": lambda: need(ocr_dir / ocr.rec_model),
    }


def _inputs(session: ort.InferenceSession, name: str, batch: int) -> npt.NDArray[np.float32]:
    """A batch of real photos at the model's input size and layout, scaled to [0, 1]."""
    shape = session.get_inputs()[0].shape
    nchw = shape[1] == 3
    dims = shape[2:4] if nchw else shape[1:3]
    h, w = (d if isinstance(d, int) else side for d, side in zip(dims, SIDES[name], strict=True))
    photos = calibration_frames()  # the scikit-learn photos, whole and in parts
    frames = []
    for k in range(batch):
        img = Image.fromarray(photos[k % len(photos)]).resize((w, h))
        frames.append(np.asarray(img, dtype=np.float32) / 255.0)
    x = np.stack(frames)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if nchw else x)


def _rate(session: ort.InferenceSession, x: npt.NDArray[np.float32], seconds: float) -> float:
    feed = {session.get_inputs()[0].name: x}
    for _ in range(3):
        session.run(None, feed)
    runs, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        session.run(None, feed)
        runs += 1
    return runs * len(x) / elapsed


def _gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip() or "no GPU"
    except (OSError, subprocess.SubprocessError):
        return "no GPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--models", default=",".join(SIDES), help="comma-separated names")
    parser.add_argument("--models-dir", type=Path, help="read DIR/<model>.onnx instead")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    names = [n for n in args.models.split(",") if n]
    cache = Path(tempfile.mkdtemp(prefix="bastion-bench-gpu-"))
    gpu_runtime = RuntimeConfig(cache_dir=cache)  # the default preference
    cpu_runtime = RuntimeConfig(cache_dir=cache, providers=["cpu"])
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"GPU: {_gpu_name()}, onnxruntime {ort.__version__} "
        f"({', '.join(ort.get_available_providers())})"
    )
    print(f"default provider preference: {', '.join(gpu_runtime.providers)}\n")
    print("| model | batch | CPU images/s | GPU session | images/s | ratio | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    installed = {} if args.models_dir else _installed_models(cache)
    for name in names:
        try:
            model: Model = (
                args.models_dir / f"{name}.onnx" if args.models_dir else installed[name]()
            )
            if isinstance(model, Path) and not model.is_file():
                raise FileNotFoundError(model)
        except (FileNotFoundError, ModuleNotFoundError, KeyError) as exc:
            print(f"| {name} | — | not available here: {exc} | | | | |")
            continue
        cpu = create_session(model, cpu_runtime)
        started = time.perf_counter()
        gpu = create_session(model, gpu_runtime)
        opened = time.perf_counter() - started
        where = f"{active_provider(gpu).removesuffix('ExecutionProvider')} ({opened:.1f} s to open)"
        for batch in batches:
            x = _inputs(cpu, name, batch)
            feed = {cpu.get_inputs()[0].name: x}
            diff = float(
                np.abs(
                    np.asarray(cpu.run(None, feed)[0], np.float64)
                    - np.asarray(gpu.run(None, feed)[0], np.float64)
                ).max()
            )
            c, g = _rate(cpu, x, args.seconds), _rate(gpu, x, args.seconds)
            print(
                f"| {name} | {batch} | {c:.1f} | {where} | {g:.1f} | {g / c:.1f}× | {diff:.2g} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
