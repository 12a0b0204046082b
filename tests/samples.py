"""Offline test media: real photos shipped by scikit-image, scikit-learn and Debian's opencv-doc."""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

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
