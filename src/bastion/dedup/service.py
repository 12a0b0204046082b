"""The front of de-duplication that the sync API and the job worker call.

:meth:`Dedup.moderate_bytes` decodes once and goes through the engine's in-memory
cache (which also makes concurrent duplicates share one analysis); on a miss there it
asks the database for the same bytes under the same scope, then (when enabled) for a
near-duplicate image by PDQ distance, and only then runs the analyzers and stores the
result. Database trouble never fails a request: it is logged and the image analysed.

Every level is scoped by tenant: a result is only ever reused for the tenant whose
request produced it, never across tenants (see :meth:`Engine.moderate_decoded
<bastion.pipeline.engine.Engine.moderate_decoded>` for why).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bastion.analyzers.hashes import HashesAnalyzer, HashesConfig
from bastion.dedup import fingerprint
from bastion.dedup.config import DedupConfig
from bastion.dedup.pdqindex import PdqHash
from bastion.dedup.repo import NearMatch, PurgeStats, ResultStore
from bastion.dedup.reuse import as_near_duplicate
from bastion.media.types import DecodedImage
from bastion.pipeline.engine import Engine
from bastion.policy.lists import CompiledLists
from bastion.policy.model import Lists, Policy
from bastion.results import ModerationResult

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class DedupStats:
    """What happened to requests that missed the in-memory cache."""

    stored_hits: int = 0
    near_hits: int = 0
    analysed: int = 0
    stored: int = 0
    purged: int = 0
    db_errors: int = 0


def _storable(result: ModerationResult) -> bool:
    """Results with a failed analyzer may come out differently next time: not stored."""
    return not any(e.get("code") == "analyzer_failed" for e in result.errors)


class Dedup:
    """Reuses stored results for identical (and optionally near-duplicate) images."""

    def __init__(
        self, engine: Engine, sessions: sessionmaker[Session], config: DedupConfig
    ) -> None:
        self.engine = engine
        self.config = config
        self.store = ResultStore(sessions, config)
        self.stats = DedupStats()
        self._model_fp: str | None = None
        self._hasher: HashesAnalyzer | None = None
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

    # moderation ------------------------------------------------------------
    async def moderate_bytes(
        self,
        data: bytes,
        policy: Policy,
        *,
        tenant: str,
        extra_lists: Lists | None = None,
        content_type: str | None = None,
    ) -> ModerationResult:
        """Like :meth:`Engine.moderate_bytes`, reusing results ``tenant`` stored (when
        enabled); other tenants' results are never used."""
        decoded = await self.engine.decode(data, content_type)
        return await self.engine.moderate_decoded(
            decoded,
            policy,
            tenant=tenant,
            extra_lists=extra_lists,
            store=self if self.config.enabled else None,
        )

    async def fetch_or_analyse(
        self,
        decoded: DecodedImage,
        policy: Policy,
        lists: CompiledLists,
        analyse: Callable[[], Awaitable[ModerationResult]],
        *,
        tenant: str,
    ) -> ModerationResult:
        """``tenant``'s stored result for the same bytes, else one of its near duplicates',
        else analyse and store for ``tenant``."""
        model_fp = self.model_fingerprint
        scope = fingerprint.scope(policy, lists, model_fp)
        found = await self._db(self.store.get, decoded.sha256, scope, tenant=tenant)
        if found is not None:
            self.stats.stored_hits += 1
            return found.model_copy(update={"cached": True})
        pdq: PdqHash | None = None
        near_on = self.config.near_duplicate_max_distance is not None
        hashes = await self._hash(decoded) if near_on and not decoded.animated else None
        if hashes is not None:
            pdq = PdqHash(str(hashes["pdq"]), int(hashes["pdq_quality"]))
            near = await self._near(pdq, scope, tenant)
            if near is not None:
                self.stats.near_hits += 1
                return as_near_duplicate(
                    near.result,
                    decoded,
                    of_sha256=near.sha256,
                    distance=near.distance,
                    hashes=hashes,
                )
        result = await analyse()
        self.stats.analysed += 1
        if _storable(result):
            if pdq is None and "pdq" in result.hashes and "pdq_quality" in result.hashes:
                pdq = PdqHash(str(result.hashes["pdq"]), int(result.hashes["pdq_quality"]))
            if decoded.animated:
                pdq = None  # one frame's hash does not stand for an animation
            stored = await self._db(
                self.store.put,
                decoded.sha256,
                scope,
                model_fp,
                result,
                pdq,
                tenant=tenant,
                index_pdq=near_on,
            )
            if stored:
                self.stats.stored += 1
                await self._after_insert()
        return result

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
            return await asyncio.to_thread(self._hash_sync, decoded)
        except Exception:
            log.exception("perceptual hash failed; no near-duplicate lookup")
            return None

    def _hash_sync(self, decoded: DecodedImage) -> dict[str, Any]:
        """The way the hashes analyzer computes them (its settings when one is loaded)."""
        hasher = self._hasher
        if hasher is None:
            configured = [
                a
                for a in self.engine.analyzers.values()
                if isinstance(a, HashesAnalyzer) and a.config.pdq
            ]
            hasher = configured[0] if configured else None
            if hasher is None:
                hasher = HashesAnalyzer(HashesConfig(name="dedup-pdq"), self.engine.context)
            hasher.load()
            self._hasher = hasher
        out = hasher.analyze([hasher.preprocess(decoded.frames[0])])[0]
        return out.hashes
