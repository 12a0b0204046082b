"""``POST /``: the AWS JSON 1.1 protocol as botocore speaks it to Rekognition.

A request names its operation in ``X-Amz-Target: RekognitionService.<Operation>``,
sends ``Content-Type: application/x-amz-json-1.1`` and a JSON object, and is signed
with Signature Version 4 (:mod:`bastion.aws.sigv4`). In order:

1. the target names a known operation — else ``UnknownOperationException`` (400); the
   content type is AWS JSON 1.1 — else ``UnsupportedMediaTypeException`` (415);
2. the body is read, bounded by :func:`max_body_bytes` (the base64 of
   ``aws.max_image_bytes`` and room for the other fields; ``ImageTooLargeException``
   beyond, before reading when the length is declared) and counted in the memory
   budget of request bodies (``ThrottlingException`` when it is full);
3. the signature is verified over the exact request, off the event loop; the key needs
   the ``moderate`` scope — else ``AccessDeniedException``;
4. the body is parsed with Bastion's bounded JSON parser (in a worker thread when
   large); anything but a JSON object is a ``SerializationException``;
5. the operation runs; its :class:`~bastion.aws.call.AwsError` is answered as is, and
   Bastion's own errors are mapped by :data:`ERROR_MAP` (unexpected ones are a 500
   ``InternalServerError`` that shows nothing of the failure).

Every answer, success or error, has an ``x-amzn-RequestId`` (a UUID4) and the content
type ``application/x-amz-json-1.1``; errors are ``{"__type": code, "Message": message}``.
The route is not in the OpenAPI document: botocore's service model describes it.

Errors raised before the route runs (a body over ``max_request_bytes`` or too slow,
see :class:`bastion.api.limits.BodyGuardMiddleware`) are answered in the same shape by
:func:`guard_error`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Scope

from bastion.api.inputs import declared_length, read_body
from bastion.api.services import Services
from bastion.aws import images, sigv4, video
from bastion.aws.call import AwsCall, AwsError, Handler
from bastion.config import Settings
from bastion.errors import (
    AnalyzerUnavailable,
    AuthError,
    BastionError,
    CorruptMedia,
    EmptyInput,
    Forbidden,
    ImageTooLarge,
    MediaError,
    MediaTooLarge,
    ModelUnavailable,
    NotFound,
    Overloaded,
    UnsupportedMediaType,
)
from bastion.parsing.json_doc import parse_json_async

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "RekognitionService."
REQUEST_ID_HEADER = "x-amzn-RequestId"
BODY_OVERHEAD = 64 * 1024
"""Bytes allowed in a body beyond the base64 of the largest image (other fields)."""
REQUIRED_SCOPE = "moderate"
DRAIN_FACTOR = 4
"""A body over the limit but at most this many times it is read to its end before the
answer (see :func:`_drain`); a larger one is answered at once and its connection closed."""

THROTTLED = "Bastion is temporarily unable to process the request. Try your call again."
INTERNAL = "Bastion experienced an internal error. Try your call again."

ERROR_MAP: tuple[tuple[type[BastionError], str, int], ...] = (
    (EmptyInput, "InvalidParameterException", 400),
    (UnsupportedMediaType, "InvalidImageFormatException", 400),
    (CorruptMedia, "InvalidImageFormatException", 400),
    (ImageTooLarge, "ImageTooLargeException", 400),
    (MediaTooLarge, "ImageTooLargeException", 400),
    (MediaError, "InvalidImageFormatException", 400),
    (Overloaded, "ThrottlingException", 500),
    (AnalyzerUnavailable, "ThrottlingException", 500),
    (ModelUnavailable, "ThrottlingException", 500),
    (AuthError, "AccessDeniedException", 400),
    (Forbidden, "AccessDeniedException", 400),
    (NotFound, "ResourceNotFoundException", 400),
)
"""Bastion's errors raised in an operation, as the Rekognition error (``__type``, HTTP
status) a client of Rekognition expects, first match by class. Beyond the table:
status 429 is ``ProvisionedThroughputExceededException`` (400), another 5xx an
``InternalServerError`` (500), any other client error ``InvalidParameterException``
(400). Rekognition answers ``ThrottlingException`` with 500 (botocore retries it)."""


def max_body_bytes(settings: Settings) -> int:
    """The largest body ``POST /`` reads: the base64 of ``aws.max_image_bytes`` and
    :data:`BODY_OVERHEAD` for the other fields."""
    return 4 * -(-settings.aws.max_image_bytes // 3) + BODY_OVERHEAD


def aws_response(status: int, payload: dict[str, Any], request_id: str) -> Response:
    """A JSON 1.1 answer with its request id."""
    return Response(
        json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode(),
        status_code=status,
        media_type=CONTENT_TYPE,
        headers={REQUEST_ID_HEADER: request_id},
    )


def error_response(error: AwsError, request_id: str) -> Response:
    """``{"__type": code, "Message": message}`` with the error's status."""
    return aws_response(error.status, {"__type": error.code, "Message": error.message}, request_id)


def as_aws_error(exc: BastionError) -> AwsError:
    """A Bastion error as Rekognition reports it (see :data:`ERROR_MAP`)."""
    for kind, code, status in ERROR_MAP:
        if isinstance(exc, kind):
            message = THROTTLED if code == "ThrottlingException" else exc.message
            return AwsError(code, message, status)
    if exc.status == 429:
        return AwsError("ProvisionedThroughputExceededException", exc.message, 400)
    if exc.status >= 500:
        return AwsError("InternalServerError", INTERNAL, 500)
    return AwsError("InvalidParameterException", exc.message, 400)


