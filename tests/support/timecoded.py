"""Videos coded by content: each frame shows which second of the content it belongs to.

Every frame of second k of the content is filled with a colour that encodes k
(:func:`colour`), so a sampled frame tells which second it shows (:func:`second_shown`)
and the time reported for it can be checked against it, however broken the file's
timestamps are. :func:`encode` writes such frames as H.264 with a fixed keyframe
interval, B-frames or given timestamps; :func:`joined` concatenates files byte for byte.
:func:`qr_clip` shows a QR code with a blocked word (:data:`WORDS_POLICY`) for a while.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import qrcode
from av.video.stream import VideoStream
from PIL import Image

FPS = 10
W, H = 64, 48
WORDS_POLICY = """name: words-in-codes
description: QR codes and barcodes against a blocked word
analyzers: [codes]
rules:
  - name: blocked-words
    categories: [Blocked Word]
    block: 50
lists:
  blocked_words: [casino]
"""
QR_TEXT = "play at the casino tonight"


def colour(k: int) -> tuple[int, int, int]:
    """The colour of second ``k`` of the content (k < 400)."""
    return (24 + 22 * (k % 10), 24 + 22 * (k // 10 % 10), 200 - 40 * (k // 100 % 4))


def second_shown(rgb: np.ndarray) -> int:
    """The second of the content a frame shows: :func:`colour` read back."""
    r, g, b = (float(v) for v in rgb.reshape(-1, 3).mean(axis=0))
    return round((r - 24) / 22) + 10 * round((g - 24) / 22) + 100 * round((200 - b) / 40)


def coded(seconds: Iterable[int], fps: int = FPS, *, noisy: bool = False) -> Iterator[np.ndarray]:
    """``fps`` frames of each second's colour; ``noisy`` adds moving grain (bigger frames)."""
    grain = np.random.default_rng(3).integers(-24, 25, (H, W * 2, 3))
    for k in seconds:
        picture = np.full((H, W, 3), colour(k), np.int64)
        for i in range(fps):
            if noisy:
                shifted = grain[:, (i * 5) % W : (i * 5) % W + W]
                yield np.clip(picture + shifted, 0, 255).astype(np.uint8)
            else:
                yield picture.astype(np.uint8)


def encode(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    fps: int = FPS,
    gop: int = FPS,
    bframes: int = 0,
    times_ms: Sequence[int] | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """H.264 with PyAV (the container from the suffix); ``times_ms`` gives each frame's time."""
    params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"
    if bframes:
        params += ":b-adapt=0:b-pyramid=normal"
    with av.open(str(path), "w", options=options or {}) as out:
        stream = out.add_stream(
            "libx264", rate=fps, options={"preset": "ultrafast", "x264-params": params}
        )
        assert isinstance(stream, VideoStream)
        first = True
        for i, rgb in enumerate(frames):
            if first:
                stream.height, stream.width = rgb.shape[:2]
                stream.pix_fmt = "yuv420p"
                if times_ms is not None:
                    stream.codec_context.time_base = Fraction(1, 1000)
                first = False
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if times_ms is not None:
                frame.pts, frame.time_base = times_ms[i], Fraction(1, 1000)
            else:
                frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def joined(path: Path, parts: Sequence[Path]) -> Path:
    """Files concatenated byte for byte (``cat a.ts b.ts > path``)."""
    path.write_bytes(b"".join(p.read_bytes() for p in parts))
    return path


def qr_clip(
    path: Path, seconds: int, shown: tuple[float, float] | None = None, **options: str
) -> Path:
    """A grey picture; from ``shown[0]`` to ``shown[1]`` s, a QR code with a blocked word."""
    plain = np.full((240, 320, 3), 96, np.uint8)
    code = qrcode.make(QR_TEXT).get_image().convert("RGB").resize((180, 180))
    picture = Image.fromarray(plain)
    picture.paste(code, (70, 30))
    marked = np.asarray(picture)
    frames = (
        marked if shown and shown[0] <= i / FPS < shown[1] else plain for i in range(seconds * FPS)
    )
    return encode(path, frames, options=options)
