"""Verifying Bastion's webhooks on the receiving side (Standard Webhooks).

Only the standard library is used, so this module can be copied into a receiver
as it is. Any Standard Webhooks library verifies the same requests, e.g.
``standardwebhooks.Webhook(secret).verify(body, headers)`` in Python.

Usage::

    event = verify(request_body_bytes, request.headers, "whsec_...")

Pass the raw body exactly as received (not re-serialised JSON). During a secret
rotation, pass both secrets: either one verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "InvalidSecret",
    "MissingHeaders",
    "SignatureMismatch",
    "TimestampOutOfTolerance",
    "WebhookVerificationError",
    "verify",
]

_PREFIX = "whsec_"
_MAX_SIGNATURES = 32


class WebhookVerificationError(Exception):
    """The request is not an authentic, fresh webhook: do not act on it."""


class MissingHeaders(WebhookVerificationError):
    """``webhook-id``, ``webhook-timestamp`` or ``webhook-signature`` is absent."""


class TimestampOutOfTolerance(WebhookVerificationError):
    """``webhook-timestamp`` is malformed, too old or too far in the future."""


class SignatureMismatch(WebhookVerificationError):
    """No signature in ``webhook-signature`` matches any of the given secrets."""


class InvalidSecret(ValueError):
    """A secret that is not ``whsec_`` + base64 (a configuration error, not an attack)."""


def _key(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        key = secret
    else:
        raw = secret.removeprefix(_PREFIX)
        try:
            key = base64.b64decode(raw, validate=True)
        except binascii.Error as exc:
            raise InvalidSecret("the secret is not base64 after 'whsec_'") from exc
    if not key:
        raise InvalidSecret("the secret is empty")
    return key


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    if not value:
        raise MissingHeaders(f"missing header {name!r}")
    return value


def _timestamp(value: str, tolerance_s: float, now: float) -> int:
    if not value.isascii() or not value.isdigit():
        raise TimestampOutOfTolerance(f"webhook-timestamp {value[:32]!r} is not Unix seconds")
    stamp = int(value)
    if stamp < now - tolerance_s:
        raise TimestampOutOfTolerance(
            f"webhook-timestamp is {now - stamp:.0f} s old (tolerance {tolerance_s:g} s)"
        )
    if stamp > now + tolerance_s:
        raise TimestampOutOfTolerance(
            f"webhook-timestamp is {stamp - now:.0f} s in the future (tolerance {tolerance_s:g} s)"
        )
    return stamp


def _signatures(value: str) -> list[bytes]:
    found: list[bytes] = []
    for part in value.split()[:_MAX_SIGNATURES]:
        version, _, encoded = part.partition(",")
        if version != "v1":
            continue  # other schemes (v1a asymmetric, future ones) are not ours to check
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except binascii.Error:
            continue
    return found


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str | bytes | Sequence[str | bytes],
    tolerance_s: float = 300,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a webhook request and return its JSON body.

    ``headers`` is any mapping (names are matched case-insensitively); ``secret`` is
    one ``whsec_`` secret, raw key bytes, or a list of them (rotation). The
    timestamp must be within ``tolerance_s`` seconds of ``now`` (default: the
    current time). Signatures are compared in constant time.

    Raises :class:`MissingHeaders`, :class:`TimestampOutOfTolerance`,
    :class:`SignatureMismatch` (all :class:`WebhookVerificationError`), or
    :class:`InvalidSecret` for a malformed secret.
    """
    body = payload.encode() if isinstance(payload, str) else bytes(payload)
    candidates = [secret] if isinstance(secret, str | bytes) else list(secret)
    if not candidates:
        raise InvalidSecret("no secret given")
    keys = [_key(s) for s in candidates]
    webhook_id = _header(headers, "webhook-id")
    stamp_text = _header(headers, "webhook-timestamp")
    signature_text = _header(headers, "webhook-signature")
    stamp = _timestamp(stamp_text, tolerance_s, time.time() if now is None else now)
    content = f"{webhook_id}.{stamp_text}.".encode() + body
    expected = [hmac.new(key, content, hashlib.sha256).digest() for key in keys]
    matched = False
    for given in _signatures(signature_text):
        for digest in expected:
            matched |= hmac.compare_digest(digest, given)
    if not matched:
        raise SignatureMismatch(f"no valid signature for webhook {webhook_id!r} at {stamp}")
    try:
        event = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookVerificationError("the signed body is not JSON") from exc
    if not isinstance(event, dict):
        raise WebhookVerificationError("the signed body is not a JSON object")
    return event
