"""What request handlers need, taken from the process's components in the lifespan."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy import Engine as DbEngine
from sqlalchemy.orm import Session, sessionmaker

from bastion.accounts.service import AccountService
from bastion.api.limits import Admission
from bastion.aws.credentials import AwsKeys
from bastion.config import Settings
from bastion.dedup.service import Dedup
from bastion.jobs.service import JobService
from bastion.live.alerts.feed import AlertFeed
from bastion.live.alerts.service import AlertService
from bastion.live.push import PushedFrames
from bastion.live.stream_feed import StreamFeed
from bastion.live.streams import StreamService
from bastion.live.thumbnails import LiveThumbnails
from bastion.pipeline.engine import Engine
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.policies import PolicyBook
from bastion.process.components import Components
from bastion.registry.promotion import Promotions
from bastion.registry.serving import Heads
from bastion.review.service import ReviewService
from bastion.rules.book import RuleBook
from bastion.runtime.metrics import Metrics
from bastion.samples.service import SampleService
from bastion.search.indexer import SearchIndexer
from bastion.stats.service import StatsService
from bastion.store.repo import Principal, Repo
from bastion.training.runs import TrainingRuns

AUTH_CACHE_TTL_S = 5.0


@dataclass
class Services:
    settings: Settings
    metrics: Metrics
    engine: Engine
    moderation: Moderation
    db: DbEngine
    repo: Repo
    policies: PolicyBook
    inflight: asyncio.Semaphore
    admission: Admission
    db_sessions: sessionmaker[Session]
    jobs: JobService
    dedup: Dedup
    rules: RuleBook
    streams: StreamService
    alerts: AlertService
    live_thumbnails: LiveThumbnails
    feed: AlertFeed
    stream_feed: StreamFeed
    pushed_frames: PushedFrames
    review: ReviewService
    accounts: AccountService
    stats: StatsService
    samples: SampleService
    heads: Heads
    """The model registry and the watcher of tenants' heads."""
    training_runs: TrainingRuns
    """Training runs of tenants' heads (run by workers, never here)."""
    promotions: Promotions
    """Promotion, rollback and challengers of tenants' heads, checked and audited."""
    search: SearchIndexer | None = None
    """Search over the tenant's media (None: ``search.enabled`` is off)."""
    aws_keys: AwsKeys | None = None
    """Access keys of the Rekognition-compatible endpoint (Signature Version 4)."""
    started_at: float = field(default_factory=time.time)
    _auth_cache: dict[str, tuple[float, Principal | None]] = field(default_factory=dict)

    @classmethod
    def from_components(cls, parts: Components) -> Services:
        """What the handlers use, out of the process's components."""
        settings = parts.settings
        return cls(
            settings=settings,
            metrics=parts.core.metrics,
            engine=parts.engine,
            moderation=parts.moderation,
            db=parts.db,
            repo=parts.repo,
            policies=parts.core.policies,
            inflight=asyncio.Semaphore(settings.max_inflight),
            admission=Admission.from_settings(settings),
            db_sessions=parts.sessions,
            jobs=parts.jobs,
            dedup=parts.dedup,
            rules=parts.rules,
            streams=parts.live.streams,
            alerts=parts.live.alerts,
            live_thumbnails=parts.live.thumbnails,
            feed=parts.live.feed,
            stream_feed=parts.live.stream_feed,
            pushed_frames=parts.live.pushed,
            review=parts.review,
            accounts=parts.accounts,
            stats=parts.stats,
            samples=parts.samples,
            heads=parts.heads,
            training_runs=parts.training_runs,
            promotions=parts.promotions,
            search=parts.search,
            aws_keys=parts.aws_keys,
        )

    def authenticate(self, presented: str) -> Principal | None:
        """Key lookup with a short cache; a revoked key stops working within the TTL."""
        now = time.monotonic()
        hit = self._auth_cache.get(presented)
        if hit is not None and now - hit[0] < AUTH_CACHE_TTL_S:
            return hit[1]
        principal = self.repo.authenticate(presented)
        if len(self._auth_cache) > 10_000:
            self._auth_cache.clear()
        self._auth_cache[presented] = (now, principal)
        return principal

    def forget_auth(self) -> None:
        self._auth_cache.clear()


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
