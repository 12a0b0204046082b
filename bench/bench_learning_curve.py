"""Benchmark: does a service's own head, trained on a few thousand samples, beat the
general model on the service's content?

The content is contact spam on real photos (phone numbers, messenger ids, prices) against
the same photos with an ordinary caption or none (``tests/support/spam_images.py``); the
category is ``Illegal Ads``. One run:

1. splits the base photos once: about a third are held out, never seen in training;
2. generates the training pool from the other photos with the generator's seeds 1, 2, …
   and the held-out set from the held-out photos with seeds 10001, … taken later than
   every training sample (a fixed, time-later set of new pictures);
3. computes every image's embedding once, from its JPEG bytes, with the ``labels``
   analyzer (the 1280-d EfficientNet-Lite0 features ``bastion.samples.embedding`` keeps);
4. measures the baselines on the held-out images through ``Moderation``, as Bastion
   decides today: ``--policy`` (the default policy unless told otherwise) and a word-list
   policy (the ``labels``, ``ocr`` and ``codes`` analyzers, a rule reviewing Illegal Ads
   and a list of the words spam carries: a strong rules-only baseline, written knowing
   the generator's vocabulary); an image is positive for a baseline when a rule acted on
   a label of Illegal Ads;
5. trains a head per size (nested, class-stratified subsets of the pool; cross-validation
   keeps each photo's variants together), exports it to ONNX and scores the *exported*
   head on the held-out embeddings, timing training and the head's inference.

It prints a Markdown table (head precision, recall and F1 with 95% bootstrap intervals,
each baseline's F1 and the ratio of the head's F1 to it, the paired F1 difference to the
word-list baseline, training seconds, head ms per image) and draws the learning curve as
an SVG with ``bastion.training.charts.learning_chart`` and the portal's chart fragment.

    .venv/bin/python -m bench.bench_learning_curve [--sizes 100,300,1000,3000]
        [--held-out 300] [--policy NAME|FILE] [--svg PATH] [--json PATH]

The picture goes to ``bench/out/learning_curve.svg`` unless ``--svg`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from tests.support.media import encode
from tests.support.spam_images import photos, samples

from bastion.config import Settings
from bastion.evaluation.config import EvalConfig
from bastion.evaluation.folder_eval import Measure, ScoredImage, bootstrap_measures
from bastion.pipeline.moderation import Moderation
from bastion.policy.loader import parse_policy
from bastion.policy.model import Policy
from bastion.portal.templating import environment
from bastion.process.components import build_core
from bastion.samples.embedding import Embedder
from bastion.stats.charts import AMBER, LegendKey, Polyline
from bastion.training.charts import BASELINE_COLOR, HEAD_COLOR, XYChart, learning_chart
from bastion.training.config import TrainingConfig
from bastion.training.errors import TooFewSamples
from bastion.training.evaluate import EvaluationReport, evaluate
from bastion.training.head import train_head
from bastion.training.inference import head_cost, load_head
from bastion.training.learning import LearningCurve, LearningPoint, nested_subsets
from bastion.training.onnx_export import export_head
from bastion.training.run import check_parity
from bench.common import machine

CATEGORY = "Illegal Ads"
HELD_OUT_EVERY = 3  # every third base photo (in name order) is held out
PER_PHOTO = 12  # variants of each photo per generator seed (half of them spam)
TRAIN_START = datetime(2026, 1, 1, tzinfo=UTC)
HELD_OUT_START = datetime(2030, 1, 1, tzinfo=UTC)  # later than every training sample
HELD_OUT_SEED = 10_001
JPEG_QUALITY = 90
OUT = Path(__file__).resolve().parent / "out"
WORD_LIST = """name: ads-word-list
description: Rules only - review Illegal Ads, with the words contact spam carries.
analyzers: [labels, ocr, codes]
rules:
  - name: ads
    categories: [Illegal Ads]
    review: 50
lists:
  blocked_words: [whatsapp, telegram, wechat, kakao, viber, line id, call, tel, phone,
    contact, sale, special price, only, "off"]
