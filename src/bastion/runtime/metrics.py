"""Prometheus metrics, kept in a registry object per process (no module-level state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class Metrics:
    """All of Bastion's metrics, registered on one CollectorRegistry."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "bastion_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.request_latency = Histogram(
            "bastion_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "bastion_decisions", "Moderation decisions", ["decision"], registry=r
        )
        self.batch_size = Histogram(
            "bastion_batch_size",
            "Frames per model call",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_latency = Histogram(
            "bastion_batch_seconds",
            "Model call latency per batch",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "bastion_queue_depth", "Frames waiting for a model call", ["model"], registry=r
        )
        self.analyzer_errors = Counter(
            "bastion_analyzer_errors", "Analyzer failures", ["model"], registry=r
        )
        self.media_errors = Counter(
            "bastion_media_errors", "Rejected inputs by error code", ["code"], registry=r
        )
        self.live_frames = Counter(
            "bastion_live_frames_analysed", "Live-stream frames analysed", registry=r
        )
        self.live_alerts = Counter(
            "bastion_live_rule_matches", "Live rules that fired", ["action"], registry=r
        )
        self.alert_lag = Histogram(
            "bastion_live_alert_lag_seconds",
            "From a live frame's decoding to its alert being stored",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
