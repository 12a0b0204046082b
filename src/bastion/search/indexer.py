"""The one service that puts analysed media into search, and answers searches.

:class:`SearchIndexer` is what the pipeline calls once a piece of media has been
analysed, and what the search API asks:

* :meth:`~SearchIndexer.index_image` — documents for an image's labels, tags, OCR lines,
  QR/barcode payloads, URLs and face count, and a ``media`` document carrying its image
  embedding (the ``labels`` analyzer's) in the ``image`` vector space;
* :meth:`~SearchIndexer.index_video` — the same per frame, with time ranges: a text seen
  in consecutive analysed frames makes one document spanning them (``start_s`` the first
  frame's time, ``end_s`` the last's, as video segments count), and each frame embedding
  given makes a ``media`` document of its own (frame → frame similarity);
* :meth:`~SearchIndexer.index_transcript` — one document per transcript segment, with
  its time range and language;
* :meth:`~SearchIndexer.index_frame` — one analysed frame of a live stream, added to
  the stream's documents (a stream is never indexed whole);
* :meth:`~SearchIndexer.delete_media`, :meth:`~SearchIndexer.delete_tenant`,
  :meth:`~SearchIndexer.delete_media_kind_before` (a stream's frames past retention);
* :meth:`~SearchIndexer.search` — full-text and semantic (sentence encoder) rankings
  fused into moments (:func:`~bastion.search.fusion.fuse`), paged by an opaque cursor;
* :meth:`~SearchIndexer.similar` — media and moments that look like an embedding or
  like an indexed piece of media.

Text of the :attr:`~bastion.search.config.SearchConfig.semantic_fields` is embedded by
the shared :class:`~bastion.models.sentence_encoder.SentenceEncoder` (``text`` space).
Documents and vectors of one call are written in one transaction, then the open vector
indexes are updated (their files are saved debounced, see
:class:`~bastion.search.vectors.VectorStore`).

Indexing is idempotent per media: indexing an image again replaces all its documents,
a video again replaces its visual documents (not its transcript), a transcript again
replaces the transcript only. Everything here blocks (database, model and faiss work):
async callers run it in a thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bastion.models.sentence_encoder import SentenceEncoder
from bastion.pipeline.video import FrameResult, VideoResult
from bastion.policy.decide import SEVERITY
from bastion.results import ModerationResult
from bastion.search.config import SearchConfig
from bastion.search.errors import MediaNotIndexed, SimilarSearchUnavailable
from bastion.search.fusion import Moment, fuse
from bastion.search.query import terms
from bastion.search.tables import FIELDS, SearchDocument
from bastion.search.text_index import (
    MAX_OFFSET,
    Decision,
    DocumentIn,
    FieldName,
    MediaKind,
    SearchFilters,
    TextHit,
    TextIndex,
    decode_cursor,
    encode_cursor,
    matches,
    query_digest,
)
from bastion.search.vector_rows import store_vectors, vectors_of
from bastion.search.vectors import VectorSpace, VectorStore
from bastion.store.pages import check_limit

VISUAL_FIELDS: Final[tuple[FieldName, ...]] = (
    "label",
    "tag",
    "ocr",
    "code",
    "url",
    "faces",
    "media",
)
"""What indexing a video replaces (its transcript is indexed and replaced on its own)."""
TRANSCRIPT_FIELDS: Final[tuple[FieldName, ...]] = ("transcript",)
SHORT_FIELDS: Final[frozenset[str]] = frozenset({"tag", "label", "code", "url", "faces"})
"""Fields whose texts are a word or a few (semantic matches need a closer similarity)."""
SHORT_TEXT_WORDS: Final = 3
SHORT_TEXT_CHARS: Final = 24


def _is_short(text: str) -> bool:
    """A few words, not a sentence (a line without spaces — Chinese, Japanese, Thai —
    counts as short under :data:`SHORT_TEXT_CHARS` characters)."""
    return len(text.split()) <= SHORT_TEXT_WORDS and len(text) < SHORT_TEXT_CHARS


Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class TranscriptSegment:
    """One stretch of speech: its time range in the media, its text and language."""

    start_s: float
    end_s: float
    text: str
    language: str | None = None
    """ISO 639-1 code when known."""
    labels: tuple[str, ...] = ()
    """Taxonomy labels of the segment (e.g. toxicity), when known."""
    decision: Decision | None = None


SegmentLike = TranscriptSegment | tuple[float, float, str, str | None]
"""A :class:`TranscriptSegment`, or ``(start_s, end_s, text, language)``."""


@dataclass(frozen=True)
class SearchPage:
    """One page of moments, best first, and the cursor of the next page (None: last)."""

    moments: list[Moment]
    next_cursor: str | None


@dataclass(frozen=True)
class _Doc:
    document: DocumentIn
    image: Vector | None = None


def strictest_known(decisions: Iterable[object]) -> Decision | None:
    """The strictest of the decisions among ``decisions`` (other values are ignored);
    None when there is none."""
    given = set(decisions)
    found: list[Decision] = [d for d in ("allow", "review", "block") if d in given]
    if not found:
        return None
    return max(found, key=lambda d: SEVERITY[d])


def _unique(texts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in texts if t and t.strip()))


def _result_labels(result: ModerationResult) -> tuple[str, ...]:
    names = {label.name for label in result.labels}
    names |= {label.parent for label in result.labels if label.parent}
    return tuple(sorted(names))


def _frame_labels(frame: FrameResult) -> set[str]:
    return {label.name for label in frame.labels} | {
        label.parent for label in frame.labels if label.parent
    }


def image_documents(
    media_ref: str,
    result: ModerationResult,
    *,
    embedding: npt.ArrayLike | None = None,
    media_kind: MediaKind = "image",
    created_at: datetime | None = None,
    min_tag_confidence: float = 0.0,
    thumbnail: str | None = None,
) -> list[DocumentIn]:
    """The documents an image's result makes (the ``media`` one first when there is an
    embedding), each with the image's labels, decision and ``thumbnail``."""
    return [
        d.document
        for d in _image_docs(
            media_ref, result, embedding, media_kind, created_at, min_tag_confidence, thumbnail
        )
    ]


