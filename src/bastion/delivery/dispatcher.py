"""The dispatcher: claims due deliveries, POSTs them signed, and records what happened.

Each attempt re-checks the URL with the SSRF guard (:func:`bastion.media.fetch.check_url`;
a refused URL is a permanent failure and the delivery is dead with the reason), then
POSTs the JSON body to one of the checked addresses only (the ``Host`` header and the
TLS server name keep the URL's host, so a DNS answer that changes after the check
cannot redirect the request). Redirects are not followed. A 2xx answer delivers; any
other status, a timeout or a connection failure schedules a retry
(:mod:`bastion.delivery.schedule`) until the attempts or the TTL run out.

Several dispatchers (processes or hosts) can share one database: a delivery is
claimed by one of them only, under a lease longer than any attempt, so the same
attempt is never sent twice at once. Their clocks must agree (NTP) to well within
``lease_s - request_timeout_s``.

A dispatcher looks for due deliveries every ``poll_interval_s``, and at once when a
transaction of its own session factory commits a new (or redriven) delivery, whoever
made it: it listens to that factory's session events (:class:`_CommitWatch`), so
producers need not know it exists. Deliveries committed by another process, and
retries falling due, are found by the poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import httpx
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, UOWTransaction, sessionmaker

from bastion.delivery.config import DeliveryConfig
from bastion.delivery.outbox import (
    DUE_MARK,
    ClaimedDelivery,
    Outcome,
    claim_due,
    finish_attempt,
)
from bastion.delivery.schedule import next_attempt_at
from bastion.delivery.signing import get_or_create_secret, signing_secrets, webhook_headers
from bastion.delivery.tables import Delivery
from bastion.errors import UrlFetchFailed, UrlRejected
from bastion.media.fetch import CheckedUrl, FetchPolicy, check_url

__all__ = ["Dispatcher", "DispatcherStats"]

log = logging.getLogger(__name__)
_EXCERPT_CHARS = 200


@dataclass
class DispatcherStats:
    """Counts since the dispatcher was made."""

    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    lost_leases: int = 0


@dataclass(frozen=True, slots=True)
class _Job:
    delivery: ClaimedDelivery
    secrets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Result:
    status_code: int | None
    error: str | None
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


async def _excerpt(response: httpx.Response) -> str:
    async for chunk in response.aiter_bytes(_EXCERPT_CHARS):
        return _printable(chunk.decode("utf-8", "replace"))[:_EXCERPT_CHARS]
    return ""


class _CommitWatch:
    """Calls ``wake`` after a session of ``sessions`` commits a due delivery.

    ``after_flush`` notes new :class:`Delivery` rows in ``session.info`` (a redrive marks
    the session itself: :data:`~bastion.delivery.outbox.DUE_MARK`); ``after_commit``
    wakes; the end of the outermost transaction forgets, whether it committed, rolled
    back or was closed. A savepoint rolled back inside a committed transaction may wake the
    dispatcher for nothing, which costs one look. The listeners run in whatever thread
    commits, so ``wake`` must be thread-safe. :meth:`close` removes them (they are
    bound methods, so each watch's listeners are its own).
    """

    def __init__(self, sessions: sessionmaker[Session], wake: Callable[[], None]) -> None:
        self._sessions = sessions
        self._wake = wake
        self._listening = True
        event.listen(sessions, "after_flush", self._flushed)
        event.listen(sessions, "after_commit", self._committed)
        event.listen(sessions, "after_transaction_end", self._ended)

    def close(self) -> None:
        if self._listening:
            self._listening = False
            event.remove(self._sessions, "after_flush", self._flushed)
            event.remove(self._sessions, "after_commit", self._committed)
            event.remove(self._sessions, "after_transaction_end", self._ended)

    def _flushed(self, session: Session, _: UOWTransaction) -> None:
        if any(isinstance(row, Delivery) for row in session.new):
            session.info[DUE_MARK] = True

    def _committed(self, session: Session) -> None:
        if session.info.get(DUE_MARK):
            self._wake()

    def _ended(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:
            session.info.pop(DUE_MARK, None)


class Dispatcher:
    """Sends due deliveries; :meth:`run_forever` for the service, :meth:`run_once` for tests.

    ``url_policy`` is the SSRF guard applied to callback URLs (private addresses are
    refused unless it allows them). ``transport`` replaces httpx's network transport.
    From its making until :meth:`aclose`, a delivery committed through ``sessions``
    wakes :meth:`run_forever` at once (see the module documentation).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: DeliveryConfig | None = None,
        *,
        url_policy: FetchPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.sessions = sessions
        self.config = config or DeliveryConfig()
        self.url_policy = url_policy or FetchPolicy()
        self.stats = DispatcherStats()
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.config.request_timeout_s),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(
                max_connections=self.config.concurrency, max_keepalive_connections=0
            ),
            headers={"User-Agent": self.config.user_agent, "Accept": "*/*"},
            transport=transport,
        )
        self._watch = _CommitWatch(sessions, self.wake)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening to the session factory and close the HTTP client."""
        self._watch.close()
        await self._client.aclose()

    # ---- loop -------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim what is due now (up to ``concurrency``), send it all, return how many."""
        jobs = await self._claim(self.config.concurrency)
        await asyncio.gather(*(self._deliver(job) for job in jobs))
        return len(jobs)

    def wake(self) -> None:
        """Look for due deliveries now, not at the next poll; safe from any thread.

        Commits through the dispatcher's session factory call it by themselves; call it
        for deliveries made due some other way in this process. A dispatcher that is not
        running has nothing to wake: :meth:`run_forever` looks first thing when it starts.
        """
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has just closed
                loop.call_soon_threadsafe(self._wake.set)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Keep up to ``concurrency`` attempts in flight until ``stop`` is set.

        Attempts in flight when ``stop`` is set are finished (each is bounded by
        ``request_timeout_s``) and recorded before this returns.
        """
        inflight: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        stopping = asyncio.create_task(stop.wait())
        waking = asyncio.create_task(self._wake.wait())
        try:
            while not stop.is_set():
                free = self.config.concurrency - len(inflight)
                for job in await self._claim(free):
                    inflight.add(asyncio.create_task(self._deliver(job)))
                done, _ = await asyncio.wait(
                    {*inflight, stopping, waking},
                    timeout=self.config.poll_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if waking in done:
                    self._wake.clear()
                    waking = asyncio.create_task(self._wake.wait())
                inflight -= done
        finally:
            self._loop = None
            for waiter in (stopping, waking):
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)

    # ---- claiming and recording ---------------------------------------------------

    async def _claim(self, limit: int) -> list[_Job]:
        if limit <= 0:
            return []
        try:
            jobs = await asyncio.to_thread(self._claim_sync, limit)
        except Exception:
            log.exception("claiming webhook deliveries failed")
            return []
        self.stats.claimed += len(jobs)
        return jobs

    def _claim_sync(self, limit: int) -> list[_Job]:
        with self.sessions.begin() as session:
            claimed = claim_due(session, limit, lease_s=self.config.lease_s)
            secrets: dict[str, tuple[str, ...]] = {}
            for tenant_id in {c.tenant_id for c in claimed}:
                get_or_create_secret(session, tenant_id)
                secrets[tenant_id] = tuple(signing_secrets(session, tenant_id))
        return [_Job(c, secrets[c.tenant_id]) for c in claimed]

    def _finish_sync(
        self,
        job: _Job,
        outcome: Outcome,
        result: _Result,
        *,
        attempted_at: datetime,
        latency_ms: int,
        next_at: datetime | None,
        summary: str | None,
    ) -> bool:
        with self.sessions.begin() as session:
            return finish_attempt(
                session,
                job.delivery,
                outcome,
                attempted_at=attempted_at,
                latency_ms=latency_ms,
                status_code=result.status_code,
                error=result.error,
                last_error=summary,
                next_attempt_at=next_at,
            )

    # ---- one attempt ------------------------------------------------------------

    async def _deliver(self, job: _Job) -> None:
        delivery = job.delivery
        attempted_at = datetime.now(UTC)
        started = time.perf_counter()
        timeout = self.config.request_timeout_s
        try:
            async with asyncio.timeout(timeout):
                result = await self._attempt(job)
        except (TimeoutError, httpx.TimeoutException):
            result = _Result(None, f"timed out after {timeout:g} s")
        except httpx.HTTPError as exc:
            result = _Result(None, f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            log.exception("webhook %s: attempt failed unexpectedly", delivery.webhook_id)
            result = _Result(None, f"internal error: {type(exc).__name__}")
        latency_ms = max(0, math.ceil((time.perf_counter() - started) * 1000))
        outcome, next_at, summary = self._decide(delivery, result)
        try:
            held = await asyncio.to_thread(
                self._finish_sync,
                job,
                outcome,
                result,
                attempted_at=attempted_at,
                latency_ms=latency_ms,
                next_at=next_at,
                summary=summary,
            )
        except Exception:
            log.exception("webhook %s: recording the attempt failed", delivery.webhook_id)
            return
        if not held:
            self.stats.lost_leases += 1
            log.warning("webhook %s: lease lost before the attempt ended", delivery.webhook_id)
            return
        if outcome == "delivered":
            self.stats.delivered += 1
        elif outcome == "retry":
            self.stats.retried += 1
        else:
            self.stats.dead += 1
            log.info(
                "webhook %s for tenant %s is dead: %s",
                delivery.webhook_id,
                delivery.tenant_id,
                summary,
            )

    def _decide(
        self, delivery: ClaimedDelivery, result: _Result
    ) -> tuple[Outcome, datetime | None, str | None]:
        if result.ok:
            return "delivered", None, None
        if result.permanent:
            return "dead", None, result.error
        now = datetime.now(UTC)
        when = next_attempt_at(
            self.config,
            started_at=delivery.schedule_started_at,
            attempts=delivery.attempts,
            now=now,
            rng=self._rng,
        )
        if when is not None:
            return "retry", when, result.error
        if delivery.attempts >= self.config.max_attempts:
            why = f"gave up after {delivery.attempts} attempts"
        else:
            why = f"gave up: the next attempt would come after the TTL ({self.config.ttl_s:g} s)"
        return "dead", None, f"{why}; last: {result.error}"

    async def _attempt(self, job: _Job) -> _Result:
        delivery = job.delivery
        try:
            checked = await asyncio.to_thread(check_url, delivery.url, self.url_policy)
        except UrlRejected as exc:
            return _Result(None, f"refused by the URL policy: {exc.message}", permanent=True)
        except UrlFetchFailed as exc:
            return _Result(None, exc.message)
        body = delivery.body()
        headers = webhook_headers(job.secrets, delivery.webhook_id, int(time.time()), body)
        headers["Content-Type"] = "application/json"
        return await self._post(checked, headers, body)

    async def _post(self, checked: CheckedUrl, headers: dict[str, str], body: bytes) -> _Result:
        logical = httpx.URL(checked.url)
        headers["Host"] = logical.netloc.decode("ascii")
        extensions = {"sni_hostname": checked.host} if checked.scheme == "https" else {}
        failure: httpx.ConnectError | None = None
        for address in checked.addresses:
            request = self._client.build_request(
                "POST",
                logical.copy_with(host=address),
                content=body,
                headers=headers,
                extensions=extensions,
            )
            try:
                response = await self._client.send(request, stream=True)
            except httpx.ConnectError as exc:
                failure = exc
                continue
            try:
                status = response.status_code
                if 200 <= status < 300:
                    return _Result(status, None)
                if 300 <= status < 400:
                    return _Result(status, f"HTTP {status}: redirects are not followed")
                excerpt = await _excerpt(response)
                return _Result(status, f"HTTP {status}" + (f": {excerpt}" if excerpt else ""))
            finally:
                await response.aclose()
        return _Result(None, f"could not connect to {checked.host} port {checked.port}: {failure}")
