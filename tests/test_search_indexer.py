"""The search indexer end to end: real photos (a sign, a QR code) analysed by the real
``labels``, ``ocr`` and ``codes`` analyzers, indexed with their embeddings, then found by
a word, a payload, a tag, a look-alike image, and a spoken phrase by its words and by
its meaning in another language; deletion and tenant isolation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bastion.models.sentence_encoder import SentenceEncoder
from bastion.pipeline.video import FrameLabel, FrameResult, VideoResult
from bastion.policy.model import Policy
from bastion.process.components import build_core
from bastion.results import ModerationResult
from bastion.samples.embedding import Embedder
from bastion.search.errors import MediaNotIndexed
from bastion.search.indexer import VISUAL_FIELDS, SearchIndexer, video_documents
from bastion.search.tables import FIELDS, SearchVector
from bastion.search.text_index import SearchFilters
from bastion.search.vector_rows import DatabaseVectors
from bastion.search.vectors import VectorSpace, VectorStore
from tests.support import media
from tests.support.databases import database
from tests.support.settings import make_settings

pytestmark = pytest.mark.models

SIGN = "GRAND OPENING BAKERY"
QR = "https://example.org/menu"
PHOTOS = ("skimage-astronaut", "skimage-rocket", "sklearn-china", "skimage-motorcycle")


@dataclass(frozen=True)
class Analysed:
    """What moderation made of the test media, and their embeddings."""

    results: dict[str, ModerationResult]
    embeddings: dict[str, np.ndarray]
    lookalike: np.ndarray
    """The embedding of the rocket photo re-encoded at a lower quality and scaled down."""
    model: str


async def _analyse(folder: Path) -> Analysed:
    settings = make_settings(
        folder, analyzers=[{"type": "labels"}, {"type": "ocr"}, {"type": "codes"}]
    )
    core = await build_core(settings)
    try:
        policy = Policy(name="search", analyzers=["labels", "ocr", "codes"])
        embedder = Embedder(core.engine, "labels")
        media_of = {
            "img-sign": media.text_on_photo(SIGN),
            "img-qr": media.qr_on_photo(QR),
            **{f"img-{name}": media.jpeg(name) for name in PHOTOS},
        }
        results, embeddings = {}, {}
        for ref, data in media_of.items():
            results[ref] = await core.moderation.moderate_bytes(data, policy)
            embeddings[ref] = await embedder.embed(await embedder.decode(data))
        small = media.jpeg("skimage-rocket", quality=55, scale=0.6)
        lookalike = await embedder.embed(await embedder.decode(small))
        return Analysed(results, embeddings, lookalike, str(embedder.model))
    finally:
        await core.aclose()


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Analysed:
    return asyncio.run(_analyse(tmp_path_factory.mktemp("analyse")))


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    made = SentenceEncoder(batch_size=16)
    made.load()
    return made


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def sessions(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sessionmaker[Session]]:
    with database(request.param, tmp_path_factory.mktemp("search")) as (made, _repo):
        yield made


@pytest.fixture
def indexer(
    sessions: sessionmaker[Session],
    encoder: SentenceEncoder,
    analysed: Analysed,
    tmp_path: Path,
) -> SearchIndexer:
    store = VectorStore(tmp_path / "vectors", DatabaseVectors(sessions))
    space = VectorSpace("image", 1280, analysed.model)
    return SearchIndexer(sessions, store, encoder, image_space=space)


@pytest.fixture
def tenant(indexer: SearchIndexer, analysed: Analysed) -> str:
    """A tenant with the analysed images and a transcript indexed."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    for ref, result in analysed.results.items():
        indexer.index_image(name, ref, result, analysed.embeddings[ref])
    indexer.index_transcript(
        name,
        "aud-1",
        [
            (0.0, 4.0, "The delivery driver left the parcel beside the garage door", "en"),
            (4.0, 9.5, "Please remember to water the plants on Sunday", "en"),
        ],
    )
    return name