def _image_docs(
    media_ref: str,
    result: ModerationResult,
    embedding: npt.ArrayLike | None,
    media_kind: MediaKind,
    created_at: datetime | None,
    min_tag_confidence: float,
    thumbnail: str | None = None,
    start_s: float | None = None,
) -> list[_Doc]:
    labels = _result_labels(result)

    def doc(field: FieldName, text: str, language: str | None = None) -> DocumentIn:
        return DocumentIn(
            media_kind=media_kind,
            media_ref=media_ref,
            field=field,
            text=text,
            language=language,
            labels=labels,
            decision=result.decision,
            created_at=created_at,
            thumbnail=thumbnail,
            start_s=start_s,
            end_s=start_s,
        )

    docs: list[_Doc] = []
    if embedding is not None:
        docs.append(_Doc(doc("media", ""), np.asarray(embedding, dtype=np.float32).reshape(-1)))
    docs += [_Doc(doc("label", name)) for name in labels]
    tags = [t.name for t in result.tags if t.confidence >= min_tag_confidence]
    docs += [_Doc(doc("tag", name)) for name in _unique(tags)]
    seen: set[str] = set()
    for line in result.text:
        text = line.text.strip()
        if text and text not in seen:
            seen.add(text)
            docs.append(_Doc(doc("ocr", text, line.language)))
    docs += [_Doc(doc("code", text)) for text in _unique(c.text for c in result.codes)]
    docs += [_Doc(doc("url", url)) for url in _unique(result.urls)]
    if result.face_count > 0:
        n = result.face_count
        docs.append(_Doc(doc("faces", f"{n} face" if n == 1 else f"{n} faces")))
    return docs


@dataclass
class _Run:
    first: int
    last: int


def _frame_items(frame: FrameResult) -> list[tuple[FieldName, str]]:
    items: list[tuple[FieldName, str]] = []
    items += [("label", name) for name in sorted(_frame_labels(frame))]
    items += [("ocr", text) for text in _unique(frame.text)]
    items += [("code", text) for text in _unique(frame.codes)]
    items += [("url", url) for url in _unique(frame.urls)]
    return items


