"""Offline test images: real photos shipped by scikit-image, scikit-learn and Debian's
opencv-doc, encoded as files, and the same photos carrying a QR code or a line of text.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import qrcode
from PIL import Image

from tests.support.textimages import banner

OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")

# skimage photos that ship inside the wheel (no download needed).
_SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "motorcycle")


def _skimage(name: str) -> np.ndarray:
    import skimage.data as d

    if name == "motorcycle":
        arr = d.stereo_motorcycle()[0]  # type: ignore[no-untyped-call]
    else:
        fn: Callable[[], np.ndarray] = getattr(d, name)
        arr = fn()
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3]).astype(np.uint8)


@cache
def benign_photos() -> dict[str, np.ndarray]:
    """Benign real photos by name, RGB uint8."""
    from sklearn.datasets import load_sample_images

    out = {f"skimage-{n}": _skimage(n) for n in _SKIMAGE_PHOTOS}
    ds = load_sample_images()
    for fname, img in zip(ds.filenames, ds.images, strict=True):
        out[f"sklearn-{Path(fname).stem}"] = np.asarray(img, dtype=np.uint8)
    return out


def opencv_doc_photos() -> list[Path]:
    """JPEG/PNG photos from Debian's opencv-doc, when installed."""
    if not OPENCV_DOC.is_dir():
        return []
    return sorted(p for p in OPENCV_DOC.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


def encode(rgb: np.ndarray, fmt: str = "JPEG", **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kw)
    return buf.getvalue()


def photo(name: str = "skimage-chelsea", fmt: str = "JPEG") -> bytes:
    """A benign photo by name, encoded."""
    return encode(benign_photos()[name], fmt)


def qr_on_photo(payload: str, photo: str = "skimage-coffee") -> bytes:
    """A real photo with a QR code carrying ``payload`` pasted on it, as PNG."""
    base = Image.fromarray(benign_photos()[photo]).copy()
    code = qrcode.make(payload).get_image().convert("RGB").resize((220, 220))
    base.paste(code, (20, 20))
    return encode(np.asarray(base), "PNG")


def text_on_photo(text: str, photo: str = "skimage-chelsea") -> bytes:
    """A real photo with ``text`` rendered on a banner, as PNG."""
    return encode(banner(benign_photos()[photo], "en", text), "PNG")


def unique(data: bytes) -> bytes:
    """The same JPEG pixels with bytes of their own (data after the end marker is ignored)."""
    return data + uuid.uuid4().bytes


def jpeg(name: str, quality: int = 90, scale: float = 1.0) -> bytes:
    """A benign photo as a JPEG of bytes of its own, optionally scaled."""
    img = Image.fromarray(benign_photos()[name])
    if scale != 1.0:
        size = (round(img.width * scale), round(img.height * scale))
        img = img.resize(size, Image.Resampling.LANCZOS)
    return unique(encode(np.asarray(img), "JPEG", quality=quality))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
