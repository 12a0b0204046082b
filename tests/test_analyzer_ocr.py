"""The OCR analyzer on real photos with text rendered in seven languages.

Korean and Thai are read by Tesseract (tests marked ``ocr`` need its kor/tha packs);
Japanese, Chinese (both scripts), English and Indonesian by the PP-OCR models bundled
in rapidocr. Run with ``-s`` to see the per-image timings the gate test prints.
"""

from __future__ import annotations

import difflib
import statistics
import time
from functools import cache
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from bastion.analyzers.base import Analyzer, registry
from bastion.analyzers.ocr import OcrAnalyzer, OcrConfig
from bastion.media.types import Frame
from bastion.results import AnalyzerOutput, TextLine
from bastion.text import langid
from bastion.text.presence import TextDetector, TextPresenceGate, suppress_blobs
from bastion.text.tesseract import Tesseract, join_words, parse_tsv, space_ratio
from tests.support import textimages as ti
from tests.support.analyzer_contract import AnalyzerContract, context
from tests.support.media import benign_photos

_TESSERACT = Tesseract()
_PACKS = {"ko": "kor", "th": "tha"}

# A different photo behind each language, so backgrounds vary across the suite.
_PHOTO = {
    "ja": "sklearn-china",
    "ko": "skimage-coffee",
    "en": "skimage-chelsea",
    "th": "sklearn-flower",
    "zh-Hant": "skimage-astronaut",
    "zh-Hans": "skimage-rocket",
    "id": "skimage-camera",
}
_STYLES = {"banner": ti.banner, "overlay": ti.overlay_text}
# benign photos that carry no text at all (skimage's motorcycle shows a YAMAHA badge)
_TEXTLESS = (
    "skimage-astronaut",
    "skimage-chelsea",
    "skimage-coffee",
    "skimage-rocket",
    "skimage-camera",
    "sklearn-china",
    "sklearn-flower",
)


def _needs_pack(lang: str) -> list[pytest.MarkDecorator]:
    pack = _PACKS.get(lang)
    if pack is None:
        return []
    missing = not _TESSERACT.available() or pack not in _TESSERACT.languages()
    reason = f"Tesseract pack {pack!r} not installed (apt-get install tesseract-ocr-{pack})"
    return [pytest.mark.ocr, pytest.mark.skipif(missing, reason=reason)]


def _lang_params(*styles: str) -> list[Any]:
    return [
        pytest.param(lang, style, id=f"{lang}-{style}", marks=_needs_pack(lang))
        for lang in ti.LANGUAGES
        for style in styles
    ]


@cache
def shared() -> OcrAnalyzer:
    analyzer = OcrAnalyzer(OcrConfig(), context())
    analyzer.load()
    run(
        analyzer, ti.banner(benign_photos()["sklearn-flower"], "en")
    )  # first inference is slow: warm up
    return analyzer


@cache
def rendered(lang: str, style: str) -> np.ndarray:
    return _STYLES[style](benign_photos()[_PHOTO[lang]], lang)


def run(analyzer: OcrAnalyzer, *images: np.ndarray) -> list[AnalyzerOutput]:
    return analyzer.analyze([analyzer.preprocess(Frame(rgb=img)) for img in images])


@cache
def read(lang: str, style: str) -> tuple[AnalyzerOutput, float]:
    """One rendered image read alone, with its wall time in ms (cached across tests)."""
    analyzer, image = shared(), rendered(lang, style)
    t0 = time.perf_counter()
    out = run(analyzer, image)[0]
    return out, (time.perf_counter() - t0) * 1000


def similarity(expected: str, got: str) -> float:
    return difflib.SequenceMatcher(None, ti.normalised(expected), ti.normalised(got)).ratio()


def best_line(out: AnalyzerOutput, expected: str) -> TextLine:
    assert out.text, f"nothing read (extra={out.extra})"
    return max(out.text, key=lambda line: similarity(expected, line.text))


# --------------------------------------------------------------------------- no models


@pytest.mark.parametrize("lang", ti.LANGUAGES)
def test_langid_names_each_language(lang: str) -> None:
    assert langid.identify(ti.SENTENCES[lang]) == lang


