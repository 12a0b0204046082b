"""Text in images: PP-OCR (bundled with rapidocr) first, Tesseract for what it cannot read.

Pipeline per frame:

1. a cheap gate (:class:`~bastion.text.presence.TextPresenceGate`, the
   detector on a 480 px copy, about a tenth of the cost of full OCR): photos with
   nothing text-like return at once with ``extra["text_present"] = False``;
2. PP-OCR text detection at full scale, an optional 0/180° line classifier and the
   PP-OCR recogniser (Chinese, Japanese, English and other Latin-script languages),
   batched over every line of every frame in the batch;
3. lines the recogniser is unsure about (Hangul and Thai come out empty or as
   low-confidence Latin) are read again by Tesseract with each configured language
   pack, side by side; the best reading whose script matches its pack wins;
4. each line gets a language from :mod:`bastion.text.langid`.

The models are the ONNX files inside the rapidocr wheel; nothing is downloaded. The
analyzer emits text lines only; the policy layer turns words and URLs into labels.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
from pydantic import Field

from bastion.analyzers.base import (
    AnalyzerConfig,
    AnalyzerInfo,
    FrameAnalyzer,
    RuntimeContext,
    file_version,
)
from bastion.errors import BastionError
from bastion.media.types import Frame
from bastion.results import AnalyzerOutput, Box, TextLine
from bastion.runtime.onnx import active_provider, create_session
from bastion.text import langid
from bastion.text.presence import Detection, TextDetector, TextPresenceGate
from bastion.text.tesseract import Tesseract, TesseractError, TesseractLine

log = logging.getLogger(__name__)

Engine = Literal["rapidocr", "tesseract"]

# Script(s) a Tesseract pack writes; a reading in another script is taken as noise.
PACK_SCRIPTS: dict[str, frozenset[str]] = {
    "kor": frozenset({"hangul", "han"}),
    "tha": frozenset({"thai"}),
    "jpn": frozenset({"kana", "han"}),
    "chi_sim": frozenset({"han"}),
    "chi_tra": frozenset({"han"}),
    "eng": frozenset({"latin"}),
    "ind": frozenset({"latin"}),
}

# Tesseract pack -> the language code used in results and in "unavailable" reports.
PACK_LANGUAGE: dict[str, str] = {
    "kor": "ko",
    "tha": "th",
    "jpn": "ja",
    "chi_sim": "zh-Hans",
    "chi_tra": "zh-Hant",
    "eng": "en",
    "ind": "id",
}

_ENGINES: tuple[Engine, ...] = ("rapidocr", "tesseract")
_MAX_UPSCALE = 4.0
_SINGLE_CHARACTER_CONFIDENCE = 95.0
_REPLACE_MARGIN = 5.0
_MIN_TEXT_SIDE = 6  # pixels; nothing legible fits in a thinner image


class OcrConfig(AnalyzerConfig):
    type: Literal["ocr"] = "ocr"
    engines: list[Engine] = Field(
        default_factory=lambda: list(_ENGINES),
        description="Recognisers to use. rapidocr reads Chinese, Japanese, English and other "
        "Latin-script text; tesseract reads what rapidocr is unsure of with the packs in "
        "tesseract_languages (or every line, when rapidocr is not listed).",
    )
    tesseract_languages: list[str] = Field(
        default_factory=lambda: ["kor", "tha"],
        description="Tesseract language packs tried on uncertain lines, each entry one '-l' "
        "value (e.g. 'kor', 'tha', 'chi_tra', 'eng+ind'); entries run side by side and the "
        "most confident reading wins. Missing packs are reported, not fatal.",
    )
    tesseract_binary: str = Field(
        "tesseract",
        description="Tesseract command whose language packs are used (its --list-langs "
        "folder), unless TESSDATA_PREFIX names the folder. Lines are read in process through "
        "Tesseract's API (tesserocr), not by running the command.",
    )
    tesseract_timeout_s: float = Field(
        10.0, gt=0, le=300, description="Time limit for one Tesseract call, in seconds."
    )
    tesseract_min_height: int = Field(
        16,
        ge=1,
        le=512,
        description="Lines lower than this (pixels, OCR image) are not sent to Tesseract: it "
        "reads noise into tiny crops with high confidence.",
    )
    tesseract_max_lines: int = Field(
        8, ge=0, le=200, description="Most lines per frame sent to Tesseract (best-detected first)."
    )
    min_confidence: float = Field(
        80.0, ge=0, le=100, description="Lines read with lower confidence (0-100) are dropped."
    )
    fallback_below: float = Field(
        90.0,
        ge=0,
        le=100,
        description="A rapidocr reading below this confidence (0-100) is tried with Tesseract.",
    )
    max_side: int = Field(
        1600,
        ge=64,
        le=8192,
        description="Larger images are scaled down so their longer side is at most this "
        "before OCR.",
    )
    det_side: int = Field(
        736,
        ge=64,
        le=4096,
        description="Detection scales images up so their shorter side reaches this (within "
        "max_side and at most 4x): small text needs it.",
    )
    box_threshold: float = Field(
        0.5, ge=0, le=1, description="Lowest mean text probability of a detected line."
    )
    gate: bool = Field(True, description="Run the cheap text-presence check before full OCR.")
    det_line_px: float = Field(
        0.0,
        ge=0,
        le=512,
        description="When the text-presence check saw only lines at least this tall (pixels), "
        "detection scales the image up only as far as needed to bring its smallest line to "
        "this height, instead of up to det_side: large text needs no upscaling. 0 (the "
        "default): always scale to det_side. Measured at 32 on the 112 rendered lines and 91 "
        "opencv-doc photos: 30 % less OCR CPU, but small print next to large text (a URL "
        "under a logo) that only the upscaled detection sees is lost, and 25 of the 112 "
        "lines read differently (mostly Korean word spacing).",
    )
    gate_side: int = Field(
        480, ge=64, le=2048, description="Longer side of the copy the text-presence check sees."
    )
    gate_threshold: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Lowest mean text probability that counts as 'text present'; keep it low, "
        "the check must not miss text.",
    )
    angle_classifier: bool = Field(
        True, description="Turn upside-down lines with the 0/180 degree line classifier."
    )
    rec_batch_size: int = Field(8, ge=1, le=256, description="Text lines per recogniser call.")
    models_dir: Path | None = Field(
        None,
        description="Folder with the PP-OCR ONNX files; default: the models inside the "
        "rapidocr package. Nothing is ever downloaded.",
    )
    det_model: str = Field("PP-OCRv6_det_small.onnx", description="Detection model file.")
    rec_model: str = Field("PP-OCRv6_rec_small.onnx", description="Recognition model file.")
    cls_model: str = Field(
        "ch_ppocr_mobile_v2.0_cls_mobile.onnx", description="Line orientation model file."
    )
    rec_keys_path: Path | None = Field(
        None,
        description="Character list for a recognition model that does not carry one in its "
        "metadata (the bundled one does).",
    )


@dataclass(slots=True)
class OcrInput:
    """One frame, ready for OCR: BGR at most ``max_side`` on its longer side."""

    bgr: np.ndarray
    to_frame: float  # multiply work-image coordinates by this to get frame pixels
    frame_width: int
    frame_height: int
    frame_index: int


@dataclass(slots=True)
class _Region:
    item: int
    quad: np.ndarray  # 4x2, work-image pixels
    det_score: float
    crop: np.ndarray
    text: str = ""
    confidence: float = 0.0  # 0-100
    tesseract: list[TesseractLine] = field(default_factory=list)


def bundled_models_dir() -> Path | None:
    """The ``models`` folder inside the installed rapidocr package, if rapidocr is there."""
    spec = find_spec("rapidocr")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "models"


class OcrAnalyzer(FrameAnalyzer[OcrConfig, OcrInput]):
    """Reads text lines in images (PP-OCR via rapidocr, Tesseract for Korean and Thai)."""

    kind: ClassVar[str] = "ocr"
    parallel_batches = True
    input: ClassVar[str] = (
        "BGR frame, longer side ≤ max_side (1600); detection at ≥ det_side; "
        "line crops at 48 px height"
    )
    config_model: ClassVar[type[AnalyzerConfig]] = OcrConfig
    emits: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(self, config: OcrConfig, context: RuntimeContext) -> None:
        super().__init__(config, context)
        self.tesseract = Tesseract(config.tesseract_binary, config.tesseract_timeout_s)
        self._detector: TextDetector | None = None
        self._gate: TextPresenceGate | None = None
        self._rec: Any = None
        self._cls: Any = None
        self._decode: Any = None
        self._version: str | None = None
        self._load_lock = threading.Lock()

    # ----------------------------------------------------------------- identity
    @property
    def use_rapidocr(self) -> bool:
        return "rapidocr" in self.config.engines

    @property
    def use_tesseract(self) -> bool:
        return "tesseract" in self.config.engines and bool(self.config.tesseract_languages)

    @property
    def model_name(self) -> str:
        names = ["pp-ocr" if self.use_rapidocr else "pp-ocr-det"]
        if self.use_tesseract:
            names.append("tesseract")
        return "+".join(names)

    def _model_paths(self) -> dict[str, Path]:
        root = self.config.models_dir or bundled_models_dir()
        if root is None:
            raise BastionError(
                "the rapidocr package is not installed: no PP-OCR models", code="model_missing"
            )
        paths = {"det": root / self.config.det_model}
        if self.use_rapidocr:
            paths["rec"] = root / self.config.rec_model
            if self.config.angle_classifier:
                paths["cls"] = root / self.config.cls_model
        return paths

    @property
    def version(self) -> str:
        """Short hash over the ONNX files used, plus the Tesseract version when used."""
        if self._version is None:
            h = hashlib.sha256()
            try:
                for key, path in sorted(self._model_paths().items()):
                    h.update(f"{key}:{file_version(path, 64)};".encode())
            except (BastionError, OSError):
                return "unavailable"
            if self.use_tesseract and self.tesseract.version:
                h.update(f"tesseract:{self.tesseract.version}".encode())
            self._version = h.hexdigest()[:12]
        return self._version

    def categories(self) -> list[str]:
        return []

    @property
    def provider(self) -> str | None:
        return active_provider(self._detector.session) if self._detector is not None else None

    def missing_packs(self) -> list[str]:
        """Configured Tesseract packs that cannot be used (binary or pack missing)."""
        if not self.use_tesseract:
            return []
        packs = sorted({p for entry in self.config.tesseract_languages for p in entry.split("+")})
        if not self.tesseract.available():
            return packs
        return sorted(
            {p for entry in self.config.tesseract_languages for p in self.tesseract.missing(entry)}
        )

    def unavailable_languages(self) -> list[str]:
        return sorted({PACK_LANGUAGE.get(p, p) for p in self.missing_packs()})

    def info(self) -> AnalyzerInfo:
        parts = []
        if self.use_rapidocr:
            parts.append(
                "PP-OCR (rapidocr) reads Chinese, Japanese, English, Indonesian and other "
                "Latin-script text"
            )
        if self.use_tesseract:
            packs = ", ".join(self.config.tesseract_languages)
            parts.append(
                f"Tesseract ({packs}) reads the lines PP-OCR is unsure of"
                if self.use_rapidocr
                else f"Tesseract ({packs}) reads every detected line"
            )
        description = "Reads text lines in images: " + "; ".join(parts) + "."
        missing = self.missing_packs()
        if missing:
            why = (
                f"Tesseract binary {self.config.tesseract_binary!r} not found"
                if not self.tesseract.available()
                else f"Tesseract language pack(s) missing: {', '.join(missing)}"
            )
            langs = ", ".join(self.unavailable_languages())
            description += f" Unavailable languages: {langs} ({why})."
        return super().info().model_copy(update={"description": description})

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        with self._load_lock:
            if self._detector is None:
                self._load()

    def _load(self) -> None:
        paths = self._model_paths()
        for path in paths.values():
            if not path.is_file():
                raise BastionError(
                    f"OCR model file {path} not found (models are never downloaded)",
                    code="model_missing",
                )
        from rapidocr.ch_ppocr_rec.utils import CTCLabelDecode

        runtime = self.context.runtime
        if "rec" in paths:
            rec = create_session(paths["rec"], runtime)
            meta = rec.get_modelmeta().custom_metadata_map
            if "character" in meta:
                self._decode = CTCLabelDecode(character=meta["character"].splitlines())
            elif self.config.rec_keys_path is not None:
                self._decode = CTCLabelDecode(character_path=self.config.rec_keys_path)
            else:
                raise BastionError(
                    f"{paths['rec'].name} carries no character list; set rec_keys_path",
                    code="model_missing",
                )
            self._rec = rec
        if "cls" in paths:
            self._cls = create_session(paths["cls"], runtime)
        detector = TextDetector(
            create_session(paths["det"], runtime), box_threshold=self.config.box_threshold
        )
        self._gate = TextPresenceGate(
            detector, side=self.config.gate_side, threshold=self.config.gate_threshold
        )
        self.tesseract.available()  # probe once now rather than on the first frame
        if self.missing_packs():
            log.warning("OCR: %s", self.info().description)
        self._detector = detector

    # ---------------------------------------------------------------- inference
    def preprocess(self, frame: Frame) -> OcrInput:
        rgb = frame.rgb
        h, w = rgb.shape[:2]
        scale = min(1.0, self.config.max_side / max(h, w, 1))
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        return OcrInput(bgr, 1.0 / scale, w, h, frame.index)

    def _det_scale(self, h: int, w: int, line_px: float | None = None) -> float:
        short, long = max(1, min(h, w)), max(1, h, w)
        scale = max(1.0, self.config.det_side / short)
        if line_px is not None and self.config.det_line_px:
            scale = min(scale, max(1.0, self.config.det_line_px / max(line_px, 1.0)))
        return min(scale, _MAX_UPSCALE, max(1.0, self.config.max_side / long))

    def analyze(self, batch: Sequence[OcrInput]) -> list[AnalyzerOutput]:
        self.load()
        assert self._detector is not None and self._gate is not None
        outputs = [AnalyzerOutput() for _ in batch]
        missing = self.unavailable_languages()
        regions: list[_Region] = []
        timings: list[dict[str, float]] = [{} for _ in batch]
        for i, item in enumerate(batch):
            extra = outputs[i].extra
            if missing:
                extra["unavailable_languages"] = missing
            h, w = item.bgr.shape[:2]
            if min(h, w) < _MIN_TEXT_SIDE:
                continue
            smallest: float | None = None  # the gate's smallest line, work-image pixels
            if self.config.gate:
                presence = self._gate(item.bgr)
                smallest = presence.line_px
                timings[i]["gate"] = round(presence.ms, 2)
                extra["gate_score"] = round(presence.score, 4)
                if not presence.present:
                    continue
            det = self._detector.detect(item.bgr, self._det_scale(h, w, smallest))
            timings[i]["detect"] = round(det.ms, 2)
            extra["regions"] = len(det)
            regions.extend(self._regions(i, item, det))

        t0 = time.perf_counter()
        if self.use_rapidocr and regions:
            self._recognise(regions)
        t1 = time.perf_counter()
        tess_errors = self._fallback(regions) if self.use_tesseract else 0
        t2 = time.perf_counter()

        for region in regions:
            line = self._finish(region, batch[region.item])
            if line is not None:
                outputs[region.item].text.append(line)
        per_item = {r.item for r in regions}
        for i, out in enumerate(outputs):
            out.extra["text_present"] = bool(out.text)
            if i in per_item:  # shared batch stages, attributed to each frame that used them
                timings[i]["recognise"] = round((t1 - t0) * 1000, 2)
                timings[i]["tesseract"] = round((t2 - t1) * 1000, 2)
            out.extra["timings_ms"] = timings[i]
            if tess_errors:
                out.extra["tesseract_errors"] = tess_errors
        return outputs

    def _regions(self, index: int, item: OcrInput, det: Detection) -> list[_Region]:
        from rapidocr.utils.process_img import get_rotate_crop_image

        out = []
        for quad, score in zip(det.boxes, det.scores, strict=True):
            crop = get_rotate_crop_image(item.bgr, quad.astype(np.float32).copy())
            if crop.size == 0 or min(crop.shape[:2]) < 2:
                continue
            out.append(_Region(index, quad, score, np.ascontiguousarray(crop)))
        return out

    # PP-OCR recognition ---------------------------------------------------------
    def _recognise(self, regions: list[_Region]) -> None:
        crops = [r.crop for r in regions]
        if self._cls is not None:
            crops = self._orient(crops)
        order = np.argsort([c.shape[1] / c.shape[0] for c in crops])
        size = self.config.rec_batch_size
        for start in range(0, len(order), size):
            idx = [int(i) for i in order[start : start + size]]
            batch = [crops[i] for i in idx]
            ratio = max(320 / 48, *(c.shape[1] / c.shape[0] for c in batch))
            tensor = np.stack([_rec_tensor(c, 48, math.ceil(48 * ratio)) for c in batch])
            pred = self._rec.run(None, {self._rec.get_inputs()[0].name: tensor})[0]
            lines, _ = self._decode(pred)
            for i, (text, conf) in zip(idx, lines, strict=True):
                # region.crop stays unturned for Tesseract: the orientation model only
                # knows the scripts PP-OCR reads and flips Hangul or Thai lines at random.
                regions[i].text = str(text).strip()
                regions[i].confidence = float(conf) * 100 if regions[i].text else 0.0

    def _orient(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        out = list(crops)
        name = self._cls.get_inputs()[0].name
        size = self.config.rec_batch_size
        for start in range(0, len(crops), size):
            part = crops[start : start + size]
            tensor = np.stack([_rec_tensor(c, 48, 192) for c in part])
            probs = self._cls.run(None, {name: tensor})[0]
            for j, p in enumerate(probs):
                if int(np.argmax(p)) == 1 and float(p[1]) > 0.9:
                    out[start + j] = cv2.rotate(part[j], cv2.ROTATE_180)
        return out

    # Tesseract fallback -----------------------------------------------------------
    def _fallback(self, regions: list[_Region]) -> int:
        packs = [
            entry
            for entry in self.config.tesseract_languages
            if self.tesseract.available() and not self.tesseract.missing(entry)
        ]
        if not packs:
            return 0
        threshold = self.config.fallback_below if self.use_rapidocr else 101.0
        chosen: list[_Region] = []
        per_item: dict[int, int] = {}
        for region in sorted(regions, key=lambda r: -r.det_score):
            if region.confidence >= threshold:
                continue
            if region.crop.shape[0] < self.config.tesseract_min_height:
                continue
            if per_item.get(region.item, 0) >= self.config.tesseract_max_lines:
                continue
            per_item[region.item] = per_item.get(region.item, 0) + 1
            chosen.append(region)
        if not chosen:
            return 0
        jobs = [
            (region, lang, image)
            for region in chosen
            for image in _tesseract_images(region.crop)
            for lang in packs
        ]
        errors = 0
        workers = max(1, min(len(jobs), os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [
                (r, pool.submit(self.tesseract.read_line, img, lang)) for r, lang, img in jobs
            ]
            for region, fut in futures:
                try:
                    region.tesseract.append(fut.result())
                except TesseractError as exc:
                    errors += 1
                    log.warning("OCR: %s", exc.message)
        return errors

    def _finish(self, region: _Region, item: OcrInput) -> TextLine | None:
        best_text, best_conf, engine = region.text, region.confidence, "rapidocr"
        # A rapidocr reading good enough to keep is only replaced by a clearly better one.
        bar = best_conf + (_REPLACE_MARGIN if best_conf >= self.config.min_confidence else 0.0)
        for reading in region.tesseract:
            conf = reading.confidence if _script_matches(reading) else 0.0
            if reading.text and conf > bar:
                best_text, best_conf, engine, bar = reading.text, conf, "tesseract", conf
        best_text = " ".join(best_text.split())
        letters = sum(ch.isalnum() for ch in best_text)
        if letters == 0 or best_conf < self.config.min_confidence:
            return None
        if letters == 1 and best_conf < _SINGLE_CHARACTER_CONFIDENCE:
            return None  # lone glyph-like shapes (一, 口, O) are the commonest false reads
        return TextLine(
            text=best_text,
            confidence=round(min(100.0, max(0.0, best_conf)), 2),
            language=langid.identify(best_text),
            engine=engine,
            box=_box(region.quad, item),
            frame=item.frame_index,
        )


def _script_matches(reading: TesseractLine) -> bool:
    """Whether most letters of a Tesseract reading are in a script its pack writes."""
    allowed: set[str] = set()
    for pack in reading.language.split("+"):
        scripts = PACK_SCRIPTS.get(pack)
        if scripts is None:
            return True  # a pack we know nothing about: trust its confidence
        allowed |= scripts
    counts = langid.scripts(reading.text)
    total = sum(counts.values())
    return total > 0 and sum(n for s, n in counts.items() if s in allowed) / total >= 0.6


def _rec_tensor(crop: np.ndarray, height: int, width: int) -> np.ndarray:
    """A crop resized to ``height`` (keeping its aspect, at most ``width``), normalised, padded."""
    h, w = crop.shape[:2]
    new_w = max(1, min(width, math.ceil(height * w / max(h, 1))))
    resized = cv2.resize(crop, (new_w, height), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((3, height, width), dtype=np.float32)
    out[:, :, :new_w] = (resized.astype(np.float32).transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    return out


def _tesseract_images(crop: np.ndarray) -> list[np.ndarray]:
    """A line crop as Tesseract reads it best, in two takes.

    Tesseract is trained on dark text on a light ground: the grey crop suits banners and
    signs, while light text drawn straight on a photo (white with a dark outline, as on
    memes) reads far better once its brightest pixels are made black on white. Both
    takes go to Tesseract and the more confident reading wins.
    """
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape[:2]
    if h < 40:
        f = min(4.0, 48 / max(h, 1))
        size = (max(1, round(w * f)), max(1, round(h * f)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_CUBIC)
    light = np.where(grey >= np.percentile(grey, 90), 0, 255).astype(np.uint8)
    return [grey, light]


def _box(quad: np.ndarray, item: OcrInput) -> Box:
    pts = quad * item.to_frame
    x0 = float(np.clip(pts[:, 0].min(), 0, item.frame_width))
    y0 = float(np.clip(pts[:, 1].min(), 0, item.frame_height))
    x1 = float(np.clip(pts[:, 0].max(), 0, item.frame_width))
    y1 = float(np.clip(pts[:, 1].max(), 0, item.frame_height))
    return Box(x=round(x0, 1), y=round(y0, 1), width=round(x1 - x0, 1), height=round(y1 - y0, 1))
