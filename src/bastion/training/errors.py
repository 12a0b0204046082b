"""Why training refuses its input, or a head its bytes: stable codes the worker, API and
CLI report.

A category whose samples cannot give a trustworthy head (too few of a class, one class
missing from the held-out part, embeddings of mixed sizes) is refused before any model
is fitted, with the counts that were found, so a person knows what to label next.
"""

from __future__ import annotations

from bastion.errors import BastionError

__all__ = ["ExportMismatch", "InvalidHead", "TooFewSamples", "TrainingInputError"]


class TrainingInputError(BastionError):
    """The samples given to training are not usable as they are (shapes, labels, values)."""

    code = "invalid_training_input"
    status = 422


class TooFewSamples(TrainingInputError):
    """Fewer samples of a class than the configuration asks for; ``details`` has the counts
    found and needed, per part (``train``, ``held_out``, ``all``)."""

    code = "too_few_samples"
    status = 422


class InvalidHead(BastionError):
    """Bytes that are not a head Bastion exported: not ONNX, or without its metadata,
    input or output."""

    code = "invalid_head"
    status = 422


class ExportMismatch(BastionError):
    """The exported head does not give scikit-learn's probabilities or decisions; it is
    never registered."""

    code = "head_export_mismatch"
    status = 500
