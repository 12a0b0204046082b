"""Decisions become samples: the worker collects decisions that kept their media.

The review service is the one place that writes decisions, and it writes them in the
API process, inside the deciding transaction, where the embedding is not known (it
takes a model run on the media, which does not belong in a request). So a decision only
records that its media is kept (``media_kept``: the tenant consented then, and the item
had media), and :class:`SampleCollector` — run by every process with the worker role
every ``samples.collect_every_s`` seconds, and by ``bastion samples collect`` — turns
such items into samples: it reads the media (a job's or a synchronous call's bytes in
the job media store, or an alert's frame, copied into that store), computes the
embedding (:class:`~bastion.samples.embedding.Embedder`) and stores the sample with it
in one transaction. A sample follows the latest decision of its item: a later
correction moves its labels and decision on (the embedding stays: the media is the
same). Media that is gone gives a sample without media; a video, one without an
embedding (videos are not embedded yet). Several collectors may run at once: an item is
one sample (a unique key), and a sample never moves back to an older decision.

:meth:`SampleCollector.embed_missing` gives image samples that lack the current
model's embedding (a new model version, or samples made while no embedding analyzer was
configured) theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bastion.errors import MediaError
from bastion.jobs.media_files import HEAD_BYTES
from bastion.live.thumbnails import LiveThumbnails
from bastion.media.image import sniff
from bastion.samples.config import SamplesConfig
from bastion.samples.embedding import Embedder, to_bytes
from bastion.samples.service import NewEmbedding, NewSample, Pending, SampleService
from bastion.samples.tables import IMAGE, VIDEO, Sample, SampleEmbedding

log = logging.getLogger(__name__)


@dataclass
class CollectReport:
    """What one collection did."""

    created: int = 0
    followed: int = 0
    """Samples moved on to a later decision of their item."""
    without_media: int = 0
    """Samples made without media (it was gone)."""
    without_embedding: int = 0
    """Samples made without an embedding (a video, or bytes that do not decode)."""
    embedded: int = 0
    """Embeddings added to samples that lacked the current model's."""

    def __bool__(self) -> bool:
        return any((self.created, self.followed, self.embedded))


@dataclass(frozen=True, slots=True)
class _Media:
    data: bytes | None
    sha256: str | None
    copy: bool
    """An alert's frame: to be stored in the job media store."""


