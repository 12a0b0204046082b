"""The media of POST /v1/jobs, streamed into the media store instead of memory.

A raw body, the file part of a multipart form and a URL download all go chunk by chunk
into a temporary file of the store (:class:`~bastion.jobs.media_files.MediaWriter`)
while it is hashed and counted: more than ``jobs_max_bytes`` ends the request with
413 ``media_too_large`` at once and the temporary file is removed. Disk writes and the
multipart parser run in worker threads, about 1 MiB at a time, so the event loop
never waits on the disk. Every byte on its way to disk counts against the budget of
uploads being received (``intake.max_spooled_bytes``, 503 beyond).

The leading bytes tell an image from a video or audio, at the door: as soon as the
first 8 KiB are in (or the upload ended), they are sniffed with the same code as the
image, video and audio paths, and anything those paths would refuse (a PDF, a HEIC
photo without a decoder, ...) ends the request with 415 ``unsupported_media_type``
before the rest is read. Once the media is stored its container is opened (headers
only, in a worker thread): audio that cannot be read is refused at once with its media
error (422 ``corrupt_media``, 413 ``media_too_large``, ...), and an MP4 or Matroska/WebM
file with sound but no picture (an M4A with a generic brand, WebM audio) is audio, not
a video.

Form fields other than the file are checked against the names the endpoint knows
(422 ``unknown_field``; 422 ``conflicting_field`` for one given twice). Inline base64 in
a JSON body is held in memory and therefore limited to ``limits.max_bytes``: send
videos as a raw body, a multipart file or a URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from bastion.api.inputs import (
    FIELD_MAX_BYTES,
    MAX_FORM_FIELDS,
    conflicting_field,
    declared_length,
    decode_b64,
    inline_json_bytes,
    is_json,
    parse_ref,
    read_body,
    unknown_field,
)
from bastion.api.limits import Admission, Held
from bastion.config import Settings
from bastion.errors import (
    BastionError,
    EmptyInput,
    InputError,
    MediaTooLarge,
    UnsupportedMediaType,
)
from bastion.jobs.media_files import HEAD_BYTES, MediaStore, MediaWriter, StoredMedia
from bastion.media.audio import AudioLimits, is_audio, probe_audio
from bastion.media.fetch import fetch_url
from bastion.media.image import sniff
from bastion.media.video import is_video

__all__ = [
    "IncomingMedia",
    "media_kind",
    "receive_job_media",
    "replayed_form_fields",
    "stored_kind",
]

_FLUSH_BYTES = 1 << 20
_FORM_OVERHEAD = 256 * 1024


@dataclass
class IncomingMedia:
    """Media received into a temporary file; :meth:`commit` stores it for good."""

    writer: MediaWriter
    kind: str
    content_type: str | None
    source: str
    fields: dict[str, str] = field(default_factory=dict)
    """Options sent with the media: the text fields of a form, ``policy`` of a JSON body."""
    audio_limits: AudioLimits = field(default_factory=AudioLimits)

    async def commit(self) -> StoredMedia:
        """Store the media for good and settle its :attr:`kind` (:func:`stored_kind`);
        audio that cannot be read raises its media error."""
        stored = await anyio.to_thread.run_sync(self.writer.commit)
        self.kind = await anyio.to_thread.run_sync(
            stored_kind, stored.path, self.kind, self.audio_limits
        )
        return stored


def stored_kind(path: Path, kind: str, limits: AudioLimits) -> str:
    """The kind of stored media whose leading bytes said ``kind``, from its container's
    headers: audio is opened (its media error raised when it cannot be); a video file
    with sound and no picture is audio. Blocks: call it in a worker thread."""
    if kind == "audio":
        probe_audio(path, limits)
    elif kind == "video":
        try:
            info = probe_audio(path, limits)
        except BastionError:
            return kind  # the video path tells what is wrong with it
        if info.has_audio and not info.has_video:
            return "audio"
    return kind


class _Chunked:
    """Hands chunks to a blocking consumer in a worker thread, about 1 MiB at a time (a few
    KiB at a time while ``door`` has not sniffed the media yet), each byte counted in
    ``held``."""

    def __init__(
        self, consume: Callable[[bytes], None], max_bytes: int, held: Held, door: _Door | None
    ) -> None:
        self._consume = consume
        self._max = max_bytes
        self._held = held
        self._door = door
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
        self._held.add(len(chunk))
        self._parts.append(chunk)
        self._pending += len(chunk)
        sniffing = self._door is not None and self._door.kind is None
        if self._pending >= (HEAD_BYTES if sniffing else _FLUSH_BYTES):
            await self.flush()

    async def flush(self) -> None:
        if not self._parts:
            return
        data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts, self._pending = [], 0
        await anyio.to_thread.run_sync(self._consume, data)


class _Form:
    """A streaming multipart/form-data parser: the file part goes to ``sink``, the text
    fields named in ``known`` (name → most bytes) are kept; any other is refused."""

    def __init__(
        self, boundary: bytes, sink: Callable[[bytes], None], known: Mapping[str, int]
    ) -> None:
        self.sink = sink
        self.known = known
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
        if self._count > MAX_FORM_FIELDS:
            raise InputError(f"at most {MAX_FORM_FIELDS} form fields", code="invalid_multipart")
        if name not in self.known:
            raise unknown_field(name, "form field", self.known)
        if name in self.fields:
            raise conflicting_field(name)
        self._target = name
        self._buf = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._target == "\0file":
            self.sink(data[start:end])
        elif self._target is not None:
            most = self.known[self._target]
            if len(self._buf) + end - start > most:
                raise InputError(
                    f"form field {self._target!r} is longer than {most} bytes",
                    code="invalid_multipart",
                )
            self._buf += data[start:end]

    def _part_end(self) -> None:
        if self._target is not None and self._target != "\0file":
            self.fields[self._target] = self._buf.decode("utf-8", "replace")
        self._target = None

    def _end(self) -> None:
        self.ended = True


def _too_large(declared: int, limit: int) -> MediaTooLarge:
    return MediaTooLarge(
        f"the body of {declared} bytes is over the limit of {limit} bytes",
        details={"content_length": declared, "max_bytes": limit},
    )


async def _stream_body(
    request: Request,
    consume: Callable[[bytes], None],
    limit: int,
    held: Held,
    door: _Door | None,
) -> None:
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise _too_large(declared, limit)
    chunked = _Chunked(consume, limit, held, door)
    async for chunk in request.stream():
        await chunked.feed(chunk)
    await chunked.flush()


async def _fetch_into(url: str, settings: Settings, door: _Door, held: Held) -> str | None:
    limit = door.writer.max_bytes
    policy = settings.fetch_policy().model_copy(update={"max_bytes": limit})
    chunked = _Chunked(door.write, limit, held, door)
    fetched = await fetch_url(url, policy, sink=chunked.feed)
    await chunked.flush()
    return fetched.content_type


def media_kind(head: bytes) -> str:
    """'video', 'audio' or 'image' from the leading bytes, by the same sniffing as the
    video, audio and image paths: what they would refuse (documents, an image format
    without a decoder such as HEIC, ...) is refused here (415 ``unsupported_media_type``).
    An MP4 or Matroska file is a 'video' here; :func:`stored_kind` tells one without
    picture."""
    if is_video(head):
        return "video"
    if is_audio(head):
        return "audio"
    found = sniff(head)
    if found.kind == "image" and found.pillow_format is not None:
        return "image"
    article = "an" if found.name[:1].lower() in "aeiou" else "a"
    raise UnsupportedMediaType(
        f"unsupported media type: the input is {article} {found.name}; jobs take the image "
        "formats of /v1/moderate, videos and audio (WAV, MP3, AAC/M4A, Ogg, Opus, FLAC, "
        "WebM)",
        details={"detected": found.name},
    )


class _Door:
    """Writes to the media writer and sniffs the leading bytes as soon as they are in."""

    def __init__(self, writer: MediaWriter) -> None:
        self.writer = writer
        self.kind: str | None = None

    def write(self, chunk: bytes) -> None:
        self.writer.write(chunk)
        if self.kind is None and len(self.writer.head) >= HEAD_BYTES:
            self.kind = media_kind(self.writer.head)

    def finish(self) -> str:
        if self.writer.size == 0:
            raise EmptyInput("the media is empty (0 bytes)")
        if self.kind is None:
            self.kind = media_kind(self.writer.head)
        return self.kind


def _boundary(ctype_header: str) -> bytes:
    _, params = parse_options_header(ctype_header)
    boundary = params.get(b"boundary")
    if not boundary:
        raise InputError("multipart body without a boundary", code="invalid_multipart")
    return boundary


def _form_source(form: _Form) -> tuple[dict[str, str], str | None]:
    """The form's fields without ``url``, and the url; a form must carry one of a file
    and a url."""
    if not form.ended:
        raise InputError("the multipart body is truncated", code="invalid_multipart")
    fields = dict(form.fields)
    url = fields.pop("url", None) or None
    if form.has_file and url:
        raise InputError("send a file or a url, not both", code="invalid_request")
    if not form.has_file and not url:
        raise EmptyInput("multipart body has no file part (send it as 'file')")
    return fields, url


async def replayed_form_fields(
    request: Request,
    settings: Settings,
    admission: Admission,
    *,
    form_fields: Mapping[str, int],
) -> dict[str, str] | None:
    """The text fields of a multipart body whose media is not wanted (a request repeated
    under the same Idempotency-Key), checked exactly as on a first request; the file part
    is read and dropped, a url is not fetched. None when the body is not a form."""
    ctype_header = request.headers.get("content-type") or ""
    if ctype_header.split(";")[0].strip().lower() != "multipart/form-data":
        return None
    form = _Form(_boundary(ctype_header), lambda _: None, {**form_fields, "url": FIELD_MAX_BYTES})
    admission.spool.check(declared_length(request))
    async with admission.spool.hold() as spooled:
        limit = settings.jobs_max_bytes + _FORM_OVERHEAD
        await _stream_body(request, form.write, limit, spooled, None)
    fields, _ = _form_source(form)
    return fields


def _decode_into(text: str, door: _Door, max_bytes: int) -> None:
    door.write(decode_b64(text, max_bytes))


async def _receive(
    request: Request,
    settings: Settings,
    door: _Door,
    form_fields: Mapping[str, int],
    admission: Admission,
    spooled: Held,
) -> IncomingMedia:
    limit = door.writer.max_bytes
    ctype_header = request.headers.get("content-type") or ""
    ctype = ctype_header.split(";")[0].strip().lower()
    fields: dict[str, str] = {}
    content_type, source = ctype or None, "body"
    if ctype == "multipart/form-data":
        form = _Form(_boundary(ctype_header), door.write, {**form_fields, "url": FIELD_MAX_BYTES})
        await _stream_body(request, form.write, limit + _FORM_OVERHEAD, spooled, door)
        fields, url = _form_source(form)
        content_type, source = form.content_type, "upload"
        if url is not None:
            content_type, source = await _fetch_into(url, settings, door, spooled), "url"
    elif is_json(ctype):
        inline_max = settings.limits.max_bytes
        async with admission.memory.hold(declared_length(request)) as held:
            body = await read_body(
                request,
                inline_json_bytes(inline_max),
                held,
                what="a JSON body (send large media, videos, as the raw body, a multipart "
                "file or a URL)",
            )
            ref = await parse_ref(body)
            del body
            if ref.policy is not None:
                fields["policy"] = ref.policy
            if ref.url is not None:
                content_type, source = await _fetch_into(ref.url, settings, door, spooled), "url"
            else:
                await anyio.to_thread.run_sync(_decode_into, ref.base64 or "", door, inline_max)
                content_type, source = None, "base64"
    elif ctype in {"application/x-www-form-urlencoded", "text/plain", "text/html"}:
        raise UnsupportedMediaType(
            f"content-type {ctype!r} is not accepted: send the media as a multipart 'file', "
            "as the raw body with its content-type, or JSON with 'url' or 'base64'"
        )
    else:
        await _stream_body(request, door.write, limit, spooled, door)
    return IncomingMedia(
        door.writer, door.finish(), content_type, source, fields, settings.audio.limits
    )


@asynccontextmanager
async def receive_job_media(
    request: Request,
    settings: Settings,
    store: MediaStore,
    admission: Admission,
    *,
    form_fields: Mapping[str, int],
) -> AsyncIterator[IncomingMedia]:
    """The request's media in a temporary file of ``store``, removed unless committed.

    ``form_fields``: the text fields a multipart body may carry besides ``url`` (name →
    most bytes); the yielded media carries them in ``fields``."""
    admission.spool.check(declared_length(request))
    writer = await anyio.to_thread.run_sync(store.writer, settings.jobs_max_bytes)
    try:
        async with admission.spool.hold() as spooled:
            yield await _receive(request, settings, _Door(writer), form_fields, admission, spooled)
    finally:
        if not writer.finished:
            writer.discard()