def video_documents(
    media_ref: str,
    result: VideoResult,
    *,
    frame_embeddings: Mapping[int, npt.ArrayLike] | None = None,
    media_kind: MediaKind = "video",
    created_at: datetime | None = None,
) -> list[DocumentIn]:
    """The documents a video's result makes: runs of consecutive frames showing the same
    label, text, code or URL (one document each), a ``media`` document per frame
    embedding (keyed by :attr:`FrameResult.index`), and the video's tags, untimed."""
    return [
        d.document
        for d in _video_docs(media_ref, result, frame_embeddings or {}, media_kind, created_at)
    ]


def _video_docs(
    media_ref: str,
    result: VideoResult,
    frame_embeddings: Mapping[int, npt.ArrayLike],
    media_kind: MediaKind,
    created_at: datetime | None,
) -> list[_Doc]:
    frames = sorted(result.frames, key=lambda f: (f.timestamp_ms, f.index))
    items = [_frame_items(f) for f in frames]
    runs: list[tuple[FieldName, str, _Run]] = []
    open_runs: dict[tuple[FieldName, str], _Run] = {}
    for i, found in enumerate(items):
        here = set(found)
        for key in [k for k in open_runs if k not in here]:
            runs.append((*key, open_runs.pop(key)))
        for key in found:
            if key in open_runs:
                open_runs[key].last = i
            else:
                open_runs[key] = _Run(i, i)
    runs += [(*key, run) for key, run in open_runs.items()]
    runs.sort(key=lambda r: (r[2].first, FIELDS.index(r[0]), r[1]))

    docs: list[_Doc] = []
    for frame in frames:
        vector = frame_embeddings.get(frame.index)
        if vector is None:
            continue
        t = frame.timestamp_ms / 1000
        docs.append(
            _Doc(
                DocumentIn(
                    media_kind=media_kind,
                    media_ref=media_ref,
                    field="media",
                    text="",
                    start_s=t,
                    end_s=t,
                    labels=tuple(sorted(_frame_labels(frame))),
                    decision=frame.decision,
                    created_at=created_at,
                    thumbnail=frame.thumbnail,
                ),
                np.asarray(vector, dtype=np.float32).reshape(-1),
            )
        )
    for field, text, run in runs:
        span = frames[run.first : run.last + 1]
        docs.append(
            _Doc(
                DocumentIn(
                    media_kind=media_kind,
                    media_ref=media_ref,
                    field=field,
                    text=text,
                    start_s=span[0].timestamp_ms / 1000,
                    end_s=span[-1].timestamp_ms / 1000,
                    language=None,  # a video result keeps no language per OCR line
                    labels=tuple(sorted(set().union(*(_frame_labels(f) for f in span)))),
                    decision=strictest_known(f.decision for f in span),
                    created_at=created_at,
                    thumbnail=next((f.thumbnail for f in span if f.thumbnail), None),
                )
            )
        )
    video_labels = tuple(
        sorted({s.name for s in result.labels} | {s.parent for s in result.labels if s.parent})
    )
    for tag in _unique(result.tags):
        docs.append(
            _Doc(
                DocumentIn(
                    media_kind=media_kind,
                    media_ref=media_ref,
                    field="tag",
                    text=tag,
                    labels=video_labels,
                    decision=result.decision,
                    created_at=created_at,
                )
            )
        )
    return docs


def transcript_documents(
    media_ref: str,
    segments: Sequence[SegmentLike],
    *,
    media_kind: MediaKind = "audio",
    created_at: datetime | None = None,
) -> list[DocumentIn]:
    """One ``transcript`` document per segment with text, in time order."""
    out: list[DocumentIn] = []
    for raw in segments:
        seg = raw if isinstance(raw, TranscriptSegment) else TranscriptSegment(*raw)
        text = seg.text.strip()
        if not text:
            continue
        if not seg.end_s >= seg.start_s >= 0:
            raise ValueError(f"a segment's times must be 0 <= start <= end: {seg}")
        out.append(
            DocumentIn(
                media_kind=media_kind,
                media_ref=media_ref,
                field="transcript",
                text=text,
                start_s=float(seg.start_s),
                end_s=float(seg.end_s),
                language=seg.language,
                labels=tuple(seg.labels),
                decision=seg.decision,
                created_at=created_at,
            )
        )
    out.sort(key=lambda d: (d.start_s or 0.0, d.end_s or 0.0))
    return out