def guard_error(scope: Scope, error: BastionError) -> Response | None:
    """The AWS-shaped answer to an error of the body guard on ``POST /`` (None for any
    other route): too large is ``ImageTooLargeException``, too slow a 408
    ``RequestTimeoutException``."""
    if scope.get("method") != "POST" or scope.get("path") != "/":
        return None
    if error.status == 413:
        aws = AwsError("ImageTooLargeException", error.message, 400)
    elif error.status == 408:
        aws = AwsError("RequestTimeoutException", error.message, 408)
    else:
        aws = as_aws_error(error)
    return error_response(aws, str(uuid.uuid4()))


def operations() -> dict[str, Handler]:
    """The operations the endpoint serves: those of :mod:`bastion.aws.images` and
    :mod:`bastion.aws.video`."""
    clash = set(images.OPERATIONS) & set(video.OPERATIONS)
    if clash:
        raise RuntimeError(f"operations defined twice: {sorted(clash)}")
    return {**images.OPERATIONS, **video.OPERATIONS}


def _operation(request: Request, table: Mapping[str, Handler]) -> tuple[str, Handler]:
    targets = request.headers.getlist("x-amz-target")
    target = targets[0] if len(targets) == 1 else ""
    name = target.removeprefix(TARGET_PREFIX) if target.startswith(TARGET_PREFIX) else ""
    handler = table.get(name)
    if handler is None:
        shown = target[:120] or "(none)"
        raise AwsError(
            "UnknownOperationException",
            f"Unknown operation {shown!r}: X-Amz-Target must be "
            f"'{TARGET_PREFIX}<Operation>', one of {sorted(table)}.",
            400,
        )
    types = request.headers.getlist("content-type")
    media = types[0].split(";", 1)[0].strip().lower() if len(types) == 1 else ""
    if media != CONTENT_TYPE:
        raise AwsError(
            "UnsupportedMediaTypeException",
            f"Content-Type must be {CONTENT_TYPE} (AWS JSON 1.1); "
            f"got {(types[0][:80] if types else '(none)')!r}.",
            415,
        )
    return name, handler


async def _drain(request: Request, limit: int, declared: int | None) -> None:
    """Read and drop the rest of a body over ``limit`` when it is not much larger
    (:data:`DRAIN_FACTOR` times), so that the client, still sending, reads the answer
    (an answer given mid-upload closes the connection, and botocore sees a reset where
    it should see ``ImageTooLargeException``)."""
    bound = DRAIN_FACTOR * limit
    if declared is not None and declared > bound:
        return
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > bound:
                return
    except (ClientDisconnect, RuntimeError):  # gone, or the body was read to its end
        return


def _signed(request: Request, body: bytes) -> sigv4.SignedRequest:
    scope = request.scope
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope.get("path", "/")
    return sigv4.SignedRequest(
        method=request.method,
        path=path,
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=[(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]],
        body=body,
    )


async def _answer(request: Request, table: Mapping[str, Handler], request_id: str) -> Response:
    svc: Services = request.app.state.services
    if svc.aws_keys is None:
        raise AwsError("InternalServerError", INTERNAL, 500)
    settings = svc.settings
    name, handler = _operation(request, table)
    limit = max_body_bytes(settings)
    declared = declared_length(request)
    too_large = AwsError(
        "ImageTooLargeException",
        f"The request is over the limit of {limit} bytes "
        f"(an image of at most {settings.aws.max_image_bytes} bytes).",
        400,
    )
    if declared is not None and declared > limit:
        await _drain(request, limit, declared)
        raise too_large
    async with svc.admission.memory.hold(declared) as held:
        try:
            body = await read_body(request, limit, held, what="the request")
        except MediaTooLarge:
            await _drain(request, limit, declared)
            raise too_large from None
        keys = svc.aws_keys
        identity = await run_in_threadpool(
            sigv4.verify,
            _signed(request, body),
            region=settings.aws.region,
            max_skew_s=settings.aws.max_clock_skew_s,
            lookup=keys.lookup,
        )
        principal = identity.principal
        request.state.principal = principal
        if not principal.has(REQUIRED_SCOPE):
            raise AwsError(
                "AccessDeniedException",
                f"You are not authorized to perform this action: the access key lacks "
                f"the '{REQUIRED_SCOPE}' scope.",
                400,
            )
        await run_in_threadpool(keys.used, principal.key_id)
        try:
            params = await parse_json_async(body)
        except BastionError as exc:
            raise AwsError("SerializationException", exc.message, 400) from None
        if not isinstance(params, dict):
            raise AwsError("SerializationException", "The request body must be a JSON object.", 400)
        call = AwsCall(principal=principal, svc=svc, request_id=request_id)
        log.debug("aws %s for %s (%s)", name, principal.tenant_id, request_id)
        result = await handler(call, params)
    response = aws_response(200, result, request_id)
    for header, value in call.headers.items():
        response.headers[header] = value
    return response


def build_router(table: Mapping[str, Handler]) -> APIRouter:
    """The ``POST /`` route serving the operations of ``table`` (name → handler)."""
    router = APIRouter()

    @router.post("/", include_in_schema=False)
    async def rekognition(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            return await _answer(request, table, request_id)
        except AwsError as exc:
            return error_response(exc, request_id)
        except ClientDisconnect:
            raise  # nobody to answer: the body guard logs it
        except BastionError as exc:
            if exc.status >= 500:
                log.warning("aws request %s failed: %s (%s)", request_id, exc.code, exc.message)
            return error_response(as_aws_error(exc), request_id)
        except Exception:
            log.exception("aws request %s failed", request_id)
            return error_response(AwsError("InternalServerError", INTERNAL, 500), request_id)

    return router
