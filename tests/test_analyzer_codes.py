"""QR codes and barcodes pasted onto real photos, degraded, read back with their URLs."""

from __future__ import annotations

import io
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image, ImageFilter

from bastion.analyzers.base import Analyzer
from bastion.analyzers.codes import CodesAnalyzer, CodesConfig
from bastion.media.types import Frame
from bastion.results import AnalyzerOutput
from tests.support.analyzer_contract import AnalyzerContract, context
from tests.support.media import benign_photos, opencv_doc_photos

pytestmark = pytest.mark.models

URL = "https://example.com/promo?id=12345"


def qr_image(data: str, lib: str, module: int = 4) -> Image.Image:
    if lib == "qrcode":
        import qrcode

        image: Image.Image = qrcode.make(data, box_size=module, border=4).get_image()
        return image.convert("RGB")
    import segno

    buf = io.BytesIO()
    segno.make(data, error="m", micro=False).save(buf, kind="png", scale=module, border=4)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def zx_image(data: str, fmt: str, scale: int = 3) -> Image.Image:
    import zxingcpp

    code = zxingcpp.create_barcode(data, getattr(zxingcpp.BarcodeFormat, fmt))
    arr = np.asarray(zxingcpp.write_barcode_to_image(code, scale=scale))
    return Image.fromarray(arr).convert("RGB")