class SearchIndexer:
    """Indexes analysed media of a tenant and answers that tenant's searches.

    ``encoder`` (None: no semantic search, text only) embeds text into the ``text``
    space; ``image_space`` names the image embedding model (the ``labels`` analyzer's:
    ``VectorSpace("image", 1280, "efficientnet-lite0@<version>")``; None: images are
    indexed without embeddings and :meth:`similar` is unavailable).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: VectorStore,
        encoder: SentenceEncoder | None,
        *,
        image_space: VectorSpace | None = None,
        config: SearchConfig | None = None,
    ) -> None:
        self._sessions = sessions
        self.store = store
        self.encoder = encoder
        self.image_space = image_space
        self.config = config or SearchConfig()
        self.text = TextIndex(sessions)
        self.text_space = (
            VectorSpace("text", encoder.dim, encoder.model_id) if encoder is not None else None
        )

    # --- indexing ---------------------------------------------------------------------

    def index_image(
        self,
        tenant_id: str,
        media_ref: str,
        result: ModerationResult,
        embedding: npt.ArrayLike | None,
        created_at: datetime | None = None,
        *,
        media_kind: MediaKind = "image",
        thumbnail: str | None = None,
    ) -> list[int]:
        """Index (or index again, replacing) an analysed image; the new document ids.
        ``embedding`` (the ``labels`` analyzer's) is kept for :meth:`similar` when an
        image space is configured; ``thumbnail`` is the API path of a JPEG of it."""
        if embedding is not None and self.image_space is None:
            embedding = None
        docs = _image_docs(
            media_ref,
            result,
            embedding,
            media_kind,
            created_at,
            self.config.min_tag_confidence,
            thumbnail,
        )
        return self._replace(tenant_id, media_ref, None, docs)

    def index_video(
        self,
        tenant_id: str,
        media_ref: str,
        result: VideoResult,
        frame_embeddings: Mapping[int, npt.ArrayLike] | None = None,
        created_at: datetime | None = None,
        *,
        media_kind: MediaKind = "video",
    ) -> list[int]:
        """Index (or index again, replacing its visual documents) an analysed video or a
        stretch of a stream; ``frame_embeddings`` maps :attr:`FrameResult.index` to that
        frame's image embedding. The new document ids."""
        embeddings = frame_embeddings if self.image_space is not None else None
        docs = _video_docs(media_ref, result, embeddings or {}, media_kind, created_at)
        return self._replace(tenant_id, media_ref, VISUAL_FIELDS, docs)

    def index_frame(
        self,
        tenant_id: str,
        media_ref: str,
        result: ModerationResult,
        embedding: npt.ArrayLike | None,
        at_s: float,
        created_at: datetime | None = None,
        *,
        media_kind: MediaKind = "stream",
        thumbnail: str | None = None,
    ) -> list[int]:
        """Add one analysed frame of a live stream (``media_ref``: the stream id) to what
        is indexed of it, keeping the documents of its earlier frames: its labels, tags,
        text, codes, URLs and face count, and its embedding, each at ``start_s = end_s =
        at_s`` (the frame's capture time, in Unix seconds: a stream has no start that
        every frame shares, and restarts would repeat offsets). The new document ids."""
        if embedding is not None and self.image_space is None:
            embedding = None
        docs = _image_docs(
            media_ref,
            result,
            embedding,
            media_kind,
            created_at,
            self.config.min_tag_confidence,
            thumbnail,
            start_s=at_s,
        )
        return self._replace(tenant_id, media_ref, (), docs)

    def index_transcript(
        self,
        tenant_id: str,
        media_ref: str,
        segments: Sequence[SegmentLike],
        created_at: datetime | None = None,
        *,
        media_kind: MediaKind = "audio",
    ) -> list[int]:
        """Index (or index again, replacing the transcript only) the transcript of a
        piece of media; the new document ids."""
        docs = transcript_documents(
            media_ref, segments, media_kind=media_kind, created_at=created_at
        )
        return self._replace(tenant_id, media_ref, TRANSCRIPT_FIELDS, [_Doc(d) for d in docs])

    def _replace(
        self,
        tenant_id: str,
        media_ref: str,
        fields: Sequence[str] | None,
        docs: list[_Doc],
    ) -> list[int]:
        docs = docs[: self.config.max_documents_per_media]
        semantic = set(self.config.semantic_fields)
        embed_at = [
            i for i, d in enumerate(docs) if d.document.field in semantic and d.document.text
        ]
        text_vectors = self._encode([docs[i].document.text for i in embed_at])
        image_at = [i for i, d in enumerate(docs) if d.image is not None]
        image_rows = [d.image for d in docs if d.image is not None]
        images = np.stack(image_rows) if image_rows else None
        if (
            images is not None
            and self.image_space is not None
            and images.shape[1] != self.image_space.dim
        ):
            raise ValueError(
                f"image embeddings have {images.shape[1]} values, the image space "
                f"{self.image_space.model} has {self.image_space.dim}"
            )
        with self._sessions.begin() as session:
            old = (
                TextIndex.delete_media_in(session, tenant_id, media_ref, fields)
                if fields is None or fields
                else []  # no fields: append
            )
            ids = TextIndex.add_in(session, tenant_id, [d.document for d in docs])
            if text_vectors is not None and self.text_space is not None and embed_at:
                store_vectors(
                    session, tenant_id, self.text_space, [ids[i] for i in embed_at], text_vectors
                )
            if images is not None and self.image_space is not None:
                store_vectors(
                    session, tenant_id, self.image_space, [ids[i] for i in image_at], images
                )
        old_ids = np.asarray(old, dtype=np.int64)
        for space in self._spaces():
            self.store.remove(tenant_id, space, old_ids)
        if text_vectors is not None and self.text_space is not None and embed_at:
            self.store.add(
                tenant_id, self.text_space, np.asarray([ids[i] for i in embed_at]), text_vectors
            )
        if images is not None and self.image_space is not None:
            self.store.add(
                tenant_id, self.image_space, np.asarray([ids[i] for i in image_at]), images
            )
        return ids

    def _encode(self, texts: list[str]) -> Vector | None:
        if self.encoder is None or not texts:
            return None
        distinct = list(dict.fromkeys(texts))
        vectors = self.encoder.encode(distinct)
        row = {t: i for i, t in enumerate(distinct)}
        out: Vector = vectors[[row[t] for t in texts]]
        return out

    def _spaces(self) -> list[VectorSpace]:
        return [s for s in (self.text_space, self.image_space) if s is not None]

    def delete_media(self, tenant_id: str, media_ref: str) -> int:
        """Delete everything indexed of one piece of media; how many documents."""
        ids = self.text.delete_media(tenant_id, media_ref)
        gone = np.asarray(ids, dtype=np.int64)
        for space in self._spaces():
            self.store.remove(tenant_id, space, gone)
        return len(ids)

    def delete_media_kind_before(self, media_kind: MediaKind, before: datetime) -> int:
        """Delete, for every tenant, the documents of ``media_kind`` indexed before
        ``before`` (a live stream's frames past the thumbnails' retention); how many."""
        where = (SearchDocument.media_kind == media_kind) & (SearchDocument.created_at < before)
        with self._sessions() as session:
            tenants = list(
                session.scalars(select(SearchDocument.tenant_id).where(where).distinct())
            )
        removed = 0
        for tenant_id in tenants:
            with self._sessions.begin() as session:
                ids = TextIndex.delete_where_in(
                    session, (SearchDocument.tenant_id == tenant_id) & where
                )
            gone = np.asarray(ids, dtype=np.int64)
            for space in self._spaces():
                self.store.remove(tenant_id, space, gone)
            removed += len(ids)
        return removed

    def delete_tenant(self, tenant_id: str) -> int:
        """Delete everything indexed of a tenant, vector index files included; how many
        documents."""
        ids = self.text.delete_tenant(tenant_id)
        self.store.forget(tenant_id)
        return len(ids)

    def flush(self) -> int:
        """Save the vector indexes changed since their last save (at shutdown)."""
        return self.store.flush()

    # --- queries ----------------------------------------------------------------------

    def search(
        self,
        tenant_id: str,
        text: str,
        filters: SearchFilters | None = None,
        *,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SearchPage:
        """The tenant's moments matching ``text`` by words or by meaning, best first.

        Raises ``invalid_search_query`` (no words, too long), ``invalid_limit`` and
        ``invalid_cursor`` (400).
        """
        check_limit(limit)
        filters = filters or SearchFilters()
        words = terms(text)
        digest = query_digest(tenant_id, words, filters, kind="moments")
        offset = 0 if cursor is None else decode_cursor(cursor, digest)
        by_words = self.text.query(tenant_id, text, filters, limit=self.config.text_depth).hits
        by_meaning = self._semantic(tenant_id, text, words, filters)
        moments = fuse([by_words, by_meaning], gap_s=self.config.moment_gap_s)
        end = offset + limit
        more = len(moments) > end and end < MAX_OFFSET
        return SearchPage(moments[offset:end], encode_cursor(end, digest) if more else None)

    def _semantic(
        self, tenant_id: str, text: str, words: list[str], filters: SearchFilters
    ) -> list[TextHit]:
        if self.encoder is None or self.text_space is None:
            return []
        vector = self.encoder.encode_one(text)
        ids, scores = self.store.search(
            tenant_id, self.text_space, vector, self.config.semantic_depth
        )
        lowest = min(self.config.semantic_min_similarity, self.config.semantic_min_similarity_text)
        keep = scores >= lowest
        ids, scores = ids[keep], scores[keep]
        found = self.text.documents(tenant_id, ids.tolist(), words)
        return [
            replace(found[int(i)], score=float(s))
            for i, s in zip(ids, scores, strict=True)
            if int(i) in found
            and s >= self._min_similarity(found[int(i)])
            and matches(found[int(i)], filters)
        ]

    def _min_similarity(self, hit: TextHit) -> float:
        """A word or two (a tag, a label, a short line read) needs a closer match than a
        sentence: two unrelated words are nearer in the sentence encoder's space than a
        few words and an unrelated sentence."""
        if hit.field in SHORT_FIELDS or _is_short(hit.text):
            return self.config.semantic_min_similarity
        return self.config.semantic_min_similarity_text

    def similar(
        self,
        tenant_id: str,
        query: npt.ArrayLike | str,
        k: int = 10,
        filters: SearchFilters | None = None,
    ) -> list[Moment]:
        """The ``k`` moments of the tenant's media that look most like ``query``: an
        image embedding (an image's or a frame's), or the ref of indexed media (then its
        own embeddings are the query — a video's frames, up to ``similar_frames`` — and
        it is left out of the answer). Each moment's score is its best cosine similarity.

        Raises ``media_not_indexed`` (404) for a ref with no embedding of the tenant's,
        ``similar_search_unavailable`` (503) without an image space.
        """
        check_limit(k)
        if self.image_space is None:
            raise SimilarSearchUnavailable("no image embedding model is configured for search")
        space = self.image_space
        filters = filters or SearchFilters()
        exclude: str | None = None
        if isinstance(query, str):
            exclude = query
            own = self.text.media_documents(tenant_id, query, ["media"])
            with self._sessions() as session:
                _ids, vectors = vectors_of(session, tenant_id, space, own)
            if vectors.shape[0] == 0:
                raise MediaNotIndexed(f"media {query!r} has no image embedding in the index")
            if vectors.shape[0] > self.config.similar_frames:
                pick = np.linspace(0, vectors.shape[0] - 1, self.config.similar_frames)
                vectors = vectors[np.round(pick).astype(int)]
            depth = k * 4 + len(own)
        else:
            vectors = np.asarray(query, dtype=np.float32).reshape(1, -1)
            depth = k * 4
        best: dict[int, float] = {}
        for vector in vectors:
            ids, scores = self.store.search(tenant_id, space, vector, depth)
            for i, s in zip(ids.tolist(), scores.tolist(), strict=True):
                best[i] = max(best.get(i, -1.0), s)
        found = self.text.documents(tenant_id, list(best))
        hits = sorted(
            (
                replace(hit, score=best[i])
                for i, hit in found.items()
                if hit.media_ref != exclude and matches(hit, filters)
            ),
            key=lambda h: (-h.score, h.id),
        )
        moments = [
            replace(m, score=max(h.score for h in m.hits))
            for m in fuse([hits], gap_s=self.config.moment_gap_s)
        ]
        moments.sort(key=lambda m: (-m.score, m.media_ref, m.start_s or 0.0))
        return moments[:k]
