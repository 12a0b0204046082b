"""Benchmark of search: indexing throughput, query latency, and the vector index's recall.

One tenant is filled through :class:`~bastion.search.indexer.SearchIndexer`, then queried.
  (a) indexing — ``--documents`` transcript segments (20 per piece of audio, one
      ``index_transcript`` call each) of synthetic sentences made from word lists in
      eight languages (en, de, es, fr, id, ja, zh, ko), embedded by the sentence encoder
      (USE multilingual); then ``--images`` images (one ``index_image`` call each, a
      ``media`` document with a random unit 1280-d embedding; groups of ten planted
      near-duplicates among them, cosine ≈ 0.95 to their original). The encoder dominates:
      only the first ``--encode-sample`` segments are embedded by it, the rest reuse one
      of those vectors with noise added (cosine ≈ 0.9), so 100,000 fit in minutes on
      2 cores. Reported: documents/s with the encoder, documents/s without it (database,
      full-text tables, vector rows, vector index), sentences/s of the encoder alone and
      vectors/s into the faiss index (time inside ``FaissIndex.add``).
  (b) queries — p50/p95 latency of full-text search (``SearchIndexer.search`` without an
      encoder: words only), semantic search (encode the query, nearest vectors, read the
      documents: what ``search`` does for meaning), fused search (``search`` with both)
      and find-similar (``similar`` with an image embedding, k = 10).
  (c) vector index — the tenant's ``FaissIndex`` (HNSW beyond 20,000 vectors) against
      the baseline, exact brute force in numpy (``ExactIndex``) over the same vectors,
      side by side: recall@10 and p50/p95 latency, the ratio of latencies, for image
      queries near a planted group (the group is the exact top 10), random image queries
      (the worst case: every vector about as far), and text queries.

    .venv/bin/python -m bench.bench_search [--documents 100000] [--images 100000]
        [--encode-sample 5000] [--queries 200] [--sync-every-s -1]
        [--database-url postgresql+psycopg://...]

``--sync-every-s -1`` turns off the vector store's periodic sync with the database: with
it on (SearchConfig's 5 s), a sync during indexing re-adds the rows just stored, and the
HNSW index is rebuilt whole each time, which stalls indexing past 20,000 vectors.

SQLite in a temporary folder unless ``--database-url`` names a database (it is migrated,
and the tenant ``bench-<random>`` is deleted at the end). The texts are made up: the
figures measure cost, not ranking quality.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.engine import make_url

from bastion.models.sentence_encoder import SentenceEncoder, Vectors, normalise
from bastion.results import MediaInfo, ModerationResult
from bastion.search.config import SearchConfig
from bastion.search.indexer import SearchIndexer, TranscriptSegment
from bastion.search.vector_rows import DatabaseVectors
from bastion.search.vectors import ExactIndex, FaissIndex, VectorIndex, VectorSpace, VectorStore
from bastion.store.db import make_engine, migrate, session_factory
from bench.common import machine

# language -> (template, subjects, verbs, objects, places); words carry their particles
VOCAB: dict[str, tuple[str, list[str], list[str], list[str], list[str]]] = {
    "en": (
        "{s} {v} {o} {p}",
        ["the driver", "my sister", "a neighbour", "the teacher", "our guide", "the child"],
        ["left", "carried", "found", "painted", "sold", "forgot"],
        [
            "the parcel",
            "a red bicycle",
            "the old camera",
            "a bottle of water",
            "the keys",
            "a wooden chair",
            "the football",
            "a birthday cake",
        ],
        [
            "beside the garage door",
            "near the station",
            "in the park",
            "at the market",
            "behind the school",
            "on the bridge",
        ],
    ),
    "de": (
        "{s} {v} {o} {p}",
        [
            "der Fahrer",
            "meine Schwester",
            "ein Nachbar",
            "die Lehrerin",
            "unser Führer",
            "das Kind",
        ],
        ["ließ", "trug", "fand", "malte", "verkaufte", "vergaß"],
        [
            "das Paket",
            "ein rotes Fahrrad",
            "die alte Kamera",
            "eine Flasche Wasser",
            "die Schlüssel",
            "einen Holzstuhl",
            "den Fußball",
            "einen Geburtstagskuchen",
        ],
        [
            "neben der Garagentür",
            "am Bahnhof",
            "im Park",
            "auf dem Markt",
            "hinter der Schule",
            "auf der Brücke",
        ],
    ),
    "es": (
        "{s} {v} {o} {p}",
        ["el conductor", "mi hermana", "un vecino", "la maestra", "nuestro guía", "el niño"],
        ["dejó", "llevó", "encontró", "pintó", "vendió", "olvidó"],
        [
            "el paquete",
            "una bicicleta roja",
            "la cámara vieja",
            "una botella de agua",
            "las llaves",
            "una silla de madera",
            "el balón",
            "un pastel de cumpleaños",
        ],
        [
            "junto a la puerta del garaje",
            "cerca de la estación",
            "en el parque",
            "en el mercado",
            "detrás de la escuela",
            "sobre el puente",
        ],
    ),
    "fr": (
        "{s} {v} {o} {p}",
        ["le chauffeur", "ma sœur", "un voisin", "la maîtresse", "notre guide", "l'enfant"],
        ["a laissé", "a porté", "a trouvé", "a peint", "a vendu", "a oublié"],
        [
            "le colis",
            "un vélo rouge",
            "le vieil appareil photo",
            "une bouteille d'eau",
            "les clés",
            "une chaise en bois",
            "le ballon",
            "un gâteau d'anniversaire",
        ],
        [
            "à côté de la porte du garage",
            "près de la gare",
            "dans le parc",
            "au marché",
            "derrière l'école",
            "sur le pont",
        ],
    ),
    "id": (
        "{s} {v} {o} {p}",
        ["pengemudi", "adik saya", "seorang tetangga", "ibu guru", "pemandu kami", "anak itu"],
        ["meninggalkan", "membawa", "menemukan", "mengecat", "menjual", "melupakan"],
        [
            "paket itu",
            "sepeda merah",
            "kamera tua",
            "sebotol air",
            "kunci-kunci",
            "kursi kayu",
            "bola sepak",
            "kue ulang tahun",
        ],
        [
            "di samping pintu garasi",
            "dekat stasiun",
            "di taman",
            "di pasar",
            "di belakang sekolah",
            "di atas jembatan",
        ],
    ),
    "ja": (
        "{s}は{p}で{o}を{v}",
        ["運転手", "妹", "近所の人", "先生", "ガイド", "子ども"],
        [
            "置いていきました",
            "運びました",
            "見つけました",
            "塗りました",
            "売りました",
            "忘れました",
        ],
        [
            "荷物",
            "赤い自転車",
            "古いカメラ",
            "水のボトル",
            "鍵",
            "木の椅子",
            "サッカーボール",
            "誕生日ケーキ",
        ],
        ["ガレージの横", "駅の近く", "公園", "市場", "学校の裏", "橋の上"],
    ),
    "zh": (
        "{s}在{p}{v}{o}",
        ["司机", "我妹妹", "一位邻居", "老师", "我们的导游", "那个孩子"],
        ["留下了", "搬走了", "找到了", "画了", "卖掉了", "忘了"],
        ["包裹", "一辆红色自行车", "旧相机", "一瓶水", "钥匙", "木椅子", "足球", "生日蛋糕"],
        ["车库门旁边", "火车站附近", "公园里", "市场上", "学校后面", "桥上"],
    ),
    "ko": (
        "{s} {p} {o} {v}",
        ["운전기사가", "여동생이", "이웃이", "선생님이", "가이드가", "아이가"],
        ["두고 갔어요", "옮겼어요", "찾았어요", "칠했어요", "팔았어요", "잊어버렸어요"],
        [
            "소포를",
            "빨간 자전거를",
            "오래된 카메라를",
            "물 한 병을",
            "열쇠를",
            "나무 의자를",
            "축구공을",
            "생일 케이크를",
        ],
        ["차고 문 옆에서", "역 근처에서", "공원에서", "시장에서", "학교 뒤에서", "다리 위에서"],
    ),
}
TIMES = ["", " this morning", " yesterday", " at noon", " last week", " every day"]
"""English only: more distinct English sentences."""
SEGMENTS_PER_MEDIA = 20
GROUP = 10
"""Images per planted group: an original and nine near-duplicates."""
IMAGE_DIM = 1280


def sentence(rng: np.random.Generator, language: str) -> str:
    template, *lists = VOCAB[language]
    s, v, o, p = (str(words[rng.integers(len(words))]) for words in lists)
    text = template.format(s=s, v=v, o=o, p=p)
    if language == "en":
        text += TIMES[rng.integers(len(TIMES))]
    return text


def query_word(rng: np.random.Generator) -> str:
    """One or two words of an object or a place, as someone searching would type."""
    language = list(VOCAB)[rng.integers(len(VOCAB))]
    _template, _s, _v, objects, places = VOCAB[language]
    words = objects if rng.random() < 0.6 else places
    phrase = str(words[rng.integers(len(words))])
    parts = phrase.split()
    return " ".join(parts[-2:]) if len(parts) > 2 else phrase


def noisy(rng: np.random.Generator, rows: npt.NDArray[np.float32], cosine: float) -> Vectors:
    """Each unit row moved at random to about ``cosine`` from where it was."""
    spread = math.sqrt(1 / cosine**2 - 1) / math.sqrt(rows.shape[1])
    return normalise(rows + rng.standard_normal(rows.shape).astype(np.float32) * spread)


class SampledEncoder(SentenceEncoder):
    """The sentence encoder for the first ``sample`` texts indexed, then one of their
    vectors with noise (cosine ≈ 0.9); queries (``indexing`` off) are always encoded."""

    def __init__(self, sample: int, rng: np.random.Generator, threads: int) -> None:
        super().__init__(threads=threads, batch_size=64)
        self.sample = sample
        self.rng = rng
        self.indexing = True
        self.encoded = 0
        self.encode_s = 0.0
        self._bank: list[Vectors] = []
        self._stacked: Vectors | None = None

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not self.indexing or self.encoded < self.sample:
            started = time.perf_counter()
            out = super().encode(texts)
            if self.indexing:
                self.encode_s += time.perf_counter() - started
                self.encoded += len(texts)
                self._bank.append(out)
            return out
        if self._stacked is None:
            self._stacked = np.concatenate(self._bank)
        picks = self._stacked[self.rng.integers(len(self._stacked), size=len(texts))]
        return noisy(self.rng, picks, 0.9)


@dataclass
class AddTimes:
    """Time spent inside the faiss indexes' ``add``, per space."""

    seconds: dict[str, float] = field(default_factory=dict)
    vectors: dict[str, int] = field(default_factory=dict)
    rebuilds: dict[str, int] = field(default_factory=dict)
    """Rebuilds of the faiss index (HNSW cannot replace a vector: it is rebuilt)."""

    def factory(self, space: VectorSpace) -> VectorIndex:
        times = self

        class TimedFaiss(FaissIndex):
            def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
                started = time.perf_counter()
                super().add(ids, vectors)
                times.seconds[space.name] = times.seconds.get(space.name, 0.0) + (
                    time.perf_counter() - started
                )
                times.vectors[space.name] = times.vectors.get(space.name, 0) + int(
                    np.asarray(ids).size
                )

            def _rebuild(self, extra_ids: Any, extra: Any) -> None:
                times.rebuilds[space.name] = times.rebuilds.get(space.name, 0) + 1
                super()._rebuild(extra_ids, extra)

        return TimedFaiss(space.dim, model=space.model)


