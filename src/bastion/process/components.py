"""The composition root: one function builds a process's parts from its settings.

`bastion up` (the API's lifespan), `bastion worker`, `bastion scan` and the benchmarks all
build what they run here, so the processes cannot drift apart. :class:`Roles` says what a
process runs besides the shared parts; :meth:`Components.run` starts the background loops
those roles need and :meth:`Components.aclose` takes everything down in order.

- :func:`build_core`: settings, metrics, the analyzers' engine, the policy book and the
  one way into moderation (:class:`~bastion.pipeline.moderation.Moderation`); with no
  database (what `bastion scan` needs) it has no stored results.
- :func:`build_components`: the core on the database, with stored results
  (de-duplication) as a level of moderation, plus the job queue and service, rules, live
  streams and alerts, the webhook dispatcher, people's accounts, the review queue, the
  labelled samples and, for the roles that run them, the job worker, media retention and
  the collector that makes samples of kept decisions and the runner of training runs
  (each in a child process), the statistics
  (whose counts every process writes every few seconds), and the model registry with,
  where tenant heads run, the watcher that swaps them when the registry's aliases move
  and the writing of their challengers' shadow counts (every few seconds, too), and
  search over tenants' media (:func:`~bastion.search.build.build_search`).
  Whatever moderates (the API, the job worker, live frames) gets the core's one
  :class:`~bastion.pipeline.moderation.Moderation`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine as DbEngine
from sqlalchemy.orm import Session, sessionmaker

from bastion.accounts.service import AccountService
from bastion.aws.credentials import AwsKeys
from bastion.bootstrap import Bootstrap, bootstrap
from bastion.config import Settings
from bastion.dedup.service import Dedup
from bastion.delivery.dispatcher import Dispatcher
from bastion.jobs.backend import make_queue
from bastion.jobs.queue import Queue
from bastion.jobs.retention import MediaRetention
from bastion.jobs.service import JobService
from bastion.jobs.worker import Worker
from bastion.live.alerts.feed import AlertFeed
from bastion.live.alerts.review_outcome import AlertReviewOutcome
from bastion.live.alerts.service import AlertService
from bastion.live.processor import FrameProcessor
from bastion.live.push import PushedFrames
from bastion.live.stream_feed import StreamFeed
from bastion.live.streams import StreamService
from bastion.live.supervisor import StreamSupervisor
from bastion.live.thumbnails import LiveThumbnails
from bastion.pipeline.engine import Engine
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.policies import PolicyBook
from bastion.registry.promotion import Promotions
from bastion.registry.serving import Heads, build_heads
from bastion.review.service import ReviewService
from bastion.rules.book import RuleBook
from bastion.runtime.metrics import Metrics
from bastion.samples.collector import SampleCollector
from bastion.samples.embedding import Embedder
from bastion.samples.errors import EmbeddingUnavailable
from bastion.samples.service import SampleService
from bastion.search.build import build_feed, build_search
from bastion.search.feed import SearchFeed
from bastion.search.indexer import SearchIndexer
from bastion.stats.service import StatsService
from bastion.store.db import session_factory
from bastion.store.repo import Repo
from bastion.training.runner import TrainingRunner
from bastion.training.runs import TrainingRuns

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Roles:
    """What one process runs besides the parts every process has."""

    api: bool = False
    """Serves the HTTP API: creates the first admin key, registers the configured streams
    and pushes alert and stream changes to WebSocket subscribers."""
    jobs: bool = False
    """Runs the job worker, media retention and the purge of old live thumbnails."""
    dispatch: bool = False
    """Delivers webhooks (any number of dispatchers may run against one database)."""
    live_sessions: bool = False
    """Runs stream sessions (claims and reads live streams)."""

    @classmethod
    def server(cls, settings: Settings) -> Roles:
        """`bastion up`: the API, plus a worker and a dispatcher unless
        ``jobs.run_worker`` is off."""
        return cls(
            api=True,
            jobs=settings.jobs.run_worker,
            dispatch=settings.jobs.run_worker,
            live_sessions=settings.live.run_sessions,
        )

    @classmethod
    def worker(cls, settings: Settings, *, dispatch: bool = True) -> Roles:
        """`bastion worker`: jobs, stream sessions and (unless told not to) webhooks."""
        return cls(jobs=True, dispatch=dispatch, live_sessions=settings.live.run_sessions)


@dataclass
class Core:
    """What every process has, a database or not."""

    settings: Settings
    metrics: Metrics
    engine: Engine
    policies: PolicyBook
    moderation: Moderation
    """The way into moderation every part of the process takes."""
    dedup: Dedup | None
    """Stored results, a level of :attr:`moderation` (unless switched off); None without a
    database."""
    owns_engine: bool
    """False when the caller lent a loaded engine (tests, benchmarks): not closed here."""

    async def aclose(self) -> None:
        if self.owns_engine:
            await self.engine.close()


async def build_core(
    settings: Settings,
    *,
    engine: Engine | None = None,
    repo: Repo | None = None,
    sessions: sessionmaker[Session] | None = None,
) -> Core:
    """The engine (models loaded when ``settings.preload``), the policy book (tenants'
    policies from ``repo`` when given, else the built-in ones and ``policies_dir``) and
    moderation, with stored results in the database of ``sessions`` when given (and
    ``dedup.enabled``)."""
    eng = engine or Engine(settings, Metrics())
    if settings.preload:
        errors = await asyncio.to_thread(eng.load_all)
        for name, error in errors.items():
            log.error("analyzer %s did not load: %s", name, error)
    dedup = Dedup(eng, sessions, settings.dedup) if sessions is not None else None
    stored = dedup if dedup is not None and settings.dedup.enabled else None
    return Core(
        settings=settings,
        metrics=eng.metrics,
        engine=eng,
        policies=PolicyBook(repo, settings.policies_dir),
        moderation=Moderation(eng, stored),
        dedup=dedup,
        owns_engine=engine is None,
    )


@dataclass
class Live:
    """Live-stream moderation: streams, their alerts and thumbnails, the frame processor,
    pushed frames and the supervisor of stream sessions."""

    streams: StreamService
    alerts: AlertService
    thumbnails: LiveThumbnails
    processor: FrameProcessor
    pushed: PushedFrames
    supervisor: StreamSupervisor
    feed: AlertFeed
    stream_feed: StreamFeed
    """Stream tiles as they change, for the portal's live view."""
    executor: ThreadPoolExecutor
    """The live path's own threads for its database work (``live.db_threads``), so it
    does not queue behind other users of the default pool; shut down by
    :meth:`Components.aclose`."""


