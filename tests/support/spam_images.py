"""A labelled photo task the base models do not cover: contact spam over real photos.

Positives are real photos carrying phone numbers, messenger ids or prices (the way spam
images advertise a contact or an offer); negatives are the same photos carrying an
ordinary caption, or no text at all. Both classes use the same text styles (a banner,
outlined meme text, a coloured sticker), positions, crops and scales; spam leans to
what ads look like (larger text, stickers, several lines) while captions lean to one
smaller line, with every style and much of the size range shared. Every sample is a
deterministic function of its photo, its index and the seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import zip_longest
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tests.support.media import benign_photos, opencv_doc_photos

FONT_FILES = (
    "truetype/noto/NotoSans-Bold.ttf",
    "truetype/noto/NotoSans-Regular.ttf",
    "truetype/dejavu/DejaVuSans-Bold.ttf",
    "truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
)
FONT_ROOT = Path("/usr/share/fonts")

# More photos inside scikit-image's wheel (microscopy, astronomy, textures, coins).
SKIMAGE_EXTRA = (
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "coins",
    "moon",
    "grass",
    "gravel",
    "brick",
)

# Natural photos among Debian opencv-doc's examples (calibration boards, logos and
# synthetic pictures left out).
OPENCV_PHOTOS = (
    "aero1",
    "apple",
    "baboon",
    "building",
    "butterfly",
    "fruits",
    "home",
    "leuvenA",
    "messi5",
    "orange",
    "pca_test1",
    "squirrel_cls",
    "starry_night",
    "stuff",
    "ela_original",
    "aloeL",
    "HappyFish",
    "left",
)

ORDINARY = (
    "Visit our new coffee shop today",
    "Happy birthday Anna",
    "Sunday morning in the park",
    "Our trip to the mountains",
    "Best friends forever",
    "Fresh bread every morning",
    "Welcome to the team",
    "Look at this view",
    "Good night everyone",
    "Spring is finally here",
    "Family dinner at home",
    "Weekend vibes",
)
MESSENGERS = ("LINE ID", "WhatsApp", "Telegram", "WeChat", "Kakao", "Viber")
HANDLES = ("cheapbags", "deal88", "vipshop", "luxury_outlet", "bestprice", "fastloan", "hotsale")
PRICE_WORDS = ("ONLY", "NOW", "SALE", "50% OFF", "Special price", "")
CURRENCIES = ("$", "NT$", "¥", "€", "HK$", "RM")
STYLES = ("banner", "outline", "sticker")
STICKER_FILLS = ((230, 40, 40), (250, 210, 30), (20, 140, 70), (30, 80, 200), (245, 245, 245))


@dataclass(frozen=True)
class SpamSample:
    """One generated image and its label."""

    rgb: np.ndarray
    spam: bool
    photo: str
    text: str | None
    taken_at: datetime


def _phone(rng: np.random.Generator) -> str:
    kind = int(rng.integers(0, 4))
    d = [str(v) for v in rng.integers(0, 10, size=10)]
    if kind == 0:
        return f"09{d[0]}{d[1]} {d[2]}{d[3]}{d[4]} {d[5]}{d[6]}{d[7]}"
    if kind == 1:
        return f"+1 555 {d[0]}{d[1]}{d[2]} {d[3]}{d[4]}{d[5]}{d[6]}"
    if kind == 2:
        return f"(02) {d[0]}{d[1]}{d[2]}{d[3]}-{d[4]}{d[5]}{d[6]}{d[7]}"
    return f"+44 7{d[0]}{d[1]}{d[2]} {d[3]}{d[4]}{d[5]}{d[6]}{d[7]}{d[8]}"


def spam_text(rng: np.random.Generator) -> str:
    """A phone number, a messenger id or a price, as spam images carry them."""
    kind = int(rng.integers(0, 3))
    if kind == 0:
        lead = ("Call", "Tel", "Contact", "Phone", "")[int(rng.integers(0, 5))]
        return f"{lead} {_phone(rng)}".strip()
    if kind == 1:
        app = MESSENGERS[int(rng.integers(0, len(MESSENGERS)))]
        handle = HANDLES[int(rng.integers(0, len(HANDLES)))] + str(int(rng.integers(1, 999)))
        return f"{app}: @{handle}" if rng.random() < 0.6 else f"{app} {_phone(rng)}"
    word = PRICE_WORDS[int(rng.integers(0, len(PRICE_WORDS)))]
    currency = CURRENCIES[int(rng.integers(0, len(CURRENCIES)))]
    amount = f"{int(rng.integers(1, 2000))}.{int(rng.integers(0, 100)):02d}"
    return f"{word} {currency}{amount}".strip()


def spam_lines(rng: np.random.Generator) -> list[str]:
    """One to three lines of spam: contacts and prices."""
    count = int(rng.choice(3, p=[0.25, 0.45, 0.3])) + 1
    return [spam_text(rng) for _ in range(count)]


def ordinary_lines(rng: np.random.Generator) -> list[str]:
    """An ordinary caption (now and then two), or (a third of the time) no text."""
    if rng.random() < 1 / 3:
        return []
    count = 2 if rng.random() < 0.15 else 1
    picked = rng.choice(len(ORDINARY), size=count, replace=False)
    return [ORDINARY[int(i)] for i in picked]


@cache
def _fonts() -> tuple[Path, ...]:
    found = tuple(FONT_ROOT / f for f in FONT_FILES if (FONT_ROOT / f).is_file())
    if not found:
        raise FileNotFoundError("no font: install fonts-noto-core or fonts-dejavu-core")
    return found


@cache
def _font(index: int, size: int) -> ImageFont.FreeTypeFont:
    fonts = _fonts()
    return ImageFont.truetype(str(fonts[index % len(fonts)]), size=size)


@cache
def photos() -> tuple[tuple[str, np.ndarray], ...]:
    """The base photos: scikit-image's and scikit-learn's, and the natural photos of
    opencv-doc when it is installed, interleaved."""
    import skimage.data

    benign = list(benign_photos().items())
    extra = []
    for name in SKIMAGE_EXTRA:
        arr = np.asarray(getattr(skimage.data, name)())
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        extra.append((f"skimage-{name}", np.ascontiguousarray(arr[..., :3]).astype(np.uint8)))
    wanted = {p.stem: p for p in opencv_doc_photos()}
    opencv = [
        (f"opencv-{stem}", np.asarray(Image.open(wanted[stem]).convert("RGB")))
        for stem in OPENCV_PHOTOS
        if stem in wanted
    ]
    out = [
        photo
        for group in zip_longest(benign, extra, opencv)
        for photo in group
        if photo is not None
    ]
    return tuple(out)


def _variant(photo: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A random crop (60–100 % of each side), scaled to a shorter side of 240–640 px,
    mirrored half the time."""
    img = Image.fromarray(photo)
    w, h = img.size
    cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = img.crop((x0, y0, x0 + cw, y0 + ch))
    side = int(rng.integers(240, 641))
    scale = side / min(img.size)
    img = img.resize(
        (max(1, round(img.width * scale)), max(1, round(img.height * scale))),
        Image.Resampling.BILINEAR,
    )
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img.convert("RGB")


