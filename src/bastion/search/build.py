"""The search service of one process, built from its settings.

The indexer keeps its vector indexes under ``<data_dir>/search`` and rebuilds them from
the database (``search_vectors``) whenever one is missing, stale or of another model, so
the folder is a cache: deleting it loses nothing. The sentence encoder loads on first
use (a second or two, off the event loop), so a process that never indexes text or
answers a search never pays for it; it is the engine's shared one, which the
``toxicity`` analyzer reads too. Image embeddings are the ones the samples keep (the
``labels`` analyzer's, or ``samples.embedding_analyzer``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from bastion.config import Settings
from bastion.jobs.thumbnails import ThumbnailStore
from bastion.pipeline.engine import Engine
from bastion.runtime.metrics import Metrics
from bastion.samples.embedding import Embedder, embedding_analyzer
from bastion.samples.errors import EmbeddingUnavailable
from bastion.search.feed import SearchFeed
from bastion.search.indexer import SearchIndexer
from bastion.search.vector_rows import DatabaseVectors
from bastion.search.vectors import VectorSpace, VectorStore

log = logging.getLogger(__name__)

SEARCH_FOLDER = "search"
"""The folder of the data directory the vector indexes are saved in."""


def image_space(engine: Engine, analyzer: str | None) -> VectorSpace | None:
    """The space of image embeddings made by ``analyzer`` (None: the first configured
    analyzer that makes embeddings); None when no configured analyzer makes one."""
    try:
        embedder = Embedder(engine, analyzer)
    except EmbeddingUnavailable as exc:
        log.warning("find-similar is unavailable: %s", exc.message)
        return None
    dim = embedder.analyzer.embedding_dim
    if dim is None:
        log.warning(
            "find-similar is unavailable: %s does not say how long its embedding is",
            embedder.analyzer.name,
        )
        return None
    return VectorSpace("image", dim, str(embedder.model))


def build_search(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session]
) -> SearchIndexer | None:
    """The process's :class:`SearchIndexer`, or None when ``search.enabled`` is off."""
    config = settings.search
    if not config.enabled:
        return None
    store = VectorStore(
        settings.data_dir / SEARCH_FOLDER,
        DatabaseVectors(sessions),
        save_every_s=config.save_every_s,
        sync_every_s=config.sync_every_s or None,
    )
    encoder = (
        engine.context.shared.sentence_encoder(threads=config.encoder_threads)
        if config.semantic
        else None
    )
    space = (
        image_space(engine, settings.samples.embedding_analyzer)
        if config.image_embeddings
        else None
    )
    return SearchIndexer(sessions, store, encoder, image_space=space, config=config)


def build_feed(
    settings: Settings,
    indexer: SearchIndexer | None,
    engine: Engine,
    *,
    job_thumbnails: ThumbnailStore | None = None,
    job_media: Callable[[str], Path] | None = None,
    metrics: Metrics | None = None,
) -> SearchFeed | None:
    """The feed that indexes what this process analyses (None without an indexer): the
    embeddings of the analyzer the image space is made of, image jobs' thumbnails
    written next to the job's others, counted in ``metrics``."""
    if indexer is None:
        return None
    analyzer = None
    if indexer.image_space is not None:
        with contextlib.suppress(EmbeddingUnavailable):
            analyzer = embedding_analyzer(engine, settings.samples.embedding_analyzer).name
    return SearchFeed(
        indexer,
        image_analyzer=analyzer,
        job_thumbnails=job_thumbnails,
        job_media=job_media,
        metrics=metrics,
    )
