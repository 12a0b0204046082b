"""Settings of search: what is indexed of analysed media, and how queries are ranked."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bastion.search.text_index import FieldName

SEMANTIC_FIELDS: tuple[FieldName, ...] = ("transcript", "ocr", "tag", "label")
"""The fields embedded by default."""


class SearchConfig(BaseModel):
    """How :class:`~bastion.search.indexer.SearchIndexer` indexes and answers."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        description="Index analysed media (jobs, `bastion scan --index`, analysed live "
        "frames) and answer `/v1/search`; off: nothing is indexed and search answers 503 "
        "`search_disabled`.",
    )
    semantic: bool = Field(
        True,
        description="Embed transcripts, text read and tags with the multilingual sentence "
        "encoder (USE multilingual v3, loaded on first use) so that a query finds them by "
        "meaning and across languages; off: words only.",
    )
    image_embeddings: bool = Field(
        True,
        description="Keep the image embedding of analysed images and video frames (the "
        "`labels` analyzer's) for find-similar.",
    )
    encoder_threads: int = Field(1, ge=1, le=64, description="Threads of the sentence encoder.")
    min_tag_confidence: float = Field(
        20.0, ge=0, le=100, description="Tags below this confidence (0–100) are not indexed."
    )
    max_documents_per_media: int = Field(
        5_000, ge=1, description="Most documents one piece of media makes (the rest are left out)."
    )
    semantic_fields: list[FieldName] = Field(
        default_factory=lambda: list(SEMANTIC_FIELDS),
        description="Fields whose text is embedded by the sentence encoder, so a query "
        "finds them by meaning and in another language.",
    )
    semantic_min_similarity: float = Field(
        0.45,
        ge=-1,
        le=1,
        description="Cosine similarity below which a tag, a label or a short text (three "
        "words or fewer, under 24 characters) is not a semantic match (USE multilingual: "
        "a word and an unrelated word reach about 0.45, a word and its translation 0.5 to "
        "0.9).",
    )
    semantic_min_similarity_text: float = Field(
        0.3,
        ge=-1,
        le=1,
        description="Cosine similarity below which a longer text (a transcript segment, a "
        "line read) is not a semantic match: a short query and a sentence about it in another "
        "language reach 0.3 to 0.55, an unrelated sentence about 0.2.",
    )
    semantic_depth: int = Field(
        100, ge=1, le=1_000, description="Nearest documents the vector index is asked for."
    )
    text_depth: int = Field(
        200, ge=1, le=500, description="Full-text hits fused with the semantic ones per query."
    )
    moment_gap_s: float = Field(
        0.0,
        ge=0,
        description="Documents of one media closer in time than this make one moment.",
    )
    similar_frames: int = Field(
        16,
        ge=1,
        le=256,
        description="Frames of a video used as the query when finding media like it.",
    )
    stream_min_gap_s: float = Field(
        10.0,
        ge=0,
        description="A live stream's analysed frames are indexed at most this often (per "
        "stream), however much they change. Each indexed frame keeps a small JPEG (about "
        "30 kB) until the live thumbnails' retention.",
    )
    stream_every_s: float = Field(
        60.0,
        gt=0,
        description="A live stream frame whose labels, tags, text, codes and URLs are the "
        "same as the stream's last indexed frame is indexed only when this long has passed "
        "since then (a changed frame is indexed at once, within `stream_min_gap_s`).",
    )
    index_threads: int = Field(
        1,
        ge=1,
        le=64,
        description="Threads that index analysed media in the background, apart from the "
        "process's other work: indexing never delays an analysis or a live alert, and its "
        "database writes do not compete with one another (SQLite has one writer at a time).",
    )
    max_pending: int = Field(
        256,
        ge=1,
        description="Most media waiting to be indexed in one process. A job finished while "
        "this many wait is indexed before its worker takes the next one; a live frame "
        "analysed then is not indexed (counted in `bastion_search_index_total` as "
        "`dropped`).",
    )
    save_every_s: float = Field(
        60.0, gt=0, description="Vector indexes changed by indexing are saved at most this often."
    )
    sync_every_s: float = Field(
        5.0,
        ge=0,
        description="How often an open vector index checks the database for vectors "
        "indexed by another process or deleted.",
    )
