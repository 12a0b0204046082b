"""The one way into moderation: every image, frame and audio window Bastion moderates
goes through :class:`Moderation`, whoever asks (the sync API and its batches, jobs'
images and video frames, ``bastion scan``, frames of live streams and frames pushed
through the API, windows of audio files and of videos' sound through
:meth:`Moderation.moderate_audio_window`).

A request goes one way through these levels, each asked only when the one before it has
no answer:

1. bytes are decoded once (:meth:`Moderation.decode`, in the engine's worker pool);
2. the in-memory result cache: the same pixels under the same policy, lists, analyzer
   versions and tenant get the result already there, and concurrent duplicates share
   one analysis. Frames of videos and streams (:class:`VideoFrameImage`) have a cache of
   their own, so that a long video does not evict images;
3. stored results (:class:`StoredResults`, the de-duplication in the database): for
   requests of a tenant that ask for them (uploaded images), when the process has them;
4. the analyzers and the policy (:meth:`Engine.analyze
   <bastion.pipeline.engine.Engine.analyze>`, :meth:`Engine.analyze_audio
   <bastion.pipeline.engine.Engine.analyze_audio>`): labels become a decision, and an
   item an analyzer failed on is never allowed (review).

Audio windows share the cache of video frames (their keys never meet) and never reach
stored results: they are keyed by the sha256 of their samples, their start time (their
transcript's times are the media's) and language, the tenant, the policy, the lists and
the analyzers' versions.

Results are reused (and concurrent duplicates coalesced) only within one tenant, at
every level. Sharing them across tenants was given up on purpose: a reused result says
``cached: true``, carries the first request's timings and comes back several times
faster, so a tenant sending the same bytes as another would learn that the other had
sent them, from the response time alone even if the flag were hidden. No tenant
(``None``) is for callers that serve none (the command line, benchmarks): they share a
scope of their own and never reach stored results.

Moderation is also where items are counted for the statistics: a caller that names its
``source`` (the synchronous API, live frames) has each result counted for its tenant,
with the decision, in :attr:`Moderation.counter` (memory; written every few seconds by
:mod:`bastion.stats.flush`). Callers without a source (jobs, counted from their table;
video frames; the rule tester; the command line) are not counted here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from bastion.media.image import decode_image
from bastion.media.types import AudioWindow, DecodedImage
from bastion.pipeline.cache import ResultCache
from bastion.pipeline.engine import Engine, window_sha256
from bastion.policy.lists import CompiledLists
from bastion.policy.model import Lists, Policy
from bastion.results import ModerationResult
from bastion.runtime.metrics import Metrics
from bastion.stats.counter import DailyCounter

__all__ = ["Moderation", "StoredLookup", "StoredResults", "VideoFrameImage"]


@dataclass(frozen=True, slots=True)
class VideoFrameImage(DecodedImage):
    """A frame sampled from a video or a live stream: its results are cached apart from
    images' results."""


class StoredLookup(Protocol):
    """What the stored level answered for one request."""

    @property
    def found(self) -> ModerationResult | None:
        """A stored result to answer with (``cached`` set; ``near_duplicate_of`` when it
        is another image's), or None: the request is analysed and :meth:`keep` called."""
        ...

    async def keep(self, result: ModerationResult) -> None:
        """Store ``result``, the request's fresh analysis, for the request's tenant
        (results that may come out differently next time are not stored)."""
        ...


class StoredResults(Protocol):
    """Results tenants stored earlier: the level between the in-memory cache and the
    analyzers (:class:`bastion.dedup.service.Dedup`)."""

    async def lookup(
        self, decoded: DecodedImage, policy: Policy, lists: CompiledLists, *, tenant: str
    ) -> StoredLookup:
        """``tenant``'s stored result for the same bytes or a near duplicate of them
        under the same policy, lists and models; never another tenant's."""
        ...


