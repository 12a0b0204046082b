"""Errors with stable codes that the API and CLI report as they are.

Every error a client can cause is a :class:`BastionError` with a stable ``code``
(snake_case, never renamed once shipped) and the HTTP status it maps to.
"""

from __future__ import annotations

from typing import Any


class BastionError(Exception):
    """Base error: a stable code, a message for people and an HTTP status."""

    code: str = "internal_error"
    status: int = 500

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class MediaError(BastionError):
    """The input is not media Bastion can analyse (empty, corrupt, too big, ...)."""

    code = "invalid_media"
    status = 422


class EmptyInput(MediaError):
    code = "empty_input"
    status = 400


class UnsupportedMediaType(MediaError):
    code = "unsupported_media_type"
    status = 415


class CorruptMedia(MediaError):
    code = "corrupt_media"
    status = 422


class MediaTooLarge(MediaError):
    code = "media_too_large"
    status = 413


class ImageTooLarge(MediaError):
    """Too many pixels or too large a side: decompression bombs land here."""

    code = "image_too_large"
    status = 413


class InputError(BastionError):
    code = "invalid_request"
    status = 400


class UrlRejected(InputError):
    """A URL input that the SSRF guard refused (scheme, private address, ...)."""

    code = "url_rejected"
    status = 400


class UrlFetchFailed(InputError):
    code = "url_fetch_failed"
    status = 422


class PolicyError(BastionError):
    """A policy that does not validate; ``details['errors']`` carry line numbers."""

    code = "invalid_policy"
    status = 422


class AnalyzerUnavailable(BastionError):
    """An analyzer cannot run: its optional package or model file is missing, or it failed."""

    code = "analyzer_unavailable"
    status = 503


class NotFound(BastionError):
    code = "not_found"
    status = 404


class AuthError(BastionError):
    code = "unauthorized"
    status = 401


class Forbidden(BastionError):
    code = "forbidden"
    status = 403


class Overloaded(BastionError):
    code = "overloaded"
    status = 503


class ModelUnavailable(BastionError):
    """A model served elsewhere (a Ray Serve deployment) did not answer: its replicas died
    or are unreachable, or it took longer than the configured timeout. Retry later."""

    code = "model_unavailable"
    status = 503
