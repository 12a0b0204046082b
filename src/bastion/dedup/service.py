"""Stored results: the level of moderation between the in-memory caches and the analyzers
(:class:`~bastion.pipeline.moderation.StoredResults`), for the sync API and image jobs.

:meth:`Dedup.lookup` asks the database for the same bytes under the same scope (policy,
lists, models), then (when enabled) for a near-duplicate image by PDQ distance; when
neither is there, the request is analysed and the lookup keeps the fresh result
(:meth:`Lookup.keep`). Database trouble never fails a request: it is logged and the
image analysed.

Every lookup is scoped by tenant: a result is only ever reused for the tenant whose
request produced it, never across tenants (:mod:`bastion.pipeline.moderation` says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bastion.dedup import fingerprint
from bastion.dedup.config import DedupConfig
from bastion.dedup.pdqindex import PdqHash
from bastion.dedup.repo import NearMatch, PurgeStats, ResultStore
from bastion.dedup.reuse import as_near_duplicate
from bastion.media.types import DecodedImage
from bastion.pipeline.engine import Engine
from bastion.policy.lists import CompiledLists
from bastion.policy.model import Policy
from bastion.results import ModerationResult

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class DedupStats:
    """What happened to requests that missed the in-memory cache."""

    stored_hits: int = 0
    near_hits: int = 0
    analyzed: int = 0
    stored: int = 0
    purged: int = 0
    db_errors: int = 0


def _storable(result: ModerationResult) -> bool:
    """Results with a failed analyzer may come out differently next time: not stored."""
    return not any(e.get("code") == "analyzer_failed" for e in result.errors)


@dataclass
class Lookup:
    """One request's lookup: the stored result found, or where to keep the fresh one."""

    dedup: Dedup
    decoded: DecodedImage
    tenant: str
    scope: str
    model_fp: str
    found: ModerationResult | None = None
    pdq: PdqHash | None = None
    """The request image's PDQ hash, when the near-duplicate lookup computed it."""

    async def keep(self, result: ModerationResult) -> None:
        """Store ``result``, the analysis of the request, for its tenant (when storable)."""
        await self.dedup.keep(self, result)


class Dedup:
    """Reuses stored results for identical (and optionally near-duplicate) images."""

    def __init__(
        self, engine: Engine, sessions: sessionmaker[Session], config: DedupConfig
    ) -> None:
        self.engine = engine
        self.config = config
        self.store = ResultStore(sessions, config)
        self.stats = DedupStats()
        self.hashing = engine.perceptual_hashing()
        """How request images are hashed: as the results being stored hash them."""
        self._model_fp: str | None = None
        self._since_purge = 0

    @property
    def model_fingerprint(self) -> str:
        """Fingerprint of the loaded analyzers; computed once (versions are stable)."""
        if self._model_fp is None:
            self._model_fp = fingerprint.model_fingerprint(
                self.engine.analyzers, self.engine.settings.limits.max_frames
            )
        return self._model_fp

    # upkeep ----------------------------------------------------------------
    def purge(self) -> PurgeStats:
        """Drop other models' results, expired ones and the surplus (blocking)."""
        stats = self.store.purge(self.model_fingerprint)
        self._since_purge = 0
        self.stats.purged += stats.total
        if stats.total:
            log.info(
                "dedup purge: %d of other models, %d expired, %d evicted",
                stats.other_model,
                stats.expired,
                stats.evicted,
            )
        return stats

    def start(self) -> None:
        """At start-up (blocking): fix the model fingerprint and purge."""
        if self.config.enabled:
            self.purge()

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Purge every ``purge_interval_s`` until ``stop`` is set."""
        if not self.config.enabled:
            return
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.purge_interval_s)
                return
            try:
                await asyncio.to_thread(self.purge)
            except SQLAlchemyError:
                log.exception("dedup purge failed")

    # the stored level ------------------------------------------------------
    async def lookup(
        self, decoded: DecodedImage, policy: Policy, lists: CompiledLists, *, tenant: str
    ) -> Lookup:
        """``tenant``'s stored result for the same bytes, else one of its near duplicates'
        (``found``); other tenants' results are never used."""
        model_fp = self.model_fingerprint
        scope = fingerprint.scope(policy, lists, model_fp, self._tenant_models(policy, tenant))
        lookup = Lookup(self, decoded, tenant, scope, model_fp)
        found = await self._db(self.store.get, decoded.sha256, scope, tenant=tenant)
        if found is not None:
            self.stats.stored_hits += 1
            lookup.found = found.model_copy(update={"cached": True})
            return lookup
        near_on = self.config.near_duplicate_max_distance is not None
        hashes = await self._hash(decoded) if near_on and not decoded.animated else None
        if hashes is not None:
            lookup.pdq = PdqHash(str(hashes["pdq"]), int(hashes["pdq_quality"]))
            near = await self._near(lookup.pdq, scope, tenant)
            if near is not None:
                self.stats.near_hits += 1
                lookup.found = as_near_duplicate(
                    near.result,
                    decoded,
                    of_sha256=near.sha256,
                    distance=near.distance,
                    hashes=hashes,
                )
        return lookup

    def _tenant_models(self, policy: Policy, tenant: str) -> str:
        """The versions of ``tenant``'s own models among the policy's analyzers."""
        analyzers = self.engine.analyzers
        return ",".join(
            f"{n}={a.version_for(tenant)}"
            for n in policy.analyzers
            if (a := analyzers.get(n)) is not None and a.version_for(tenant) != a.version
        )

    async def keep(self, lookup: Lookup, result: ModerationResult) -> None:
        """Store ``result``, the analysis of the request ``lookup`` found nothing for,
        for the request's tenant only; results with a failed analyzer are not stored."""
        self.stats.analyzed += 1
        if not _storable(result):
            return
        pdq = lookup.pdq
        if pdq is None and "pdq" in result.hashes and "pdq_quality" in result.hashes:
            pdq = PdqHash(str(result.hashes["pdq"]), int(result.hashes["pdq_quality"]))
        if lookup.decoded.animated:
            pdq = None  # one frame's hash does not stand for an animation
        stored = await self._db(
            self.store.put,
            lookup.decoded.sha256,
            lookup.scope,
            lookup.model_fp,
            result,
            pdq,
            tenant=lookup.tenant,
            index_pdq=self.config.near_duplicate_max_distance is not None,
        )
        if stored:
            self.stats.stored += 1
            await self._after_insert()

    async def _near(self, pdq: PdqHash, scope: str, tenant: str) -> NearMatch | None:
        distance = self.config.near_duplicate_max_distance
        if distance is None:
            return None
        return await self._db(self.store.nearest, pdq, scope, distance, tenant=tenant)

    async def _after_insert(self) -> None:
        self._since_purge += 1
        if self._since_purge >= max(1, self.config.max_entries // 10):
            self._since_purge = 0
            await self._db(self.purge)

    async def _db(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except SQLAlchemyError:
            self.stats.db_errors += 1
            log.exception("dedup store unavailable; analysing without it")
            return None

    # perceptual hash of the request image --------------------------------------
    async def _hash(self, decoded: DecodedImage) -> dict[str, Any] | None:
        """PDQ (and dHash) of the image; None (no near-duplicate lookup) when it fails."""
        try:
            return await asyncio.to_thread(self.hashing, decoded.frames[0])
        except Exception:
            log.exception("perceptual hash failed; no near-duplicate lookup")
            return None
