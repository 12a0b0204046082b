"""What can go wrong with samples, each with a stable code."""

from __future__ import annotations

from bastion.errors import BastionError, InputError, NotFound


class SampleNotFound(NotFound):
    """No sample with this id in the caller's tenant."""

    code = "sample_not_found"
    status = 404


class SampleMediaNotFound(NotFound):
    """The sample has no media (a decision whose media was gone when it was collected)."""

    code = "sample_media_not_found"
    status = 404


class TrainingConsentRequired(BastionError):
    """The tenant has not consented to keep media for training (``training_consent``)."""

    code = "training_consent_required"
    status = 403


class EmbeddingUnavailable(BastionError):
    """No analyzer makes the embedding samples keep, or it failed to load or run."""

    code = "embedding_unavailable"
    status = 503


class UnknownCategory(InputError):
    """A category that is not a taxonomy label."""

    code = "unknown_label"
    status = 422


class InvalidEmbeddingModel(InputError):
    """An embedding model not written ``<model>@<version>``."""

    code = "invalid_embedding_model"
    status = 422


class ExportFolderNotEmpty(InputError):
    """Samples are exported into a new or empty folder only."""

    code = "export_folder_not_empty"
    status = 409
