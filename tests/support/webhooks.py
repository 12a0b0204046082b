"""A webhook receiver for the tests: a real HTTP server on loopback that records every
request and answers as the test scripts it.

Every request (any method, any path under the server) is recorded as it arrives, before
it is answered, as a :class:`Received`: method, path, headers (lower-case names), body,
the wall-clock time it arrived, and which call of its ``webhook-id`` it is (1 for the
first attempt, 2 for the first retry, ...). So a call the receiver holds past the
sender's timeout is on record too.

The answers are scripted per call: one status or :class:`Answer` for every call, a list
taken by attempt number (the last one repeats), or a function of the :class:`Received`.
An :class:`Answer` can be delayed (a receiver that hangs), carry a body (which the
sender records in its error), or drop the connection without answering. Signatures are
checked when the test asks (:meth:`Received.verify`), with the Standard Webhooks library.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from standardwebhooks import Webhook

from tests.support.loopback import HOST

ERROR_BODY = b"nope, try again"


@dataclass(frozen=True)
class Answer:
    """How the receiver answers one call."""

    status: int = 200
    delay_s: float = 0.0  # held this long before answering
    body: bytes | None = None  # None: b"ok" below 400, ERROR_BODY from 400
    drop: bool = False  # close the connection without an answer (after the delay)

    @property
    def has_body(self) -> bool:
        """1xx, 204 and 304 answers carry no body, not even an empty one."""
        return self.status >= 200 and self.status not in (204, 304)

    def payload(self) -> bytes:
        if not self.has_body:
            return b""
        if self.body is not None:
            return self.body
        return ERROR_BODY if self.status >= 400 else b"ok"


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    method: str
    path: str  # with its query string
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.time() on arrival
    nth: int  # this request's number among those with its webhook-id, from 1

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def json(self) -> Any:
        return json.loads(self.body)

    def verify(self, secret: str) -> dict[str, Any]:
        """The event, once its Standard Webhooks signature checked out against ``secret``."""
        event: dict[str, Any] = Webhook(secret).verify(self.body, self.headers)
        return event


Script = int | Answer | Sequence[int | Answer] | Callable[[Received], int | Answer]


def _answer(script: Script, received: Received) -> Answer:
    if isinstance(script, int | Answer):
        chosen: int | Answer = script
    elif callable(script):
        chosen = script(received)
    else:
        chosen = script[min(received.nth, len(script)) - 1]
    return Answer(chosen) if isinstance(chosen, int) else chosen


class Receiver:
    """A webhook receiver on a free loopback port, serving until :meth:`close`.

    ``answers`` scripts the answers (see the module's docstring); ``path`` is the path
    (and query) of :attr:`url`. Use it as a context manager, or close it.
    """

    def __init__(self, answers: Script = 200, *, path: str = "/hook") -> None:
        self.answers = answers
        self.path = path
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._server = _Server((HOST, 0), _handler(self))
        self.port = int(self._server.server_address[1])
        thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        thread.start()

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return self.base + self.path

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Received:
        with self._lock:
            webhook_id = headers.get("webhook-id", "")
            self._calls[webhook_id] += 1
            received = Received(method, path, headers, body, time.time(), self._calls[webhook_id])
            self.requests.append(received)
        return received

    def received(self, path: str | None = None) -> list[Received]:
        """The requests so far (to ``path`` only, when given), in the order they came."""
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def events(self, path: str | None = None) -> list[Any]:
        """The JSON bodies of :meth:`received`."""
        return [r.json() for r in self.received(path)]

    def per_id(self) -> Counter[str]:
        """How many calls each webhook-id got."""
        with self._lock:
            return Counter(r.webhook_id for r in self.requests)

    def by_job(self) -> dict[str, list[Received]]:
        """The calls of each job's callback (the body's ``data.job_id``), in order."""
        out: dict[str, list[Received]] = {}
        for r in self.received():
            out.setdefault(r.json()["data"]["job_id"], []).append(r)
        return out

    async def wait(
        self,
        path: str | None = None,
        where: Callable[..., bool] | None = None,
        timeout: float = 10,
    ) -> Received:
        """The first request to ``path`` whose JSON body satisfies ``where``, waiting up
        to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            for r in self.received(path):
                if where is None or where(r.json()):
                    return r
            assert time.monotonic() < deadline, (
                f"no matching request to {path or 'any path'} in {timeout} s: {self.requests}"
            )
            await asyncio.sleep(0.05)


class _Server(ThreadingHTTPServer):
    """A thread per connection; a listen backlog that takes a burst of senders at once
    (the default of 5 drops connections, which the senders see as timeouts)."""

    daemon_threads = True
    request_queue_size = 128


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            received = receiver._record(self.command, self.path, headers, body)
            answer = _answer(receiver.answers, received)
            if answer.delay_s:
                time.sleep(answer.delay_s)
            if answer.drop:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            reply = answer.payload()
            with contextlib.suppress(OSError):  # a sender that gave up has gone
                self.send_response(answer.status)
                if answer.has_body:
                    self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        do_POST = do_PUT = do_PATCH = do_DELETE = do_GET = _serve

    return Handler