def _refs(indexer: SearchIndexer, tenant: str, text: str, **kw: object) -> list[str]:
    filters = SearchFilters(**kw)
    return [m.media_ref for m in indexer.search(tenant, text, filters).moments]


def test_a_word_on_a_sign_a_qr_payload_and_a_tag_are_found(
    indexer: SearchIndexer, tenant: str, analysed: Analysed
) -> None:
    assert _refs(indexer, tenant, "bakery")[0] == "img-sign"
    (moment,) = [m for m in indexer.search(tenant, "bakery").moments if m.media_ref == "img-sign"]
    assert "[BAKERY]" in moment.snippet.marked() and moment.start_s is None
    assert _refs(indexer, tenant, "example.org menu", fields=["code"]) == ["img-qr"]
    assert _refs(indexer, tenant, QR, fields=["url"]) == ["img-qr"]
    cat = next(t.name for t in analysed.results["img-sign"].tags if t.confidence >= 20)
    assert "img-sign" in _refs(indexer, tenant, cat, fields=["tag"])
    assert _refs(indexer, tenant, "QR Code Link", fields=["label"]) == ["img-qr"]


def test_a_lookalike_image_comes_first(
    indexer: SearchIndexer, tenant: str, analysed: Analysed
) -> None:
    moments = indexer.similar(tenant, analysed.lookalike, k=3)
    assert moments[0].media_ref == "img-skimage-rocket" and moments[0].score > 0.8
    assert moments[0].score > moments[1].score + 0.1
    by_ref = indexer.similar(tenant, "img-skimage-rocket", k=3)
    assert "img-skimage-rocket" not in [m.media_ref for m in by_ref] and len(by_ref) == 3
    only = indexer.similar(
        tenant, analysed.lookalike, k=5, filters=SearchFilters(media_refs=["img-qr"])
    )
    assert [m.media_ref for m in only] == ["img-qr"]


def test_a_spoken_phrase_is_found_by_words_and_by_meaning(
    indexer: SearchIndexer, tenant: str
) -> None:
    first = indexer.search(tenant, "parcel garage").moments[0]
    assert (first.media_ref, first.start_s, first.end_s) == ("aud-1", 0.0, 4.0)
    for query in (
        "Der Fahrer hat das Paket neben der Garagentür abgestellt",
        "荷物を車庫の扉のそばに置いた",
    ):
        top = indexer.search(tenant, query).moments[0]
        assert (top.media_ref, top.start_s) == ("aud-1", 0.0), query
    plants = indexer.search(tenant, "riega las plantas el domingo").moments[0]
    assert (plants.media_ref, plants.start_s) == ("aud-1", 4.0)
    # a few words in another language find the sentence about them; unrelated ones do not
    for query in ("paquete en la puerta", "植物に水", "regar plantas"):
        spoken = [m for m in indexer.search(tenant, query).moments if m.media_ref == "aud-1"]
        assert spoken, query
    unrelated = indexer.search(tenant, "coche rojo", SearchFilters(fields=["transcript"]))
    assert unrelated.moments == []


def test_reindexing_replaces_and_deleting_removes_everything(
    indexer: SearchIndexer, tenant: str, analysed: Analysed, sessions: sessionmaker[Session]
) -> None:
    before = _count(sessions, tenant)
    indexer.index_image(
        tenant, "img-sign", analysed.results["img-sign"], analysed.embeddings["img-sign"]
    )
    assert _count(sessions, tenant) == before  # replaced, not added
    assert indexer.delete_media(tenant, "img-sign") > 0
    assert "img-sign" not in _refs(indexer, tenant, "bakery")
    assert "img-sign" not in [
        m.media_ref for m in indexer.similar(tenant, analysed.embeddings["img-sign"], k=10)
    ]
    with pytest.raises(MediaNotIndexed):
        indexer.similar(tenant, "img-sign")
    with sessions() as session:
        rows = session.scalar(
            select(func.count()).select_from(SearchVector).where(SearchVector.tenant_id == tenant)
        )
    assert rows == _count(sessions, tenant, vectors=True)
    # a fresh process (index files as left) finds nothing of it either
    fresh = VectorStore(indexer.store.root, DatabaseVectors(sessions))
    again = SearchIndexer(sessions, fresh, indexer.encoder, image_space=indexer.image_space)
    assert "img-sign" not in [
        m.media_ref for m in again.similar(tenant, analysed.embeddings["img-sign"], k=10)
    ]
    assert indexer.delete_tenant(tenant) > 0
    assert indexer.search(tenant, "parcel").moments == []


