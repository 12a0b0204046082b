"""What can go wrong with a training run as a job, each with a stable code.

Refusals of a request (an unknown run, settings that do not validate, a run already on
its way) are 4xx errors of the API and the command line. The ``*_CODE`` constants are
the codes a run fails with when its work could not finish for a reason of its own
process (a crash, the time limit, workers that kept dying); the work's own errors
(``too_few_samples``, ``head_export_mismatch``, a registry's error, ...) keep theirs.
"""

from __future__ import annotations

from typing import Final

from bastion.errors import BastionError, InputError, NotFound

TIMED_OUT_CODE: Final = "training_timed_out"
"""The run took longer than ``training.max_seconds``; its process was stopped."""
PROCESS_FAILED_CODE: Final = "training_process_failed"
"""The run's child process ended without recording an outcome (killed, out of memory,
a crash)."""
ATTEMPTS_EXHAUSTED_CODE: Final = "attempts_exhausted"
"""The run was claimed ``training.max_attempts`` times and its workers kept dying."""
INTERNAL_CODE: Final = "training_failed"
"""An unexpected error in the run's work (its message says which)."""


class TrainingRunNotFound(NotFound):
    """No training run with this id in the caller's tenant."""

    code = "training_run_not_found"
    status = 404


class TrainingReportNotReady(BastionError):
    """The run has no report: it has not succeeded (yet)."""

    code = "training_report_not_ready"
    status = 409


class InvalidTrainingConfig(InputError):
    """A run's training settings that do not validate (unknown fields, values out of
    range, settings that cannot work together)."""

    code = "invalid_training_config"
    status = 422


class InvalidTrainingFilters(InputError):
    """Sample filters of a run that do not make sense (an empty period, an unknown
    source)."""

    code = "invalid_training_filters"
    status = 422


class TrainingRunActive(BastionError):
    """The tenant already has a queued or running run for this category."""

    code = "training_run_active"
    status = 409


class TooManyTrainingRuns(BastionError):
    """The tenant has ``training.max_active_per_tenant`` runs queued or running."""

    code = "too_many_training_runs"
    status = 429


class TrainingRunLost(BastionError):
    """The run is no longer this worker's: its lease expired and another worker took
    it, or it was finished meanwhile. The work stops without recording anything."""

    code = "training_run_lost"
    status = 409