@dataclass
class Components:
    """Every part of a process with a database, built by :func:`build_components`."""

    core: Core
    roles: Roles
    boot: Bootstrap
    sessions: sessionmaker[Session]
    queue: Queue
    jobs: JobService
    dedup: Dedup
    rules: RuleBook
    live: Live
    dispatcher: Dispatcher
    worker: Worker | None
    accounts: AccountService
    """People's accounts and their sessions (the moderator portal signs in with them)."""
    review: ReviewService
    """The review queue: items sent to review, reviewers' claims and decisions."""
    stats: StatsService
    """Statistics reports, and the writing of what :attr:`moderation` counted."""
    heads: Heads
    """The model registry, and the watcher that swaps tenants' heads when aliases move."""
    samples: SampleService
    """A tenant's labelled samples: imports, decisions kept as samples, training sets."""
    training_runs: TrainingRuns
    """Training runs of tenants' heads: requests, progress and outcomes."""
    promotions: Promotions
    """Promotion, rollback and challengers of tenants' heads, checked and audited."""
    aws_keys: AwsKeys | None = None
    """Access keys of the Rekognition-compatible endpoint (built where the API runs)."""
    search: SearchIndexer | None = None
    """Search over tenants' media: indexed as it is analysed, asked by `/v1/search`
    (None: ``search.enabled`` is off)."""
    feed: SearchFeed | None = None
    """Indexes what this process analyses (jobs, live frames) into :attr:`search`."""
    collector: SampleCollector | None = None
    """Turns decisions that kept their media into samples (processes running jobs)."""
    training: TrainingRunner | None = None
    """Runs queued training runs in child processes (processes running jobs)."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.core.settings

    @property
    def engine(self) -> Engine:
        return self.core.engine

    @property
    def moderation(self) -> Moderation:
        return self.core.moderation

    @property
    def db(self) -> DbEngine:
        return self.boot.db

    @property
    def repo(self) -> Repo:
        return self.boot.repo

    def run(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        """Start the background loops of this process's roles; they end when ``stop`` is
        set (then await them, or call :meth:`aclose`)."""
        settings, roles = self.settings, self.roles
        loops: list[tuple[str, Coroutine[Any, Any, None]]] = [
            ("dedup-purge", self.dedup.run_forever(stop)),
            ("daily-counts", self.stats.run_forever(stop)),
        ]
        if roles.api:
            loops.append(("alert-feed", self.live.feed.run_forever(stop)))
            loops.append(("stream-feed", self.live.stream_feed.run_forever(stop)))
        if roles.live_sessions:
            loops.append(("stream-sessions", self.live.supervisor.run_forever(stop)))
        if self.worker is not None:
            retention = MediaRetention(self.jobs, settings.jobs, search=self.search)
            loops += [
                ("worker", self.worker.run_forever(stop)),
                ("retention", retention.run_forever(stop)),
                (
                    "live-thumbnails",
                    self.live.thumbnails.run_forever(stop, settings.jobs.media_sweep_s),
                ),
            ]
        if roles.dispatch:
            loops.append(("dispatcher", self.dispatcher.run_forever(stop)))
        if self.collector is not None:
            loops.append(("samples-collect", self.collector.run_forever(stop)))
        if self.training is not None:
            loops.append(("training-runs", self.training.run_forever(stop)))
        if self.heads.watcher is not None:
            loops.append(("head-watcher", self.heads.run_forever(stop)))
        if self.heads.shadow.counting:
            loops.append(("shadow-counts", self.heads.shadow.run_forever(stop)))
        started = [asyncio.create_task(coro, name=name) for name, coro in loops]
        self._tasks.extend(started)
        return started

    async def aclose(self) -> None:
        """Wait for the background loops (their ``stop`` must be set, or they are
        cancelled), then close the dispatcher, the queue, the engine and the database."""
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=30)
            for t in still:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()
        await self.stats.flush()  # what was counted after the loops' last write
        await self.heads.shadow.flush_now()  # the same for the challengers' shadow counts
        if self.feed is not None:  # media analysed before the loops stopped
            await self.feed.drain()
            self.feed.close()
        if self.search is not None:  # vector indexes changed since their last save
            await asyncio.to_thread(self.search.flush)
        await asyncio.to_thread(self.live.executor.shutdown)
        await self.dispatcher.aclose()
        await self.queue.close()
        self.heads.close()
        await self.core.aclose()
        self.boot.db.dispose()


async def build_components(
    settings: Settings,
    roles: Roles,
    *,
    engine: Engine | None = None,
    on_bootstrap: Callable[[Bootstrap], None] | None = None,
) -> Components:
    """Migrate the database and build every part ``roles`` needs (nothing runs yet: see
    :meth:`Components.run`). ``engine`` lends loaded models (tests and benchmarks)."""
    boot = await asyncio.to_thread(bootstrap, settings, create_admin_key=roles.api)
    if on_bootstrap is not None:
        on_bootstrap(boot)
    sessions = session_factory(boot.db)
    core = await build_core(settings, engine=engine, repo=boot.repo, sessions=sessions)
    dedup = core.dedup
    assert dedup is not None  # built on ``sessions``
    queue = make_queue(settings.jobs, sessions)
    await queue.start()
    jobs = JobService.from_settings(settings, sessions, queue)
    await asyncio.to_thread(dedup.start)
    rules = RuleBook(sessions)
    url_policy = settings.fetch_policy()
    review = ReviewService(sessions, settings.review)
    search = build_search(settings, core.engine, sessions)
    feed = build_feed(
        settings,
        search,
        core.engine,
        job_thumbnails=jobs.thumbnails,
        job_media=jobs.media.path,
        metrics=core.metrics,
    )
    live = _build_live(settings, sessions, core, rules, review, feed)
    heads = build_heads(settings, core.engine, sessions)
    await heads.start()  # tenants' heads are served from the first request on
    review.add_outcome(AlertReviewOutcome(live.alerts))
    if roles.api:
        await asyncio.to_thread(live.streams.register_configured, settings.live.streams)
    dispatcher = Dispatcher(sessions, settings.delivery, url_policy=url_policy)
    samples = SampleService(sessions, jobs.media, review)
    collector = None
    if roles.jobs:  # embeddings are computed where jobs run, never for a request
        collector = SampleCollector(
            samples, _embedder(core), settings.samples, thumbnails=live.thumbnails
        )
    training_runs = TrainingRuns(sessions, settings.training)
    training = TrainingRunner(training_runs, settings) if roles.jobs else None
    worker = None
    if roles.jobs:
        # the dispatcher wakes by itself when the worker commits a job's webhooks
        worker = Worker(
            core.moderation, jobs, core.policies, settings.jobs, review=review, search=feed
        )
    aws_keys = None
    if roles.api:
        aws_keys = await asyncio.to_thread(AwsKeys.from_settings, settings, sessions)
    return Components(
        aws_keys=aws_keys,
        core=core,
        roles=roles,
        boot=boot,
        sessions=sessions,
        queue=queue,
        jobs=jobs,
        dedup=dedup,
        rules=rules,
        live=live,
        dispatcher=dispatcher,
        worker=worker,
        accounts=AccountService(sessions, settings.accounts),
        review=review,
        stats=StatsService(sessions, core.moderation.counter),
        samples=samples,
        training_runs=training_runs,
        training=training,
        promotions=Promotions(sessions, heads.registry, samples, settings.registry.promotion),
        collector=collector,
        heads=heads,
        search=search,
        feed=feed,
    )


def _embedder(core: Core) -> Embedder | None:
    """The embedder samples keep the embeddings of, or None when no analyzer makes one
    (samples are then made without embeddings)."""
    try:
        return Embedder(core.engine, core.settings.samples.embedding_analyzer)
    except EmbeddingUnavailable as exc:
        log.warning("samples are kept without embeddings: %s", exc.message)
        return None


def _build_live(
    settings: Settings,
    sessions: sessionmaker[Session],
    core: Core,
    rules: RuleBook,
    review: ReviewService,
    feed: SearchFeed | None = None,
) -> Live:
    """Live streams; alerts of ``review`` rules go to ``review``, and the frames its
    undecided items show outlive the thumbnails' retention."""
    streams = StreamService(sessions, settings.live, settings.fetch_policy())
    thumbnails = LiveThumbnails.under(
        settings.data_dir,
        retention_s=settings.jobs.media_retention_s,
        keep=review.kept_thumbnails,
    )
    alerts = AlertService(sessions, settings.live, streams)
    executor = ThreadPoolExecutor(settings.live.db_threads, thread_name_prefix="live-db")
    processor = FrameProcessor(
        core.moderation,
        core.policies,
        rules,
        streams,
        alerts,
        thumbnails if settings.live.thumbnails else None,
        review,
        search=feed,
        executor=executor,
    )
    return Live(
        streams=streams,
        alerts=alerts,
        thumbnails=thumbnails,
        processor=processor,
        pushed=PushedFrames(core.moderation, streams, processor, settings.live),
        supervisor=StreamSupervisor(streams, processor, settings.live),
        feed=AlertFeed(sessions),
        stream_feed=StreamFeed(sessions),
        executor=executor,
    )