"""


@dataclass
class Part:
    """Embedded samples of one part (training pool or held-out set)."""

    x: np.ndarray
    y: np.ndarray
    photos: np.ndarray
    taken_at: list[datetime]
    jpegs: list[bytes]
    """The bytes (kept for the held-out set only, which the baselines moderate)."""


@dataclass
class SizeResult:
    """A head trained on ``samples`` training samples, on the held-out set."""

    samples: int
    positives: int
    measure: Measure
    versus_words: EvaluationReport
    train_seconds: float
    ms_per_image: float
    ms_per_image_batch: float
    onnx_bytes: int


def split_photos() -> tuple[set[str], set[str]]:
    """(training photos, held-out photos): every ``HELD_OUT_EVERY``-th name is held out."""
    names = sorted(name for name, _ in photos())
    held = {n for i, n in enumerate(names) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1}
    return set(names) - held, held


def generate(keep: set[str], count: int, first_seed: int, start: datetime) -> Iterator[Any]:
    """``count`` samples of the photos in ``keep``, seed after seed (each seed's samples
    a few months after the previous seed's)."""
    made, seed = 0, first_seed
    while made < count:
        when = start + timedelta(days=120 * (seed - first_seed))
        for s in samples(len(photos()), PER_PHOTO, seed=seed, start=when):
            if s.photo in keep:
                yield s
                made += 1
                if made == count:
                    return
        seed += 1


async def embed_part(
    embedder: Embedder,
    keep: set[str],
    count: int,
    first_seed: int,
    start: datetime,
    *,
    keep_bytes: bool,
) -> Part:
    """Generate ``count`` samples and embed their JPEG bytes, 64 at a time (the
    analyzer's batcher batches the concurrent embeddings)."""
    xs: list[np.ndarray] = []
    ys: list[int] = []
    names: list[str] = []
    times: list[datetime] = []
    jpegs: list[bytes] = []
    stream = generate(keep, count, first_seed, start)

    def chunk() -> list[tuple[Any, bytes]]:
        out = []
        for s in stream:
            out.append((s, encode(s.rgb, "JPEG", quality=JPEG_QUALITY)))
            if len(out) == 64:
                break
        return out

    async def one(data: bytes) -> np.ndarray:
        return await embedder.embed(await embedder.decode(data))

    while batch := await asyncio.to_thread(chunk):
        vectors = await asyncio.gather(*(one(data) for _, data in batch))
        for (s, data), vector in zip(batch, vectors, strict=True):
            xs.append(vector)
            ys.append(int(s.spam))
            names.append(s.photo)
            times.append(s.taken_at)
            if keep_bytes:
                jpegs.append(data)
    return Part(np.stack(xs), np.asarray(ys, dtype=np.int64), np.asarray(names), times, jpegs)


async def baseline(
    moderation: Moderation, policy: Policy, jpegs: Sequence[bytes], concurrency: int
) -> tuple[np.ndarray, float]:
    """1 where a rule of ``policy`` acted on a label of the category, per image, and the
    seconds per image it took."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, data: bytes) -> int:
        async with gate:
            result = await moderation.moderate_bytes(data, policy)
        return int(CATEGORY in ScoredImage.from_result(str(i), [], result).decided)

    started = time.perf_counter()
    decided = await asyncio.gather(*(one(i, d) for i, d in enumerate(jpegs)))
    return np.asarray(decided, dtype=np.int64), (time.perf_counter() - started) / len(jpegs)


def train_size(
    pool: Part,
    held: Part,
    idx: np.ndarray,
    words: np.ndarray,
    embedder: Embedder,
    config: TrainingConfig,
) -> SizeResult:
    """Train, export and score one head; time its training and its inference."""
    head = train_head(pool.x[idx], pool.y[idx], config, groups=pool.photos[idx])
    model = embedder.model
    onnx = export_head(
        head, category=CATEGORY, embedding_model=model.name, embedding_version=model.version
    )
    exported = load_head(onnx)
    check_parity(head, exported, held.x)
    probabilities = exported.predict_proba(held.x)
    decided = (probabilities.astype(np.float64) >= exported.threshold).astype(np.int64)
    (measure,) = bootstrap_measures(held.y, decided, EvalConfig(seed=config.seed))
    versus = evaluate(
        held.y,
        probabilities,
        words,
        threshold=exported.threshold,
        category=CATEGORY,
        config=config,
        baseline_name="word-list policy",
    )
    cost = head_cost(exported, batch_sizes=(1, 64), repeats=200)
    return SizeResult(
        samples=int(idx.shape[0]),
        positives=int(pool.y[idx].sum()),
        measure=measure,
        versus_words=versus,
        train_seconds=head.summary.train_seconds,
        ms_per_image=cost.per_image_ms[1],
        ms_per_image_batch=cost.per_image_ms[64],
        onnx_bytes=len(onnx),
    )


def _ci(v: Any) -> str:
    return f"{v.estimate:.3f} [{v.low:.3f}, {v.high:.3f}]"


def _ratio(head: float, base: float) -> str:
    if base > 0:
        return f"{head / base:.2f}×"
    return "∞ (baseline F1 0)" if head > 0 else "–"


def table(results: list[SizeResult], default_f1: float, words_f1: float, policy: str) -> str:
    lines = [
        f"| training samples (positive) | head precision | head recall | head F1 | "
        f"{policy} F1 | head / {policy} | word-list F1 | head / word-list | "
        "head − word-list F1 | train s | head ms/image (batch 1 / 64) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m, d = r.measure, r.versus_words.f1_difference
        lines.append(
            f"| {r.samples:,} ({r.positives:,}) | {_ci(m.precision)} | {_ci(m.recall)} | "
            f"{_ci(m.f1)} | {default_f1:.3f} | {_ratio(m.f1.estimate, default_f1)} | "
            f"{words_f1:.3f} | {_ratio(m.f1.estimate, words_f1)} | "
            f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}] | {r.train_seconds:.1f} | "
            f"{r.ms_per_image:.3f} / {r.ms_per_image_batch:.4f} |"
        )
    return "\n".join(lines)


def chart(results: list[SizeResult], default_f1: float, words_f1: float, policy: str) -> str:
    """The learning curve as a standalone SVG: the head, the ``--policy`` baseline and
    the word-list baseline."""
    curve = LearningCurve(
        category=CATEGORY,
        baseline_name=f"{policy} policy",
        baseline_f1=default_f1,
        points=[
            LearningPoint(
                samples=r.samples,
                positives=r.positives,
                precision=r.measure.precision.estimate,
                recall=r.measure.recall.estimate,
                f1=r.measure.f1.estimate,
                train_seconds=r.train_seconds,
            )
            for r in results
        ],
    )
    c: XYChart = learning_chart(curve, "learning-curve")
    ticks = {t.label: t.at for t in c.y_ticks}
    y = ticks["0"] + (ticks["1"] - ticks["0"]) * words_f1
    c.lines.append(Polyline(f"{c.left},{y:.1f} {c.right},{y:.1f}", AMBER))
    c.summary += f" Word-list policy F1 {words_f1:.2f}."
    c.set_legend(
        [
            LegendKey(HEAD_COLOR, "Head", "Head trained on that many samples"),
            LegendKey(BASELINE_COLOR, curve.baseline_name, curve.baseline_name),
            LegendKey(AMBER, "Word-list policy", "Rules only: OCR and a spam word list"),
        ]
    )
    html = (
        environment()
        .from_string('{% from "fragments/training_charts.html" import xy_chart %}{{ xy_chart(c) }}')
        .render(c=c)
    )
    start, end = html.index("<svg"), html.rindex("</svg>") + len("</svg>")
    sized = f'<svg width="{c.width}" height="{c.height}"' + html[start + len("<svg") : end]
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + sized + "\n"


def _policy(ref: str, moderation_policies: Any) -> Policy:
    path = Path(ref)
    if path.is_file():
        return parse_policy(path.read_text("utf-8"), source=str(path))
    policy: Policy = moderation_policies.resolve(None, ref)[0]
    return policy


async def main(args: argparse.Namespace) -> None:
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    started = time.perf_counter()
    settings = Settings(data_dir=Path(tempfile.mkdtemp()), preload=False, result_cache_size=0)
    core = await build_core(settings)
    try:
        policy = _policy(args.policy, core.policies)
        words = parse_policy(WORD_LIST, source="word-list")
        await asyncio.to_thread(core.engine.load_all, sorted({*policy.analyzers, *words.analyzers}))
        embedder = Embedder(core.engine)
        train_photos, held_photos = split_photos()
        print(f"{machine()}; photos: {len(train_photos)} for training, {len(held_photos)} held out")

        t0 = time.perf_counter()
        pool = await embed_part(
            embedder, train_photos, max(sizes), 1, TRAIN_START, keep_bytes=False
        )
        held = await embed_part(
            embedder, held_photos, args.held_out, HELD_OUT_SEED, HELD_OUT_START, keep_bytes=True
        )
        embed_s = time.perf_counter() - t0
        assert max(pool.taken_at) < min(held.taken_at)
        assert not set(pool.photos) & set(held.photos)
        print(
            f"generated and embedded {len(pool.y)} training + {len(held.y)} held-out images "
            f"in {embed_s:.0f} s ({embedder.model})"
        )

        default_decided, default_s = await baseline(
            core.moderation, policy, held.jpegs, args.concurrency
        )
        words_decided, words_s = await baseline(
            core.moderation, words, held.jpegs, args.concurrency
        )
        base = bootstrap_measures(
            np.column_stack([held.y, held.y]),
            np.column_stack([default_decided, words_decided]),
            EvalConfig(),
        )
        print(
            f"baselines on {len(held.y)} held-out images: {policy.name} F1 "
            f"{_ci(base[0].f1)} ({default_s * 1000:.0f} ms/image), word-list F1 "
            f"{_ci(base[1].f1)} ({words_s * 1000:.0f} ms/image)"
        )

        config = TrainingConfig()
        subsets = nested_subsets(pool.y, sizes, config.seed)
        results = []
        for size in sizes:
            try:
                r = await asyncio.to_thread(
                    train_size, pool, held, subsets[size], words_decided, embedder, config
                )
            except TooFewSamples as exc:
                print(f"  {size:>6}: skipped: {exc.message}")
                continue
            results.append(r)
            print(
                f"  {size:>6}: head F1 {_ci(r.measure.f1)}, trained in {r.train_seconds:.1f} s",
                flush=True,
            )
    finally:
        await core.aclose()

    default_f1, words_f1 = base[0].f1.estimate, base[1].f1.estimate
    print()
    print(table(results, default_f1, words_f1, policy.name))
    args.svg.parent.mkdir(parents=True, exist_ok=True)
    args.svg.write_text(chart(results, default_f1, words_f1, policy.name))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "category": CATEGORY,
                    "embedding_model": str(embedder.model),
                    "held_out": {"images": len(held.y), "positive": int(held.y.sum())},
                    "held_out_photos": sorted(held_photos),
                    "baselines": {
                        policy.name: base[0].model_dump(),
                        "word-list": base[1].model_dump(),
                    },
                    "baseline_ms_per_image": {
                        policy.name: default_s * 1000,
                        "word-list": words_s * 1000,
                    },
                    "sizes": [
                        {
                            "samples": r.samples,
                            "positives": r.positives,
                            "head": r.measure.model_dump(),
                            "versus_word_list": r.versus_words.model_dump(mode="json"),
                            "train_seconds": r.train_seconds,
                            "head_ms_per_image": {"1": r.ms_per_image, "64": r.ms_per_image_batch},
                            "onnx_bytes": r.onnx_bytes,
                        }
                        for r in results
                    ],
                    "seconds": time.perf_counter() - started,
                },
                indent=2,
            )
            + "\n"
        )
    print(f"\nlearning curve: {args.svg}" + (f"; report: {args.json}" if args.json else ""))
    print(f"whole run: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="100,300,1000,3000", help="Training sizes, comma-separated."
    )
    parser.add_argument("--held-out", type=int, default=300, help="Held-out images.")
    parser.add_argument("--policy", default="default", help="Baseline policy: name or YAML file.")
    parser.add_argument("--concurrency", type=int, default=4, help="Baseline images in flight.")
    parser.add_argument(
        "--svg", type=Path, default=OUT / "learning_curve.svg", help="Where the chart goes."
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="Write the whole report as JSON here too."
    )
    asyncio.run(main(parser.parse_args()))