class SampleCollector:
    """Turns kept decisions into samples with the embeddings of ``embedder`` (None: no
    embedding analyzer is configured; samples are made without embeddings)."""

    def __init__(
        self,
        samples: SampleService,
        embedder: Embedder | None,
        config: SamplesConfig,
        *,
        thumbnails: LiveThumbnails | None = None,
    ) -> None:
        self.samples = samples
        self.embedder = embedder
        self.config = config
        self.thumbnails = thumbnails

    async def collect(self, tenant_id: str | None = None) -> CollectReport:
        """Make and move on every sample decisions call for (every tenant's, or
        ``tenant_id``'s), then embed a batch of samples lacking an embedding."""
        report = CollectReport()
        while True:
            batch = await asyncio.to_thread(
                self.samples.pending, self.config.collect_batch, tenant_id
            )
            progressed = False
            for pending in batch:
                if pending.sample_id is not None:
                    if await asyncio.to_thread(self.samples.follow, pending):
                        report.followed += 1
                        progressed = True
                elif await self._create(pending, report):
                    report.created += 1
                    progressed = True
            if not progressed:  # none left, or only ones another collector is taking
                break
        report.embedded = await self.embed_missing(tenant_id)
        return report

    async def _create(self, pending: Pending, report: CollectReport) -> bool:
        d, item = pending.decision, pending.item
        media = await asyncio.to_thread(self._read, pending)
        kind = fmt = None
        embeddings: list[NewEmbedding] = []
        sha = media.sha256
        if media.data is not None:
            found = sniff(media.data[:HEAD_BYTES])
            kind = VIDEO if found.kind == VIDEO else None
            if self.embedder is not None and found.pillow_format is not None:
                try:
                    decoded = await self.embedder.decode(media.data)
                except MediaError as exc:
                    log.warning("review item %s: media does not decode: %s", item.id, exc)
                else:
                    kind, fmt = IMAGE, decoded.format
                    vector = await self.embedder.embed(decoded)
                    embeddings.append(
                        NewEmbedding(self.embedder.model, self.embedder.analyzer.name, vector)
                    )
            elif found.pillow_format is not None:
                kind, fmt = IMAGE, found.pillow_format
            if media.copy and kind == IMAGE:
                sha = (await asyncio.to_thread(self.samples.media.store, media.data)).sha256
            elif media.copy:  # a frame that is not an image after all: not kept
                sha = None
        else:
            sha = None
        labels = [str(n) for n in d.labels_after or []]
        new = NewSample(
            tenant_id=d.tenant_id,
            labels=labels,
            decision=d.decision,
            source=d.source,
            taken_by=f"{d.actor_kind}:{d.actor_id}",
            taken_at=d.decided_at,
            media_sha256=sha,
            media_kind=kind,
            media_format=fmt,
            model_labels=pending.model_labels,
            model_decision=d.model_decision,
            review_item_id=item.id,
            review_decision_id=d.id,
            embeddings=embeddings,
        )
        try:
            await asyncio.to_thread(self.samples.add, new, consent=False)
        except IntegrityError:  # another collector made it meanwhile
            return False
        report.without_media += sha is None
        report.without_embedding += not embeddings
        return True

    def _read(self, pending: Pending) -> _Media:
        """The item's media bytes (None when it has none, or they are gone)."""
        item = pending.item
        media = item.media or {}
        kind = media.get("kind")
        if kind in ("job", "upload") and item.media_sha256:
            path = self.samples.media.path(item.media_sha256)
            return _Media(_read_image(path, self._max_bytes), item.media_sha256, False)
        if kind == "alert_thumbnail" and self.thumbnails is not None:
            path = self.thumbnails.path(str(media.get("stream_pk")), str(media.get("name")))
            return _Media(_read_image(path, self._max_bytes), None, True)
        return _Media(None, None, False)

    @property
    def _max_bytes(self) -> int:
        if self.embedder is not None:
            return self.embedder.limits.max_bytes
        return 50 * 1024 * 1024

    async def embed_missing(self, tenant_id: str | None = None) -> int:
        """Embed up to ``samples.collect_batch`` image samples that lack an embedding
        of the embedder's model; how many were embedded."""
        if self.embedder is None:
            return 0
        embedder = self.embedder
        model = embedder.model
        rows = await asyncio.to_thread(self._lacking, tenant_id, model.name, model.version)
        done = 0
        for sample_id, tenant, sha in rows:
            data = await asyncio.to_thread(
                _read_image, self.samples.media.path(sha), embedder.limits.max_bytes
            )
            if data is None:
                continue
            try:
                decoded = await embedder.decode(data)
            except MediaError as exc:
                log.warning("sample %s: media does not decode: %s", sample_id, exc)
                continue
            vector = await embedder.embed(decoded)
            row = SampleEmbedding(
                sample_id=sample_id,
                tenant_id=tenant,
                model=model.name,
                version=model.version,
                analyzer=embedder.analyzer.name,
                dim=int(vector.size),
                vector=to_bytes(vector),
                created_at=self.samples.now(),
            )
            if await asyncio.to_thread(self._add_embedding, row):
                done += 1
        return done

    def _lacking(
        self, tenant_id: str | None, model: str, version: str
    ) -> list[tuple[str, str, str]]:
        has = (
            select(SampleEmbedding.sample_id)
            .where(
                SampleEmbedding.sample_id == Sample.id,
                SampleEmbedding.model == model,
                SampleEmbedding.version == version,
            )
            .exists()
        )
        q = select(Sample.id, Sample.tenant_id, Sample.media_sha256).where(
            Sample.media_kind == IMAGE, Sample.media_sha256.is_not(None), ~has
        )
        if tenant_id is not None:
            q = q.where(Sample.tenant_id == tenant_id)
        q = q.order_by(Sample.created_at, Sample.id).limit(self.config.collect_batch)
        with self.samples.sessions() as s:
            return [(str(a), str(b), str(c)) for a, b, c in s.execute(q).all()]

    def _add_embedding(self, row: SampleEmbedding) -> bool:
        try:
            with self.samples.sessions.begin() as s:
                if s.get(Sample, row.sample_id) is None:  # deleted meanwhile
                    return False
                s.add(row)
            return True
        except IntegrityError:  # embedded by another collector meanwhile
            return False

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Collect every ``samples.collect_every_s`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                report = await self.collect()
                if report:
                    log.info("samples collected: %s", report)
            except Exception:
                log.exception("collecting samples failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.collect_every_s)


def _read_image(path: Path, max_bytes: int) -> bytes | None:
    """A stored file's bytes when they are an image of at most ``max_bytes``; else only
    their head (what tells their kind). None when the file is gone."""
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
            if sniff(head).pillow_format is None:
                return head
            data = head + fh.read(max_bytes + 1 - len(head))
    except FileNotFoundError:
        return None
    return data[:HEAD_BYTES] if len(data) > max_bytes else data
