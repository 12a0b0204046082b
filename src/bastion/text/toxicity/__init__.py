"""Toxicity of spoken or written text, offline, in AWS Transcribe's seven categories.

:class:`ToxicityScorer` combines three scorers: the segment's own language's word list
(:mod:`.wordlists`), an English offensive-language model (:mod:`.english_model`) and a
zero-shot scorer over multilingual sentence embeddings (:mod:`.embeddings`);
:func:`toxicity_labels` turns a result into ``Toxic Speech`` taxonomy labels.
"""

from __future__ import annotations

from bastion.text.toxicity.categories import (
    CATEGORIES,
    TAXONOMY_L1,
    TAXONOMY_LABELS,
    ToxicityCategory,
)
from bastion.text.toxicity.config import ToxicityConfig
from bastion.text.toxicity.labels import toxicity_labels
from bastion.text.toxicity.result import Evidence, ToxicityResult
from bastion.text.toxicity.scorer import ToxicityScorer

__all__ = [
    "CATEGORIES",
    "TAXONOMY_L1",
    "TAXONOMY_LABELS",
    "Evidence",
    "ToxicityCategory",
    "ToxicityConfig",
    "ToxicityResult",
    "ToxicityScorer",
    "toxicity_labels",
]