def _count(sessions: sessionmaker[Session], tenant: str, *, vectors: bool = False) -> int:
    from bastion.search.tables import SearchDocument

    table = SearchVector if vectors else SearchDocument
    with sessions() as session:
        return int(
            session.scalar(select(func.count()).select_from(table).where(table.tenant_id == tenant))
            or 0
        )


def test_another_tenant_finds_nothing(
    indexer: SearchIndexer, tenant: str, analysed: Analysed
) -> None:
    other = f"o-{uuid.uuid4().hex[:8]}"
    assert indexer.search(other, "bakery").moments == []
    assert indexer.search(other, "Der Fahrer hat das Paket abgestellt").moments == []
    assert indexer.similar(other, analysed.lookalike, k=5) == []
    with pytest.raises(MediaNotIndexed):
        indexer.similar(other, "img-skimage-rocket")
    assert indexer.delete_media(other, "img-sign") == 0
    assert _refs(indexer, tenant, "bakery")[0] == "img-sign"


def _video() -> VideoResult:
    def frame(i: int, text: list[str], decision: str = "allow") -> FrameResult:
        labels = [FrameLabel(name="QR Code Link", parent=None, confidence=90, analyzer="codes")]
        return FrameResult(
            index=i * 30,
            timestamp_ms=i * 1000,
            decision=decision,
            text=text,
            labels=labels if decision != "allow" else [],
        )

    frames = [
        frame(0, ["SUMMER SALE"]),
        frame(1, ["SUMMER SALE"], "review"),
        frame(2, []),
        frame(3, ["SUMMER SALE"]),
    ]
    # only what indexing reads: the rest of a video result does not matter here
    fields: dict[str, Any] = {
        "decision": "review",
        "frames": frames,
        "tags": ["beach"],
        "labels": [],
        "segments": [],
    }
    return VideoResult.model_construct(**fields)


def test_a_video_makes_timed_documents_and_frames_find_frames(
    indexer: SearchIndexer, tenant: str, analysed: Analysed
) -> None:
    assert set(VISUAL_FIELDS) == set(FIELDS) - {"transcript"}
    video = _video()
    docs = video_documents("vid", video)
    ocr = [(d.start_s, d.end_s, d.decision) for d in docs if d.field == "ocr"]
    assert ocr == [(0.0, 1.0, "review"), (3.0, 3.0, "allow")]
    embeddings = {0: analysed.embeddings["img-skimage-astronaut"], 60: analysed.lookalike}
    indexer.index_video(tenant, "vid", video, embeddings)
    indexer.index_transcript(
        tenant, "vid", [(2.0, 3.0, "sunny beach day", "en")], media_kind="video"
    )
    read = SearchFilters(fields=["ocr"])  # the transcript is near "summer sale" in meaning
    found = [m for m in indexer.search(tenant, "summer sale", read).moments if m.media_ref == "vid"]
    assert sorted((m.start_s, m.end_s) for m in found) == [(0.0, 1.0), (3.0, 3.0)]
    top = indexer.similar(tenant, analysed.embeddings["img-skimage-rocket"], k=2)
    assert {(m.media_ref, m.start_s) for m in top} == {("img-skimage-rocket", None), ("vid", 2.0)}
    indexer.index_video(tenant, "vid", video)  # again, without embeddings: the transcript stays
    assert _refs(indexer, tenant, "sunny beach", fields=["transcript"]) == ["vid"]
    assert ("vid", 2.0) not in {
        (m.media_ref, m.start_s) for m in indexer.similar(tenant, analysed.lookalike, k=5)
    }
