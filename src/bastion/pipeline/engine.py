"""The moderation engine: loads analyzers, batches their calls and applies policies.

Every image — sync API, CLI scan, and later job and live frames — goes through
:meth:`Engine.moderate_decoded`: each analyzer's preprocessing runs in the worker
pool, its model call goes through that analyzer's :class:`DynamicBatcher`, and the
policy turns labels into a decision.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from bastion.analyzers import Analyzer, RuntimeContext, registry
from bastion.analyzers.base import AnalyzerConfig, AnalyzerInfo
from bastion.config import Settings
from bastion.errors import AnalyzerUnavailable, BastionError
from bastion.media.image import decode_image
from bastion.media.types import DecodedImage, Frame
from bastion.pipeline.cache import ResultCache
from bastion.pipeline.merge import merge_outputs
from bastion.policy import taxonomy
from bastion.policy.decide import decide
from bastion.policy.lists import CompiledLists
from bastion.policy.model import Lists, Policy
from bastion.results import AnalyzerOutput, AnalyzerTiming, MediaInfo, ModerationResult
from bastion.runtime.batcher import BatchPolicy, DynamicBatcher
from bastion.runtime.metrics import Metrics
from bastion.text.urls import extract_urls

log = logging.getLogger(__name__)


def build_analyzers(
    configs: Sequence[AnalyzerConfig], context: RuntimeContext
) -> dict[str, Analyzer[Any, Any]]:
    kinds = registry()
    out: dict[str, Analyzer[Any, Any]] = {}
    for cfg in configs:
        if not cfg.enabled:
            continue
        analyzer = kinds[cfg.type](cfg, context)
        out[analyzer.name] = analyzer
    return out


@dataclass(frozen=True, slots=True)
class VideoFrameImage(DecodedImage):
    """A frame sampled from a video: its results are cached apart from images' results."""


class PersistentResults(Protocol):
    """A cache level behind the in-memory one, e.g. :class:`bastion.dedup.service.Dedup`."""

    async def fetch_or_analyse(
        self,
        decoded: DecodedImage,
        policy: Policy,
        lists: CompiledLists,
        analyse: Callable[[], Awaitable[ModerationResult]],
        *,
        tenant: str,
    ) -> ModerationResult:
        """A result ``tenant`` stored (``cached`` set), or ``analyse()``'s, stored for
        ``tenant`` only."""
        ...


@dataclass
class _Loaded:
    analyzer: Analyzer[Any, Any]
    batcher: DynamicBatcher[Any, AnalyzerOutput]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready: bool = False