def image_result() -> ModerationResult:
    """The least an analysed image needs to be indexed: no labels, tags, text or codes."""
    media = MediaInfo(
        format="JPEG", mode="RGB", width=640, height=480, bytes=0, frames=1, frames_analyzed=1
    )
    return ModerationResult(
        decision="allow",
        reasons=[],
        faces=[],
        hashes={},
        media=media,
        policy="bench",
        policy_version="1",
        timings=[],
        labels=[],
        tags=[],
        text=[],
        codes=[],
        urls=[],
        face_count=0,
        total_ms=0.0,
        versions={},
    )


def timed(call: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """Milliseconds ``call(*args)`` took, and what it returned."""
    started = time.perf_counter()
    out = call(*args)
    return (time.perf_counter() - started) * 1000, out


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class Figures:
    indexing: list[tuple[str, int, float, str]] = field(default_factory=list)
    latency: list[tuple[str, list[float], str]] = field(default_factory=list)
    recall: list[tuple[str, float, list[float], list[float]]] = field(default_factory=list)


def fill(
    indexer: SearchIndexer,
    encoder: SampledEncoder,
    tenant: str,
    documents: int,
    rng: np.random.Generator,
    figures: Figures,
) -> None:
    """``documents`` transcript segments in pieces of audio of 20; two timed phases."""
    languages = list(VOCAB)
    done, media = 0, 0
    phases: list[tuple[str, int, float]] = []
    phase_start, phase_done = time.perf_counter(), 0
    real = True
    while done < documents:
        n = min(SEGMENTS_PER_MEDIA, documents - done)
        language = languages[media % len(languages)]
        segments = [
            TranscriptSegment(4.0 * i, 4.0 * i + 3.5, sentence(rng, language), language)
            for i in range(n)
        ]
        indexer.index_transcript(tenant, f"aud-{media}", segments)
        done, media = done + n, media + 1
        phase_done += n
        if real and encoder.encoded >= encoder.sample:
            phases.append(("with the encoder", phase_done, time.perf_counter() - phase_start))
            phase_start, phase_done, real = time.perf_counter(), 0, False
        if done % 10_000 < SEGMENTS_PER_MEDIA:
            print(f"  {done} segments indexed", flush=True)
    if phase_done:
        what = "with the encoder" if real else "reused vectors + noise"
        phases.append((what, phase_done, time.perf_counter() - phase_start))
    for what, n, secs in phases:
        figures.indexing.append(
            (f"transcript segments, {what}", n, n / secs, "index_transcript, 20 per media")
        )
    if encoder.encoded:
        figures.indexing.append(
            (
                "sentence encoder alone",
                encoder.encoded,
                encoder.encoded / encoder.encode_s,
                f"USE multilingual, {encoder._threads} thread(s), batches of 64",
            )
        )


def plant_images(count: int, rng: np.random.Generator) -> tuple[npt.NDArray[np.float32], list[int]]:
    """``count`` random unit vectors; the first of each planted group is at the returned
    offsets, its nine near-duplicates follow it."""
    vectors = normalise(rng.standard_normal((count, IMAGE_DIM)).astype(np.float32))
    groups = min(200, count // (GROUP * 10))
    starts = [g * GROUP * 10 for g in range(groups)]
    for start in starts:
        vectors[start + 1 : start + GROUP] = noisy(
            rng, np.repeat(vectors[start : start + 1], GROUP - 1, axis=0), 0.95
        )
    return vectors, starts


def recall_rows(
    label: str,
    approximate: VectorIndex,
    exact: ExactIndex,
    queries: npt.NDArray[np.float32],
    figures: Figures,
) -> None:
    recalls, fast, slow = [], [], []
    for q in queries:
        ms_f, (ids_f, _s) = timed(approximate.search, q, 10)
        ms_e, (ids_e, _t) = timed(exact.search, q, 10)
        fast.append(ms_f)
        slow.append(ms_e)
        recalls.append(len(set(ids_f.tolist()) & set(ids_e.tolist())) / max(len(ids_e), 1))
    figures.recall.append((label, float(np.mean(recalls)), fast, slow))


def run(args: argparse.Namespace) -> Figures:
    rng = np.random.default_rng(args.seed)
    figures = Figures()
    folder = Path(tempfile.mkdtemp(prefix="bastion-bench-search-"))
    url = args.database_url or f"sqlite:///{folder / 'bastion.db'}"
    db = make_engine(url)
    migrate(db)
    sessions = session_factory(db)
    times = AddTimes()
    config = SearchConfig()
    store = VectorStore(
        folder / "vectors",
        DatabaseVectors(sessions),
        factory=times.factory,
        save_every_s=config.save_every_s,
        sync_every_s=None if args.sync_every_s < 0 else args.sync_every_s,
    )
    encoder = SampledEncoder(args.encode_sample, rng, args.encoder_threads)
    encoder.load()
    image_space = VectorSpace("image", IMAGE_DIM, "random-unit@1")
    indexer = SearchIndexer(sessions, store, encoder, image_space=image_space, config=config)
    words_only = SearchIndexer(sessions, store, None, image_space=image_space, config=config)
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        print(f"indexing {args.documents} segments …", flush=True)
        fill(indexer, encoder, tenant, args.documents, rng, figures)
        encoder.indexing = False

        print(f"indexing {args.images} images …", flush=True)
        vectors, starts = plant_images(args.images, rng)
        image_ids = np.zeros(args.images, dtype=np.int64)
        result = image_result()
        started = time.perf_counter()
        for i in range(args.images):
            image_ids[i] = indexer.index_image(tenant, f"img-{i}", result, vectors[i])[0]
            if (i + 1) % 10_000 == 0:
                print(f"  {i + 1} images indexed", flush=True)
        secs = time.perf_counter() - started
        figures.indexing.append(
            (
                "images (media document + 1280-d vector)",
                args.images,
                args.images / secs,
                "index_image, one per image",
            )
        )
        for space in (indexer.text_space, image_space):
            if space is not None and times.seconds.get(space.name):
                n = times.vectors[space.name]
                figures.indexing.append(
                    (
                        f"vectors into the faiss index ({space.name}, {space.dim}-d)",
                        n,
                        n / times.seconds[space.name],
                        f"time inside FaissIndex.add; {times.rebuilds.get(space.name, 0)} "
                        "rebuild(s)",
                    )
                )

        print("querying …", flush=True)
        q = args.queries
        word_queries = [query_word(rng) for _ in range(q)]
        sentences = [sentence(rng, list(VOCAB)[i % len(VOCAB)]) for i in range(q)]
        text_space = indexer.text_space
        assert text_space is not None
        for text in word_queries[:5]:  # warm-up
            words_only.search(tenant, text)
            indexer.search(tenant, text)
        full_text = [timed(words_only.search, tenant, t)[0] for t in word_queries]
        figures.latency.append(("full-text (words only)", full_text, "1–2 words, 8 languages"))

        def semantic(text: str) -> int:
            vector = encoder.encode_one(text)
            ids, _scores = store.search(tenant, text_space, vector, config.semantic_depth)
            return len(indexer.text.documents(tenant, ids.tolist(), []))

        meaning = [timed(semantic, t)[0] for t in sentences]
        figures.latency.append(("semantic (encode + vectors + rows)", meaning, "a sentence"))
        fused_words = [timed(indexer.search, tenant, t)[0] for t in word_queries]
        figures.latency.append(("fused search, word queries", fused_words, "search()"))
        fused_sentences = [timed(indexer.search, tenant, t)[0] for t in sentences]
        figures.latency.append(("fused search, sentence queries", fused_sentences, "search()"))
        picked = (starts * math.ceil(q / len(starts)))[:q] if starts else []
        near = [noisy(rng, vectors[s : s + 1], 0.95)[0] for s in picked]
        similar = [timed(indexer.similar, tenant, v, 10)[0] for v in near]
        figures.latency.append(("find-similar (image embedding, k=10)", similar, "planted groups"))

        print("recall …", flush=True)
        faiss_images = store.index(tenant, image_space)
        exact_images = ExactIndex(IMAGE_DIM)
        exact_images.add(image_ids, vectors)
        if near:
            recall_rows(
                f"image, near a planted group ({'HNSW' if _hnsw(faiss_images) else 'flat'})",
                faiss_images,
                exact_images,
                np.stack(near),
                figures,
            )
        randoms = normalise(rng.standard_normal((q, IMAGE_DIM)).astype(np.float32))
        recall_rows("image, random queries", faiss_images, exact_images, randoms, figures)
        faiss_text = store.index(tenant, text_space)
        exact_text = ExactIndex(text_space.dim)
        for ids, rows in DatabaseVectors(sessions).batches(tenant, text_space):
            exact_text.add(ids, rows)
        recall_rows(
            f"text, sentence queries ({'HNSW' if _hnsw(faiss_text) else 'flat'})",
            faiss_text,
            exact_text,
            encoder.encode(sentences),
            figures,
        )
    finally:
        indexer.delete_tenant(tenant)
        db.dispose()
    return figures


def _hnsw(index: VectorIndex) -> bool:
    return bool(getattr(index, "is_hnsw", False))


def report(args: argparse.Namespace, figures: Figures, took: float) -> None:
    database = "SQLite" if not args.database_url else make_url(args.database_url).get_backend_name()
    print(
        f"\ncommand: python -m bench.bench_search --documents {args.documents} "
        f"--images {args.images} --encode-sample {args.encode_sample} --queries {args.queries}"
        f" --sync-every-s {args.sync_every_s:g}"
        + (" --database-url …" if args.database_url else "")
    )
    print(f"machine: {machine()}; database: {database}; took {took:.0f} s\n")
    print("| indexing | documents | per second | how |\n|---|---|---|---|")
    for what, n, rate, how in figures.indexing:
        print(f"| {what} | {n:,} | {rate:,.0f} | {how} |")
    print("\n| query | queries | p50 ms | p95 ms | what |\n|---|---|---|---|---|")
    for what, ms, how in figures.latency:
        print(f"| {what} | {len(ms)} | {pct(ms, 50):.1f} | {pct(ms, 95):.1f} | {how} |")
    print(
        "\n| vector index vs exact (baseline) | recall@10 | faiss p50 / p95 ms | "
        "exact p50 / p95 ms | exact / faiss (p50) |\n|---|---|---|---|---|"
    )
    for what, recall, fast, slow in figures.recall:
        print(
            f"| {what} | {recall:.3f} | {pct(fast, 50):.2f} / {pct(fast, 95):.2f} | "
            f"{pct(slow, 50):.2f} / {pct(slow, 95):.2f} | "
            f"**{pct(slow, 50) / pct(fast, 50):.1f}×** |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--documents", type=int, default=100_000, help="transcript segments")
    ap.add_argument("--images", type=int, default=100_000, help="images with embeddings")
    ap.add_argument(
        "--encode-sample",
        type=int,
        default=5_000,
        help="segments embedded by the encoder; the rest reuse their vectors with noise",
    )
    ap.add_argument("--queries", type=int, default=200, help="queries of each kind")
    ap.add_argument(
        "--encoder-threads",
        type=int,
        default=SearchConfig().encoder_threads,
        help="threads of the sentence encoder (default: SearchConfig's)",
    )
    ap.add_argument(
        "--sync-every-s",
        type=float,
        default=SearchConfig().sync_every_s,
        help="VectorStore sync with the database (default: SearchConfig's); < 0: never. "
        "A sync while indexing re-adds the rows just stored, and adding them again makes "
        "an HNSW index rebuild whole",
    )
    ap.add_argument("--database-url", default=None, help="a database instead of SQLite")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    started = time.perf_counter()
    figures = run(args)
    report(args, figures, time.perf_counter() - started)


if __name__ == "__main__":
    main()
