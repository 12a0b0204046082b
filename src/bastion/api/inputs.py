"""Read a media item from a request: multipart upload, raw body, or JSON with url/base64."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from bastion.config import Settings
from bastion.errors import EmptyInput, InputError, MediaTooLarge, UnsupportedMediaType
from bastion.media.fetch import FetchPolicy, fetch_url


class MediaRef(BaseModel):
    """A media item by URL or inline base64 (exactly one)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=4096, description="http(s) URL to fetch.")
    base64: str | None = Field(None, description="The bytes, base64-encoded (data: URLs accepted).")
    policy: str | None = Field(
        None, max_length=64, description="Policy name; tenant default if absent."
    )
    id: str | None = Field(None, max_length=200, description="Your reference, echoed back.")


@dataclass(frozen=True, slots=True)
class MediaInput:
    data: bytes
    content_type: str | None
    policy: str | None
    source: str
    ref: str | None = None


def fetch_policy(settings: Settings) -> FetchPolicy:
    f = settings.fetch
    return FetchPolicy(
        allow_private=f.allow_private,
        allow_hosts=f.allow_hosts,
        max_bytes=settings.limits.max_bytes,
        total_timeout_s=f.timeout_s,
        max_redirects=f.max_redirects,
    )


def decode_b64(text: str, max_bytes: int) -> bytes:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    if len(text) * 3 // 4 > max_bytes + 3:
        raise MediaTooLarge(f"inline media is over the limit of {max_bytes} bytes")
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"base64 does not decode: {exc}", code="invalid_base64") from exc


async def from_ref(ref: MediaRef, settings: Settings) -> MediaInput:
    if (ref.url is None) == (ref.base64 is None):
        raise InputError("give exactly one of 'url' or 'base64'", code="invalid_request")
    if ref.url is not None:
        fetched = await fetch_url(ref.url, fetch_policy(settings))
        return MediaInput(fetched.data, fetched.content_type, ref.policy, "url", ref.id)
    data = decode_b64(ref.base64 or "", settings.limits.max_bytes)
    return MediaInput(data, None, ref.policy, "base64", ref.id)


async def _read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise MediaTooLarge(f"upload is over the limit of {max_bytes} bytes")
    return data


async def _read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise MediaTooLarge(f"body of {declared} bytes is over the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise MediaTooLarge(f"body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_ref(payload: Any) -> MediaRef:
    try:
        return MediaRef.model_validate(payload)
    except ValidationError as exc:
        raise InputError(
            'JSON body must be {"url": ...} or {"base64": ...}',
            details={
                "errors": [{"loc": list(e["loc"]), "message": e["msg"]} for e in exc.errors()]
            },
        ) from exc


async def read_single(
    request: Request, settings: Settings, policy_q: str | None, *, max_bytes: int | None = None
) -> MediaInput:
    """The one media item of a request (max_bytes: default limits.max_bytes)."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    max_bytes = max_bytes or settings.limits.max_bytes
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=8)
        upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
        policy = form.get("policy")
        policy_name = policy if isinstance(policy, str) and policy else policy_q
        if upload is None:
            url = form.get("url")
            if isinstance(url, str) and url:
                return await from_ref(MediaRef(url=url, policy=policy_name), settings)
            raise EmptyInput("multipart body has no file part (send it as 'file')")
        data = await _read_upload(upload, max_bytes)
        return MediaInput(data, upload.content_type, policy_name, "upload")
    if ctype == "application/json":
        body = await _read_body(request, max_bytes * 2)

        try:
            payload = json.loads(body or b"null")
        except ValueError as exc:
            raise InputError(f"body is not valid JSON: {exc}", code="invalid_json") from exc
        ref = _json_ref(payload)
        if ref.policy is None:
            ref = ref.model_copy(update={"policy": policy_q})
        return await from_ref(ref, settings)
    if ctype in {"application/x-www-form-urlencoded", "text/plain", "text/html"}:
        raise UnsupportedMediaType(
            f"content-type {ctype!r} is not accepted: send the image as a multipart 'file', "
            "as the raw body with an image content-type, or JSON with 'url' or 'base64'"
        )
    data = await _read_body(request, max_bytes)
    return MediaInput(data, ctype or None, policy_q, "body")
