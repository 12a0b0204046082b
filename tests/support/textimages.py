"""Real photos with text rendered on them, in the languages the OCR analyzer must read.

Text is drawn with PIL using Debian's fonts (fonts-noto-cjk, fonts-thai-tlwg,
fonts-noto-core): once inside a banner box laid over the photo and once straight on
the photo with an outline, the two ways text usually appears on uploaded images.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

FONT_ROOT = Path("/usr/share/fonts")


@dataclass(frozen=True, slots=True)
class FontSpec:
    """A font file (and face index inside a .ttc collection) with a fallback pattern."""

    path: str
    index: int = 0
    glob: str | None = None


# Noto Sans CJK collection faces: 0 JP, 1 KR, 2 SC, 3 TC (see ``fc-list : file index``).
_CJK = "opentype/noto/NotoSansCJK-Bold.ttc"

FONTS: dict[str, FontSpec] = {
    "ja": FontSpec(_CJK, 0, "**/NotoSansCJK*Bold*.tt[cf]"),
    "ko": FontSpec(_CJK, 1, "**/NotoSansCJK*Bold*.tt[cf]"),
    "zh-Hans": FontSpec(_CJK, 2, "**/NotoSansCJK*Bold*.tt[cf]"),
    "zh-Hant": FontSpec(_CJK, 3, "**/NotoSansCJK*Bold*.tt[cf]"),
    "th": FontSpec("truetype/tlwg/Loma-Bold.ttf", 0, "**/NotoSansThai-Bold.ttf"),
    "en": FontSpec("truetype/noto/NotoSans-Bold.ttf", 0, "**/DejaVuSans-Bold.ttf"),
    "id": FontSpec("truetype/noto/NotoSans-Bold.ttf", 0, "**/DejaVuSans-Bold.ttf"),
}

# One everyday advertising-style sentence per language. zh-Hant and zh-Hans are the same
# sentence in both scripts, so only the character forms tell them apart.
SENTENCES: dict[str, str] = {
    "ja": "今日は新しいカフェでお茶を飲みました",
    "ko": "오늘 새로운 카페에서 커피를 마셨어요",
    "en": "Visit our new coffee shop today",
    "th": "ร้านกาแฟเปิดใหม่ใกล้บ้านคุณ",
    "zh-Hant": "這家咖啡店的點心很好吃價格也便宜",
    "zh-Hans": "这家咖啡店的点心很好吃价格也便宜",
    "id": "Kunjungi toko kopi baru kami hari ini",
}

LANGUAGES: tuple[str, ...] = tuple(SENTENCES)


def font_path(lang: str) -> tuple[Path, int] | None:
    """The font file and face index for ``lang``, or None when no suitable font is installed."""
    spec = FONTS[lang]
    exact = FONT_ROOT / spec.path
    if exact.is_file():
        return exact, spec.index
    if spec.glob:
        found = sorted(FONT_ROOT.glob(spec.glob))
        if found:
            return found[0], spec.index if found[0].suffix == ".ttc" else 0
    return None


@cache
def _font(lang: str, size: int) -> ImageFont.FreeTypeFont:
    found = font_path(lang)
    if found is None:
        pytest.skip(
            f"no font for {lang!r}: install fonts-noto-cjk, fonts-thai-tlwg, fonts-noto-core"
        )
    path, index = found
    return ImageFont.truetype(str(path), size=size, index=index)


def _fit(lang: str, text: str, max_width: int, size: int) -> ImageFont.FreeTypeFont:
    """The largest font size not above ``size`` at which ``text`` fits in ``max_width``."""
    while size > 10:
        font = _font(lang, size)
        left, _, right, _ = font.getbbox(text)
        if right - left <= max_width:
            return font
        size = int(size * 0.9)
    return _font(lang, size)


def banner(photo: np.ndarray, lang: str, text: str | None = None) -> np.ndarray:
    """``photo`` with a light banner across its lower third carrying dark text."""
    text = SENTENCES[lang] if text is None else text
    img = Image.fromarray(photo).convert("RGBA")
    w, h = img.size
    font = _fit(lang, text, int(w * 0.86), max(16, h // 11))
    left, top, right, bottom = font.getbbox(text)
    tw, th = right - left, bottom - top
    pad = max(6, th // 2)
    x0 = (w - tw) // 2 - pad
    y0 = int(h * 0.68)
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle((x0, y0, x0 + tw + 2 * pad, y0 + th + 2 * pad), fill=(250, 245, 235, 225))
    draw.text((x0 + pad - left, y0 + pad - top), text, font=font, fill=(25, 25, 60, 255))
    return np.asarray(Image.alpha_composite(img, overlay).convert("RGB"))


def overlay_text(photo: np.ndarray, lang: str, text: str | None = None) -> np.ndarray:
    """``photo`` with white outlined text drawn straight on it near the top (meme style)."""
    text = SENTENCES[lang] if text is None else text
    img = Image.fromarray(photo).convert("RGB")
    w, h = img.size
    font = _fit(lang, text, int(w * 0.9), max(16, h // 12))
    left, top, right, _ = font.getbbox(text)
    stroke = max(2, font.size // 14)
    draw = ImageDraw.Draw(img)
    draw.text(
        ((w - (right - left)) // 2 - left, int(h * 0.08) - top),
        text,
        font=font,
        fill=(255, 255, 255),
        stroke_width=stroke,
        stroke_fill=(0, 0, 0),
    )
    return np.asarray(img)


def normalised(text: str) -> str:
    """Text without whitespace and common punctuation, for lenient comparison."""
    drop = set(" \t\n.,;:!?、。，．！？・「」『』()（）[]\"'`")
    return "".join(ch for ch in text if ch not in drop)
