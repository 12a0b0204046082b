"""The media of POST /v1/jobs, streamed into the media store instead of memory.

A raw body, the file part of a multipart form and a URL download all go chunk by chunk
into a temporary file of the store (:class:`~bastion.jobs.mediastore.MediaWriter`)
while it is hashed and counted: more than ``jobs_max_bytes`` ends the request with
413 ``media_too_large`` at once and the temporary file is removed. Disk writes and the
multipart parser run in worker threads, about 1 MiB at a time, so the event loop
never waits on the disk. The leading bytes tell an image from a video; anything
else is refused with 415 before it is stored. Inline base64 in a JSON body is held
in memory and therefore limited to ``limits.max_bytes``: send videos as a raw body,
a multipart file or a URL.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from fastapi import Request
from pydantic import ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from bastion.api.inputs import MediaRef, fetch_policy
from bastion.config import Settings
from bastion.errors import EmptyInput, InputError, MediaTooLarge, UnsupportedMediaType
from bastion.jobs.mediastore import MediaStore, MediaWriter, StoredMedia
from bastion.media.fetch import fetch_url
from bastion.media.image import sniff
from bastion.media.video import is_video

__all__ = ["IncomingMedia", "receive_job_media"]

_FLUSH_BYTES = 1 << 20
_FIELD_MAX_BYTES = 4096
_MAX_FIELDS = 8
_FORM_OVERHEAD = 64 * 1024


@dataclass
class IncomingMedia:
    """Media received into a temporary file; :meth:`commit` stores it for good."""

    writer: MediaWriter
    kind: str
    content_type: str | None
    policy: str | None
    source: str

    async def commit(self) -> StoredMedia:
        return await anyio.to_thread.run_sync(self.writer.commit)


class _Chunked:
    """Hands chunks to a blocking consumer in a worker thread, about 1 MiB at a time."""

    def __init__(self, consume: Callable[[bytes], None], max_bytes: int) -> None:
        self._consume = consume
        self._max = max_bytes
        self._parts: list[bytes] = []
        self._pending = 0
        self.total = 0

    async def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.total += len(chunk)
        if self.total > self._max:
            raise MediaTooLarge(
                f"the media is over the limit of {self._max} bytes",
                details={"max_bytes": self._max},
            )
        self._parts.append(chunk)
        self._pending += len(chunk)
        if self._pending >= _FLUSH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if not self._parts:
            return
        data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts, self._pending = [], 0
        await anyio.to_thread.run_sync(self._consume, data)


class _Form:
    """A streaming multipart/form-data parser: the file part goes to the writer, a few
    small text fields (``policy``, ``url``) are kept."""

    def __init__(self, boundary: bytes, writer: MediaWriter) -> None:
        self.writer = writer
        self.fields: dict[str, str] = {}
        self.has_file = False
        self.content_type: str | None = None
        self.ended = False
        self._headers: dict[str, str] = {}
        self._name = bytearray()
        self._value = bytearray()
        self._target: str | None = None
        self._buf = bytearray()
        self._count = 0
        try:
            self._parser = MultipartParser(
                boundary,
                callbacks={
                    "on_part_begin": self._part_begin,
                    "on_header_field": self._header_field,
                    "on_header_value": self._header_value,
                    "on_header_end": self._header_end,
                    "on_headers_finished": self._headers_finished,
                    "on_part_data": self._part_data,
                    "on_part_end": self._part_end,
                    "on_end": self._end,
                },
            )
        except FormParserError as exc:
            raise InputError(f"bad multipart boundary: {exc}", code="invalid_multipart") from exc

    def write(self, data: bytes) -> None:
        try:
            self._parser.write(data)
        except FormParserError as exc:
            raise InputError(f"malformed multipart body: {exc}", code="invalid_multipart") from exc

    def _part_begin(self) -> None:
        self._headers = {}
        self._target = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._name.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._name.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition"))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in params or name == "file":
            if self.has_file:
                raise InputError("send one file per job", code="too_many_files")
            self.has_file = True
            self._target = "\0file"
            self.content_type = self._headers.get("content-type") or None
            return
        self._count += 1
        if self._count > _MAX_FIELDS:
            raise InputError(f"at most {_MAX_FIELDS} form fields", code="invalid_multipart")
        self._target = name
        self._buf = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._target == "\0file":
            self.writer.write(data[start:end])
        elif self._target is not None:
            if len(self._buf) + end - start > _FIELD_MAX_BYTES:
                raise InputError(
                    f"form field {self._target!r} is longer than {_FIELD_MAX_BYTES} bytes",
                    code="invalid_multipart",
                )
            self._buf += data[start:end]

    def _part_end(self) -> None:
        if self._target is not None and self._target != "\0file":
            self.fields[self._target] = self._buf.decode("utf-8", "replace")
        self._target = None

    def _end(self) -> None:
        self.ended = True


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def _too_large(declared: int, limit: int) -> MediaTooLarge:
    return MediaTooLarge(
        f"the body of {declared} bytes is over the limit of {limit} bytes",
        details={"content_length": declared, "max_bytes": limit},
    )


async def _stream_body(request: Request, consume: Callable[[bytes], None], limit: int) -> None:
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise _too_large(declared, limit)
    chunked = _Chunked(consume, limit)
    async for chunk in request.stream():
        await chunked.feed(chunk)
    await chunked.flush()


async def _fetch_into(url: str, settings: Settings, writer: MediaWriter) -> str | None:
    policy = fetch_policy(settings).model_copy(update={"max_bytes": writer.max_bytes})
    chunked = _Chunked(writer.write, writer.max_bytes)
    fetched = await fetch_url(url, policy, sink=chunked.feed)
    await chunked.flush()
    return fetched.content_type


async def _read_json(request: Request, limit: int) -> MediaRef:
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise MediaTooLarge(
            f"a JSON body may be at most {limit} bytes; send large media (videos) as the raw "
            "body, a multipart file or a URL",
            details={"content_length": declared, "max_bytes": limit},
        )
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise MediaTooLarge(
                f"a JSON body may be at most {limit} bytes; send large media (videos) as the "
                "raw body, a multipart file or a URL",
                details={"max_bytes": limit},
            )
        parts.append(chunk)
    try:
        payload = json.loads(b"".join(parts) or b"null")
    except ValueError as exc:
        raise InputError(f"body is not valid JSON: {exc}", code="invalid_json") from exc
    try:
        ref = MediaRef.model_validate(payload)
    except ValidationError as exc:
        raise InputError(
            'JSON body must be {"url": ...} or {"base64": ...}',
            details={
                "errors": [{"loc": list(e["loc"]), "message": e["msg"]} for e in exc.errors()]
            },
        ) from exc
    if (ref.url is None) == (ref.base64 is None):
        raise InputError("give exactly one of 'url' or 'base64'", code="invalid_request")
    return ref


def _decode_into(text: str, writer: MediaWriter, max_bytes: int) -> None:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    if len(text) * 3 // 4 > max_bytes + 3:
        raise MediaTooLarge(f"inline media is over the limit of {max_bytes} bytes")
    try:
        data = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"base64 does not decode: {exc}", code="invalid_base64") from exc
    writer.write(data)


def media_kind(head: bytes) -> str:
    """'video' or 'image' from the leading bytes; anything else is refused (415)."""
    if is_video(head):
        return "video"
    found = sniff(head)
    if found.kind == "image":
        return "image"
    raise UnsupportedMediaType(
        f"unsupported media type: the input is {found.name}; jobs take images and videos",
        details={"detected": found.name},
    )


async def _receive(
    request: Request, settings: Settings, writer: MediaWriter, policy_q: str | None
) -> IncomingMedia:
    limit = writer.max_bytes
    ctype_header = request.headers.get("content-type") or ""
    ctype = ctype_header.split(";")[0].strip().lower()
    policy, content_type, source = policy_q, ctype or None, "body"
    if ctype == "multipart/form-data":
        _, params = parse_options_header(ctype_header)
        boundary = params.get(b"boundary")
        if not boundary:
            raise InputError("multipart body without a boundary", code="invalid_multipart")
        form = _Form(boundary, writer)
        await _stream_body(request, form.write, limit + _FORM_OVERHEAD)
        if not form.ended:
            raise InputError("the multipart body is truncated", code="invalid_multipart")
        policy = form.fields.get("policy") or policy_q
        content_type, source = form.content_type, "upload"
        if not form.has_file:
            url = form.fields.get("url")
            if not url:
                raise EmptyInput("multipart body has no file part (send it as 'file')")
            content_type, source = await _fetch_into(url, settings, writer), "url"
    elif ctype == "application/json":
        inline_max = settings.limits.max_bytes
        ref = await _read_json(request, 4 * (inline_max // 3 + 1) + _FORM_OVERHEAD)
        policy = ref.policy or policy_q
        if ref.url is not None:
            content_type, source = await _fetch_into(ref.url, settings, writer), "url"
        else:
            await anyio.to_thread.run_sync(_decode_into, ref.base64 or "", writer, inline_max)
            content_type, source = None, "base64"
    elif ctype in {"application/x-www-form-urlencoded", "text/plain", "text/html"}:
        raise UnsupportedMediaType(
            f"content-type {ctype!r} is not accepted: send the media as a multipart 'file', "
            "as the raw body with its content-type, or JSON with 'url' or 'base64'"
        )
    else:
        await _stream_body(request, writer.write, limit)
    if writer.size == 0:
        raise EmptyInput("the media is empty (0 bytes)")
    kind = media_kind(writer.head)
    return IncomingMedia(writer, kind, content_type, policy, source)


@asynccontextmanager
async def receive_job_media(
    request: Request, settings: Settings, store: MediaStore, policy_q: str | None
) -> AsyncIterator[IncomingMedia]:
    """The request's media in a temporary file of ``store``, removed unless committed."""
    writer = await anyio.to_thread.run_sync(store.writer, settings.jobs_max_bytes)
    try:
        yield await _receive(request, settings, writer, policy_q)
    finally:
        if not writer.finished:
            writer.discard()