class Engine:
    """Owns analyzers, their batchers and the worker pools. One per process."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.context = RuntimeContext(settings.runtime)
        self.analyzers = build_analyzers(settings.analyzers, self.context)
        self._pool = ThreadPoolExecutor(settings.runtime.workers(), thread_name_prefix="prep")
        # one model thread per analyzer: each batcher runs one batch at a time
        self._model_pool = ThreadPoolExecutor(
            max(1, len(self.analyzers)), thread_name_prefix="model"
        )
        self._loaded: dict[str, _Loaded] = {
            name: _Loaded(
                a,
                DynamicBatcher(
                    name,
                    a.analyze,
                    BatchPolicy(a.config.max_batch_size, a.config.max_wait_ms),
                    self._model_pool,
                    self.metrics,
                ),
            )
            for name, a in self.analyzers.items()
        }
        self._lists: dict[str, CompiledLists] = {}
        self.cache: ResultCache[ModerationResult] = ResultCache(settings.result_cache_size)
        # video frames have a cache of their own: a long video must not evict images
        self.frame_cache: ResultCache[ModerationResult] = ResultCache(
            settings.dedup.frame_cache_size
        )
        self._load_errors: dict[str, str] = {}

    # ---- lifecycle -------------------------------------------------------
    def load_all(self, names: Sequence[str] | None = None) -> dict[str, str]:
        """Load analyzers synchronously; returns {name: error} for those that failed."""
        for name in names or list(self._loaded):
            entry = self._loaded[name]
            if entry.ready:
                continue
            try:
                entry.analyzer.load()
                entry.ready = True
                self._load_errors.pop(name, None)
            except Exception as exc:  # one broken analyzer must not stop the others
                log.exception("analyzer %s failed to load", name)
                self._load_errors[name] = f"{type(exc).__name__}: {exc}"
        return dict(self._load_errors)

    async def _ensure_loaded(self, name: str) -> _Loaded:
        entry = self._loaded[name]
        if entry.ready:
            return entry
        async with entry.lock:
            if not entry.ready:
                loop = asyncio.get_running_loop()
                errors = await loop.run_in_executor(self._pool, self.load_all, [name])
                if name in errors:
                    raise AnalyzerUnavailable(f"analyzer {name!r} failed to load: {errors[name]}")
        return entry

    @property
    def ready(self) -> bool:
        return all(e.ready for e in self._loaded.values())

    @property
    def load_errors(self) -> dict[str, str]:
        return dict(self._load_errors)

    def batchers(self) -> dict[str, DynamicBatcher[Any, AnalyzerOutput]]:
        return {name: e.batcher for name, e in self._loaded.items()}

    def infos(self) -> list[AnalyzerInfo]:
        return [e.analyzer.info() for e in self._loaded.values()]

    def detectable(self, analyzer_names: Sequence[str] | None = None) -> set[str]:
        names = analyzer_names if analyzer_names is not None else list(self._loaded)
        cats: set[str] = set()
        for n in names:
            if n in self._loaded:
                cats.update(self._loaded[n].analyzer.categories())
        cats.update(("Blocked Word", "Blocked Domain"))  # from lists over OCR text and codes
        return taxonomy.expand(cats)

    def undetectable(self, policy: Policy, analyzer_names: Sequence[str]) -> list[str]:
        can = self.detectable(analyzer_names)
        out = []
        for cat in sorted(policy.categories()):
            kids = taxonomy.children(cat)
            if cat not in can and not any(k in can for k in kids):
                out.append(cat)
        return out

    async def close(self) -> None:
        for e in self._loaded.values():
            await e.batcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._model_pool.shutdown(wait=False, cancel_futures=True)

    # ---- moderation ------------------------------------------------------
    def compiled_lists(self, lists: Lists) -> CompiledLists:
        key = hashlib.sha256(lists.model_dump_json().encode()).hexdigest()[:12]
        found = self._lists.get(key)
        if found is None:
            if len(self._lists) > 1024:
                self._lists.clear()
            found = self._lists[key] = CompiledLists(lists, key)
        return found

    async def decode(self, data: bytes, content_type: str | None = None) -> DecodedImage:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, lambda: decode_image(data, self.settings.limits, content_type=content_type)
        )

    async def moderate_bytes(
        self,
        data: bytes,
        policy: Policy,
        *,
        tenant: str | None = None,
        extra_lists: Lists | None = None,
        content_type: str | None = None,
    ) -> ModerationResult:
        """Decode and moderate ``data`` for ``tenant`` (see :meth:`moderate_decoded`)."""
        decoded = await self.decode(data, content_type)
        return await self.moderate_decoded(decoded, policy, tenant=tenant, extra_lists=extra_lists)

    def _cache_key(
        self, decoded: DecodedImage, policy: Policy, lists: CompiledLists, tenant: str | None
    ) -> str:
        versions = ",".join(
            f"{n}={self._loaded[n].analyzer.version}" for n in policy.analyzers if n in self._loaded
        )
        # JSON keeps the parts apart whatever a tenant id holds; None (no tenant) is null
        raw = json.dumps([tenant, decoded.sha256, policy.version, lists.version, versions])
        return hashlib.sha256(raw.encode()).hexdigest()

    async def moderate_decoded(
        self,
        decoded: DecodedImage,
        policy: Policy,
        *,
        tenant: str | None = None,
        extra_lists: Lists | None = None,
        store: PersistentResults | None = None,
    ) -> ModerationResult:
        """Moderate a decoded image: in-memory cache (concurrent duplicates share one
        analysis), then ``store`` when given, then the analyzers.

        Results are reused (and concurrent duplicates coalesced) only within one
        ``tenant``. Sharing them across tenants was given up on purpose: a reused result
        says ``cached: true``, carries the first request's timings and comes back several
        times faster, so a tenant sending the same bytes as another would learn that the
        other had sent them, from the response time alone even if the flag were hidden.
        ``None`` is for callers that serve no tenant (the command line, benchmarks): they
        share a scope of their own and never reach ``store``.
        """
        lists = self.compiled_lists(policy.lists.merged(extra_lists or Lists()))
        key = self._cache_key(decoded, policy, lists, tenant)
        cache = self.frame_cache if isinstance(decoded, VideoFrameImage) else self.cache

        def analyse() -> Awaitable[ModerationResult]:
            return self._analyse(decoded, policy, lists)

        def compute() -> Awaitable[ModerationResult]:
            if store is None or tenant is None:
                return analyse()
            return store.fetch_or_analyse(decoded, policy, lists, analyse, tenant=tenant)

        result, cached = await cache.get_or_compute(key, compute)
        if cached:
            result = result.model_copy(update={"cached": True})
        self.metrics.decisions.labels(result.decision).inc()
        return result

    async def _run_analyzer(
        self, name: str, frames: Sequence[Frame]
    ) -> tuple[str, list[AnalyzerOutput], float, str | None]:
        started = time.perf_counter()
        try:
            entry = await self._ensure_loaded(name)
            loop = asyncio.get_running_loop()
            analyzer = entry.analyzer

            async def one(frame: Frame) -> AnalyzerOutput:
                prepared = await loop.run_in_executor(self._pool, analyzer.preprocess, frame)
                return await entry.batcher.submit(prepared)

            outs = list(await asyncio.gather(*(one(f) for f in frames)))
            return name, outs, (time.perf_counter() - started) * 1000, None
        except BastionError as exc:
            return name, [], (time.perf_counter() - started) * 1000, exc.message
        except Exception as exc:
            log.exception("analyzer %s failed", name)
            self.metrics.analyzer_errors.labels(name).inc()
            return name, [], (time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {exc}"

    async def _analyse(
        self, decoded: DecodedImage, policy: Policy, lists: CompiledLists
    ) -> ModerationResult:
        started = time.perf_counter()
        frames = decoded.frames[: policy.max_frames or len(decoded.frames)]
        names = [n for n in policy.analyzers if n in self._loaded]
        errors = [
            {
                "analyzer": n,
                "code": "analyzer_not_installed",
                "message": f"policy names analyzer {n!r}, which is not configured",
            }
            for n in policy.analyzers
            if n not in self._loaded
        ]
        runs = await asyncio.gather(*(self._run_analyzer(n, frames) for n in names))
        per_analyzer: dict[str, list[AnalyzerOutput]] = {}
        timings: list[AnalyzerTiming] = []
        for name, outs, ms, err in runs:
            version = self._loaded[name].analyzer.version
            timings.append(AnalyzerTiming(analyzer=name, version=version, ms=round(ms, 2)))
            if err is not None:
                errors.append({"analyzer": name, "code": "analyzer_failed", "message": err})
            else:
                per_analyzer[name] = outs
        merged = merge_outputs(per_analyzer, frames, animated=decoded.animated)
        urls = list(
            dict.fromkeys(
                [u for c in merged.codes for u in c.urls]
                + [u for line in merged.text for u in extract_urls(line.text)]
            )
        )
        labels = merged.labels + lists.labels(merged.text, merged.codes, urls)
        labels.sort(key=lambda lab: -lab.confidence)
        decision, reasons = decide(policy, labels)
        if errors and decision == "allow" and any(e["code"] == "analyzer_failed" for e in errors):
            decision = "review"  # fail safe: an item we could not fully analyse is not allowed
        hashes = {"sha256": decoded.sha256, **merged.hashes}
        return ModerationResult(
            decision=decision,
            reasons=reasons,
            labels=labels,
            tags=merged.tags,
            text=merged.text,
            codes=merged.codes,
            urls=urls,
            faces=merged.faces,
            face_count=merged.face_count,
            hashes=hashes,
            media=MediaInfo(
                format=decoded.format,
                mode=decoded.mode,
                width=decoded.width,
                height=decoded.height,
                bytes=decoded.byte_size,
                frames=decoded.total_frames,
                frames_analyzed=len(frames),
                warnings=list(decoded.warnings),
            ),
            policy=policy.name,
            policy_version=policy.version,
            timings=timings,
            total_ms=round((time.perf_counter() - started) * 1000, 2),
            versions={t.analyzer: t.version for t in timings},
            undetectable=self.undetectable(policy, names),
            errors=errors,
        )