class Moderation:
    """Decodes, caches, reuses stored results, analyses and decides. One per process."""

    def __init__(
        self,
        engine: Engine,
        stored: StoredResults | None = None,
        counter: DailyCounter | None = None,
    ) -> None:
        self.engine = engine
        self.stored = stored
        """The stored level; None where the process has no database or it is switched off."""
        self.counter = counter if counter is not None else DailyCounter()
        """Items moderated per tenant, source and decision, until they are written."""
        settings = engine.settings
        self.cache: ResultCache[ModerationResult] = ResultCache(settings.result_cache_size)
        self.frame_cache: ResultCache[ModerationResult] = ResultCache(
            settings.dedup.frame_cache_size
        )

    @property
    def metrics(self) -> Metrics:
        return self.engine.metrics

    async def decode(self, data: bytes, content_type: str | None = None) -> DecodedImage:
        """``data`` decoded (in the engine's worker pool) within the configured limits."""
        limits = self.engine.settings.limits
        return await self.engine.run_in_pool(
            partial(decode_image, data, limits, content_type=content_type)
        )

    async def moderate_bytes(
        self,
        data: bytes,
        policy: Policy,
        *,
        tenant: str | None = None,
        extra_lists: Lists | None = None,
        content_type: str | None = None,
        store: bool = False,
        source: str | None = None,
    ) -> ModerationResult:
        """Decode ``data`` once and moderate it (see :meth:`moderate_decoded`)."""
        decoded = await self.decode(data, content_type)
        return await self.moderate_decoded(
            decoded, policy, tenant=tenant, extra_lists=extra_lists, store=store, source=source
        )

    async def moderate_decoded(
        self,
        decoded: DecodedImage,
        policy: Policy,
        *,
        tenant: str | None = None,
        extra_lists: Lists | None = None,
        store: bool = False,
        source: str | None = None,
    ) -> ModerationResult:
        """Moderate ``decoded`` for ``tenant`` under ``policy`` and the tenant's
        ``extra_lists``: the in-memory cache, then (with ``store`` and a tenant) the
        stored results, then the analyzers.

        ``store`` is for uploaded images (the sync API and image jobs): their results are
        reused from and kept in the stored level. Frames of videos and streams are not.
        ``source`` (``api``, ``live``) counts the result in the tenant's statistics.
        """
        lists = self.engine.compiled_lists(policy.lists.merged(extra_lists or Lists()))
        key = self._cache_key(decoded, policy, lists, tenant)
        cache = self.frame_cache if isinstance(decoded, VideoFrameImage) else self.cache
        stored = self.stored if store else None

        async def compute() -> ModerationResult:
            if stored is None or tenant is None:
                return await self.engine.analyze(decoded, policy, lists, tenant=tenant)
            lookup = await stored.lookup(decoded, policy, lists, tenant=tenant)
            if lookup.found is not None:
                return lookup.found
            result = await self.engine.analyze(decoded, policy, lists, tenant=tenant)
            await lookup.keep(result)
            return result

        result, cached = await cache.get_or_compute(key, compute)
        if cached:
            result = result.model_copy(update={"cached": True})
        self.metrics.decisions.labels(result.decision).inc()
        if source is not None and tenant is not None:
            self.counter.moderated(tenant, source, result.decision)
        return result

    async def moderate_audio_window(
        self,
        window: AudioWindow,
        policy: Policy,
        *,
        tenant: str | None = None,
        extra_lists: Lists | None = None,
        source: str | None = None,
    ) -> ModerationResult:
        """Moderate one audio window for ``tenant`` under ``policy`` and the tenant's
        ``extra_lists``, like an image: the in-memory cache (the same samples at the same
        time in the media, same language, policy, lists, versions and tenant), then the
        analyzers (:meth:`Engine.analyze_audio
        <bastion.pipeline.engine.Engine.analyze_audio>`). ``source`` counts the result in
        the tenant's statistics."""
        lists = self.engine.compiled_lists(policy.lists.merged(extra_lists or Lists()))
        sha256 = await self.engine.run_in_pool(lambda: window_sha256(window))
        where = json.dumps(["audio", sha256, window.start_s, window.language, window.languages])
        key = self._key(where, policy, lists, tenant)

        async def compute() -> ModerationResult:
            return await self.engine.analyze_audio(
                window, policy, lists, tenant=tenant, sha256=sha256
            )

        result, cached = await self.frame_cache.get_or_compute(key, compute)
        if cached:
            result = result.model_copy(update={"cached": True})
        self.metrics.decisions.labels(result.decision).inc()
        if source is not None and tenant is not None:
            self.counter.moderated(tenant, source, result.decision)
        return result

    def _cache_key(
        self, decoded: DecodedImage, policy: Policy, lists: CompiledLists, tenant: str | None
    ) -> str:
        return self._key(decoded.sha256, policy, lists, tenant)

    def _key(self, item: str, policy: Policy, lists: CompiledLists, tenant: str | None) -> str:
        analyzers = self.engine.analyzers
        versions = ",".join(
            f"{n}={analyzers[n].version_for(tenant)}" for n in policy.analyzers if n in analyzers
        )
        # JSON keeps the parts apart whatever a tenant id holds; None (no tenant) is null
        raw = json.dumps([tenant, item, policy.version, lists.version, versions])
        return hashlib.sha256(raw.encode()).hexdigest()
