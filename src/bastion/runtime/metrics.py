"""Prometheus metrics, kept in a registry object per process (no module-level state).

A renamed metric is exported under its former name as well for one release
(:class:`FormerName`): ``bastion_live_frames_analysed`` is ``bastion_live_frames_analyzed``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class FormerName(Collector):
    """``metric`` exported once more under ``name``, the name it had before: the same
    samples (values, labels) at every scrape, so dashboards can move to the new name."""

    def __init__(self, metric: MetricWrapperBase, name: str) -> None:
        self._metric = metric
        self._name = name

    def collect(self) -> Iterator[Metric]:
        for family in self._metric.collect():
            former = Metric(
                self._name, f"{family.documentation} (former name of {family.name})", family.type
            )
            for sample in family.samples:
                former.add_sample(
                    self._name + sample.name.removeprefix(family.name),
                    sample.labels,
                    sample.value,
                    sample.timestamp,
                    sample.exemplar,
                )
            yield former


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
            "bastion_live_frames_analyzed", "Live-stream frames analyzed", registry=r
        )
        r.register(FormerName(self.live_frames, "bastion_live_frames_analysed"))
        self.live_alerts = Counter(
            "bastion_live_rule_matches", "Live rules that fired", ["action"], registry=r
        )
        self.alert_lag = Histogram(
            "bastion_live_alert_lag_seconds",
            "From a live frame's decoding to its alert being stored",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.search_indexed = Counter(
            "bastion_search_index",
            "Media handed to search indexing, by source (job, scan, stream, reindex) and "
            "outcome (indexed, skipped, dropped, failed)",
            ["source", "outcome"],
            registry=r,
        )
