"""Full-text search over a tenant's documents, on SQLite (FTS5) or PostgreSQL (tsvector).

:class:`TextIndex` adds documents (:class:`DocumentIn`), deletes them by media or by
tenant, reads them back by id (what the vector index found), and answers a query with
one page of :class:`TextHit`, best first. Every call is scoped to one tenant: another
tenant's documents are never matched, read or deleted.

A document matches when it has every term of the query (:func:`~bastion.search.query.terms`)
either as a word (SQLite ``unicode61`` FTS5 table; PostgreSQL ``tsvector``) or as a
substring (SQLite ``trigram`` FTS5 table for terms of three characters or more, ``LIKE``
for shorter ones; PostgreSQL ``ILIKE``, served by ``pg_trgm`` when present): languages
written without spaces (Chinese, Japanese, Thai) and Korean words with particles are
found by a word of them. The score is the database's own relevance (FTS5 ``bm25`` of
both tables added; PostgreSQL ``ts_rank_cd``), larger is better, comparable only within
one query. The cursor is opaque: the position in the ranking and a digest of the query
and filters (a cursor of another query is refused), at most :data:`MAX_OFFSET` deep.

Everything here blocks (database work): async callers run it in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from bastion.search.errors import InvalidSearchCursor, InvalidSearchQuery
from bastion.search.query import Snippet, like_pattern, snippet, terms
from bastion.search.tables import FIELDS, MEDIA_KINDS, SearchDocument, SearchIdMark
from bastion.store.pages import check_limit

MediaKind = Literal["image", "video", "stream", "audio"]
FieldName = Literal["label", "tag", "ocr", "code", "url", "transcript", "faces", "media"]
Decision = Literal["allow", "review", "block"]

MAX_OFFSET = 10_000
"""How deep the pages of one query go."""
MAX_TEXT_CHARS = 20_000
"""Longest document text kept (longer text is cut)."""


@dataclass(frozen=True)
class DocumentIn:
    """One document to index (see :class:`~bastion.search.tables.SearchDocument`)."""

    media_kind: MediaKind
    media_ref: str
    field: FieldName
    text: str
    start_s: float | None = None
    end_s: float | None = None
    language: str | None = None
    labels: tuple[str, ...] = ()
    decision: Decision | None = None
    created_at: datetime | None = None
    """When the media was analysed (None: now)."""
    thumbnail: str | None = None
    """The API path of a small JPEG of that moment the client can GET with its key
    (``/v1/jobs/{id}/thumbnails/{name}`` for a video frame or an image job,
    ``/v1/streams/{id}/thumbnails/{name}`` for a stream frame), or None."""


class SearchFilters(BaseModel):
    """What a search is restricted to; every set filter must hold (None: any)."""

    model_config = ConfigDict(extra="forbid")

    media_kinds: list[MediaKind] | None = Field(
        default=None, description="Only these kinds of media."
    )
    fields: list[FieldName] | None = Field(
        default=None, description="Only documents of these fields (e.g. transcript, ocr)."
    )
    media_refs: list[str] | None = Field(
        default=None, max_length=100, description="Only these media (job, stream ids, sha256)."
    )
    decisions: list[Decision] | None = Field(
        default=None, description="Only moments that got one of these decisions."
    )
    labels: list[str] | None = Field(
        default=None, max_length=50, description="Only moments with at least one of these labels."
    )
    languages: list[str] | None = Field(
        default=None, max_length=50, description="Only documents in these languages (ISO 639-1)."
    )
    since: datetime | None = Field(default=None, description="Indexed at or after this time.")
    until: datetime | None = Field(default=None, description="Indexed before this time.")


@dataclass(frozen=True)
class TextHit:
    """One matching document, its relevance, and a snippet of it."""

    id: int
    media_kind: str
    media_ref: str
    start_s: float | None
    end_s: float | None
    field: str
    text: str
    language: str | None
    labels: tuple[str, ...]
    decision: str | None
    created_at: datetime
    score: float
    snippet: Snippet
    thumbnail: str | None = None
    """The API path of a JPEG of that moment (see :attr:`DocumentIn.thumbnail`)."""


@dataclass(frozen=True)
class TextPage:
    """One page of hits, best first, and the cursor of the next page (None: last)."""

    hits: list[TextHit]
    next_cursor: str | None


def query_digest(
    tenant_id: str, words: Sequence[str], filters: SearchFilters, kind: str = "text"
) -> str:
    """What a cursor is bound to: the tenant, the terms, the filters and the kind of
    search (a cursor of another search is refused)."""
    raw = [tenant_id, list(words), filters.model_dump(mode="json")]
    if kind != "text":
        raw.append(kind)
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]


def encode_cursor(offset: int, digest: str) -> str:
    """The opaque cursor of the page starting at ``offset`` of the search ``digest``."""
    return base64.urlsafe_b64encode(json.dumps([offset, digest]).encode()).decode()


def decode_cursor(cursor: str, digest: str) -> int:
    """The offset of ``cursor``; :class:`InvalidSearchCursor` when it is garbled, of
    another search, or deeper than :data:`MAX_OFFSET`."""
    try:
        offset, seen = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError) as exc:
        raise InvalidSearchCursor("invalid cursor") from exc
    if not isinstance(offset, int) or seen != digest or not 0 <= offset <= MAX_OFFSET:
        raise InvalidSearchCursor("this cursor belongs to another search")
    return offset


def _filters_sql(filters: SearchFilters, params: dict[str, Any]) -> list[str]:
    clauses: list[str] = []

    def one_of(column: str, name: str, values: Sequence[str]) -> None:
        keys = [f"{name}{i}" for i in range(len(values))]
        params.update(zip(keys, values, strict=True))
        if keys:
            clauses.append(f"d.{column} IN ({', '.join(':' + k for k in keys)})")
        else:
            clauses.append("1 = 0")

    if filters.media_kinds is not None:
        one_of("media_kind", "f_kind", filters.media_kinds)
    if filters.fields is not None:
        one_of("field", "f_field", filters.fields)
    if filters.media_refs is not None:
        one_of("media_ref", "f_ref", filters.media_refs)
    if filters.decisions is not None:
        one_of("decision", "f_decision", filters.decisions)
    if filters.languages is not None:
        one_of("language", "f_lang", filters.languages)
    if filters.labels is not None:
        alternatives = []
        for i, label in enumerate(filters.labels):
            params[f"f_label{i}"] = like_pattern(json.dumps(label))
            alternatives.append(f"CAST(d.labels AS TEXT) LIKE :f_label{i} ESCAPE '\\'")
        clauses.append(f"({' OR '.join(alternatives) or '1 = 0'})")
    if filters.since is not None:
        params["f_since"] = filters.since
        clauses.append("d.created_at >= :f_since")
    if filters.until is not None:
        params["f_until"] = filters.until
        clauses.append("d.created_at < :f_until")
    return clauses


def matches(hit: TextHit, filters: SearchFilters) -> bool:
    """Whether ``hit`` passes ``filters`` (the same conditions as the query's SQL, for
    documents found another way, e.g. by the vector index)."""
    f = filters
    return (
        (f.media_kinds is None or hit.media_kind in f.media_kinds)
        and (f.fields is None or hit.field in f.fields)
        and (f.media_refs is None or hit.media_ref in f.media_refs)
        and (f.decisions is None or hit.decision in f.decisions)
        and (f.languages is None or hit.language in f.languages)
        and (f.labels is None or any(label in hit.labels for label in f.labels))
        and (f.since is None or hit.created_at >= f.since)
        and (f.until is None or hit.created_at < f.until)
    )


def _sqlite_ranking(words: list[str], where: list[str], params: dict[str, Any]) -> str:
    # Terms hold only letters, marks and digits: as FTS5 strings they are literal.
    params["words_q"] = " ".join(f'"{w}"' for w in words)
    long = [w for w in words if len(w) >= 3]
    short = [w for w in words if len(w) < 3]
    likes = []
    for i, w in enumerate(short):
        params[f"like{i}"] = like_pattern(w)
        likes.append(f"d.text LIKE :like{i} ESCAPE '\\'")
    ctes = [
        "w AS (SELECT rowid AS id, -bm25(search_fts_words) AS s FROM search_fts_words "
        "WHERE search_fts_words MATCH :words_q)"
    ]
    # Only documents either full-text index matched are candidates (the tenant's other
    # documents are never visited), except when every word is too short for trigrams:
    # then the tenant's documents are scanned with LIKE. The two rankings are merged by
    # grouping on the id (never by joining one match list to the other, which SQLite
    # does row by row), then each candidate is looked up by its rowid.
    if long:
        params["tri_q"] = " ".join(f'"{w}"' for w in long)
        ctes.append(
            "t AS (SELECT rowid AS id, -bm25(search_fts_trigram) AS s FROM search_fts_trigram "
            "WHERE search_fts_trigram MATCH :tri_q)"
        )
        ctes.append(
            "c AS (SELECT id, max(ws) AS ws, max(ts) AS ts FROM ("
            "SELECT id, s AS ws, NULL AS ts FROM w UNION ALL SELECT id, NULL, s FROM t"
            ") GROUP BY id)"
        )
        substring = " AND ".join(["c.ts IS NOT NULL", *likes])
        score = "COALESCE(c.ws, 0) + COALESCE(c.ts, 0)"
    else:
        scan = " AND ".join(["tenant_id = :tenant", *(x.replace("d.", "") for x in likes)])
        ctes.append(
            "c AS (SELECT id, max(ws) AS ws FROM ("
            f"SELECT id, s AS ws FROM w UNION ALL SELECT id, NULL FROM search_documents "
            f"WHERE {scan}) GROUP BY id)"
        )
        substring = " AND ".join(likes)
        score = "COALESCE(c.ws, 0) + 0.01"
    return (
        f"WITH {', '.join(ctes)} SELECT d.id AS id, {score} AS score "
        f"FROM c JOIN search_documents d ON d.id = c.id "
        f"WHERE {' AND '.join(where)} AND (c.ws IS NOT NULL OR ({substring}))"
    )


def _pg_ranking(words: list[str], where: list[str], params: dict[str, Any]) -> str:
    params["plain_q"] = " ".join(words)
    likes = []
    for i, w in enumerate(words):
        params[f"like{i}"] = like_pattern(w)
        likes.append(f"d.text ILIKE :like{i} ESCAPE '\\'")
    tsq = "plainto_tsquery('simple'::regconfig, :plain_q)"
    return (
        f"SELECT d.id AS id, ts_rank_cd(d.search_vector, {tsq}) + 0.01 AS score "
        f"FROM search_documents d WHERE {' AND '.join(where)} "
        f"AND (d.search_vector @@ {tsq} OR ({' AND '.join(likes)}))"
    )


_ID_MARK = "documents"


def _reserve_ids(session: Session, count: int) -> int:
    """The first of ``count`` new document ids above every id SQLite ever gave (its
    rowids go back to the largest remaining one when the largest is deleted). The
    update takes SQLite's write lock for the transaction, so no other writer gets the
    same ids."""
    session.execute(
        sqlite_insert(SearchIdMark)
        .values(name=_ID_MARK, last=0)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    highest = select(func.coalesce(func.max(SearchDocument.id), 0)).scalar_subquery()
    last = session.execute(
        update(SearchIdMark)
        .where(SearchIdMark.name == _ID_MARK)
        .values(last=func.max(SearchIdMark.last, highest) + count)
        .returning(SearchIdMark.last)
    ).scalar_one()
    return int(last) - count + 1


class TextIndex:
    """The tenant-scoped full-text index of :class:`SearchDocument` rows."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, tenant_id: str, documents: Iterable[DocumentIn]) -> list[int]:
        """Index ``documents`` in one transaction; their ids, in order."""
        with self._sessions.begin() as session:
            return self.add_in(session, tenant_id, documents)

    @staticmethod
    def add_in(session: Session, tenant_id: str, documents: Iterable[DocumentIn]) -> list[int]:
        """Index ``documents`` in the caller's transaction; their ids, in order (never an
        id a deleted document had)."""
        rows = [_row(tenant_id, d) for d in documents]
        if rows and session.get_bind().dialect.name == "sqlite":
            first = _reserve_ids(session, len(rows))
            for offset, row in enumerate(rows):
                row.id = first + offset
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]

    def delete_media(self, tenant_id: str, media_ref: str) -> list[int]:
        """Delete every document of one piece of media (and their vectors); their ids."""
        with self._sessions.begin() as session:
            return self.delete_media_in(session, tenant_id, media_ref)

    @classmethod
    def delete_media_in(
        cls,
        session: Session,
        tenant_id: str,
        media_ref: str,
        fields: Sequence[str] | None = None,
    ) -> list[int]:
        """Delete, in the caller's transaction, the documents of one piece of media (only
        those of ``fields`` when given) and their vectors; their ids."""
        where = (SearchDocument.tenant_id == tenant_id) & (SearchDocument.media_ref == media_ref)
        if fields is not None:
            where = where & SearchDocument.field.in_(list(fields))
        return cls._delete(session, where)

    def media_documents(
        self, tenant_id: str, media_ref: str, fields: Sequence[str] | None = None
    ) -> list[int]:
        """The ids of one piece of media's documents (only of ``fields`` when given)."""
        where = (SearchDocument.tenant_id == tenant_id) & (SearchDocument.media_ref == media_ref)
        if fields is not None:
            where = where & SearchDocument.field.in_(list(fields))
        with self._sessions() as session:
            return list(
                session.scalars(select(SearchDocument.id).where(where).order_by(SearchDocument.id))
            )

    def delete_tenant(self, tenant_id: str) -> list[int]:
        """Delete every document of a tenant (and their vectors); their ids."""
        with self._sessions.begin() as session:
            return self._delete(session, SearchDocument.tenant_id == tenant_id)

    @classmethod
    def delete_where_in(cls, session: Session, where: Any) -> list[int]:
        """Delete, in the caller's transaction, the documents ``where`` (a condition on
        :class:`SearchDocument` that the caller scopes by tenant) and their vectors."""
        return cls._delete(session, where)

    @staticmethod
    def _delete(session: Session, where: Any) -> list[int]:
        ids = list(session.scalars(select(SearchDocument.id).where(where)))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            session.execute(delete(SearchDocument).where(SearchDocument.id.in_(chunk)))
        return ids

    def documents(
        self, tenant_id: str, ids: Sequence[int], words: Sequence[str] = ()
    ) -> dict[int, TextHit]:
        """The tenant's documents among ``ids`` (others are left out), with score 0 and
        a snippet showing ``words``."""
        out: dict[int, TextHit] = {}
        wanted = list(dict.fromkeys(int(i) for i in ids))
        with self._sessions() as session:
            for start in range(0, len(wanted), 500):
                rows = session.scalars(
                    select(SearchDocument).where(
                        SearchDocument.tenant_id == tenant_id,
                        SearchDocument.id.in_(wanted[start : start + 500]),
                    )
                )
                for row in rows:
                    out[row.id] = _hit(row, 0.0, list(words))
        return out

    def query(
        self,
        tenant_id: str,
        query: str,
        filters: SearchFilters | None = None,
        *,
        limit: int = 20,
        cursor: str | None = None,
    ) -> TextPage:
        """One page of the tenant's documents matching ``query``, best first.

        Raises :class:`~bastion.search.errors.InvalidSearchQuery` (400) for a query with
        no words or too long, ``invalid_limit`` / ``invalid_cursor`` for bad paging.
        """
        check_limit(limit)
        filters = filters or SearchFilters()
        words = terms(query)
        digest = query_digest(tenant_id, words, filters)
        offset = 0 if cursor is None else decode_cursor(cursor, digest)
        params: dict[str, Any] = {"tenant": tenant_id}
        where = ["d.tenant_id = :tenant", *_filters_sql(filters, params)]
        with self._sessions() as session:
            dialect = session.get_bind().dialect.name
            if dialect == "sqlite":
                ranking = _sqlite_ranking(words, where, params)
            elif dialect == "postgresql":
                ranking = _pg_ranking(words, where, params)
            else:  # pragma: no cover - Bastion runs on SQLite or PostgreSQL
                raise InvalidSearchQuery(f"search does not support {dialect}")
            params["lim"] = limit + 1
            params["off"] = offset
            ranked = session.execute(
                text(f"{ranking} ORDER BY score DESC, id DESC LIMIT :lim OFFSET :off"), params
            ).all()
            scores = {int(r.id): float(r.score) for r in ranked[:limit]}
            rows = {
                row.id: row
                for row in session.scalars(
                    select(SearchDocument).where(SearchDocument.id.in_(list(scores)))
                )
            }
        hits = [_hit(rows[i], s, words) for i, s in scores.items() if i in rows]
        more = len(ranked) > limit and offset + limit < MAX_OFFSET
        return TextPage(hits, encode_cursor(offset + limit, digest) if more else None)


