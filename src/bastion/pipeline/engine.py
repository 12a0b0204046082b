"""The moderation engine: loads analyzers, batches their calls and applies policies.

Requests come in through :class:`bastion.pipeline.moderation.Moderation` (decoding,
caches, stored results), which asks :meth:`Engine.analyze` (an image) or
:meth:`Engine.analyze_audio` (one audio window) for what no cache could answer: the
policy's analyzers run in stages, each on the inputs of the content kind it consumes
(:mod:`bastion.pipeline.stages`: image frames and audio windows first, then the text
lines and embeddings those produced), each analyzer's preprocessing runs in the worker
pool, its model call goes through that analyzer's :class:`DynamicBatcher`, and the
policy turns labels into a decision. Both kinds of item end the same way
(:meth:`Engine._result`): lists over the text lines and URLs, the decision, errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from bastion.analyzers import Analyzer, RuntimeContext, registry
from bastion.analyzers.base import AnalyzerConfig, AnalyzerInfo, ContentKind
from bastion.analyzers.hashes import HashesAnalyzer
from bastion.analyzers.speech import TRANSCRIPT_KEY
from bastion.config import Settings
from bastion.errors import AnalyzerUnavailable, BastionError, ModelUnavailable
from bastion.media.hashing import PerceptualHashes
from bastion.media.types import AudioWindow, DecodedImage, Frame
from bastion.pipeline.merge import Merged, merge_outputs
from bastion.pipeline.stages import STAGES, Available, Produced, per_frame
from bastion.policy import taxonomy
from bastion.policy.decide import decide
from bastion.policy.lists import CompiledLists
from bastion.policy.model import Lists, Policy
from bastion.results import (
    AnalyzerOutput,
    AnalyzerTiming,
    MediaInfo,
    ModerationResult,
    TranscriptSegment,
)
from bastion.runtime.batcher import BatchPolicy, DynamicBatcher
from bastion.runtime.metrics import Metrics
from bastion.runtime.runner import ModelRunner
from bastion.text.url_origins import distinct_urls, url_origins

if TYPE_CHECKING:
    from bastion.runtime.ray_serve import RayModels

log = logging.getLogger(__name__)

T = TypeVar("T")

_Run = tuple[str, list[AnalyzerOutput], float, str | None]

_AUDIO_SLOT = Frame(rgb=np.zeros((0, 0, 3), dtype=np.uint8), index=0)
"""An audio window's one slot, as :func:`merge_outputs` takes slots: a frame of no pixels."""


def window_sha256(window: AudioWindow) -> str:
    """The sha256 of an audio window's samples (float32) and their rate."""
    digest = hashlib.sha256(f"f32:{window.sample_rate}:".encode())
    digest.update(np.ascontiguousarray(window.samples, dtype=np.float32).data)
    return digest.hexdigest()


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


