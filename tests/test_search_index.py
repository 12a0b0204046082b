"""Search foundations: the full-text index (SQLite FTS5, PostgreSQL tsvector) in the
seven languages, hostile queries, tenant isolation and deletion; the vector indexes
(faiss against exact, persistence, rebuild); multilingual semantic search with the real
sentence encoder; and the fusion of rankings into moments."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from bastion.errors import BastionError
from bastion.models.sentence_encoder import SentenceEncoder
from bastion.search.errors import InvalidSearchCursor, InvalidSearchQuery, VectorIndexCorrupt
from bastion.search.fusion import fuse
from bastion.search.query import snippet, terms
from bastion.search.tables import SearchVector
from bastion.search.text_index import DocumentIn, SearchFilters, TextHit, TextIndex
from bastion.search.vector_rows import DatabaseVectors, store_vectors
from bastion.search.vectors import (
    ExactIndex,
    FaissIndex,
    VectorSpace,
    VectorStore,
    read_index,
)
from tests.support.databases import database

SENTENCES = {
    "en": "The delivery driver left the parcel beside the garage door",
    "ja": "東京タワーの近くで猫が昼寝をしています",
    "ko": "고양이가 창문 옆에서 잠을 자고 있어요",
    "th": "แมวกำลังนอนหลับอยู่ข้างหน้าต่าง",
    "zh": "我们明天在北京火车站见面",
    "id": "Pengemudi meninggalkan paket di samping pintu garasi",
    "de": "Der Fahrer hat das Paket neben der Garagentür abgestellt",
}
WORD_OF = {
    "en": "parcel",
    "ja": "東京タワー",
    "ko": "고양이",
    "th": "หน้าต่าง",
    "zh": "北京",
    "id": "meninggalkan",
    "de": "Garagentür",
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def sessions(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sessionmaker[Session]]:
    with database(request.param, tmp_path_factory.mktemp("search")) as (made, _repo):
        yield made


@pytest.fixture
def index(sessions: sessionmaker[Session]) -> TextIndex:
    return TextIndex(sessions)


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def _seed(index: TextIndex, tenant: str, ref: str = "job-1") -> list[int]:
    docs = [
        DocumentIn(
            media_kind="video",
            media_ref=ref,
            field="transcript",
            text=sentence,
            start_s=float(i * 10),
            end_s=float(i * 10 + 5),
            language=lang,
            labels=("Toxic Speech",) if lang == "en" else (),
            decision="review" if lang == "en" else "allow",
        )
        for i, (lang, sentence) in enumerate(SENTENCES.items())
    ]
    docs.append(
        DocumentIn(media_kind="image", media_ref="sha-img", field="ocr", text="FREE CRYPTO")
    )
    return index.add(tenant, docs)


@pytest.mark.parametrize("lang", list(SENTENCES))
def test_a_word_finds_its_sentence_in_every_language(
    index: TextIndex, tenant: str, lang: str
) -> None:
    _seed(index, tenant)
    page = index.query(tenant, WORD_OF[lang])
    assert page.hits, f"{lang}: nothing found"
    assert page.hits[0].language == lang
    assert all(h.language == lang for h in page.hits)
    top = page.hits[0]
    marked = top.snippet.marked()
    assert f"[{WORD_OF[lang].lower()}]" in marked.lower(), marked
    assert top.score > 0


def test_short_cjk_words_and_filters(index: TextIndex, tenant: str) -> None:
    _seed(index, tenant)
    (hit,) = index.query(tenant, "猫").hits  # one character: below the trigram length
    assert hit.language == "ja" and hit.start_s == 10.0 and hit.end_s == 15.0
    assert hit.snippet.marked() == "東京タワーの近くで[猫]が昼寝をしています"
    assert index.query(tenant, "crypto", SearchFilters(media_kinds=["video"])).hits == []
    (img,) = index.query(tenant, "crypto", SearchFilters(media_kinds=["image"])).hits
    assert img.start_s is None and img.field == "ocr"
    assert [
        h.language
        for h in index.query(tenant, "parcel paket", SearchFilters(labels=["Toxic Speech"])).hits
    ] == []  # every term must match one document
    (en,) = index.query(tenant, "parcel", SearchFilters(labels=["Toxic Speech"])).hits
    assert en.labels == ("Toxic Speech",) and en.decision == "review"
    assert index.query(tenant, "parcel", SearchFilters(decisions=["block"])).hits == []
    assert index.query(tenant, "paket", SearchFilters(languages=["id"])).hits


def test_whole_words_rank_above_substrings(index: TextIndex, tenant: str) -> None:
    ids = index.add(
        tenant,
        [
            DocumentIn(media_kind="audio", media_ref="a", field="transcript", text="a category"),
            DocumentIn(media_kind="audio", media_ref="b", field="transcript", text="the cat sat"),
        ],
    )
    hits = index.query(tenant, "cat").hits
    assert [h.id for h in hits] == [ids[1], ids[0]]


HOSTILE = [
    '"',
    'cat"',
    '"parcel" OR "garage',
    "parcel NEAR garage",
    "NEAR(parcel garage, 2)",
    "parcel*",
    "-parcel",
    "parcel -garage",
    "(parcel",
    "parcel)",
    "text:parcel",
    "^parcel",
    "parcel AND",
    "OR",
    "parcel\x00garage",
    "\x00",
    "%_\\",
    "'; DROP TABLE search_documents; --",
    "ั",  # a lone Thai vowel sign
    "x" * 10_000,
    "parcel " * 1_500,
    "🙂 parcel",
]


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_give_results_or_a_clean_error(
    index: TextIndex, tenant: str, query: str
) -> None:
    _seed(index, tenant)
    try:
        page = index.query(tenant, query)
    except BastionError as exc:
        assert 400 <= exc.status < 500 and exc.code == "invalid_search_query"
        return
    for hit in page.hits:
        assert hit.media_ref in {"job-1", "sha-img"}
    english = SENTENCES["en"].lower().split()
    if all(any(t in w for w in english) for t in terms(query)):  # every term is in it
        assert any(h.language == "en" for h in page.hits)


def test_queries_without_words_and_too_long_are_refused(index: TextIndex, tenant: str) -> None:
    for query in ["", "   ", "*", "()", '""', "-", "\x00\x00", "x" * 10_000]:
        with pytest.raises(InvalidSearchQuery):
            index.query(tenant, query)
    with pytest.raises(InvalidSearchQuery):
        terms(" ".join(f"w{i}" for i in range(40)))


def test_paging_with_cursors(index: TextIndex, tenant: str) -> None:
    ids = index.add(
        tenant,
        [
            DocumentIn(media_kind="stream", media_ref="s1", field="tag", text=f"red car {i}")
            for i in range(7)
        ],
    )
    seen: list[int] = []
    cursor = None
    for _ in range(4):
        page = index.query(tenant, "car", limit=3, cursor=cursor)
        seen += [h.id for h in page.hits]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    first = index.query(tenant, "car", limit=3)
    assert first.next_cursor is not None
    with pytest.raises(InvalidSearchCursor):
        index.query(tenant, "red", limit=3, cursor=first.next_cursor)
    with pytest.raises(InvalidSearchCursor):
        index.query(tenant, "car", limit=3, cursor="garbage!")


def test_tenants_are_isolated(index: TextIndex, tenant: str) -> None:
    other = f"o-{uuid.uuid4().hex[:8]}"
    mine = _seed(index, tenant)
    _seed(index, other)
    assert {h.id for h in index.query(tenant, "parcel").hits} <= set(mine)
    theirs = [h.id for h in index.query(other, "parcel").hits]
    assert theirs and not set(theirs) & set(mine)
    assert index.documents(tenant, theirs) == {}
    assert index.delete_media(tenant, "job-1") != []
    assert index.query(other, "parcel").hits  # the other tenant's job of the same id stays


def test_delete_by_media_removes_documents_index_and_vectors(
    index: TextIndex, sessions: sessionmaker[Session], tenant: str
) -> None:
    ids = _seed(index, tenant, ref="job-del")
    _seed(index, tenant, ref="job-keep")
    space = VectorSpace("text", 4, "toy@1")
    with sessions.begin() as session:
        store_vectors(session, tenant, space, ids, np.eye(len(ids), 4, dtype=np.float32))
    deleted = index.delete_media(tenant, "job-del")
    assert set(deleted) == set(ids[:-1])  # the last is the image, another media ref
    refs = {h.media_ref for h in index.query(tenant, "parcel").hits}
    assert refs == {"job-keep"}
    with sessions() as session:
        left = set(session.scalars(select(SearchVector.document_id)))
        assert not left & set(deleted)
        assert ids[-1] in left  # the image's vector (another media ref) stays
    assert index.delete_tenant(tenant)
    assert index.query(tenant, "parcel").hits == []


def test_ids_of_deleted_documents_are_never_given_again(index: TextIndex, tenant: str) -> None:
    """SQLite would hand the largest id out again once it is deleted; a vector index of
    another process would then keep the deleted document's vector for the new one."""
    doc = DocumentIn(media_kind="audio", media_ref="reused", field="transcript", text="first")
    first = index.add(tenant, [doc, replace(doc, text="second")])
    assert index.delete_media(tenant, "reused") == first  # the newest documents of all
    again = index.add(tenant, [replace(doc, text="third")])
    assert again[0] > max(first)
    hits = index.query(tenant, "third").hits
    assert [h.id for h in hits] == again


