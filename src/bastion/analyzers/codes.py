"""QR codes and barcodes, read with zxing-cpp, and the URLs they carry.

Reads QR, Micro QR, rMQR, Data Matrix, PDF417, Aztec, MaxiCode, EAN/UPC, Code 128/39/93,
ITF, Codabar and DataBar. A first pass reads the whole frame (huge frames are scaled
down to ``max_side`` first, zxing's own pyramid covers large blurry codes). When it finds
nothing, an optional second pass reads QR and Micro QR codes from an enlarged,
sharpened copy, which recovers small codes blurred by scaling or JPEG compression for
a few milliseconds. The only label is "QR Code Link", at confidence 100, for a code
that carries a URL; what to do about it is the policy's business.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from bastion.analyzers.base import AnalyzerConfig, FrameAnalyzer, RuntimeContext
from bastion.media.types import Frame
from bastion.policy import taxonomy
from bastion.results import AnalyzerOutput, Box, Code
from bastion.text.urls import urls_from_payload

_LINK_LABEL = "QR Code Link"
_SECOND_PASS_FORMATS = ("QRCode", "MicroQRCode")


class CodesConfig(AnalyzerConfig):
    type: Literal["codes"] = "codes"
    formats: list[str] = Field(
        default_factory=list,
        description="zxing-cpp format names to read, e.g. QRCode, DataMatrix, EAN13, "
        "Code128; empty reads every format.",
    )
    max_side: int = Field(
        2560,
        ge=0,
        description="Frames with a longer side are scaled down to it before reading "
        "(bounds the cost of huge photos); 0 reads at full size.",
    )
    try_rotate: bool = Field(True, description="Also look for codes rotated by 90°/270°.")
    try_invert: bool = Field(True, description="Also look for light-on-dark codes.")
    try_downscale: bool = Field(
        True, description="Also scan zxing's downscaled copies (large, blurry codes)."
    )
    second_pass: bool = Field(
        True,
        description="When the first pass finds nothing, read QR codes again from an "
        "enlarged, sharpened copy (small or blurred codes; about 2-5 ms a frame).",
    )
    second_pass_side: int = Field(
        1280,
        ge=64,
        description="The second pass enlarges a frame (at most 2×) towards this longer side.",
    )


@dataclass(frozen=True, slots=True)
class CodesInput:
    """A grey frame ready for zxing and the factor that maps its pixels back."""

    gray: np.ndarray
    scale: float
    width: int
    height: int


class CodesAnalyzer(FrameAnalyzer[CodesConfig, CodesInput]):
    """QR codes and barcodes (zxing-cpp) with the URLs in their payloads."""

    kind = "codes"
    parallel_batches = True
    input: ClassVar[str] = "greyscale frame, longer side ≤ max_side (2560)"
    config_model = CodesConfig
    emits = ("codes", "labels")

    def __init__(self, config: CodesConfig, context: RuntimeContext) -> None:
        super().__init__(config, context)
        self._zx: Any = None
        self._formats: Any = None
        self._second_formats: Any = None
        self._lock = threading.Lock()
        self._version: str | None = None

    @property
    def model_name(self) -> str:
        return "zxing-cpp"

    @property
    def version(self) -> str:
        if self._version is None:
            try:
                self._version = metadata.version("zxing-cpp")
            except metadata.PackageNotFoundError:
                return "unavailable"
        return self._version

    def categories(self) -> list[str]:
        return [_LINK_LABEL]

    def load(self) -> None:
        with self._lock:
            if self._zx is not None:
                return
            import zxingcpp

            names = ",".join(self.config.formats)
            try:
                formats = zxingcpp.barcode_formats_from_str(names) if names else None
            except ValueError as exc:
                raise ValueError(f"codes analyzer: {exc}") from exc
            self._formats = formats
            self._second_formats = zxingcpp.barcode_formats_from_str(",".join(_SECOND_PASS_FORMATS))
            self._zx = zxingcpp

    def preprocess(self, frame: Frame) -> CodesInput:
        import cv2

        rgb = np.ascontiguousarray(frame.rgb)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape[:2]
        scale = 1.0
        limit = self.config.max_side
        if limit and max(h, w) > limit:
            scale = limit / max(h, w)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        return CodesInput(gray=gray, scale=scale, width=w, height=h)

    def analyze(self, batch: Sequence[CodesInput]) -> list[AnalyzerOutput]:
        self.load()
        return [self._one(item) for item in batch]

    # -- internals -------------------------------------------------------------------

    def _read(self, gray: np.ndarray, formats: Any) -> list[Any]:
        cfg = self.config
        kwargs: dict[str, Any] = {
            "try_rotate": cfg.try_rotate,
            "try_invert": cfg.try_invert,
            "try_downscale": cfg.try_downscale,
        }
        if formats is not None:
            kwargs["formats"] = formats
        return list(self._zx.read_barcodes(gray, **kwargs))

    def _second_pass(self, gray: np.ndarray) -> tuple[list[Any], float]:
        import cv2

        factor = min(2.0, max(1.0, self.config.second_pass_side / max(gray.shape[:2])))
        if factor > 1.05:
            gray = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        else:
            factor = 1.0
        blurred = cv2.GaussianBlur(gray, (0, 0), max(1.0, factor))
        sharp = cv2.addWeighted(gray, 2.5, blurred, -1.5, 0)
        return self._read(sharp, self._second_formats), factor

    def _one(self, item: CodesInput) -> AnalyzerOutput:
        gray = item.gray
        if min(gray.shape[:2]) < 8:
            return AnalyzerOutput()
        found = self._read(gray, self._formats)
        factor = 1.0
        if not found and self.config.second_pass:
            found, factor = self._second_pass(gray)
        out = AnalyzerOutput()
        seen: set[tuple[str, str]] = set()
        for bc in found:
            fmt = bc.format.name
            key = (fmt, bc.text)
            if key in seen:
                continue
            seen.add(key)
            box = self._box(bc.position, item.scale * factor, item.width, item.height)
            urls = urls_from_payload(bc.text)
            out.codes.append(Code(format=fmt, text=bc.text, urls=urls, box=box))
            if urls:
                out.labels.append(
                    taxonomy.label(
                        _LINK_LABEL,
                        100.0,
                        analyzer=self.name,
                        model=self.model_name,
                        version=self.version,
                        box=box,
                        source=urls[0],
                    )
                )
        return out

    @staticmethod
    def _box(position: Any, scale: float, width: int, height: int) -> Box | None:
        corners = (
            position.top_left,
            position.top_right,
            position.bottom_right,
            position.bottom_left,
        )
        xs = [p.x / scale for p in corners]
        ys = [p.y / scale for p in corners]
        x0, x1 = max(0.0, min(xs)), min(float(width), max(xs))
        y0, y1 = max(0.0, min(ys)), min(float(height), max(ys))
        if x1 < x0 or y1 < y0:
            return None
        return Box(
            x=round(x0, 1), y=round(y0, 1), width=round(x1 - x0, 1), height=round(y1 - y0, 1)
        )
