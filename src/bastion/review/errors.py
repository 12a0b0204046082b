"""What can go wrong with review items, each with a stable code."""

from __future__ import annotations

from bastion.errors import BastionError, InputError, NotFound


class ReviewNotFound(NotFound):
    """No review item with this id in the caller's tenant."""

    code = "review_not_found"
    status = 404


class NothingToReview(NotFound):
    """The queue has no item that can be claimed now (all decided, or claimed under a
    lease that still holds)."""

    code = "nothing_to_review"
    status = 404


class ReviewLeaseLost(BastionError):
    """The caller does not hold the item's lease (never claimed it, someone else holds
    it, or the lease ran out): claim it again."""

    code = "review_lease_lost"
    status = 409


class ReviewAlreadyDecided(BastionError):
    code = "review_already_decided"
    status = 409


class UnknownQueue(InputError):
    """A queue name that is not configured (``review.queues``, the default and the
    escalation queue)."""

    code = "unknown_queue"
    status = 422


class UnknownLabel(InputError):
    """A label correction that names no taxonomy label."""

    code = "unknown_label"
    status = 422


class ConflictingLabels(InputError):
    """The same label both added and removed."""

    code = "conflicting_labels"
    status = 422


class NoteTooLong(InputError):
    code = "note_too_long"
    status = 422


class CorrectionTargetNotFound(NotFound):
    """No job, review item or stored result of the caller's tenant that a correction
    names."""

    code = "correction_target_not_found"
    status = 404


class CorrectionTargetNotReady(BastionError):
    """The job a correction names has no result yet (queued, processing or failed)."""

    code = "correction_target_not_ready"
    status = 409


class InvalidCorrectionTarget(InputError):
    """A correction names no target or more than one (``job_id``, ``review_id``,
    ``media_sha256``), or a ``policy`` without ``media_sha256``."""

    code = "invalid_correction_target"
    status = 422


class InvalidCorrectionLabels(InputError):
    """A correction gives both the full set of ``labels`` and changes to them
    (``add_labels``, ``remove_labels``)."""

    code = "invalid_correction_labels"
    status = 422