def test_the_full_text_index_is_kept_in_step(
    index: TextIndex, sessions: sessionmaker[Session], tenant: str
) -> None:
    (doc,) = index.add(
        tenant, [DocumentIn(media_kind="audio", media_ref="a", field="transcript", text="old")]
    )
    with sessions.begin() as session:
        session.execute(
            text("UPDATE search_documents SET text = 'brand new words' WHERE id = :i"), {"i": doc}
        )
    assert index.query(tenant, "brand").hits[0].id == doc
    with pytest.raises(InvalidSearchQuery):
        index.query(tenant, "")
    assert index.query(tenant, "old").hits == []


def test_a_thumbnail_is_kept_and_read_back(index: TextIndex, tenant: str) -> None:
    thumb = "/v1/jobs/job_x/thumbnails/" + "a" * 32 + ".jpg"
    ids = index.add(
        tenant,
        [
            DocumentIn(
                media_kind="video",
                media_ref="v",
                field="ocr",
                text="harbour crane",
                start_s=2.0,
                end_s=3.0,
                thumbnail=thumb,
            ),
            DocumentIn(media_kind="video", media_ref="v", field="tag", text="harbour"),
        ],
    )
    hits = index.query(tenant, "harbour crane").hits
    assert [(h.id, h.thumbnail) for h in hits] == [(ids[0], thumb)]
    assert index.documents(tenant, [ids[1]])[ids[1]].thumbnail is None


