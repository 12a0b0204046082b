"""Analyzers: one module per model. Importing this package registers the built-in ones."""

from __future__ import annotations

from bastion.analyzers import (  # noqa: F401 - imported to register each analyzer kind
    codes,
    faces,
    hashes,
    labels,
    nsfw,
    nudenet,
    ocr,
    onnx_classifier,
    onnx_detector,
)
from bastion.analyzers.base import Analyzer, AnalyzerConfig, RuntimeContext, registry

__all__ = ["Analyzer", "AnalyzerConfig", "RuntimeContext", "registry"]
