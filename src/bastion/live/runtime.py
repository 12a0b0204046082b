"""Live-stream moderation wired together for one process (the API's or a worker's)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from bastion.config import Settings
from bastion.live.alerts.service import AlertService
from bastion.live.processor import FrameProcessor
from bastion.live.push import PushedFrames
from bastion.live.streams import StreamService
from bastion.live.supervisor import StreamSupervisor
from bastion.live.thumbnails import LiveThumbnails
from bastion.media.fetch import FetchPolicy
from bastion.pipeline.engine import Engine
from bastion.pipeline.policies import PolicyBook
from bastion.rules import RuleBook
from bastion.store.repo import DEFAULT_TENANT

log = logging.getLogger(__name__)


@dataclass
class Live:
    streams: StreamService
    alerts: AlertService
    thumbnails: LiveThumbnails
    processor: FrameProcessor
    pushed: PushedFrames
    supervisor: StreamSupervisor


def build_live(
    settings: Settings,
    sessions: sessionmaker[Session],
    engine: Engine,
    policies: PolicyBook,
    rules: RuleBook,
    url_policy: FetchPolicy,
) -> Live:
    streams = StreamService(sessions, settings.live, url_policy)
    thumbnails = LiveThumbnails.under(
        settings.data_dir, retention_s=settings.jobs.media_retention_s
    )
    alerts = AlertService(sessions, settings.live, streams)
    processor = FrameProcessor(
        engine,
        policies,
        rules,
        streams,
        alerts,
        thumbnails if settings.live.thumbnails else None,
    )
    return Live(
        streams=streams,
        alerts=alerts,
        thumbnails=thumbnails,
        processor=processor,
        pushed=PushedFrames(engine, streams, processor, settings.live),
        supervisor=StreamSupervisor(streams, processor, settings.live),
    )


def register_configured(live: Live, settings: Settings) -> None:
    """Register the streams listed in ``live.streams`` for the default tenant; a stream
    that cannot be registered is logged and skipped, the others go on."""
    for spec in settings.live.streams:
        try:
            _, created = live.streams.register(DEFAULT_TENANT, spec)
        except Exception as exc:
            log.error("stream %s from the configuration was not registered: %s", spec.id, exc)
            continue
        if created:
            log.info("stream %s (%s) registered from the configuration", spec.id, spec.channel)