def paste(
    background: np.ndarray,
    code: Image.Image,
    *,
    angle: float = 0,
    scale: float = 1.0,
    at: tuple[float, float] = (0.3, 0.3),
    jpeg: int | None = None,
    blur: float = 0,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Paste ``code`` onto a photo; returns the image and the paste's top-left corner."""
    bg = Image.fromarray(background).copy()
    size = (max(1, round(code.width * scale)), max(1, round(code.height * scale)))
    piece = code.resize(size, Image.Resampling.BILINEAR).convert("RGBA")
    if angle:
        piece = piece.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    x, y = int(bg.width * at[0]), int(bg.height * at[1])
    bg.paste(piece, (x, y), piece)
    if blur:
        bg = bg.filter(ImageFilter.GaussianBlur(blur))
    if jpeg:
        buf = io.BytesIO()
        bg.save(buf, "JPEG", quality=jpeg)
        bg = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(bg), (x, y)


class TestCodesContract(AnalyzerContract):
    def build(self) -> Analyzer[Any, Any]:
        return CodesAnalyzer(CodesConfig(), context())


class TestCodes:
    _cache: ClassVar[dict[bool, CodesAnalyzer]] = {}

    def analyzer(self, second_pass: bool = True) -> CodesAnalyzer:
        if second_pass not in self._cache:
            a = CodesAnalyzer(CodesConfig(second_pass=second_pass), context())
            a.load()
            self._cache[second_pass] = a
        return self._cache[second_pass]

    def run(self, rgb: np.ndarray, second_pass: bool = True) -> AnalyzerOutput:
        a = self.analyzer(second_pass)
        return a.analyze([a.preprocess(Frame(rgb=rgb))])[0]

    @pytest.mark.parametrize("lib", ["qrcode", "segno"])
    @pytest.mark.parametrize(
        ("angle", "scale", "jpeg", "blur"),
        [
            (0, 1.0, None, 0),
            (15, 1.0, 40, 1.5),  # 4 px modules, rotated, JPEG 40, blurred
            (30, 1.0, 40, 1.0),
            (0, 0.5, 40, 0),  # 2 px modules
            (30, 0.5, 40, 0),
            (0, 0.5, 40, 1.0),  # small and blurred: second pass
            (30, 0.35, None, 0),  # 1.4 px modules, rotated: second pass
        ],
    )
    def test_qr_on_photo(self, lib: str, angle: int, scale: float, jpeg: int, blur: float) -> None:
        bg = benign_photos()["sklearn-china"]
        rgb, (x, y) = paste(bg, qr_image(URL, lib), angle=angle, scale=scale, jpeg=jpeg, blur=blur)
        out = self.run(rgb)
        assert [c.format for c in out.codes] == ["QRCode"]
        code = out.codes[0]
        assert code.text == URL
        assert code.urls == ["https://example.com/promo?id=12345"]
        assert code.box is not None
        assert x - 2 <= code.box.x <= x + 40 * scale + 30 and y - 2 <= code.box.y
        assert code.box.width >= 20 * scale
        assert [lab.name for lab in out.labels] == ["QR Code Link"]
        label = out.labels[0]
        assert label.confidence == 100 and label.parent == "Illegal Ads"
        assert label.box == code.box and label.source == code.urls[0]

    def test_second_pass_recovers_small_blurred_codes(self) -> None:
        bg = benign_photos()["skimage-astronaut"]
        rgb, _ = paste(bg, qr_image(URL, "qrcode"), scale=0.5, jpeg=40, blur=1.0)
        assert self.run(rgb, second_pass=False).codes == []
        assert [c.text for c in self.run(rgb).codes] == [URL]

    @pytest.mark.parametrize(
        ("fmt", "data", "text"),
        [
            ("EAN13", "590123412345", "5901234123457"),
            ("Code128", "HELLO-123", "HELLO-123"),
            ("Code39", "ABC123", "ABC123"),
            ("ITF", "12345678", "12345678"),
            ("DataMatrix", "https://example.com/dm", "https://example.com/dm"),
            ("PDF417", "www.example.org/pdf", "www.example.org/pdf"),
            ("Aztec", "https://example.net/az", "https://example.net/az"),
            ("MicroQRCode", "HELLO", "HELLO"),
        ],
    )
    def test_barcodes_on_photo(self, fmt: str, data: str, text: str) -> None:
        bg = benign_photos()["skimage-coffee"]
        rgb, _ = paste(bg, zx_image(data, fmt), at=(0.1, 0.2), jpeg=70)
        out = self.run(rgb)
        assert [(c.format, c.text) for c in out.codes] == [(fmt, text)]
        has_url = "." in text
        assert bool(out.codes[0].urls) == has_url
        assert [lab.name for lab in out.labels] == (["QR Code Link"] if has_url else [])

    def test_several_codes_in_one_photo(self) -> None:
        bg = benign_photos()["sklearn-china"]
        rgb, _ = paste(bg, qr_image("URLTO:bit.ly/xyz", "segno"), at=(0.05, 0.1))
        rgb, _ = paste(rgb, zx_image("590123412345", "EAN13", 2), at=(0.55, 0.5))
        out = self.run(rgb)
        by_format = {c.format: c for c in out.codes}
        assert set(by_format) == {"QRCode", "EAN13"}
        assert by_format["QRCode"].urls == ["http://bit.ly/xyz"]
        assert by_format["EAN13"].urls == []
        assert len(out.labels) == 1

    @pytest.mark.parametrize(
        ("payload", "urls"),
        [
            ("WIFI:T:WPA;S:example.com;P:secret.pass;;", []),
            (
                "MEBKM:TITLE:Shop;URL:http\\://shop.example.co.jp/sale;;",
                ["http://shop.example.co.jp/sale"],
            ),
            ("SMSTO:+8612345678:Win now at hxxp://spam[.]cn/x", ["http://spam.cn/x"]),
            ("ｗｗｗ．ｅｘａｍｐｌｅ．ｃｏｍ", ["http://www.example.com/"]),
        ],
    )
    def test_payload_formats(self, payload: str, urls: list[str]) -> None:
        rgb, _ = paste(benign_photos()["skimage-rocket"], qr_image(payload, "segno"))
        out = self.run(rgb)
        assert [c.text for c in out.codes] == [payload]
        assert out.codes[0].urls == urls
        assert len(out.labels) == (1 if urls else 0)

    def test_huge_frame_is_scaled_and_boxes_map_back(self) -> None:
        import cv2

        bg = cv2.resize(benign_photos()["sklearn-flower"], (5000, 3750))
        rgb, (x, y) = paste(bg, qr_image(URL, "qrcode", module=12), at=(0.6, 0.5))
        a = self.analyzer()
        item = a.preprocess(Frame(rgb=rgb))
        assert max(item.gray.shape) == a.config.max_side
        out = a.analyze([item])[0]
        assert [c.text for c in out.codes] == [URL]
        box = out.codes[0].box
        assert box is not None
        quiet = 4 * 12
        assert abs(box.x - (x + quiet)) < 15 and abs(box.y - (y + quiet)) < 15
        side = qr_image(URL, "qrcode", module=12).width - 2 * quiet
        assert abs(box.width - side) < 20

    def test_no_codes_in_benign_photos(self) -> None:
        frames = [Frame(rgb=img) for img in benign_photos().values()]
        paths = [p for p in opencv_doc_photos() if p.suffix == ".jpg"][:12]
        frames += [Frame(rgb=np.asarray(Image.open(p).convert("RGB"))) for p in paths]
        a = self.analyzer()
        outs = a.analyze([a.preprocess(f) for f in frames])
        assert all(not o.codes and not o.labels for o in outs)

    def test_unknown_format_name_is_refused(self) -> None:
        a = CodesAnalyzer(CodesConfig(formats=["QRCode", "NotAFormat"]), context())
        with pytest.raises(ValueError, match="NotAFormat"):
            a.load()

    def test_format_filter(self) -> None:
        a = CodesAnalyzer(CodesConfig(formats=["EAN13"]), context())
        a.load()
        rgb, _ = paste(benign_photos()["skimage-coffee"], qr_image(URL, "segno"), at=(0.05, 0.05))
        rgb, _ = paste(rgb, zx_image("590123412345", "EAN13", 2), at=(0.5, 0.5))
        out = a.analyze([a.preprocess(Frame(rgb=rgb))])[0]
        assert [c.format for c in out.codes] == ["EAN13"]
