"""Analyzers: one module per model. Importing this package registers the built-in ones.

:data:`BUILT_IN` is the registry as it stands once the built-in modules are imported:
the analyzers the settings accept. A class registered later (a test's, say) is found by
:func:`registry`, and so by the engine, but is never part of the settings' schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

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
    speech,
    tenant_head,
    toxicity,
)
from bastion.analyzers.base import (
    Analyzer,
    AnalyzerConfig,
    ContentKind,
    RuntimeContext,
    registry,
)

BUILT_IN: Mapping[str, type[Analyzer[Any, Any]]] = MappingProxyType(registry())

__all__ = ["BUILT_IN", "Analyzer", "AnalyzerConfig", "ContentKind", "RuntimeContext", "registry"]
