"""Read a media item from a request: multipart upload, raw body, or JSON with url/base64.

Bodies are read chunk by chunk with a size limit (413 before reading when the declared
length is already over it) and, when the caller passes a :class:`~bastion.api.limits.Held`,
every byte counts against the server's budget of bodies in memory (503 when full). JSON
is parsed with bounds on size, items and depth
(:func:`~bastion.parsing.json_doc.parse_json_async`, off the event loop when large). Form
fields and query parameters are checked against the names the endpoint knows: an
unknown one is 422 ``unknown_field``, the same one given twice with different values
422 ``conflicting_field``. Base64 is decoded strictly (400 ``invalid_base64``).

Reading the body (:func:`receive_single`) is apart from fetching a URL or decoding base64
(:func:`resolve`), so an endpoint can read the body before it takes an analysis slot and
do the costly part inside it.
"""

from __future__ import annotations

import binascii
from collections.abc import AsyncGenerator, Collection
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import HTTPConnection

from bastion.api.errors import validated
from bastion.api.limits import Held
from bastion.config import Settings
from bastion.errors import EmptyInput, InputError, MediaTooLarge, UnsupportedMediaType
from bastion.media.fetch import fetch_url
from bastion.parsing.json_doc import parse_json_async

FORM_OVERHEAD = 64 * 1024
"""Bytes allowed on top of the media for multipart framing or a JSON wrapper."""
FIELD_MAX_BYTES = 4096
"""Longest text field of a form."""
MAX_FORM_FIELDS = 16
"""Most text fields of a form (known or not: an unknown one is 422 ``unknown_field``)."""
REF_MAX_DEPTH = 4
REF_MAX_ITEMS = 64
_B64_STEP = 1 << 22  # characters per step: a multiple of 4, a few milliseconds each
_B64_THREAD_ABOVE = 256 * 1024
_URLSAFE = str.maketrans("-_", "+/")
_SINGLE_FORM_FIELDS = frozenset({"policy", "url"})


