"""Request admission and body limits: memory stays bounded and no client holds the server.

Three guards, from the outside in:

* :class:`BodyGuardMiddleware` wraps the ``receive`` of every HTTP request. A body over
  ``max_request_bytes`` (declared or streamed) ends in 413 ``request_too_large``. A body
  that keeps the server waiting longer than ``intake.body_read_timeout_s`` in all, or
  whose average rate falls below ``intake.min_body_rate`` bytes/s once
  ``intake.body_grace_s`` has passed, ends in 408 ``body_too_slow`` and the connection is
  closed: a client trickling a byte a second is gone after the grace period. Only the
  time spent waiting for the client counts. An answer given before the body was read
  (any early refusal) closes the connection, so a client cannot go on sending a body
  nobody reads. A client that goes away mid-request is logged at INFO, without a
  traceback.
* :class:`ByteBudget` bounds the bytes of request bodies held at once: in memory
  (``intake.max_buffered_bytes``) and, for job uploads, on disk
  (``intake.max_spooled_bytes``). A request reserves bytes as they arrive, so a slow
  sender holds only what it has sent; a body that does not fit gets 503 ``overloaded``,
  before it is read when its declared length already does not fit.
* :class:`Admission` bounds the requests analysed or waiting for analysis
  (``max_queued``, 503 ``overloaded`` beyond). The endpoints that take an image in
  memory look at it before reading the body (a full server refuses at once) and take
  the slot once the body is in, so a slow sender never holds one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.api.errors import error_response, is_client_disconnect
from bastion.config import IntakeConfig, Settings
from bastion.errors import BastionError, Overloaded

log = logging.getLogger(__name__)


@dataclass
class ByteBudget:
    """At most ``limit`` bytes of request bodies held at once (one request alone may
    always proceed, however large, within its own size limit)."""

    limit: int
    what: str = "request bodies in memory"
    used: int = field(default=0)

    def check(self, declared: int | None) -> None:
        """Refuse now (503) a body whose declared length does not fit."""
        if declared and self.used and self.used + declared > self.limit:
            raise self._full()

    @asynccontextmanager
    async def hold(self, declared: int | None = None) -> AsyncIterator[Held]:
        """Bytes added to the yielded :class:`Held` count until the block ends."""
        self.check(declared)
        held = Held(self)
        try:
            yield held
        finally:
            held.release()

    def _full(self) -> Overloaded:
        return Overloaded(
            f"too many bytes of {self.what} at once; retry shortly",
            details={"limit_bytes": self.limit},
        )


@dataclass
class Held:
    """The bytes one request holds of a :class:`ByteBudget`."""

    budget: ByteBudget
    bytes: int = 0

    def add(self, n: int) -> None:
        budget = self.budget
        others = budget.used - self.bytes
        if others > 0 and budget.used + n > budget.limit:
            raise budget._full()
        budget.used += n
        self.bytes += n

    def release(self) -> None:
        self.budget.used -= self.bytes
        self.bytes = 0


@dataclass
class Admission:
    """At most ``limit`` requests analysed or waiting for analysis (more get 503), and
    the byte budgets of bodies being received (``memory``) or spooled to disk
    (``spool``)."""

    limit: int
    memory: ByteBudget = field(default_factory=lambda: ByteBudget(1 << 30))
    spool: ByteBudget = field(
        default_factory=lambda: ByteBudget(8 << 30, "job uploads being received")
    )
    active: int = field(default=0)

    @classmethod
    def from_settings(cls, settings: Settings) -> Admission:
        intake = settings.intake
        return cls(
            settings.max_queued,
            memory=ByteBudget(intake.max_buffered_bytes),
            spool=ByteBudget(intake.max_spooled_bytes, "job uploads being received"),
        )

    def check(self) -> None:
        """Refuse now (503) when every slot is taken: used before a body is read."""
        if self.active >= self.limit:
            raise Overloaded("too many requests in progress; retry shortly")

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        self.check()
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


class BodyTooSlow(BastionError):
    """The client sent its body too slowly (408); the connection is closed."""

    code = "body_too_slow"
    status = 408


class BodyTooLarge(BastionError):
    code = "request_too_large"
    status = 413


class BodyGuardMiddleware:
    """Size limit, read deadline and minimum rate for every request body; quiet
    handling of clients that go away (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        intake: IntakeConfig | None = None,
        shape: Callable[[Scope, BastionError], Response | None] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.intake = intake or IntakeConfig()
        self.shape = shape
        """Answers an error in another shape for some routes (None: the usual one)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _send_error(scope, receive, send, self._too_large(), self.shape)
                return
        await _BodyGuard(self, scope, receive, send).run()

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(
            f"request body is over the limit of {self.max_bytes} bytes",
            details={"max_bytes": self.max_bytes},
        )


class _BodyGuard:
    """The state of one request under :class:`BodyGuardMiddleware`."""

    def __init__(self, mw: BodyGuardMiddleware, scope: Scope, receive: Receive, send: Send):
        self.mw = mw
        self.scope = scope
        self._receive = receive
        self._send = send
        self.seen = 0
        self.waited = 0.0
        self.complete = False
        self.disconnected = False
        self.failure: BastionError | None = None
        self.started = False
        self.replaced = False
        self.has_body = False
        for name, value in scope.get("headers", []):
            if name == b"transfer-encoding" or (
                name == b"content-length" and value.strip() not in (b"", b"0")
            ):
                self.has_body = True

    async def run(self) -> None:
        try:
            await self.mw.app(self.scope, self.receive, self.send)
        except Exception as exc:
            if self.failure is not None:
                if not self.started:
                    await self._replace(self.failure)
                return
            if self.disconnected or is_client_disconnect(exc):
                log.info(
                    "client went away during %s %s (%s)",
                    self.scope.get("method"),
                    self.scope.get("path"),
                    type(exc).__name__,
                )
                if not self.started:  # nobody reads it; outer middleware wants a response
                    await self._replace(
                        BastionError("the client went away", code="client_disconnected", status=400)
                    )
                return
            raise

    async def receive(self) -> Message:
        if self.failure is not None:
            raise self.failure
        if self.complete:  # after the body only a disconnect is awaited: no deadline
            message = await self._receive()
        else:
            message = await self._timed_receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.mw.max_bytes:
                self.failure = self.mw._too_large()
                raise self.failure
            if not message.get("more_body", False):
                self.complete = True
        elif message["type"] == "http.disconnect":
            self.disconnected = True
        return message

    async def _timed_receive(self) -> Message:
        intake = self.mw.intake
        allowed = intake.body_read_timeout_s - self.waited
        if intake.min_body_rate > 0:
            allowed = min(
                allowed, intake.body_grace_s + self.seen / intake.min_body_rate - self.waited
            )
        if allowed <= 0:
            raise self._too_slow()
        started = time.monotonic()
        message: Message | None = None
        with anyio.move_on_after(allowed):
            message = await self._receive()
        self.waited += time.monotonic() - started
        if message is None:
            raise self._too_slow()
        return message

    def _too_slow(self) -> BodyTooSlow:
        intake = self.mw.intake
        self.failure = BodyTooSlow(
            f"the request body arrived too slowly: {self.seen} bytes in {self.waited:.1f} s "
            f"(at least {intake.min_body_rate} bytes/s after {intake.body_grace_s:g} s, "
            f"all of it within {intake.body_read_timeout_s:g} s)",
            details={
                "received_bytes": self.seen,
                "waited_s": round(self.waited, 1),
                "min_body_rate": intake.min_body_rate,
                "body_grace_s": intake.body_grace_s,
                "body_read_timeout_s": intake.body_read_timeout_s,
            },
        )
        log.info(
            "%s %s: body too slow (%d bytes in %.1f s)",
            self.scope.get("method"),
            self.scope.get("path"),
            self.seen,
            self.waited,
        )
        return self.failure

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if self.failure is not None:
                # the app's own answer (perhaps a generic 400) is replaced by the failure,
                # with "connection: close" since the rest of the body is never read
                await self._replace(self.failure)
                return
            self.started = True
            if self.has_body and not self.complete:
                # answered before the body was read (a refusal): close rather than let
                # the client go on sending a body nobody reads
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"connection" for k, _ in headers):
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
        elif self.replaced:
            return
        await self._send(message)

    async def _replace(self, error: BastionError) -> None:
        self.started = self.replaced = True
        await _send_error(self.scope, self._receive, self._send, error, self.mw.shape)


async def _send_error(
    scope: Scope,
    receive: Receive,
    send: Send,
    error: BastionError,
    shape: Callable[[Scope, BastionError], Response | None] | None = None,
) -> None:
    shaped = shape(scope, error) if shape is not None else None
    if shaped is not None:
        response = shaped
    else:
        response = error_response(error.status, error.code, error.message, error.details or None)
    if error.status in (408, 413):  # the rest of the body is not read: close
        response.headers["connection"] = "close"
    await response(scope, receive, send)