def test_langid_chinese_table_is_large_and_unambiguous() -> None:
    assert len(langid.TRADITIONAL_ONLY) >= 150
    assert not langid.TRADITIONAL_ONLY & langid.SIMPLIFIED_ONLY
    for trad, simp in zip("們這說國來會時買賣錢點電話", "们这说国来会时买卖钱点电话", strict=True):
        assert trad in langid.TRADITIONAL_ONLY and simp in langid.SIMPLIFIED_ONLY
    assert langid.chinese_variant("我們的電話") == "zh-Hant"
    assert langid.chinese_variant("我们的电话") == "zh-Hans"
    assert langid.chinese_variant("中文") == "zh"  # nothing tells the scripts apart


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Harga murah, hubungi kami sekarang", "id"),
        ("Pinjaman cepat tanpa jaminan untuk anda", "id"),
        ("Free shipping on all orders today", "en"),
        ("Call us now for the best price", "en"),
        ("카페 SALE 50%", "ko"),  # Hangul outweighs a Latin word
        ("東京タワーへ行こう", "ja"),
        ("iPhoneを買った", "ja"),
        ("โปรโมชั่น SALE", "th"),
        ("Γεια σου κόσμε", "el"),
        ("Привет мир", None),  # Cyrillic: too many languages to name one
        ("YAMAHA", None),  # Latin word in neither list
        ("12345 !!", None),
        ("", None),
    ],
)
def test_langid_cases(text: str, expected: str | None) -> None:
    assert langid.identify(text) == expected


def test_tesseract_tsv_is_parsed_and_joined() -> None:
    cols = "level page_num block_num par_num line_num word_num left top width height conf text"
    head = cols.replace(" ", "\t")
    rows = [
        "4\t1\t1\t1\t1\t0\t0\t0\t300\t40\t-1\t",
        "5\t1\t1\t1\t1\t1\t10\t5\t60\t30\t96.5\t오늘",
        "5\t1\t1\t1\t1\t2\t74\t5\t30\t30\t91.0\t카",  # gap 4 px: same word
        "5\t1\t1\t1\t1\t3\t104\t5\t30\t30\t89.0\t페",  # gap 0
        "5\t1\t1\t1\t1\t4\t150\t5\t60\t30\t-1\t",  # no text: skipped
        "5\t1\t1\t1\t1\t5\t150\t5\t60\t30\t80.0\t에서",  # gap 16 px: a space
    ]
    words = parse_tsv("\n".join([head, *rows]))
    assert [w.text for w in words] == ["오늘", "카", "페", "에서"]
    assert join_words(words, space_ratio("kor")) == "오늘카페 에서"
    assert join_words(words, space_ratio("tha")) == "오늘카페에서"
    assert space_ratio("kor+tha") == 0.3 and space_ratio("tha") == 0.6


def test_config_defaults_and_registration() -> None:
    cfg = OcrConfig()
    assert cfg.type == "ocr" and cfg.engines == ["rapidocr", "tesseract"]
    assert cfg.tesseract_languages == ["kor", "tha"]
    assert 0 < cfg.gate_threshold < cfg.box_threshold
    with pytest.raises(ValueError):
        OcrConfig.model_validate({"engines": ["easyocr"]})
    assert registry()["ocr"] is OcrAnalyzer


def test_missing_tesseract_is_reported_not_fatal() -> None:
    analyzer = OcrAnalyzer(OcrConfig(tesseract_binary="/nonexistent/tesseract"), context())
    assert analyzer.categories() == [] and analyzer.emits == ("text",)
    assert analyzer.missing_packs() == ["kor", "tha"]
    assert analyzer.unavailable_languages() == ["ko", "th"]
    info = analyzer.info()
    assert "Unavailable languages: ko, th" in info.description
    assert "not found" in info.description
    assert info.version != "unavailable"  # the bundled PP-OCR files are there
    assert OcrAnalyzer(OcrConfig(engines=["rapidocr"]), context()).missing_packs() == []