def _row(tenant_id: str, d: DocumentIn) -> SearchDocument:
    if d.media_kind not in MEDIA_KINDS:
        raise ValueError(f"unknown media kind {d.media_kind!r}")
    if d.field not in FIELDS:
        raise ValueError(f"unknown field {d.field!r}")
    # the same normal form as queries (full-width letters, compatibility characters)
    normal = unicodedata.normalize("NFKC", d.text)
    clean = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in normal)
    return SearchDocument(
        tenant_id=tenant_id,
        media_kind=d.media_kind,
        media_ref=d.media_ref,
        start_s=d.start_s,
        end_s=d.end_s,
        field=d.field,
        text=clean[:MAX_TEXT_CHARS],
        language=d.language,
        labels=list(d.labels),
        decision=d.decision,
        thumbnail=d.thumbnail,
        **({"created_at": d.created_at} if d.created_at is not None else {}),
    )


def _hit(row: SearchDocument, score: float, words: list[str]) -> TextHit:
    return TextHit(
        id=row.id,
        media_kind=row.media_kind,
        media_ref=row.media_ref,
        start_s=row.start_s,
        end_s=row.end_s,
        field=row.field,
        text=row.text,
        language=row.language,
        labels=tuple(str(label) for label in row.labels or ()),
        decision=row.decision,
        created_at=row.created_at,
        score=score,
        snippet=snippet(row.text, words),
        thumbnail=row.thumbnail,
    )
