"""ImageNet tags, product hints and moderation hints from EfficientNet-Lite0.

Each frame gets its top ImageNet classes as tags, products often sold through spam
ads as ``product:`` tags and a "Product Ad" label, moderation labels (firearms,
blades, alcohol, ...) scored by the summed probability of the classes mapped to them,
and the pooled 1280-d feature vector (L2-normalised) as its embedding.

Precision. ``precision: int8`` runs a statically quantised copy of the model, built once
into the runtime cache by :mod:`bastion.runtime.quantize`. On a 2-core x86 CPU with VNNI
it takes about half the float model's time, but over the 99 offline benign photos its
top-1 class differed from float on about one in eight (mostly charts and synthetic
patterns where no class is likely), class probabilities moved by up to 0.3 and the
embedding's cosine to float's fell to 0.78 on a gradient test card, so float stays the
default. The version names the precision; embeddings of the two are not comparable.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydantic import Field, field_validator

from bastion.analyzers.base import AnalyzerConfig, FrameAnalyzer, RuntimeContext, file_version
from bastion.media.types import Frame
from bastion.policy import taxonomy
from bastion.results import AnalyzerOutput, Label, Tag
from bastion.runtime.quantize import (
    QuantRecipe,
    calibration_frames,
    int8_recipe,
    quantized_model,
    versioned,
)

MODEL_NAME = "efficientnet-lite0"
NUM_CLASSES = 1000
PRODUCT_LABEL = "Product Ad"
PRODUCT_TAG_PREFIX = "product:"
# How the model is quantised when precision is int8 (part of the cache key and version);
# the classifier (Gemm) stays float: quantising the logits cost the most agreement.
INT8_RECIPE = QuantRecipe(method="percentile", op_types=("Conv", "Clip", "Add"))

# Taxonomy label -> the ImageNet classes whose summed probability scores it.
DEFAULT_CLASS_LABELS: dict[str, tuple[str, ...]] = {
    "Firearms": ("rifle", "assault rifle", "revolver"),
    "Knives and Blades": ("cleaver", "letter opener", "scabbard"),
    "Alcoholic Beverages": ("beer bottle", "wine bottle", "beer glass", "red wine"),
    "Drug Paraphernalia": ("syringe",),
    "Pills": ("pill bottle",),
    "Gambling Equipment": ("slot",),
}

# ImageNet classes of goods that spam ads sell; scored as the "Product Ad" label.
DEFAULT_PRODUCT_CLASSES: tuple[str, ...] = (
    "sunglasses",
    "sunglass",
    "running shoe",
    "Loafer",
    "clog",
    "cowboy boot",
    "sandal",
    "digital watch",
    "purse",
    "backpack",
    "wallet",
    "perfume",
)


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names in model output order."""
    text = resources.files("bastion.analyzers").joinpath("data", "imagenet_classes.txt")
    names = tuple(
        line.strip()
        for line in text.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    if len(names) != NUM_CLASSES:
        raise RuntimeError(f"imagenet_classes.txt has {len(names)} names, expected 1000")
    return names


def _check_classes(names: Sequence[str]) -> None:
    unknown = sorted(set(names) - set(imagenet_classes()))
    if unknown:
        raise ValueError(f"unknown ImageNet classes: {unknown}")


class LabelsConfig(AnalyzerConfig):
    type: Literal["labels"] = "labels"
    top_k: int = Field(5, ge=0, le=100, description="Most ImageNet classes reported as tags.")
    min_tag_confidence: float = Field(
        5.0, ge=0, le=100, description="Smallest class probability (0–100) reported as a tag."
    )
    min_label_confidence: float = Field(
        5.0,
        ge=0,
        le=100,
        description="Moderation and product labels scoring below this (0–100) are left out.",
    )
    input_size: int = Field(
        224, ge=32, le=1024, description="Side of the square centre crop fed to the model."
    )
    resize_ratio: float = Field(
        256 / 224,
        ge=1.0,
        le=2.0,
        description="Shorter side is resized to input_size × this before the centre crop.",
    )
    class_labels: dict[str, list[str]] | None = Field(
        None,
        description="Taxonomy label -> ImageNet class names summed into it; replaces the "
        "built-in table (firearms, blades, alcohol, syringes, pills, slot machines).",
    )
    product_classes: list[str] | None = Field(
        None,
        description="ImageNet classes reported as 'product:' tags and the 'Product Ad' label; "
        "replaces the built-in list (sunglasses, shoes, watches, bags, wallets, perfume).",
    )
    embedding: bool = Field(
        True, description="Return the L2-normalised 1280-d pooled features as the embedding."
    )
    precision: Literal["float32", "int8"] = Field(
        "float32",
        description="float32: the exported model; int8: a statically quantised copy built "
        "into the runtime cache, about 2x faster on x86 CPUs with VNNI, but over 99 offline "
        "benign photos its top-1 class differed on about 1 in 8 and probabilities moved by "
        "up to 0.3 (embeddings differ too), so it is not the default.",
    )

    @field_validator("class_labels")
    @classmethod
    def _known_labels(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if value is not None:
            for name, classes in value.items():
                if name not in taxonomy.CATEGORIES:
                    raise ValueError(f"unknown taxonomy label {name!r}")
                _check_classes(classes)
        return value

    @field_validator("product_classes")
    @classmethod
    def _known_products(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            _check_classes(value)
        return value


Preprocessed = npt.NDArray[np.float32]


class LabelsAnalyzer(FrameAnalyzer[LabelsConfig, Preprocessed]):
    """ImageNet tags, product and moderation hints and image embeddings (EfficientNet-Lite0)."""

    kind: ClassVar[str] = "labels"
    parallel_batches = True
    input: ClassVar[str] = (
        "RGB frame; shorter side resized to 256, centre crop 224×224, (x−127)/128"
    )
    config_model: ClassVar[type[AnalyzerConfig]] = LabelsConfig
    emits: ClassVar[tuple[str, ...]] = ("labels", "tags", "embedding")
    embedding_dim: ClassVar[int | None] = 1280

    def __init__(self, config: LabelsConfig, context: RuntimeContext) -> None:
        super().__init__(config, context)
        table = config.class_labels
        self._label_classes: dict[str, tuple[str, ...]] = (
            {k: tuple(v) for k, v in table.items()} if table is not None else DEFAULT_CLASS_LABELS
        )
        products = config.product_classes
        self._products: tuple[str, ...] = (
            tuple(products) if products is not None else DEFAULT_PRODUCT_CLASSES
        )
        self._session: Any = None
        self._version: str | None = None
        self._lock = threading.Lock()
        self._label_index: dict[str, npt.NDArray[np.intp]] = {}
        self._product_index: npt.NDArray[np.intp] = np.zeros(0, dtype=np.intp)

    @property
    def model_name(self) -> str:
        return MODEL_NAME

    @property
    def version(self) -> str:
        if self._version is None:
            from bastion.models import efficientnet_export

            try:
                self._version = self._precise(file_version(efficientnet_export.weights_path()))
            except (ModuleNotFoundError, FileNotFoundError):
                return "unavailable"
        return self._version

    def _precise(self, weights_version: str) -> str:
        return versioned(weights_version, self.recipe)

    @property
    def recipe(self) -> QuantRecipe | None:
        """The int8 recipe the model runs with under this runtime, or None when it runs in
        float (precision float32, or a GPU provider without runtime.int8_on_gpu)."""
        if self.config.precision != "int8":
            return None
        return int8_recipe(INT8_RECIPE, self.context.runtime)

    @property
    def provider(self) -> str | None:
        if self._session is None:
            return None
        return str(self._session.get_providers()[0])

    def categories(self) -> list[str]:
        names = [n for n, classes in self._label_classes.items() if classes]
        if self._products:
            names.append(PRODUCT_LABEL)
        return names

    def load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            from bastion.models import efficientnet_export
            from bastion.runtime.onnx import create_session

            index = {n: i for i, n in enumerate(imagenet_classes())}
            self._label_index = {
                name: np.array([index[c] for c in classes], dtype=np.intp)
                for name, classes in self._label_classes.items()
                if classes
            }
            self._product_index = np.array([index[c] for c in self._products], dtype=np.intp)
            weights = efficientnet_export.weights_path()
            self._version = self._precise(file_version(weights))
            try:
                model: Path | bytes = efficientnet_export.export(self.context.cache_dir, weights)
            except OSError:  # read-only cache: build in memory instead
                state = efficientnet_export.load_state_dict(weights)
                model = efficientnet_export.build_model(state).SerializeToString()
            if self.config.precision == "int8":
                model = self._quantized(model)
            self._session = create_session(model, self.context.runtime)

    def _quantized(self, model: Path | bytes) -> Path | bytes:
        """The int8 copy of the exported model (see :mod:`bastion.runtime.quantize`)."""
        cache_dir, recipe = self.context.cache_dir, self.recipe
        if recipe is None:
            return model
        if isinstance(model, Path):
            return quantized_model(model, cache_dir, MODEL_NAME, self._calibration, recipe)
        with tempfile.TemporaryDirectory() as tmp:  # no cache: quantise from a private copy
            source = Path(tmp) / f"{MODEL_NAME}.onnx"
            source.write_bytes(model)
            return quantized_model(source, cache_dir, MODEL_NAME, self._calibration, recipe)

    def _calibration(self) -> list[Preprocessed]:
        # the default input size whatever the settings: one model per recipe
        reference = LabelsAnalyzer(LabelsConfig(), self.context)
        return [reference.preprocess(Frame(rgb=f))[None] for f in calibration_frames()]

    def preprocess(self, frame: Frame) -> Preprocessed:
        size = self.config.input_size
        img = Image.fromarray(np.ascontiguousarray(frame.rgb[..., :3], dtype=np.uint8), "RGB")
        w, h = img.size
        scale = size * self.config.resize_ratio / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32)
        # EfficientNet-Lite's normalisation: (x - 127) / 128 on RGB
        return np.ascontiguousarray(((arr - 127.0) / 128.0).transpose(2, 0, 1))

    def analyze(self, batch: Sequence[Preprocessed]) -> list[AnalyzerOutput]:
        if not batch:
            return []
        self.load()
        from bastion.models.efficientnet_export import EMBEDDING_NAME, INPUT_NAME, LOGITS_NAME

        outputs: list[AnalyzerOutput] = []
        step = self.config.max_batch_size
        for start in range(0, len(batch), step):
            x = np.stack(batch[start : start + step]).astype(np.float32, copy=False)
            logits, embedding = self._session.run([LOGITS_NAME, EMBEDDING_NAME], {INPUT_NAME: x})
            probs = _softmax(np.asarray(logits, dtype=np.float64))
            for p, e in zip(probs, np.asarray(embedding, dtype=np.float32), strict=True):
                outputs.append(self._output(p, e))
        return outputs

    def _output(
        self, probs: npt.NDArray[np.float64], embedding: npt.NDArray[np.float32]
    ) -> AnalyzerOutput:
        names = imagenet_classes()
        cfg = self.config
        tags: list[Tag] = []
        if cfg.top_k:
            for i in np.argsort(-probs, kind="stable")[: cfg.top_k]:
                if 100.0 * probs[i] >= cfg.min_tag_confidence:
                    tags.append(self._tag(names[i], probs[i]))
        for i in self._product_index:
            if 100.0 * probs[i] >= cfg.min_tag_confidence:
                tags.append(self._tag(PRODUCT_TAG_PREFIX + names[i], probs[i]))
        scored = list(self._label_index.items())
        if self._product_index.size:
            scored.append((PRODUCT_LABEL, self._product_index))
        labels: list[Label] = []
        for name, idx in scored:
            score = 100.0 * float(probs[idx].sum())
            if score < cfg.min_label_confidence:
                continue
            top = names[int(idx[int(np.argmax(probs[idx]))])]
            labels.append(
                taxonomy.label(
                    name,
                    score,
                    analyzer=self.name,
                    model=self.model_name,
                    version=self.version,
                    source=top,
                )
            )
        labels.sort(key=lambda lab: -lab.confidence)
        out = AnalyzerOutput(labels=labels, tags=tags)
        if cfg.embedding:
            norm = float(np.linalg.norm(embedding))
            out.embedding = (embedding / norm if norm > 0 else embedding).astype(np.float32)
        return out

    def _tag(self, name: str, prob: float) -> Tag:
        confidence = round(min(100.0, max(0.0, 100.0 * float(prob))), 2)
        return Tag(name=name, confidence=confidence, analyzer=self.name, version=self.version)


def _softmax(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    result: npt.NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return result