def _suppressed_by_labelling_all(prob: np.ndarray, fraction: float) -> np.ndarray:
    """Blob suppression done the long way: every region labelled and measured."""
    h, w = prob.shape
    limit = max(fraction * min(h, w), fraction * 2 / 3 * max(h, w))
    count, labels = cv2.connectedComponents((prob > 0.3).astype(np.uint8), connectivity=8)
    out = prob.copy()
    for i in range(1, count):
        ys, xs = np.nonzero(labels == i)
        (_, _), size, _ = cv2.minAreaRect(np.column_stack([xs, ys]).astype(np.float32))
        if min(size) > limit:
            out[labels == i] = 0.0
    return out


def test_blob_suppression_drops_only_thick_regions() -> None:
    prob = np.zeros((120, 180), np.float32)
    prob[10:16, 5:60] = 0.9  # a text line
    prob[20:100, 8:14] = 0.8  # a thin vertical line
    cv2.line(prob, (0, 119), (179, 0), 0.7, 2)  # a thin diagonal across every row and column
    lines_only = prob.copy()
    assert suppress_blobs(lines_only, 0.3, 0.45) is lines_only  # nothing thick: untouched
    cv2.circle(prob, (110, 70), 40, 0.95, -1)  # a blob, as smooth skin or sky gives
    prob[100:104, 150:170] = 0.6  # a short line beside it
    out = suppress_blobs(prob, 0.3, 0.45)
    assert np.array_equal(out, _suppressed_by_labelling_all(prob, 0.45))
    assert out[70, 110] == 0.0 and out[12, 30] == np.float32(0.9) and out[102, 160] > 0.5
    assert prob[70, 110] > 0.9  # the input map is left as it was


