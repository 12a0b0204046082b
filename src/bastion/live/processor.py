"""One analysed frame of a stream: moderate it, apply the stream's rules, raise alerts,
queue those of ``review`` rules for review, auto-stop. Shared by stream sessions (frames
read from a source) and by frames pushed through the API, so both behave the same way.

An alert of a ``review`` rule and its review item are written in one transaction (with
the stream's auto-stop, when another rule asks for it), so neither exists without the
other. The item is the alert's: a rule that fires again while its alert is open counts
the alert again and queues nothing new.

A frame takes as few trips to a worker thread as it can: none for its policy when the
caller already has it (stream sessions get it from the process's
:class:`~bastion.live.rules_cache.RulesCache`), and one for the thumbnail of a frame
whose rules fired or that search indexes, together with its alerts' transaction.
Those trips run on the processor's ``executor``, a small pool of the live path's own,
so they do not queue behind other users of the event loop's default pool (search
indexing among them). A stream session saves every analysed frame's thumbnail anyway
(its latest frame): it starts saving it while the frame is analysed and hands it in,
so an alert's trip is its transaction alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import numpy as np

from bastion.live.alerts.service import AlertService
from bastion.live.streams import StreamService
from bastion.live.tables import Stream
from bastion.live.thumbnails import LiveThumbnails
from bastion.media.types import DecodedImage
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.policies import PolicyBook
from bastion.policy.model import Lists, Policy
from bastion.results import ModerationResult
from bastion.review.service import ReviewService
from bastion.rules import ResolvedRules, RuleBook, RuleMatch, evaluate
from bastion.search.feed import SearchFeed

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class FrameOutcome:
    """What one analysed frame led to."""

    result: ModerationResult
    matches: list[RuleMatch]
    alert_ids: list[str] = field(default_factory=list)
    review_ids: list[str] = field(default_factory=list)
    """The review items of the alerts of ``review`` rules (new or queued before)."""
    stopped: bool = False
    thumbnail: str | None = None
    """The name of a kept JPEG of the frame (its alerts' frame, or a frame indexed for
    search); None when none was kept."""


@dataclass(frozen=True, slots=True)
class StreamRef:
    """The facts about a stream a frame needs (a snapshot of its row)."""

    pk: str
    tenant_id: str
    stream_id: str
    channel: str
    tier: str

    @classmethod
    def of(cls, row: Stream) -> StreamRef:
        return cls(row.id, row.tenant_id, row.stream_id, row.channel, row.streamer_tier)


class FrameProcessor:
    def __init__(
        self,
        moderation: Moderation,
        policies: PolicyBook,
        rules: RuleBook,
        streams: StreamService,
        alerts: AlertService,
        thumbnails: LiveThumbnails | None,
        review: ReviewService | None = None,
        *,
        search: SearchFeed | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.moderation = moderation
        self.policies = policies
        self.rules = rules
        self.streams = streams
        self.alerts = alerts
        self.thumbnails = thumbnails
        self.review = review
        """Where alerts of ``review`` rules are queued (None: they are alerts only)."""
        self.search = search
        """Indexes analysed frames for search, in the background, when they changed
        (None: not indexed)."""
        self.executor = executor
        """Where the live path's database work runs (None: the event loop's default
        thread pool). Owned by whoever built the processor, who shuts it down."""

    async def in_executor(self, call: Callable[..., T], *args: object) -> T:
        """``call(*args)`` on :attr:`executor`, awaited."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(call, *args))

    async def resolve(self, stream: StreamRef) -> ResolvedRules | None:
        return await self.in_executor(
            self.rules.resolve, stream.tenant_id, stream.channel, stream.tier
        )

    async def process(
        self,
        stream: StreamRef,
        resolved: ResolvedRules | None,
        decoded: DecodedImage,
        *,
        frame_ms: int | None,
        sampled_at: float | None = None,
        policy: tuple[Policy, Lists] | None = None,
        thumbnail: Awaitable[str] | None = None,
    ) -> FrameOutcome:
        """Moderate ``decoded`` under the rule set's policy and act on the rules that fire.
        ``policy``: that policy and the tenant's lists, when the caller has them (None:
        resolved here). ``thumbnail``: the frame's thumbnail being saved by the caller
        while the frame is analysed (a task: awaited, when an alert or search wants the
        frame kept, instead of saving it then); None: saved here when wanted."""
        if policy is None:
            policy_name = resolved.policy if resolved is not None else None
            policy = await self.in_executor(self.policies.resolve, stream.tenant_id, policy_name)
        applied, lists = policy
        result = await self.moderation.moderate_decoded(
            decoded, applied, tenant=stream.tenant_id, extra_lists=lists, source="live"
        )
        matches = evaluate(resolved, result, lists) if resolved is not None else []
        outcome = FrameOutcome(result=result, matches=matches)
        metrics = self.moderation.metrics
        metrics.live_frames.inc()
        at = sampled_at if sampled_at is not None else time.time()
        search = self.search
        indexed = search is not None and search.wants_frame(
            stream.tenant_id, stream.stream_id, result, at
        )
        try:
            if thumbnail is not None and (matches or indexed):
                await self._await_thumbnail(stream, outcome, thumbnail)
            if matches or (indexed and self.thumbnails is not None and thumbnail is None):
                await self.in_executor(
                    self._keep_and_act,
                    stream,
                    resolved,
                    outcome,
                    decoded.frames[0].rgb,
                    frame_ms,
                    sampled_at,
                )
        finally:
            if indexed:
                self._index(stream, outcome, at)
        if not matches:
            return outcome
        for match in matches:
            metrics.live_alerts.labels(match.action).inc()
        if sampled_at is not None and outcome.alert_ids:
            metrics.alert_lag.observe(max(0.0, time.time() - sampled_at))
        return outcome

    async def _await_thumbnail(
        self, stream: StreamRef, outcome: FrameOutcome, thumbnail: Awaitable[str]
    ) -> None:
        """``outcome.thumbnail`` from the caller's saving; as when it is saved here, a
        failure fails a frame whose rules fired, and is only logged for search."""
        try:
            outcome.thumbnail = await thumbnail
        except Exception:
            if outcome.matches:
                raise
            log.exception("saving a thumbnail of stream %s for search failed", stream.pk)

    def _index(self, stream: StreamRef, outcome: FrameOutcome, at: float) -> None:
        """Index the frame for search in the background (the feed wanted it: it
        changed), with the thumbnail kept of it (the caller's, or :meth:`_keep_and_act`'s):
        the stream's latest-frame logic then keeps it as an alert's frame is kept (a
        search result shows it until the thumbnails' retention) instead of saving
        another."""
        assert self.search is not None
        thumbnail = None
        if outcome.thumbnail is not None:
            thumbnail = f"/v1/streams/{stream.stream_id}/thumbnails/{outcome.thumbnail}"
        self.search.submit(
            self.search.frame(stream.tenant_id, stream.stream_id, outcome.result, at, thumbnail),
            "stream",
        )

    def _keep_and_act(
        self,
        stream: StreamRef,
        resolved: ResolvedRules | None,
        outcome: FrameOutcome,
        rgb: np.ndarray,
        frame_ms: int | None,
        sampled_at: float | None,
    ) -> None:
        """The frame's thumbnail, then, when rules fired, :meth:`_act`: one trip to a
        worker thread for both. A thumbnail only search wanted is not worth failing the
        frame for: its failure is logged and the frame is indexed without one."""
        if self.thumbnails is not None and outcome.thumbnail is None:
            try:
                outcome.thumbnail = self.thumbnails.save(stream.pk, rgb)
            except Exception:
                if outcome.matches:
                    raise
                log.exception("saving a thumbnail of stream %s for search failed", stream.pk)
        if outcome.matches:
            self._act(stream, resolved, outcome, frame_ms, sampled_at)

    def _act(
        self,
        stream: StreamRef,
        resolved: ResolvedRules | None,
        outcome: FrameOutcome,
        frame_ms: int | None,
        sampled_at: float | None,
    ) -> None:
        """Alerts, their review items and the auto-stop, in one transaction."""
        with self.streams.sessions.begin() as s:
            row = s.get(Stream, stream.pk, with_for_update=True)
            if row is None or row.desired != "running":
                return
            stop: tuple[RuleMatch, str] | None = None
            for match in outcome.matches:
                alert, _ = self.alerts.raise_in(
                    s,
                    row,
                    match,
                    rule_set=resolved.name if resolved is not None else None,
                    thumbnail=outcome.thumbnail,
                    frame_ms=frame_ms,
                    sampled_at=sampled_at,
                )
                outcome.alert_ids.append(alert.id)
                if match.action == "review" and self.review is not None:
                    item = self.review.enqueue_alert(s, alert)
                    outcome.review_ids.append(item.id)
                if match.action == "auto_stop" and stop is None:
                    stop = (match, alert.id)
            if stop is not None:
                match, alert_id = stop
                s.flush()
                outcome.stopped = self.alerts.stop_stream_in(
                    s, row, by=f"rule:{match.rule}", reason=match.reason, alert_id=alert_id
                )
