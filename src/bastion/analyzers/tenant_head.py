"""Tenant heads: each tenant's own small models over the embeddings Bastion computes.

A tenant trains a head per category on its labelled samples (a logistic regression
over ``labels``' 1280-d EfficientNet-Lite0 embedding, exported to ONNX) and registers
it in the model registry (:mod:`bastion.registry`). This analyzer scores the embedding
of every frame of a tenant's request with that tenant's ``champion`` heads, one per
category, and emits the category with confidence = probability × 100 where the
probability reaches the head's threshold. Each label names the registered model
(``bastion.<tenant>.<category-slug>``) and its version (``v<n>``). Another tenant's
heads are never run; a tenant without a champion gets no labels and no error.

A tenant's ``challenger`` head, when there is one, is scored on the same embeddings in
shadow: it emits nothing and only its disagreements with the champion are counted
(:mod:`bastion.registry.shadow`).

The heads themselves are kept in :attr:`TenantHeadAnalyzer.heads`, which the process's
:class:`~bastion.registry.watcher.HeadWatcher` fills and swaps when an alias moves; a
batch takes the heads once, so a swap never changes a batch in flight. Only
onnxruntime runs here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator

from bastion.analyzers.base import AnalyzerConfig, EmbeddingAnalyzer, RuntimeContext
from bastion.media.types import EmbeddingInput
from bastion.policy import taxonomy
from bastion.registry.config import category_slug
from bastion.registry.heads import HeadSet, LoadedHead
from bastion.registry.shadow import ShadowCounts, ShadowKey
from bastion.results import AnalyzerOutput, Label

log = logging.getLogger(__name__)

MODEL_NAME = "tenant-heads"


class TenantHeadConfig(AnalyzerConfig):
    type: Literal["tenant_head"] = "tenant_head"
    categories: list[str] | None = Field(
        None,
        description="Taxonomy labels this analyzer runs tenants' heads for; None: every "
        "category a tenant has a champion head for.",
    )
    shadow: bool = Field(
        True,
        description="Score each tenant's `challenger` head in shadow (acting on nothing) and "
        "count its disagreements with the champion.",
    )

    @field_validator("categories")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        unknown = [name for name in value or [] if name not in taxonomy.CATEGORIES]
        if unknown:
            raise ValueError(f"unknown taxonomy labels {unknown}")
        return value


@dataclass(frozen=True, slots=True)
class HeadInput:
    """One embedding of a tenant's frame, as the heads get it."""

    tenant: str | None
    model: str
    version: str
    vector: npt.NDArray[np.float32]


class TenantHeadAnalyzer(EmbeddingAnalyzer[TenantHeadConfig, HeadInput]):
    """Each tenant's own heads (registered in the model registry) over image embeddings."""

    kind: ClassVar[str] = "tenant_head"
    input: ClassVar[str] = (
        "the embedding of a tenant's frame (labels' L2-normalised 1280-d EfficientNet-Lite0 "
        "features), scored by that tenant's champion heads"
    )
    config_model: ClassVar[type[AnalyzerConfig]] = TenantHeadConfig
    emits: ClassVar[tuple[str, ...]] = ("labels",)

    def __init__(self, config: TenantHeadConfig, context: RuntimeContext) -> None:
        super().__init__(config, context)
        self.heads = HeadSet()
        """The heads served, filled and swapped by the process's watcher."""
        self.shadow = ShadowCounts()
        """Challengers' disagreements with champions."""
        self._only = frozenset(config.categories) if config.categories is not None else None

    @property
    def model_name(self) -> str:
        return MODEL_NAME

    @property
    def version(self) -> str:
        return "per-tenant"

    def version_for(self, tenant: str | None) -> str:
        """The champions serving ``tenant``: ``<category-slug>:v<n>`` each, or ``none``."""
        champions = self.heads.champions(tenant)
        parts = sorted(
            f"{category_slug(c)}:{ref.label_version}"
            for c, ref in champions.items()
            if self._serves(c)
        )
        return ",".join(parts) or "none"

    def categories(self) -> list[str]:
        if self.config.categories is not None:
            return list(self.config.categories)
        return sorted({c for cats in self.heads.current.values() for c in cats})

    def preprocess(self, embedding: EmbeddingInput) -> HeadInput:
        vector = np.ascontiguousarray(np.asarray(embedding.vector, dtype=np.float32).ravel())
        return HeadInput(embedding.tenant, embedding.model, embedding.version, vector)

    def analyze(self, batch: Sequence[HeadInput]) -> list[AnalyzerOutput]:
        outputs = [AnalyzerOutput() for _ in batch]
        snapshot = self.heads.current  # taken once: a swap does not change this batch
        rows_of: dict[str, list[int]] = {}
        for i, item in enumerate(batch):
            if item.tenant is not None and item.tenant in snapshot:
                rows_of.setdefault(item.tenant, []).append(i)
        for tenant, rows in rows_of.items():
            for category, pair in snapshot[tenant].items():
                if not self._serves(category):
                    continue
                flagged: dict[int, bool] = {}
                if pair.champion is not None:
                    for i, p in _score(pair.champion, batch, rows).items():
                        hit = p >= pair.champion.threshold
                        flagged[i] = hit
                        if hit:
                            outputs[i].labels.append(self._label(pair.champion, p))
                if pair.challenger is not None and self.config.shadow:
                    self._shadow(
                        tenant, category, pair.champion, pair.challenger, batch, rows, flagged
                    )
        for out in outputs:
            out.labels.sort(key=lambda lab: -lab.confidence)
        return outputs

    def _serves(self, category: str) -> bool:
        return self._only is None or category in self._only

    def _label(self, head: LoadedHead, probability: float) -> Label:
        return taxonomy.label(
            head.ref.category,
            100.0 * probability,
            analyzer=self.name,
            model=head.ref.name,
            version=head.ref.label_version,
        )

    def _shadow(
        self,
        tenant: str,
        category: str,
        champion: LoadedHead | None,
        challenger: LoadedHead,
        batch: Sequence[HeadInput],
        rows: list[int],
        champion_flagged: dict[int, bool],
    ) -> None:
        """Score ``challenger`` on the rows and count where it and the champion differ;
        whatever happens here never changes a result."""
        try:
            scores = _score(challenger, batch, rows)
        except Exception:
            log.exception("challenger %s failed; not counted", challenger.ref.name)
            return
        challenger_only = champion_only = 0
        for i, p in scores.items():
            mine = p >= challenger.threshold
            theirs = champion_flagged.get(i, False)
            challenger_only += mine and not theirs
            champion_only += theirs and not mine
        key = ShadowKey(
            tenant,
            category,
            champion.ref.label_version if champion is not None else "none",
            challenger.ref.label_version,
        )
        self.shadow.add(key, len(scores), challenger_only, champion_only)


def _score(head: LoadedHead, batch: Sequence[HeadInput], rows: list[int]) -> dict[int, float]:
    """``head``'s probability for each of ``rows`` whose vector it takes (made by the model
    it was trained on, of its size)."""
    usable = [
        i
        for i in rows
        if batch[i].vector.shape[0] == head.dim and head.accepts(batch[i].model, batch[i].version)
    ]
    if not usable:
        return {}
    probs = head.predict(np.stack([batch[i].vector for i in usable]))
    return {i: float(p) for i, p in zip(usable, probs, strict=True)}