class _FixedMapSession:
    """Stands in for the detection model: answers every input with one probability map."""

    def __init__(self, prob: np.ndarray) -> None:
        self.prob = prob

    def get_inputs(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name="x")]

    def run(self, _names: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = np.zeros((1, 1, *feeds["x"].shape[2:]), np.float32)
        out[0, 0, : self.prob.shape[0], : self.prob.shape[1]] = self.prob
        return [out]


@pytest.mark.parametrize(("peak", "present"), [(0.45, False), (0.55, True), (0.95, True)])
def test_gate_needs_a_text_like_region_peaking_at_min_peak(peak: float, present: bool) -> None:
    prob = np.zeros((320, 480), np.float32)
    prob[200:210, 40:300] = 0.4  # a faint line: mean above the gate threshold
    prob[204:206, 100:120] = peak
    gate = TextPresenceGate(TextDetector(_FixedMapSession(prob)), side=480, min_peak=0.5)
    result = gate(np.zeros((320, 480, 3), np.uint8))
    assert result.present is present
    assert (result.line_px is not None) is present and (result.score > 0.3) is present
    if result.line_px is not None:
        assert 8 < result.line_px < 30  # the line's height, unclipped as DB does


# ------------------------------------------------------------------------------ models


@pytest.mark.models
@pytest.mark.parametrize(("lang", "style"), _lang_params("banner", "overlay"))
def test_reads_rendered_text(lang: str, style: str) -> None:
    out, _ = read(lang, style)
    line = best_line(out, ti.SENTENCES[lang])
    assert similarity(ti.SENTENCES[lang], line.text) >= 0.8, line
    assert line.language == lang, line
    assert line.engine == ("tesseract" if lang in _PACKS else "rapidocr")
    assert shared().config.min_confidence <= line.confidence <= 100
    assert out.extra["text_present"] is True
    # the box is where the text was drawn: lower third for banners, top for overlays
    h, w = rendered(lang, style).shape[:2]
    assert line.box is not None
    assert line.box.x >= 0 and line.box.x + line.box.width <= w + 0.5
    centre = line.box.y + line.box.height / 2
    assert (0.65 * h < centre < 0.95 * h) if style == "banner" else (centre < 0.3 * h)


@pytest.mark.models
def test_batch_reads_each_frame_like_alone() -> None:
    langs = [lang for lang in ti.LANGUAGES if lang not in _PACKS]
    images = [rendered(lang, "banner") for lang in langs]
    batch = run(shared(), *images)
    assert len(batch) == len(images)
    for lang, out in zip(langs, batch, strict=True):
        alone, _ = read(lang, "banner")
        assert [line.text for line in out.text] == [line.text for line in alone.text]
        assert best_line(out, ti.SENTENCES[lang]).language == lang


@pytest.mark.models
def test_reads_upside_down_and_large_images() -> None:
    photo = benign_photos()["skimage-chelsea"]
    flipped = np.ascontiguousarray(ti.banner(photo, "en")[::-1, ::-1])
    big = cv2.resize(ti.banner(photo, "en"), None, fx=7, fy=7, interpolation=cv2.INTER_CUBIC)
    out_flipped, out_big = run(shared(), flipped, big)
    assert similarity(ti.SENTENCES["en"], best_line(out_flipped, ti.SENTENCES["en"]).text) >= 0.8
    line = best_line(out_big, ti.SENTENCES["en"])
    assert similarity(ti.SENTENCES["en"], line.text) >= 0.8
    assert line.box is not None  # in the big frame's pixels, not the downscaled copy's
    assert line.box.y > 0.6 * big.shape[0] and line.box.width > 0.5 * big.shape[1]


@pytest.mark.models
def test_photos_without_text_give_no_lines() -> None:
    photos = benign_photos()
    images = [photos[name] for name in _TEXTLESS]
    images += [cv2.GaussianBlur(photos[name], (0, 0), 6) for name in _TEXTLESS[:3]]
    for i, out in enumerate(run(shared(), *images)):
        assert out.text == [], (i, out.text)
        assert out.extra["text_present"] is False


@pytest.mark.models
def test_gate_stops_textless_images_and_is_much_cheaper_than_ocr() -> None:
    analyzer = shared()
    photos = benign_photos()
    gradient = np.repeat(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], 427, 0)
    stopped = {
        "skimage-rocket": photos["skimage-rocket"],
        "skimage-coffee": photos["skimage-coffee"],
        "blurred chelsea": cv2.GaussianBlur(photos["skimage-chelsea"], (0, 0), 6),
        "gradient": np.ascontiguousarray(np.repeat(gradient, 3, axis=2)),
    }
    stopped_ms: dict[str, float] = {}
    for name, img in stopped.items():
        t0 = time.perf_counter()
        out = run(analyzer, img)[0]
        stopped_ms[name] = (time.perf_counter() - t0) * 1000
        assert "detect" not in out.extra["timings_ms"], f"{name} passed the gate: {out.extra}"
        assert out.extra["gate_score"] < analyzer.config.gate_threshold

    # the gate alone, measured on every benign photo, against full OCR on text images
    assert analyzer._gate is not None
    gate_ms = []
    for img in photos.values():
        bgr = analyzer.preprocess(Frame(rgb=img)).bgr
        gate_ms.append(analyzer._gate(bgr).ms)
    text_ms = {f"{lang} {style}": read(lang, style)[1] for lang, style in _available_langs()}
    full_median = statistics.median(text_ms.values())
    gate_median = statistics.median(gate_ms)
    print(f"\nOCR gate alone: median {gate_median:.0f} ms over {len(gate_ms)} photos")
    for name, ms in stopped_ms.items():
        print(f"  no-text image stopped by the gate, {name}: {ms:.0f} ms")
    for name, ms in text_ms.items():
        print(f"  photo with text, {name}: {ms:.0f} ms")
    print(f"  full OCR median {full_median:.0f} ms")
    assert gate_median * 3 < full_median
    assert statistics.median(stopped_ms.values()) * 3 < full_median


@pytest.mark.models
def test_large_text_can_skip_the_upscaled_detection() -> None:
    analyzer = shared()
    image = rendered("en", "banner")
    item = analyzer.preprocess(Frame(rgb=image))
    assert analyzer._gate is not None
    presence = analyzer._gate(item.bgr)
    # the banner's line is about a ninth of the photo's height; the gate measures it
    assert presence.line_px is not None
    assert 0.5 * image.shape[0] / 11 < presence.line_px < 2.0 * image.shape[0] / 11
    h, w = item.bgr.shape[:2]
    assert analyzer._det_scale(h, w, presence.line_px) > 1.0  # off: up to det_side
    quick = OcrAnalyzer(OcrConfig(det_line_px=32), context())
    quick.load()
    assert quick._det_scale(h, w, presence.line_px) == 1.0
    assert quick._det_scale(h, w, 8.0) == analyzer._det_scale(h, w)  # small text: as before
    line = best_line(run(quick, image)[0], ti.SENTENCES["en"])
    assert similarity(ti.SENTENCES["en"], line.text) >= 0.9


