"""Feeding analysed media into search as it is analysed, off the path of its result.

:class:`SearchFeed` is what the pipeline's front ends call once a piece of media has
been analysed: the job worker after a job's result is stored (:meth:`SearchFeed.job`),
the live frame processor after a frame is moderated (:meth:`SearchFeed.wants_frame`,
then :meth:`SearchFeed.frame`), ``bastion scan --index`` and ``bastion search
reindex``. Each call indexes in a thread and never raises: a failure is logged and
counted (``bastion_search_index_total{source, outcome}``), and the media's result is
never delayed or changed by it. Indexing runs on the feed's own threads
(:attr:`~bastion.search.config.SearchConfig.index_threads`), not the event loop's
default pool, so that it neither queues the process's other work behind it nor writes
to the database from many threads at once. :meth:`SearchFeed.submit` runs the indexing as a
background task, at most :attr:`~bastion.search.config.SearchConfig.max_pending` at
once (more are dropped and counted); :meth:`SearchFeed.drain` waits for them.

What is indexed, and under which ``media_ref``:

* an image job: its labels, tags, text, codes, URLs and faces, and the image embedding
  the analysis made (kept on the typed result, see
  :attr:`bastion.results.ModerationResult.embedding`; none for a result from the
  stored results), under the job id, with a small JPEG of the image written to the
  job's thumbnail folder as its thumbnail;
* a video job: its frames' documents and embeddings (by frame index), each frame's
  thumbnail when the job made one, and the transcript of its sound, under the job id;
* an audio job: its transcript, each segment with the labels heard in its time range;
* a live stream's frame: appended to the stream's documents (``media_ref`` the stream
  id, ``start_s`` the capture time in Unix seconds), only when its findings changed
  since the stream's last indexed frame (at most once per ``stream_min_gap_s``) or
  ``stream_every_s`` has passed, so a stream costs a bounded amount of indexing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import tempfile
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from PIL import Image, ImageOps
from pydantic import BaseModel

from bastion.jobs.tables import Job
from bastion.jobs.thumbnails import ThumbnailStore
from bastion.pipeline.audio import AudioResult
from bastion.pipeline.video import VideoResult
from bastion.results import ModerationResult
from bastion.runtime.metrics import Metrics
from bastion.search.indexer import SearchIndexer, TranscriptSegment, strictest_known
from bastion.search.text_index import MediaKind

log = logging.getLogger(__name__)

THUMBNAIL_SIDE: Final = 320
"""Longest side of the JPEG written for an image job, in pixels."""
_MAX_STREAMS: Final = 10_000
"""Streams whose last indexed frame is remembered (the oldest are forgotten)."""

Signature = frozenset[tuple[str, str]]


def frame_signature(result: ModerationResult) -> Signature:
    """What a frame shows, for telling whether a stream's picture changed: its labels,
    tags, text, codes and URLs."""
    items = {("label", label.name) for label in result.labels}
    items |= {("tag", tag.name) for tag in result.tags}
    items |= {("ocr", line.text.strip()) for line in result.text if line.text.strip()}
    items |= {("code", code.text) for code in result.codes}
    items |= {("url", url) for url in result.urls}
    return frozenset(items)


def transcript_segments(audio: Mapping[str, Any]) -> list[TranscriptSegment]:
    """The transcript of an audio result (an :class:`AudioResult` dumped as JSON, or a
    stored audio job's result), each segment with the labels and the strictest decision
    of the labels and windows that overlap its time range."""
    labels = [x for x in audio.get("labels") or [] if isinstance(x, Mapping)]
    windows = [x for x in audio.get("windows") or [] if isinstance(x, Mapping)]
    out: list[TranscriptSegment] = []
    for seg in audio.get("transcript") or []:
        start, end = float(seg["start_s"]), float(seg["end_s"])

        def overlaps(x: Mapping[str, Any], start: float = start, end: float = end) -> bool:
            return float(x.get("start_s", 0.0)) <= end and float(x.get("end_s", 0.0)) >= start

        heard = [x for x in labels if overlaps(x)]
        names = {str(x["name"]) for x in heard} | {
            str(x["parent"]) for x in heard if x.get("parent")
        }
        out.append(
            TranscriptSegment(
                start_s=start,
                end_s=max(start, end),
                text=str(seg.get("text") or ""),
                language=seg.get("language") or audio.get("language"),
                labels=tuple(sorted(names)),
                decision=strictest_known(x.get("decision") for x in windows if overlaps(x)),
            )
        )
    return out


def write_image_thumbnail(source: Path, folder: Path, max_side: int = THUMBNAIL_SIDE) -> str:
    """Write a small JPEG of the image ``source`` into ``folder`` (named by its sha256,
    written atomically); its path. Raises what Pillow raises for what it cannot read."""
    with Image.open(source) as img:
        img.draft("RGB", (max_side, max_side))  # JPEG: decode at a fraction of the size
        img.seek(0)
        small = ImageOps.exif_transpose(img).convert("RGB")
    small.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=80)
    data = buf.getvalue()
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.jpg"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return str(path)


class SearchFeed:
    """Indexes analysed media into :class:`SearchIndexer` without ever failing or
    delaying what analysed it.

    ``image_analyzer`` names the analyzer whose embeddings are indexed (the image
    space's; None: the first that made one); ``job_thumbnails`` and ``job_media``
    (a path of a stored media's sha256) let an image job get a thumbnail; ``metrics``
    are the process's (None: a private set).
    """

    def __init__(
        self,
        indexer: SearchIndexer,
        *,
        image_analyzer: str | None = None,
        job_thumbnails: ThumbnailStore | None = None,
        job_media: Callable[[str], Path] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.indexer = indexer
        self.config = indexer.config
        self.image_analyzer = image_analyzer
        self.job_thumbnails = job_thumbnails
        self.job_media = job_media
        self.indexed = (metrics or Metrics()).search_indexed
        self._tasks: set[asyncio.Task[bool]] = set()
        self._streams: dict[tuple[str, str], tuple[float, Signature]] = {}
        self._executor = ThreadPoolExecutor(
            self.config.index_threads, thread_name_prefix="search-index"
        )

    # --- running in the background ----------------------------------------------------

    def submit(self, work: Coroutine[Any, Any, bool], source: str) -> bool:
        """Run ``work`` (one of this feed's calls) as a background task; False when
        :attr:`~bastion.search.config.SearchConfig.max_pending` are waiting already (it
        is dropped and counted)."""
        if len(self._tasks) >= self.config.max_pending:
            work.close()
            self.indexed.labels(source, "dropped").inc()
            return False
        task = asyncio.get_running_loop().create_task(work, name=f"search-index-{source}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def submit_or_wait(self, work: Coroutine[Any, Any, bool], source: str) -> None:
        """Run ``work`` in the background, or, when
        :attr:`~bastion.search.config.SearchConfig.max_pending` are waiting already, now
        (the caller waits: a job's media is never left unindexed for lack of room)."""
        if len(self._tasks) >= self.config.max_pending:
            await work
        else:
            self.submit(work, source)

    @property
    def pending(self) -> int:
        """Background indexing tasks not finished yet."""
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait for the background indexing started so far (at shutdown, in tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def close(self) -> None:
        """Let the indexing threads go (after :meth:`drain`; indexing submitted later
        fails and is counted)."""
        self._executor.shutdown(wait=False)

    async def _run(self, source: str, what: str, call: Callable[[], object]) -> bool:
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except Exception:
            log.exception("indexing %s for search failed", what)
            self.indexed.labels(source, "failed").inc()
            return False
        self.indexed.labels(source, "indexed").inc()
        return True

    # --- media ------------------------------------------------------------------------

    async def image(
        self,
        tenant_id: str,
        media_ref: str,
        result: ModerationResult,
        *,
        thumbnail: str | None = None,
        created_at: datetime | None = None,
        source: str = "job",
    ) -> bool:
        """Index an analysed image (replacing what was indexed of ``media_ref``) with the
        embedding its analysis made, if any; whether it was indexed."""
        embedding = result.embedding_of(self.image_analyzer)
        return await self._run(
            source,
            f"image {media_ref}",
            lambda: self.indexer.index_image(
                tenant_id, media_ref, result, embedding, created_at, thumbnail=thumbnail
            ),
        )

    async def video(
        self,
        tenant_id: str,
        media_ref: str,
        video: VideoResult,
        *,
        created_at: datetime | None = None,
        source: str = "job",
    ) -> bool:
        """Index an analysed video: its frames (with the embeddings its analysis kept)
        and the transcript of its sound; whether it was indexed."""
        embeddings = video.frame_embeddings(self.image_analyzer)
        audio = video.audio.model_dump(mode="json") if video.audio is not None else None

        def index() -> None:
            self.indexer.index_video(
                tenant_id, media_ref, video, embeddings, created_at, media_kind="video"
            )
            segments = transcript_segments(audio) if audio is not None else []
            self.indexer.index_transcript(
                tenant_id, media_ref, segments, created_at, media_kind="video"
            )

        return await self._run(source, f"video {media_ref}", index)

    async def audio(
        self,
        tenant_id: str,
        media_ref: str,
        audio: AudioResult | Mapping[str, Any],
        *,
        created_at: datetime | None = None,
        media_kind: MediaKind = "audio",
        source: str = "job",
    ) -> bool:
        """Index the transcript of analysed audio (an :class:`AudioResult` or a stored
        audio job's result); whether it was indexed."""
        raw = audio.model_dump(mode="json") if isinstance(audio, AudioResult) else audio
        return await self._run(
            source,
            f"audio {media_ref}",
            lambda: self.indexer.index_transcript(
                tenant_id, media_ref, transcript_segments(raw), created_at, media_kind=media_kind
            ),
        )

    # --- live frames ------------------------------------------------------------------

    def wants_frame(
        self, tenant_id: str, stream_id: str, result: ModerationResult, at_s: float
    ) -> bool:
        """Whether a stream's analysed frame should be indexed: its findings changed
        since the stream's last indexed frame and ``stream_min_gap_s`` has passed, or
        ``stream_every_s`` has. A yes counts as the stream's last indexed frame."""
        key = (tenant_id, stream_id)
        signature = frame_signature(result)
        last = self._streams.get(key)
        if last is not None:
            since = at_s - last[0]
            changed = signature != last[1]
            if since < self.config.stream_min_gap_s and since >= 0:
                return False
            if not changed and 0 <= since < self.config.stream_every_s:
                return False
        self._streams.pop(key, None)
        self._streams[key] = (at_s, signature)
        if len(self._streams) > _MAX_STREAMS:
            self._streams.pop(next(iter(self._streams)))
        return True

    async def frame(
        self,
        tenant_id: str,
        stream_id: str,
        result: ModerationResult,
        at_s: float | None = None,
        thumbnail: str | None = None,
    ) -> bool:
        """Append an analysed frame of a live stream to the stream's documents
        (``at_s``: its capture time in Unix seconds, None: now); whether it was
        indexed."""
        at = time.time() if at_s is None else at_s
        embedding = result.embedding_of(self.image_analyzer)
        return await self._run(
            "stream",
            f"a frame of stream {stream_id}",
            lambda: self.indexer.index_frame(
                tenant_id, stream_id, result, embedding, at, thumbnail=thumbnail
            ),
        )

    # --- jobs -------------------------------------------------------------------------

    async def job(
        self,
        job: Job,
        result: Mapping[str, Any],
        typed: BaseModel | None = None,
        *,
        source: str = "job",
    ) -> bool:
        """Index a finished job from its stored ``result`` and, when the worker has it,
        the ``typed`` result it was stored from (which keeps the image embeddings the
        JSON leaves out); whether it was indexed.
        Jobs of another kind are skipped."""
        created = job.finished_at
        try:
            if job.kind == "video":
                video = (
                    typed if isinstance(typed, VideoResult) else VideoResult.model_validate(result)
                )
                return await self.video(
                    job.tenant_id, job.id, video, created_at=created, source=source
                )
            if job.kind == "audio":
                return await self.audio(
                    job.tenant_id, job.id, result, created_at=created, source=source
                )
            if job.kind != "image":
                self.indexed.labels(source, "skipped").inc()
                return False
            image = typed if isinstance(typed, ModerationResult) else None
            if image is None or image.hashes.get("sha256") != result.get("hashes", {}).get(
                "sha256"
            ):
                image = ModerationResult.model_validate(result)
        except Exception:
            log.exception("the result of job %s cannot be indexed", job.id)
            self.indexed.labels(source, "failed").inc()
            return False
        thumbnail = await asyncio.to_thread(self._job_thumbnail, job)
        return await self.image(
            job.tenant_id, job.id, image, thumbnail=thumbnail, created_at=created, source=source
        )

    def _job_thumbnail(self, job: Job) -> str | None:
        """The API path of a small JPEG of an image job's media (written now), or None
        when the media is gone or Pillow cannot read it."""
        if self.job_thumbnails is None or self.job_media is None:
            return None
        try:
            file = write_image_thumbnail(
                self.job_media(job.media_sha256), self.job_thumbnails.folder(job.id)
            )
        except Exception as exc:  # gone (retention), or a format Pillow cannot read
            log.debug("no thumbnail for job %s: %s", job.id, exc)
            return None
        return self.job_thumbnails.url(job.id, file)