@dataclass
class _Loaded:
    analyzer: Analyzer[Any, Any]
    batcher: ModelRunner[Any, AnalyzerOutput]
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
        # a model thread for each batch that may be in flight: each batcher runs one batch
        # at a time, or up to runtime.concurrency() for analyzers that allow it
        in_flight = {
            name: settings.runtime.concurrency() if a.parallel_batches else 1
            for name, a in self.analyzers.items()
        }
        self._model_pool = ThreadPoolExecutor(
            max(1, sum(in_flight.values())), thread_name_prefix="model"
        )
        self._loaded: dict[str, _Loaded] = {
            name: _Loaded(
                a,
                DynamicBatcher(
                    name,
                    a.analyze,
                    BatchPolicy(
                        a.config.max_batch_size, a.config.max_wait_ms, concurrency=in_flight[name]
                    ),
                    self._model_pool,
                    self.metrics,
                ),
            )
            for name, a in self.analyzers.items()
        }
        self._lists: dict[str, CompiledLists] = {}
        self._load_errors: dict[str, str] = {}
        self._ray: RayModels | None = None
        if settings.runtime.backend == "ray":  # models in Ray Serve replicas, not here
            from bastion.runtime.ray_serve import RayModels

            self._ray = RayModels(settings.runtime)

    # ---- lifecycle -------------------------------------------------------
    def load_all(self, names: Sequence[str] | None = None) -> dict[str, str]:
        """Load analyzers synchronously; returns {name: error} for those that failed."""
        for name in names or list(self._loaded):
            entry = self._loaded[name]
            if entry.ready:
                continue
            try:
                if self._ray is not None and self._ray.serves(name):
                    entry.batcher = self._ray.runner(name, entry.analyzer.config)
                else:
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
                    served = self._ray is not None and self._ray.serves(name)
                    error = ModelUnavailable if served else AnalyzerUnavailable
                    raise error(f"analyzer {name!r} failed to load: {errors[name]}")
        return entry

    @property
    def ready(self) -> bool:
        return all(e.ready for e in self._loaded.values())

    @property
    def load_errors(self) -> dict[str, str]:
        return dict(self._load_errors)

    def batchers(self) -> dict[str, ModelRunner[Any, AnalyzerOutput]]:
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

    def analyzers_for(self, names: Sequence[str], media: ContentKind) -> list[str]:
        """The analyzers of ``names`` that an item of ``media`` (image frames or audio
        windows) can feed, directly or through the text and embeddings it yields: all
        but those of the other kind of media."""
        other = {ContentKind.IMAGE_FRAME, ContentKind.AUDIO_WINDOW} - {media}
        return [
            n for n in names if n in self._loaded and self._loaded[n].analyzer.consumes not in other
        ]

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
        if self._ray is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._ray.close)
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

    async def run_in_pool(self, call: Callable[[], T]) -> T:
        """Run ``call`` in the worker pool that preprocessing runs in (decoding, too)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def perceptual_hashing(self) -> PerceptualHashes:
        """How results' perceptual hashes are computed: with the settings of the first
        ``hashes`` analyzer that computes PDQ, else with that analyzer's defaults. Stored
        results hash the request's image this way, so the PDQ hashes they index are the
        ones results report."""
        for analyzer in self.analyzers.values():
            if isinstance(analyzer, HashesAnalyzer) and analyzer.config.pdq:
                return analyzer.hashing
        return PerceptualHashes()

    async def _run_stages(
        self,
        names: Sequence[str],
        frames: Sequence[Frame],
        tenant: str | None = None,
        audio: Sequence[AudioWindow] = (),
    ) -> list[_Run]:
        """Run the analyzers ``names``, stage by stage, on the inputs of the content kind
        each consumes (:data:`~bastion.pipeline.stages.STAGES`): stage one on the frames
        and audio windows, stage two on the text lines and embeddings stage one produced.
        Returns, in the order of ``names``, each analyzer's outputs as one per slot (the
        frames, then the audio windows).

        An analyzer whose input never appears (an ``audio_window`` analyzer on an image,
        a frame analyzer on an audio window, a ``text`` analyzer when nothing read text)
        is not loaded or called: it gets no outputs and no error, and takes 0 ms.
        """
        runs: dict[str, _Run] = {}
        produced: list[Produced] = []
        slots = len(frames) + len(audio)
        for stage in STAGES:
            available = Available(frames, tuple(produced), tenant, audio)
            todo = [
                (n, stage[kind](available))
                for n in names
                if (kind := self._loaded[n].analyzer.consumes) in stage
            ]
            done = await asyncio.gather(
                *(self._run_analyzer(n, [r.item for r in routed]) for n, routed in todo)
            )
            for (name, routed), (_, outs, ms, err) in zip(todo, done, strict=True):
                if err is not None:
                    runs[name] = (name, [], ms, err)
                    continue
                by_slot = per_frame(routed, outs, slots)
                runs[name] = (name, by_slot, ms, None)
                analyzer = self._loaded[name].analyzer
                produced.append(Produced(name, analyzer.model_name, analyzer.version, by_slot))
        return [runs.get(n, (n, [], 0.0, None)) for n in names]

    async def _run_analyzer(
        self, name: str, items: Sequence[object]
    ) -> tuple[str, list[AnalyzerOutput], float, str | None]:
        """Preprocess ``items`` in the worker pool and analyse them through the analyzer's
        batcher; one output per item, in order. Nothing to analyse loads nothing."""
        if not items:
            return name, [], 0.0, None
        started = time.perf_counter()
        try:
            entry = await self._ensure_loaded(name)
            loop = asyncio.get_running_loop()
            analyzer = entry.analyzer

            async def one(item: object) -> AnalyzerOutput:
                prepared = await loop.run_in_executor(self._pool, analyzer.preprocess, item)
                return await entry.batcher.submit(prepared)

            outs = list(await asyncio.gather(*(one(i) for i in items)))
            return name, outs, (time.perf_counter() - started) * 1000, None
        except ModelUnavailable:  # a served model that did not answer: 503, try again
            raise
        except BastionError as exc:
            return name, [], (time.perf_counter() - started) * 1000, exc.message
        except Exception as exc:
            log.exception("analyzer %s failed", name)
            self.metrics.analyzer_errors.labels(name).inc()
            return name, [], (time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {exc}"

    def _policy_analyzers(self, policy: Policy) -> tuple[list[str], list[dict[str, str]]]:
        """The policy's analyzers that are configured, and an error for each that is not."""
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
        return names, errors

    def _collect(
        self, runs: Sequence[_Run], tenant: str | None, errors: list[dict[str, str]]
    ) -> tuple[dict[str, list[AnalyzerOutput]], list[AnalyzerTiming]]:
        """Each analyzer's outputs and timing; a failed one's error is added to ``errors``."""
        per_analyzer: dict[str, list[AnalyzerOutput]] = {}
        timings: list[AnalyzerTiming] = []
        for name, outs, ms, err in runs:
            version = self._loaded[name].analyzer.version_for(tenant)
            timings.append(AnalyzerTiming(analyzer=name, version=version, ms=round(ms, 2)))
            if err is not None:
                errors.append({"analyzer": name, "code": "analyzer_failed", "message": err})
            else:
                per_analyzer[name] = outs
        return per_analyzer, timings

    def _result(
        self,
        merged: Merged,
        policy: Policy,
        lists: CompiledLists,
        *,
        undetectable: list[str],
        timings: list[AnalyzerTiming],
        errors: list[dict[str, str]],
        hashes: dict[str, Any],
        media: MediaInfo,
        started: float,
        transcript: Sequence[TranscriptSegment] = (),
    ) -> ModerationResult:
        """The result of one item from its merged outputs: the URLs and where they were
        found, the lists' labels over the text lines, codes and URLs, the decision; an
        item an analyzer failed on is never allowed (review)."""
        origins = url_origins(merged.codes, merged.text)
        urls = distinct_urls(origins)
        labels = merged.labels + lists.labels(merged.text, merged.codes, urls)
        labels.sort(key=lambda lab: -lab.confidence)
        decision, reasons = decide(policy, labels)
        if errors and decision == "allow" and any(e["code"] == "analyzer_failed" for e in errors):
            decision = "review"  # fail safe: an item we could not fully analyse is not allowed
        return ModerationResult(
            decision=decision,
            reasons=reasons,
            labels=labels,
            tags=merged.tags,
            text=merged.text,
            codes=merged.codes,
            urls=urls,
            url_origins=origins,
            faces=merged.faces,
            face_count=merged.face_count,
            hashes=hashes,
            media=media,
            policy=policy.name,
            policy_version=policy.version,
            timings=timings,
            total_ms=round((time.perf_counter() - started) * 1000, 2),
            versions={t.analyzer: t.version for t in timings},
            undetectable=undetectable,
            errors=errors,
            transcript=list(transcript),
        )

    async def analyze(
        self,
        decoded: DecodedImage,
        policy: Policy,
        lists: CompiledLists,
        *,
        tenant: str | None = None,
    ) -> ModerationResult:
        """Run the policy's analyzers on ``decoded`` for ``tenant`` (whose own models,
        tenant heads, run on its items only) and decide under ``policy`` and ``lists``;
        an image an analyzer failed on is never allowed (review)."""
        started = time.perf_counter()
        frames = decoded.frames[: policy.max_frames or len(decoded.frames)]
        names, errors = self._policy_analyzers(policy)
        runs = await self._run_stages(names, frames, tenant)
        per_analyzer, timings = self._collect(runs, tenant, errors)
        merged = merge_outputs(per_analyzer, frames, animated=decoded.animated)
        result = self._result(
            merged,
            policy,
            lists,
            undetectable=self.undetectable(
                policy, self.analyzers_for(names, ContentKind.IMAGE_FRAME)
            ),
            timings=timings,
            errors=errors,
            hashes={"sha256": decoded.sha256, **merged.hashes},
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
            started=started,
        )
        result.keep_embeddings(_first_embeddings(per_analyzer))
        return result

    async def analyze_audio(
        self,
        window: AudioWindow,
        policy: Policy,
        lists: CompiledLists,
        *,
        tenant: str | None = None,
        sha256: str | None = None,
    ) -> ModerationResult:
        """Moderate one audio window as one image is moderated: the policy's analyzers
        of audio (``speech``) on the window, its ``text`` analyzers (``toxicity``) on the
        lines they heard, the lists over those lines (words and URLs spoken), the
        decision under ``policy``; a window an analyzer failed on is never allowed.
        Frame analyzers of the policy get no input. ``sha256`` is the window's
        (:func:`window_sha256`), when the caller has it already."""
        started = time.perf_counter()
        names, errors = self._policy_analyzers(policy)
        runs = await self._run_stages(names, (), tenant, audio=(window,))
        per_analyzer, timings = self._collect(runs, tenant, errors)
        merged = merge_outputs(per_analyzer, (_AUDIO_SLOT,), animated=False)
        return self._result(
            merged,
            policy,
            lists,
            undetectable=self.undetectable(
                policy, self.analyzers_for(names, ContentKind.AUDIO_WINDOW)
            ),
            timings=timings,
            errors=errors,
            hashes={"sha256": sha256 or window_sha256(window), **merged.hashes},
            media=MediaInfo(
                format=f"audio window ({window.sample_rate} Hz mono)",
                mode="audio",
                width=0,
                height=0,
                bytes=int(window.samples.nbytes),
                frames=0,
                frames_analyzed=0,
            ),
            started=started,
            transcript=_transcript(per_analyzer),
        )


def _first_embeddings(
    per_analyzer: Mapping[str, Sequence[AnalyzerOutput]],
) -> dict[str, np.ndarray]:
    """Each analyzer's embedding of the first frame it made one for (search indexes it;
    the result keeps it unserialised)."""
    found: dict[str, np.ndarray] = {}
    for name, outs in per_analyzer.items():
        for out in outs:
            if out.embedding is not None:
                found[name] = np.asarray(out.embedding, dtype=np.float32).reshape(-1)
                break
    return found


def _transcript(per_analyzer: Mapping[str, Sequence[AnalyzerOutput]]) -> list[TranscriptSegment]:
    """The transcript segments the analyzers put in their outputs' ``extra``, in the order
    their text lines are merged in."""
    return [
        seg
        for outs in per_analyzer.values()
        for out in outs
        for seg in out.extra.get(TRANSCRIPT_KEY, ())
    ]
