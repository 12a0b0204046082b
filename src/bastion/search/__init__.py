"""Search over a tenant's media: what was seen and said, found by words and by meaning.

The parts, each small and typed, for the search API and the indexing of analysed media
to build on:

* :mod:`~bastion.search.tables` — ``search_documents`` (one thing seen or said in one
  piece of media: field, text, time range, labels, decision) and ``search_vectors``
  (their embeddings, the source the vector indexes are rebuilt from); the full-text
  index itself is made by migration 0018 (SQLite FTS5 ``unicode61`` + ``trigram``
  tables kept in step by triggers; PostgreSQL ``tsvector`` + ``pg_trgm``).
* :mod:`~bastion.search.text_index` — :class:`~bastion.search.text_index.TextIndex`:
  ``add(tenant_id, [DocumentIn]) -> ids``, ``delete_media(tenant_id, media_ref) -> ids``,
  ``delete_tenant(tenant_id) -> ids``, ``documents(tenant_id, ids) -> {id: TextHit}``,
  ``query(tenant_id, text, SearchFilters, limit=, cursor=) -> TextPage`` (hits with a
  relevance score and a :class:`~bastion.search.query.Snippet` with highlight ranges).
* :mod:`~bastion.search.query` — how a user's query becomes safe terms (no query syntax
  ever reaches a database), and snippets.
* :mod:`~bastion.search.vectors` — the :class:`~bastion.search.vectors.VectorIndex`
  protocol (``add``, ``remove``, ``search``, ``save``, ``count``, ``ids``;
  :func:`read_index`), :class:`~bastion.search.vectors.FaissIndex`,
  :class:`~bastion.search.vectors.ExactIndex`, and
  :class:`~bastion.search.vectors.VectorStore`: one index per tenant and
  :class:`~bastion.search.vectors.VectorSpace`, saved atomically (debounced) under a
  folder of the data directory, caught up with the database when opened and every few
  seconds (rows added past its mark, rows deleted since), rebuilt when missing, corrupt
  or of another model.
* :mod:`~bastion.search.vector_rows` — ``store_vectors(session, tenant_id, space, ids,
  vectors)`` and :class:`~bastion.search.vector_rows.DatabaseVectors`, the store's
  source.
* :mod:`~bastion.search.fusion` — ``fuse([ranking, ...]) -> [Moment]``: reciprocal-rank
  fusion, documents of the same media with overlapping times merged into moments.
* :mod:`~bastion.search.indexer` — :class:`~bastion.search.indexer.SearchIndexer`, the
  one service the pipeline calls (``index_image``, ``index_video``,
  ``index_transcript``, ``delete_media``, ``delete_tenant``) and the search API asks
  (``search``: words and meaning fused into moments; ``similar``: media that looks like
  an embedding or like indexed media); settings in :mod:`~bastion.search.config`.
* :mod:`~bastion.search.feed` — :class:`~bastion.search.feed.SearchFeed`: what the job
  worker, the live frame processor and ``bastion scan --index`` call once media has
  been analysed; indexes in the background (never failing or delaying the result), a
  live stream's frames only when they change (``stream_min_gap_s``, ``stream_every_s``).
  The image embeddings come from the analysis itself
  (:attr:`bastion.results.ModerationResult.embedding`,
  :meth:`bastion.pipeline.video.VideoResult.frame_embeddings`), never a second run.
* :mod:`~bastion.search.commands` — ``bastion search reindex`` (stored job results) and
  ``bastion search purge --tenant``. Documents go with their media: job media retention
  deletes those of purged jobs, and those of live frames once past retention
  (:class:`bastion.jobs.retention.MediaRetention`).

Text is embedded by :class:`bastion.models.sentence_encoder.SentenceEncoder` (USE
multilingual v3, offline); images by the ``labels`` analyzer's embedding. Everything
here blocks: async callers run it in a thread. Every read and write takes the tenant.

Wiring, put together::

    store = VectorStore(data_dir / "search", DatabaseVectors(sessions))
    indexer = SearchIndexer(sessions, store, encoder, image_space=VectorSpace(
        "image", 1280, str(embedder.model)))
    indexer.index_image(tenant, job_id, result, embedding, created_at)
    page = indexer.search(tenant, "parcel by the garage", SearchFilters(), limit=20)
"""