@dataclass(frozen=True)
class Look:
    """How a class's text tends to be drawn: style weights and the text height range
    (a share of the image's height)."""

    styles: tuple[str, ...]
    weights: tuple[float, ...]
    size: tuple[float, float]


# Spam presents its contact the way ads do: large, often on a sticker, often several
# lines. Ordinary captions are mostly a single smaller line on a banner or outlined.
# The two overlap: every style and a range of sizes occur in both classes.
SPAM_LOOK = Look(STYLES, (0.2, 0.2, 0.6), (0.09, 0.18))
CAPTION_LOOK = Look(STYLES, (0.4, 0.4, 0.2), (0.04, 0.1))


def _pick(rng: np.random.Generator, look: Look) -> str:
    weights = np.asarray(look.weights) / sum(look.weights)
    return look.styles[int(rng.choice(len(look.styles), p=weights))]


def draw_text(
    img: Image.Image, lines: Sequence[str], rng: np.random.Generator, look: Look
) -> Image.Image:
    """``lines`` drawn on ``img`` in a style, size and position drawn from ``look``."""
    style = _pick(rng, look)
    w, h = img.size
    face = int(rng.integers(0, 8))
    size = max(14, int(h * rng.uniform(*look.size)))
    font = _font(face, size)
    while size > 12 and max(font.getlength(t) for t in lines) > w * 0.92:
        size = int(size * 0.9)
        font = _font(face, size)
    boxes = [font.getbbox(t) for t in lines]
    tw = max(r - left for left, _, r, _ in boxes)
    line_h = max(b - t for _, t, _, b in boxes)
    gap = line_h // 4
    th = len(lines) * line_h + (len(lines) - 1) * gap
    pad = max(4, line_h // 3)
    x = int(rng.uniform(0.02, max(0.03, 0.98 - (tw + 2 * pad) / w)) * w)
    y = int(rng.uniform(0.03, max(0.04, 0.95 - (th + 2 * pad) / h)) * h)
    base = img.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    ink: tuple[int, int, int, int] = (25, 25, 60, 255)
    if style == "banner":
        draw.rectangle((0, y, w, y + th + 2 * pad), fill=(250, 245, 235, 215))
    elif style == "sticker":
        fill = STICKER_FILLS[int(rng.integers(0, len(STICKER_FILLS)))]
        ink = (20, 20, 20, 255) if sum(fill) > 500 else (255, 255, 255, 255)
        draw.rounded_rectangle(
            (x, y, x + tw + 2 * pad, y + th + 2 * pad), radius=pad, fill=(*fill, 240)
        )
    for i, (text, (left, top, _, _)) in enumerate(zip(lines, boxes, strict=True)):
        at = (x + pad - left, y + pad + i * (line_h + gap) - top)
        if style == "outline":
            draw.text(
                at,
                text,
                font=font,
                fill=(255, 255, 255, 255),
                stroke_width=max(2, size // 14),
                stroke_fill=(0, 0, 0, 255),
            )
        else:
            draw.text(at, text, font=font, fill=ink)
    return Image.alpha_composite(base, layer).convert("RGB")


def samples(
    n_photos: int,
    per_photo: int,
    *,
    seed: int = 0,
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
) -> Iterator[SpamSample]:
    """``per_photo`` variants of each of ``n_photos`` photos (in an order shuffled by
    ``seed``), half of them spam.

    Samples of later photos are taken later (a day per photo), so a time split holds out
    whole photos the head has never seen."""
    every = photos()
    order = np.random.default_rng(seed).permutation(len(every))[:n_photos]
    for p, k in enumerate(order):
        name, photo = every[int(k)]
        for i in range(per_photo):
            rng = np.random.default_rng([seed, p, i])
            spam = i % 2 == 0
            lines = spam_lines(rng) if spam else ordinary_lines(rng)
            img = _variant(photo, rng)
            if lines:
                img = draw_text(img, lines, rng, SPAM_LOOK if spam else CAPTION_LOOK)
            yield SpamSample(
                rgb=np.asarray(img),
                spam=spam,
                photo=name,
                text="\n".join(lines) or None,
                taken_at=start + timedelta(days=p, minutes=i),
            )
