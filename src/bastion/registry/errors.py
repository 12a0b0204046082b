"""Errors of the model registry and of the heads it serves."""

from __future__ import annotations

from bastion.errors import BastionError


class RegistryError(BastionError):
    """The MLflow registry could not do what was asked."""

    code = "registry_error"
    status = 502


class HeadNotFound(RegistryError):
    """No such registered head, version or alias."""

    code = "head_not_found"
    status = 404


class HeadRefused(RegistryError):
    """A head that is not served: its file does not match the checksum it was registered
    with, it is not a head (input ``embedding`` [N, D], output ``probability`` [N]), or
    it fails its dry run."""

    code = "head_refused"
    status = 422