def test_snippet_windows_and_highlights() -> None:
    long = "x " * 200 + "the secret word is here " + "y " * 200
    cut = snippet(long, ["secret", "here"])
    assert cut.text.startswith("…") and cut.text.endswith("…")
    assert [cut.text[s:e] for s, e in cut.highlights] == ["secret", "here"]
    assert snippet("Cats and CATS", ["cats"]).marked("<", ">") == "<Cats> and <CATS>"


# --- vector indexes -----------------------------------------------------------------


def _random(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_faiss_hnsw_agrees_with_exact_on_20k_vectors() -> None:
    data = _random(20_000, 64)
    ids = np.arange(20_000, dtype=np.int64) * 7 + 3
    faiss_index = FaissIndex(64, hnsw_threshold=1_000)
    exact = ExactIndex(64)
    faiss_index.add(ids, data)
    exact.add(ids, data)
    assert faiss_index.is_hnsw and faiss_index.count == exact.count == 20_000
    queries = _random(50, 64, seed=1)
    recall = np.mean(
        [len(set(faiss_index.search(q, 10)[0]) & set(exact.search(q, 10)[0])) / 10 for q in queries]
    )
    assert recall >= 0.95
    found, scores = exact.search(data[5], 3)
    assert found[0] == ids[5] and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert list(scores) == sorted(scores, reverse=True)


@pytest.mark.parametrize("hnsw", [False, True])
def test_add_replace_remove_save_load(tmp_path: Path, hnsw: bool) -> None:
    data = _random(300, 16)
    ids = np.arange(300, dtype=np.int64) + 1000
    for index in (
        FaissIndex(16, model="m@1", hnsw_threshold=100 if hnsw else 10_000),
        ExactIndex(16, model="m@1"),
    ):
        index.add(ids, data)
        assert getattr(index, "is_hnsw", hnsw) is hnsw
        assert index.search(data[10], 1)[0][0] == 1010
        assert index.remove([1010, 1011, 99]) == 2
        assert 1010 not in index.search(data[10], 5)[0]
        index.add([1012], data[[200]])  # a new vector for an id already there
        assert index.search(data[200], 2)[0].tolist()[:2] == sorted([1012, 1200], key=lambda i: i)
        index.add([1010], data[[10]])  # back after removal
        assert index.search(data[10], 1)[0][0] == 1010
        assert index.count == 299
        path = tmp_path / f"{type(index).__name__}-{hnsw}.vec"
        index.save(path)
        again = read_index(path)
        assert type(again) is type(index) and again.count == 299 and again.model == "m@1"
        for q in data[:20]:
            assert again.search(q, 5)[0].tolist() == index.search(q, 5)[0].tolist()


def test_a_corrupt_or_truncated_file_is_reported(tmp_path: Path) -> None:
    index = ExactIndex(8)
    index.add([1, 2], _random(2, 8))
    path = tmp_path / "x.vec"
    index.save(path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(VectorIndexCorrupt):
        read_index(path)
    path.write_bytes(b"not an index")
    with pytest.raises(VectorIndexCorrupt):
        read_index(path)
    assert [p.name for p in tmp_path.iterdir()] == ["x.vec"]  # no temporary files left


class _Counting(DatabaseVectors):
    """The database's vectors, counting the rows read (to tell a catch-up from a rebuild)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        super().__init__(sessions)
        self.rows = 0

    def batches(
        self, tenant_id: str, space: VectorSpace, *, after: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for ids, vectors in super().batches(tenant_id, space, after=after):
            self.rows += ids.size
            yield ids, vectors

    def fetch(
        self, tenant_id: str, space: VectorSpace, ids: np.ndarray
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for found, vectors in super().fetch(tenant_id, space, ids):
            self.rows += found.size
            yield found, vectors


def test_the_store_rebuilds_from_the_database(
    index: TextIndex, sessions: sessionmaker[Session], tenant: str, tmp_path: Path
) -> None:
    ids = _seed(index, tenant)
    space = VectorSpace("text", 8, "toy@1")
    vectors = _random(len(ids), 8, seed=3)
    with sessions.begin() as session:
        store_vectors(session, tenant, space, ids, vectors)
    store = VectorStore(tmp_path / "vectors", DatabaseVectors(sessions))
    built = store.index(tenant, space)
    assert built.count == len(ids) and built.search(vectors[2], 1)[0][0] == ids[2]
    path = store.path(tenant, space)
    assert path.is_file()
    counting = _Counting(sessions)  # a file in step is loaded, not rebuilt
    assert VectorStore(tmp_path / "vectors", counting).index(tenant, space).count == len(ids)
    assert counting.rows == 0
    path.write_bytes(path.read_bytes()[:50])  # corrupt: rebuilt
    fresh = VectorStore(tmp_path / "vectors", DatabaseVectors(sessions))
    assert fresh.index(tenant, space).count == len(ids)
    path.unlink()  # missing: rebuilt
    fresh = VectorStore(tmp_path / "vectors", DatabaseVectors(sessions))
    assert fresh.index(tenant, space).search(vectors[4], 1)[0][0] == ids[4]
    other_model = VectorSpace("text", 8, "toy@2")  # another model version: rebuilt, empty
    assert (
        VectorStore(tmp_path / "vectors", DatabaseVectors(sessions))
        .index(tenant, other_model)
        .count
        == 0
    )
    assert (
        VectorStore(tmp_path / "vectors", DatabaseVectors(sessions)).index("nobody", space).count
        == 0
    )


def _docs(index: TextIndex, tenant: str, ref: str, n: int) -> list[int]:
    return index.add(
        tenant,
        [
            DocumentIn(media_kind="audio", media_ref=ref, field="transcript", text=f"part {i}")
            for i in range(n)
        ],
    )


def _stored(
    sessions: sessionmaker[Session], tenant: str, space: VectorSpace, ids: list[int], seed: int
) -> np.ndarray:
    vectors = _random(len(ids), space.dim, seed=seed)
    with sessions.begin() as session:
        store_vectors(session, tenant, space, ids, vectors)
    return vectors


def test_a_file_left_stale_by_a_crash_is_caught_up_incrementally(
    index: TextIndex, sessions: sessionmaker[Session], tenant: str, tmp_path: Path
) -> None:
    space = VectorSpace("text", 8, "toy@1")
    root = tmp_path / "vectors"
    store = VectorStore(root, DatabaseVectors(sessions), save_every_s=3600)
    first = _docs(index, tenant, "a", 30)
    old = _stored(sessions, tenant, space, first, seed=1)
    store.add(tenant, space, np.asarray(first), old)
    store.save(tenant, space)
    later = _docs(index, tenant, "b", 5)  # indexed, and then the process dies unsaved
    new = _stored(sessions, tenant, space, later, seed=2)
    store.add(tenant, space, np.asarray(later), new)
    path = store.path(tenant, space)
    assert read_index(path).count == 30  # saving is debounced: the file lags

    source = _Counting(sessions)
    after_crash = VectorStore(root, source)
    assert after_crash.search(tenant, space, new[3], 1)[0][0] == later[3]
    assert after_crash.index(tenant, space).count == 35
    assert source.rows == 5  # only the rows past the file's mark were read
    assert read_index(path).count == 35  # and the caught-up index was saved

    # a row committed late, with an id below the mark, is found by comparing ids
    gap = _docs(index, tenant, "c", 3)
    _stored(sessions, tenant, space, [gap[0], gap[2]], seed=3)
    VectorStore(root, DatabaseVectors(sessions)).index(tenant, space)  # file: mark = gap[2]
    late = _stored(sessions, tenant, space, [gap[1]], seed=4)
    source = _Counting(sessions)
    caught = VectorStore(root, source)
    assert caught.search(tenant, space, late[0], 1)[0][0] == gap[1]
    assert caught.index(tenant, space).count == 38 and source.rows == 1


def test_rows_deleted_since_are_not_returned_after_reload(
    index: TextIndex, sessions: sessionmaker[Session], tenant: str, tmp_path: Path
) -> None:
    space = VectorSpace("image", 8, "toy@1")
    root = tmp_path / "vectors"
    gone = _docs(index, tenant, "gone", 4)
    kept = _docs(index, tenant, "kept", 4)
    vectors = _stored(sessions, tenant, space, gone + kept, seed=5)
    live = VectorStore(root, DatabaseVectors(sessions), sync_every_s=0)
    assert live.index(tenant, space).count == 8  # built and saved
    index.delete_media(tenant, "gone")  # the database only: another process, or a crash
    reloaded = VectorStore(root, DatabaseVectors(sessions))
    for v in vectors[:4]:
        assert not set(reloaded.search(tenant, space, v, 8)[0].tolist()) & set(gone)
    assert reloaded.index(tenant, space).count == 4
    assert read_index(reloaded.path(tenant, space)).count == 4
    # an index open in a process that did not delete catches up on its next check
    found = live.search(tenant, space, vectors[0], 8)[0].tolist()
    assert sorted(found) == sorted(kept)


# --- semantic search ----------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    made = SentenceEncoder(batch_size=8)
    made.load()
    return made


@pytest.mark.models
def test_the_encoder_gives_unit_float32_vectors(encoder: SentenceEncoder) -> None:
    vectors = encoder.encode(["hello", "こんにちは", "안녕하세요"] * 4)
    assert vectors.shape == (12, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.model_id.startswith("use-multilingual-v3@")
    assert encoder.encode([]).shape == (0, 512)


@pytest.mark.models
def test_a_query_in_one_language_finds_a_sentence_in_another(
    encoder: SentenceEncoder,
    index: TextIndex,
    sessions: sessionmaker[Session],
    tenant: str,
    tmp_path: Path,
) -> None:
    ids = _seed(index, tenant)
    texts = list(SENTENCES.values())
    space = VectorSpace("text", encoder.dim, encoder.model_id)
    with sessions.begin() as session:
        store_vectors(session, tenant, space, ids[: len(texts)], encoder.encode(texts))
    store = VectorStore(tmp_path / "v", DatabaseVectors(sessions))
    vectors = store.index(tenant, space)
    cases = {
        "a cat is sleeping by the window": "ko",  # English → Korean (and Thai) cat
        "we will meet at the train station tomorrow": "zh",
        "駐車場の扉のそばに荷物を置いた": None,  # Japanese → a parcel by the garage door
    }
    by_id = dict(zip(ids, SENTENCES, strict=False))
    for query, expected in cases.items():
        found, _scores = vectors.search(encoder.encode_one(query), 3)
        top = by_id[int(found[0])]
        if expected is None:
            assert top in {"en", "id", "de"}, (query, top)
        elif expected == "ko":
            assert top in {"ko", "th"}, (query, top)
        else:
            assert top == expected, (query, top)


# --- fusion -------------------------------------------------------------------------


def _hit(doc: int, ref: str, start: float | None, end: float | None, **kw: object) -> TextHit:
    base = TextHit(
        id=doc,
        media_kind="video",
        media_ref=ref,
        start_s=start,
        end_s=end,
        field="transcript",
        text=f"doc {doc}",
        language="en",
        labels=(),
        decision="allow",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        score=1.0,
        snippet=snippet(f"doc {doc}", ["doc"]),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_fusion_merges_overlapping_moments() -> None:
    text_hits = [
        _hit(1, "v1", 10.0, 14.0, labels=("Violence",)),
        _hit(2, "v2", 0.0, 3.0),
        _hit(3, "v1", 40.0, 41.0),
    ]
    vector_hits = [
        _hit(4, "v1", 13.0, 18.0, decision="block"),  # overlaps doc 1
        _hit(5, "v1", 17.5, 20.0),  # overlaps doc 4: same moment, transitively
        _hit(2, "v2", 0.0, 3.0),
    ]
    moments = fuse([text_hits, vector_hits])
    first = moments[0]
    assert (first.media_ref, first.start_s, first.end_s) == ("v1", 10.0, 20.0)
    assert [h.id for h in first.hits] == [1, 4, 5]
    assert first.labels == ("Violence",) and first.decision == "block"
    assert first.score == pytest.approx(2 / 61)
    assert [(m.media_ref, m.start_s) for m in moments] == [("v1", 10.0), ("v2", 0.0), ("v1", 40.0)]
    assert moments[1].score == pytest.approx(1 / 62 + 1 / 63)
    images = fuse([[_hit(7, "img", None, None)], [_hit(8, "img", None, None)]])
    assert len(images) == 1 and images[0].start_s is None and len(images[0].hits) == 2
    apart = fuse([[_hit(1, "v", 0, 1), _hit(2, "v", 3, 4)]], gap_s=2.5)
    assert len(apart) == 1 and (apart[0].start_s, apart[0].end_s) == (0, 4)


def test_a_moment_takes_the_thumbnail_of_its_best_hit_that_has_one() -> None:
    moments = fuse(
        [
            [
                _hit(1, "v", 0, 2),
                _hit(2, "v", 1, 3, thumbnail="/b"),
                _hit(3, "v", 2, 4, thumbnail="/c"),
            ]
        ]
    )
    assert len(moments) == 1 and moments[0].thumbnail == "/b"
    with_best = fuse([[_hit(1, "v", 0, 2, thumbnail="/a"), _hit(2, "v", 1, 3, thumbnail="/b")]])
    assert with_best[0].thumbnail == "/a"
    assert fuse([[_hit(1, "v", 0, 2)]])[0].thumbnail is None


class _AddCounting(ExactIndex):
    """An exact index that counts the vectors given to it (a replaced id counts again)."""

    added = 0

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        _AddCounting.added += int(np.asarray(ids).size)
        super().add(ids, vectors)


def test_rows_the_catch_up_took_are_not_added_twice(
    index: TextIndex, sessions: sessionmaker[Session], tenant: str, tmp_path: Path
) -> None:
    """Adding rows just stored, when the store catches up with the database first (as
    it does every ``sync_every_s``), must not add them again: an HNSW graph rebuilds
    itself to replace an id."""
    space = VectorSpace("text", 8, "toy@1")
    store = VectorStore(
        tmp_path / "vectors",
        DatabaseVectors(sessions),
        factory=lambda s: _AddCounting(s.dim, model=s.model),
        sync_every_s=0.0,
    )
    _AddCounting.added = 0
    store.index(tenant, space)  # open (empty), so that the next calls catch up first
    total = 0
    for batch in range(3):
        ids = _docs(index, tenant, f"m{batch}", 20)
        vectors = _stored(sessions, tenant, space, ids, seed=batch)
        store.add(tenant, space, np.asarray(ids), vectors)
        total += len(ids)
    assert store.index(tenant, space).count == total
    assert _AddCounting.added == total