def _small_print_beside_and_far_from_a_logo() -> np.ndarray:
    """A big logo line with an 11 px URL under it and 11 px small print in the far corner."""
    img = Image.fromarray(benign_photos()["skimage-rocket"]).convert("RGB")
    w, h = img.size
    draw = ImageDraw.Draw(img)
    logo = ti._fit("en", "BASTION COFFEE", int(w * 0.7), h // 7)
    left, top, right, bottom = logo.getbbox("BASTION COFFEE")
    x, y = (w - (right - left)) // 2, int(h * 0.15)
    draw.text((x - left, y - top), "BASTION COFFEE", font=logo, fill=(245, 245, 245))
    small = ti._font("en", 11)
    s_left, s_top, _, _ = small.getbbox(_URL)
    draw.text((x - s_left, y + bottom - top + 6 - s_top), _URL, font=small, fill=(245, 245, 245))
    f_left, f_top, f_right, f_bottom = small.getbbox(_FINE_PRINT)
    corner = (w - (f_right - f_left) - 8 - f_left, h - (f_bottom - f_top) - 8 - f_top)
    draw.text(corner, _FINE_PRINT, font=small, fill=(245, 245, 245))
    return np.asarray(img)


_URL = "www.bastion-coffee.com"
_FINE_PRINT = "Terms apply see store"


@pytest.mark.models
def test_small_print_beside_and_far_from_large_text_is_read() -> None:
    image = _small_print_beside_and_far_from_a_logo()
    out = run(shared(), image)[0]
    h, w = image.shape[:2]
    for expected, where in ((_URL, "under the logo"), (_FINE_PRINT, "bottom right")):
        line = best_line(out, expected)
        assert similarity(expected, line.text) >= 0.9, (where, out.text)
        assert line.box is not None
        assert line.box.height < 0.06 * h, line  # read as its own small line
        if where == "bottom right":
            assert line.box.y > 0.85 * h and line.box.x > 0.4 * w, line


def _available_langs() -> list[tuple[str, str]]:
    return [
        (lang, "banner")
        for lang in ti.LANGUAGES
        if lang not in _PACKS or (_TESSERACT.available() and _PACKS[lang] in _TESSERACT.languages())
    ]


@pytest.mark.models
def test_without_tesseract_rapidocr_still_reads() -> None:
    analyzer = OcrAnalyzer(OcrConfig(tesseract_binary="/nonexistent/tesseract"), context())
    analyzer.load()
    english, korean = run(analyzer, rendered("en", "banner"), rendered("ko", "banner"))
    line = best_line(english, ti.SENTENCES["en"])
    assert similarity(ti.SENTENCES["en"], line.text) >= 0.8 and line.engine == "rapidocr"
    assert english.extra["unavailable_languages"] == ["ko", "th"]
    assert all(line.language != "ko" for line in korean.text)


@pytest.mark.models
@pytest.mark.ocr
@pytest.mark.skipif(not _TESSERACT.available(), reason="tesseract not installed")
def test_tesseract_failures_are_contained() -> None:
    missing = OcrAnalyzer(OcrConfig(tesseract_languages=["kor", "xx_missing"]), context())
    assert missing.missing_packs() == ["xx_missing"]
    assert missing.unavailable_languages() == ["xx_missing"]
    slow = OcrAnalyzer(OcrConfig(tesseract_timeout_s=0.001), context())
    slow.load()
    out = run(slow, rendered("ko", "banner"))[0]
    assert out.extra["tesseract_errors"] >= 1
    assert all(line.engine == "rapidocr" for line in out.text)


@pytest.mark.models
class TestOcrContract(AnalyzerContract):
    def build(self) -> Analyzer[Any, Any]:
        return shared()
