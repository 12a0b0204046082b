"""What a Rekognition operation receives (:class:`AwsCall` and its parameters) and the
error it raises (:class:`AwsError`), which the protocol writes as AWS does:
``{"__type": "<Code>", "Message": "..."}`` with the HTTP status AWS uses, so botocore raises
the typed exception (``client.exceptions.InvalidImageFormatException`` ...)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bastion.api.services import Services
    from bastion.store.repo import Principal


class AwsError(Exception):
    """An error as Rekognition reports it: its ``__type`` code, message and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class AwsCall:
    """One authenticated call: who (the tenant of the access key and its scopes), the
    process's services, and the request id answered in ``x-amzn-RequestId``."""

    principal: Principal
    svc: Services
    request_id: str
    headers: dict[str, str] = field(default_factory=dict)
    """Response headers an operation adds beside its response object (Bastion's own: the
    decision, the policy, the image's sha256); the protocol writes them into the answer."""


Params = Mapping[str, Any]
"""The request's JSON object, parsed and bounded by the protocol, not yet validated."""

Handler = Callable[[AwsCall, Params], Awaitable[dict[str, Any]]]
"""An operation: validates its parameters (botocore checks almost nothing), does the work,
returns the response object in the shapes of botocore's service model."""