class MediaRef(BaseModel):
    """A media item by URL or inline base64 (exactly one)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=4096, description="http(s) URL to fetch.")
    base64: str | None = Field(
        None,
        description="The bytes, base64-encoded: standard or URL-safe alphabet, padding "
        "optional, whitespace ignored; data: URLs accepted.",
    )
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


def inline_json_bytes(max_bytes: int) -> int:
    """Largest JSON body carrying one item of ``max_bytes`` as base64."""
    return 4 * (max_bytes // 3 + 1) + FORM_OVERHEAD


# -- base64 -------------------------------------------------------------------------------


def _invalid_b64(reason: str) -> InputError:
    return InputError(f"base64 does not decode: {reason}", code="invalid_base64")


def decode_b64(text: str, max_bytes: int) -> bytes:
    """Strict base64. Whitespace and line breaks are ignored, a ``data:…;base64,`` prefix
    and the URL-safe alphabet are accepted and the padding may be left out; anything
    else is 400 ``invalid_base64``, nothing at all 400 ``empty_input``. Long inputs are
    handled a few MB at a time, so a worker thread running this lets the event loop in."""
    if text[:5].lower() == "data:":
        header, sep, text = text.partition(",")
        if not sep or not header.lower().endswith(";base64"):
            raise _invalid_b64("a data: URL must be base64-encoded ('data:<type>;base64,...')")
    clean = "".join(
        "".join(text[i : i + _B64_STEP].split()) for i in range(0, len(text), _B64_STEP)
    )
    if not clean:
        raise EmptyInput("the base64 is empty")
    if len(clean) * 3 // 4 > max_bytes + 3:
        raise MediaTooLarge(
            f"inline media is over the limit of {max_bytes} bytes",
            details={"max_bytes": max_bytes},
        )
    if "-" in clean or "_" in clean:
        if "+" in clean or "/" in clean:
            raise _invalid_b64("it mixes the standard and the URL-safe alphabets")
        clean = "".join(
            clean[i : i + _B64_STEP].translate(_URLSAFE) for i in range(0, len(clean), _B64_STEP)
        )
    body = clean.rstrip("=")
    if len(clean) - len(body) > 2 or "=" in body:
        raise _invalid_b64("misplaced '=' padding")
    if len(body) % 4 == 1 or not body:
        raise _invalid_b64(f"{len(body)} base64 characters cannot encode whole bytes")
    body += "=" * (-len(body) % 4)
    try:
        return b"".join(
            binascii.a2b_base64(body[i : i + _B64_STEP], strict_mode=True)
            for i in range(0, len(body), _B64_STEP)
        )
    except ValueError as exc:  # binascii.Error, or non-ASCII characters
        raise _invalid_b64(str(exc)[:200]) from None


async def decode_b64_async(text: str, max_bytes: int) -> bytes:
    """:func:`decode_b64`, in a worker thread when the text is long."""
    if len(text) <= _B64_THREAD_ABOVE:
        return decode_b64(text, max_bytes)
    return await anyio.to_thread.run_sync(decode_b64, text, max_bytes)


# -- names: query parameters and form fields ----------------------------------------------


def unknown_field(name: str, where: str, known: Collection[str]) -> InputError:
    return InputError(
        f"unknown {where} {name[:100]!r}; known: {', '.join(sorted(known))}",
        code="unknown_field",
        status=422,
        details={"field": name[:100], "where": where, "known": sorted(known)},
    )


def conflicting_field(name: str) -> InputError:
    return InputError(
        f"{name!r} is given more than once with different values",
        code="conflicting_field",
        status=422,
        details={"field": name},
    )


def single_valued_query(connection: HTTPConnection) -> None:
    """Every query parameter of the API takes one value: one given twice with different
    values is 422 ``conflicting_field`` rather than the last one silently winning (an
    app-wide dependency)."""
    params = connection.query_params
    for name in params:
        if len(set(params.getlist(name))) > 1:
            raise conflicting_field(name)


def check_query(request: Request, known: Collection[str]) -> None:
    """422 for a query parameter the endpoint does not know, or one repeated with
    different values."""
    for name in request.query_params:
        if name not in known:
            raise unknown_field(name, "query parameter", known)
    single_valued_query(request)


def merge_field(name: str, first: Any, second: Any) -> Any:
    """One value from two places (query and body): equal or one missing, else 422."""
    if first is None:
        return second
    if second is not None and second != first:
        raise conflicting_field(name)
    return first


# -- bodies --------------------------------------------------------------------------------


def declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def _over(
    limit: int, what: str, declared: int | None = None, code: str = "media_too_large"
) -> MediaTooLarge:
    size = f" of {declared} bytes" if declared is not None else ""
    details: dict[str, object] = {"max_bytes": limit}
    if declared is not None:
        details["content_length"] = declared
    message = f"{what}{size} is over the limit of {limit} bytes"
    return MediaTooLarge(message, code=code, details=details)


async def body_chunks(
    request: Request,
    max_bytes: int,
    held: Held | None = None,
    *,
    what: str = "the body",
    code: str = "media_too_large",
) -> AsyncGenerator[bytes, None]:
    """The body's chunks; 413 ``code`` past ``max_bytes`` (before reading when
    declared), each byte counted in ``held``."""
    declared = declared_length(request)
    if declared is not None and declared > max_bytes:
        raise _over(max_bytes, what, declared, code)
    size = 0
    async for chunk in request.stream():
        if not chunk:
            continue
        size += len(chunk)
        if size > max_bytes:
            raise _over(max_bytes, what, code=code)
        if held is not None:
            held.add(len(chunk))
        yield chunk


async def read_body(
    request: Request,
    max_bytes: int,
    held: Held | None = None,
    *,
    what: str = "the body",
    code: str = "media_too_large",
) -> bytes:
    """The whole body, at most ``max_bytes`` (see :func:`body_chunks`)."""
    chunks = body_chunks(request, max_bytes, held, what=what, code=code)
    return b"".join([c async for c in chunks])


def is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _json_ref(payload: Any) -> MediaRef:
    return validated(
        MediaRef, payload, 'JSON body must be {"url": ...} or {"base64": ...}', status=400
    )


async def parse_ref(body: bytes) -> MediaRef:
    """A JSON body ``{"url"}`` or ``{"base64"}`` (bounded parsing, then validation)."""
    payload = await parse_json_async(body, max_depth=REF_MAX_DEPTH, max_items=REF_MAX_ITEMS)
    ref = _json_ref(payload)
    if (ref.url is None) == (ref.base64 is None):
        raise InputError("give exactly one of 'url' or 'base64'", code="invalid_request")
    return ref


async def from_ref(ref: MediaRef, settings: Settings) -> MediaInput:
    if (ref.url is None) == (ref.base64 is None):
        raise InputError("give exactly one of 'url' or 'base64'", code="invalid_request")
    if ref.url is not None:
        fetched = await fetch_url(ref.url, settings.fetch_policy())
        return MediaInput(fetched.data, fetched.content_type, ref.policy, "url", ref.id)
    data = await decode_b64_async(ref.base64 or "", settings.limits.max_bytes)
    return MediaInput(data, None, ref.policy, "base64", ref.id)


async def _read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise MediaTooLarge(
            f"upload is over the limit of {max_bytes} bytes", details={"max_bytes": max_bytes}
        )
    return data


def form_text_fields(
    items: list[tuple[str, str | UploadFile]], known: Collection[str]
) -> dict[str, str]:
    """The text fields of a parsed form: unknown names are 422 ``unknown_field``, a name
    given twice 422 ``conflicting_field``."""
    fields: dict[str, str] = {}
    for name, value in items:
        if isinstance(value, UploadFile):
            continue
        if name not in known:
            raise unknown_field(name, "form field", known)
        if name in fields:
            raise conflicting_field(name)
        fields[name] = value
    return fields


async def _receive_form(
    request: Request, settings: Settings, policy_q: str | None, max_bytes: int, held: Held | None
) -> MediaInput | MediaRef:
    parser = MultiPartParser(
        request.headers,
        body_chunks(request, max_bytes + FORM_OVERHEAD, held, what="the upload"),
        max_files=1,
        max_fields=MAX_FORM_FIELDS,
        max_part_size=FIELD_MAX_BYTES,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InputError(f"malformed multipart body: {exc}", code="invalid_multipart") from None
    try:
        items = form.multi_items()
        fields = form_text_fields(items, _SINGLE_FORM_FIELDS)
        policy = merge_field("policy", policy_q, fields.get("policy") or None)
        upload = next((v for _, v in items if isinstance(v, UploadFile)), None)
        if upload is None:
            url = fields.get("url")
            if url:
                return _json_ref({"url": url, "policy": policy})
            raise EmptyInput("multipart body has no file part (send it as 'file')")
        if fields.get("url"):
            raise InputError("send a file or a url, not both", code="invalid_request")
        data = await _read_upload(upload, max_bytes)
        return MediaInput(data, upload.content_type, policy, "upload")
    finally:
        await form.close()


async def receive_single(
    request: Request,
    settings: Settings,
    policy_q: str | None,
    *,
    max_bytes: int | None = None,
    held: Held | None = None,
) -> MediaInput | MediaRef:
    """Read the request's one media item: the bytes, or a reference (URL or base64) that
    :func:`resolve` turns into bytes. ``max_bytes`` defaults to ``limits.max_bytes``."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    max_bytes = max_bytes or settings.limits.max_bytes
    if ctype == "multipart/form-data":
        return await _receive_form(request, settings, policy_q, max_bytes, held)
    if is_json(ctype):
        body = await read_body(
            request, inline_json_bytes(max_bytes), held, what="a JSON body with inline media"
        )
        ref = await parse_ref(body)
        return ref.model_copy(update={"policy": merge_field("policy", policy_q, ref.policy)})
    if ctype in {"application/x-www-form-urlencoded", "text/plain", "text/html"}:
        raise UnsupportedMediaType(
            f"content-type {ctype!r} is not accepted: send the image as a multipart 'file', "
            "as the raw body with an image content-type, or JSON with 'url' or 'base64'"
        )
    data = await read_body(request, max_bytes, held)
    return MediaInput(data, ctype or None, policy_q, "body")


async def resolve(item: MediaInput | MediaRef, settings: Settings) -> MediaInput:
    """The bytes of what :func:`receive_single` read (fetching or decoding if needed)."""
    if isinstance(item, MediaInput):
        return item
    return await from_ref(item, settings)


async def read_single(
    request: Request,
    settings: Settings,
    policy_q: str | None,
    *,
    max_bytes: int | None = None,
    held: Held | None = None,
) -> MediaInput:
    """The one media item of a request (max_bytes: default limits.max_bytes)."""
    item = await receive_single(request, settings, policy_q, max_bytes=max_bytes, held=held)
    return await resolve(item, settings)
