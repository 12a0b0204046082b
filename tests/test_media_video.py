"""Video probing and frame sampling on generated videos with known content and real clips."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import wave
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest

from bastion.errors import BastionError, CorruptMedia
from bastion.media.types import Frame
from bastion.media.video import (
    VideoLimits,
    VideoSampling,
    is_video,
    probe,
    sample_frames,
)
from tests.support.media import OPENCV_DOC, benign_photos, encode
from tests.support.video import (
    CUT_MS,
    FPS,
    audio_only_mp4,
    bigbuckbunny,
    cut_frames,
    noise_frames,
    write_video,
)


def wav_bytes() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 8000)
    return buf.getvalue()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("video")
    return {
        "cuts": write_video(d / "cuts.mp4", cut_frames(), audio=True),
        "gop10": write_video(d / "gop10.mp4", cut_frames(), gop=10),
        "gop25": write_video(d / "gop25.mp4", cut_frames(), gop=25),
        "pan": write_video(d / "pan.mp4", noise_frames(100)),
        "audio": audio_only_mp4(d / "audio.mp4"),
    }


def stamps(frames: Iterable[Frame]) -> list[int]:
    return [f.timestamp_ms if f.timestamp_ms is not None else -1 for f in frames]


# ---- probing ----------------------------------------------------------------------------
def test_probe_generated_video(media: dict[str, Path]) -> None:
    info = probe(media["cuts"])
    assert info.format == "MP4 video" and info.container.startswith("mov")
    assert (info.codec, info.width, info.height, info.fps) == ("h264", 320, 240, 10.0)
    assert info.has_video and info.has_audio
    assert info.duration_s == pytest.approx(12.0, abs=0.15)
    assert info.frames == 120
    assert sorted(s.type for s in info.streams) == ["audio", "video"]
    assert probe(media["cuts"].read_bytes()) == info


@pytest.mark.skipif(not OPENCV_DOC.is_dir(), reason="Debian opencv-doc not installed")
def test_probe_real_clips() -> None:
    mega = probe(OPENCV_DOC / "Megamind.avi")
    assert (mega.format, mega.codec, mega.width, mega.height) == ("AVI video", "mpeg4", 720, 528)
    assert mega.has_audio and mega.fps == pytest.approx(23.976, abs=0.01)
    vtest = probe(OPENCV_DOC / "vtest.avi")
    assert not vtest.has_audio and vtest.duration_s == pytest.approx(79.5)
    bbb = bigbuckbunny()
    if bbb is not None:
        info = probe(bbb)
        assert (info.codec, info.width, info.height, info.has_audio) == ("h264", 1280, 720, True)


def test_is_video_sniffs_bytes(media: dict[str, Path]) -> None:
    assert is_video(media["cuts"].read_bytes()[:8192])
    assert not is_video(encode(benign_photos()["skimage-coffee"]))
    assert not is_video(wav_bytes())
    assert not is_video(b"#EXTM3U\n#EXTINF:10,\nhttp://example.com/a.ts\n")


# ---- sampling -----------------------------------------------------------------------------
def test_interval_timestamps_and_indices(media: dict[str, Path]) -> None:
    frames = list(sample_frames(media["cuts"], VideoSampling(interval_s=1.5)))
    assert stamps(frames) == [0, 1500, 3000, 4500, 6000, 7500, 9000, 10500]
    assert [f.index for f in frames] == [0, 15, 30, 45, 60, 75, 90, 105]
    assert all(f.rgb.shape == (240, 320, 3) and f.rgb.dtype == np.uint8 for f in frames)
    assert not frames[0].rgb.flags.writeable


def test_seeking_gives_the_frames_decoding_everything_gives(media: dict[str, Path]) -> None:
    every = VideoSampling(interval_s=2.0, seek_min_gap_s=10_000)
    seeking = VideoSampling(interval_s=2.0)
    with sample_frames(media["gop10"], every) as plain:
        want = list(plain)
    with sample_frames(media["gop10"], seeking) as fast:
        got = list(fast)
    assert stamps(got) == stamps(want) == [0, 2000, 4000, 6000, 8000, 10000]
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a.rgb, b.rgb)
    assert plain.seeks == 0 and plain.frames_decoded == 101  # up to the last wanted frame
    assert fast.seeks == 5 and fast.frames_decoded == 6  # only the wanted keyframes


@pytest.mark.parametrize(("name", "gop"), [("gop10", 10), ("gop25", 25)])
def test_keyframes_mode_decodes_only_keyframes(media: dict[str, Path], name: str, gop: int) -> None:
    sampler = sample_frames(media[name], VideoSampling(mode="keyframes", min_gap_s=0))
    got = stamps(sampler)
    want = [round(i * 1000 / FPS) for i in range(0, 120, gop)]
    assert got == want
    assert sampler.frames_decoded == len(want)


def test_keyframes_mode_keeps_a_minimum_gap(media: dict[str, Path]) -> None:
    got = stamps(sample_frames(media["gop10"], VideoSampling(mode="keyframes", min_gap_s=2.5)))
    assert got == [0, 3000, 6000, 9000]


def test_scene_mode_finds_the_cuts(media: dict[str, Path]) -> None:
    sampling = VideoSampling(mode="scene", scene_max_gap_s=None)
    got = stamps(sample_frames(media["cuts"], sampling))
    assert len(got) == len(CUT_MS), got
    for found, cut in zip(got, CUT_MS, strict=True):
        assert cut <= found <= cut + 1000 // FPS, (got, CUT_MS)


def test_scene_mode_ignores_motion_but_keeps_a_frame_every_max_gap(
    media: dict[str, Path],
) -> None:
    # a steady pan over a noise texture: every pixel changes, no cut
    only = stamps(sample_frames(media["pan"], VideoSampling(mode="scene", scene_max_gap_s=None)))
    assert only == [0]
    spaced = VideoSampling(mode="scene", scene_max_gap_s=4)
    assert stamps(sample_frames(media["pan"], spaced)) == [0, 4000, 8000]


def test_scene_cut_inside_min_gap_is_taken_once_the_gap_has_passed(
    media: dict[str, Path],
) -> None:
    sampling = VideoSampling(mode="scene", scene_max_gap_s=None, min_gap_s=3.5)
    assert stamps(sample_frames(media["cuts"], sampling)) == [0, 3500, 7000, 10500]


def test_frames_are_bounded_and_upright(tmp_path: Path) -> None:
    left_white = np.zeros((120, 200, 3), dtype=np.uint8)
    left_white[:, :100] = 255
    path = write_video(tmp_path / "turned.mp4", [left_white] * 5, rotation=90)
    frame = next(iter(sample_frames(path)))
    assert frame.rgb.shape == (200, 120, 3)  # turned a quarter counter-clockwise
    assert frame.rgb[150:, :].mean() > 200 and frame.rgb[:50, :].mean() < 50
    wide = write_video(tmp_path / "wide.mp4", [np.zeros((360, 640, 3), np.uint8)] * 3)
    small = next(iter(sample_frames(wide, VideoSampling(max_side=160))))
    assert small.rgb.shape == (90, 160, 3)


def test_max_frames(media: dict[str, Path]) -> None:
    widened = sample_frames(media["cuts"], VideoSampling(interval_s=1, max_frames=4))
    assert stamps(widened) == [0, 3000, 6000, 9000]
    assert any("instead of every 1 s" in w for w in widened.warnings)
    stopped = sample_frames(media["gop10"], VideoSampling(mode="keyframes", max_frames=3))
    assert stamps(stopped) == [0, 1000, 2000]
    assert any("max_frames" in w for w in stopped.warnings)


def test_bytes_and_path_give_the_same_frames(media: dict[str, Path]) -> None:
    sampling = VideoSampling(interval_s=4)
    by_path = list(sample_frames(media["cuts"], sampling))
    by_bytes = list(sample_frames(media["cuts"].read_bytes(), sampling))
    assert stamps(by_path) == stamps(by_bytes) == [0, 4000, 8000]
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(by_path, by_bytes, strict=True))


def test_threads_sample_different_videos_at_once(media: dict[str, Path]) -> None:
    names = ["cuts", "gop10", "gop25", "pan"] * 2
    sampling = VideoSampling(interval_s=0.5)
    alone = {n: [f.rgb.sum() for f in sample_frames(media[n], sampling)] for n in set(names)}
    together: dict[int, list[int]] = {}

    def run(i: int) -> None:
        together[i] = [f.rgb.sum() for f in sample_frames(media[names[i]], sampling)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(names))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(together[i] == alone[n] for i, n in enumerate(names))


@pytest.mark.skipif(not OPENCV_DOC.is_dir(), reason="Debian opencv-doc not installed")
def test_real_avi_sampling() -> None:
    sampler = sample_frames(OPENCV_DOC / "Megamind.avi", VideoSampling(interval_s=2))
    got = list(sampler)
    times = stamps(got)
    # 23.976 fps: the first frame is at 1/23.976 s; the others within a frame of 2 s steps
    assert [round(ms / 1000) for ms in times] == [0, 2, 4, 6, 8, 10]
    assert all(abs(ms - round(ms / 2000) * 2000) <= 42 for ms in times)
    assert got[0].rgb.shape == (528, 720, 3) and not sampler.warnings


# ---- bad input ----------------------------------------------------------------------------
def _empty_file(folder: Path) -> Path:
    path = folder / "empty.mp4"
    path.write_bytes(b"")
    return path


def _cut(path: Path, fraction: float) -> bytes:
    data = path.read_bytes()
    return data[: int(len(data) * fraction)]


BAD: list[tuple[str, Callable[[dict[str, Path], Path], object], str]] = [
    ("zero bytes", lambda m, d: b"", "empty_input"),
    ("zero-length file", lambda m, d: _empty_file(d), "empty_input"),
    ("random bytes", lambda m, d: b"\x01" + np.random.default_rng(1).bytes(50_000), ""),
    (
        "mp4 header then garbage",
        lambda m, d: m["cuts"].read_bytes()[:64] + np.random.default_rng(2).bytes(50_000),
        "corrupt_media",
    ),
    ("mp4 cut at 50%", lambda m, d: _cut(m["cuts"], 0.5), "corrupt_media"),
    ("audio-only mp4", lambda m, d: m["audio"], "no_video_stream"),
    ("wav audio", lambda m, d: wav_bytes(), "no_video_stream"),
    ("png image", lambda m, d: encode(benign_photos()["skimage-coffee"], "PNG"), ""),
    ("hls playlist", lambda m, d: b"#EXTM3U\n#EXT-X-TARGETDURATION:10\nfile:///etc/passwd\n", ""),
]
BAD_CODES = {
    "random bytes": "unsupported_media_type",
    "png image": "unsupported_media_type",
    "hls playlist": "unsupported_media_type",
}


@pytest.mark.parametrize(("name", "make", "code"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gives_its_error_code(
    media: dict[str, Path],
    tmp_path: Path,
    name: str,
    make: Callable[[dict[str, Path], Path], object],
    code: str,
) -> None:
    source = make(media, tmp_path)
    assert isinstance(source, bytes | Path)
    want = code or BAD_CODES[name]
    with pytest.raises(BastionError) as probed:
        probe(source)
    assert probed.value.code == want, probed.value.message
    with pytest.raises(BastionError) as sampled:
        list(sample_frames(source))
    assert sampled.value.code == want


def test_limits(media: dict[str, Path], tmp_path: Path) -> None:
    cases = [
        (VideoLimits(max_side=300), "video_too_large"),
        (VideoLimits(max_pixels=320 * 240 - 1), "video_too_large"),
        (VideoLimits(max_duration_s=10), "media_too_large"),
        (VideoLimits(max_bytes=1000), "media_too_large"),
    ]
    for limits, code in cases:
        with pytest.raises(BastionError) as exc:
            sample_frames(media["cuts"], limits=limits)
        assert exc.value.code == code, limits
    scene = VideoSampling(mode="scene")  # decodes every frame
    with pytest.raises(BastionError) as exc:
        list(sample_frames(media["cuts"], scene, VideoLimits(max_decoded_frames=50)))
    assert exc.value.code == "media_too_large"
    assert len(list(sample_frames(media["cuts"], scene, VideoLimits(max_decoded_frames=120))))
    # over 8192 px wide with the default limits, without encoding a huge picture
    wide = write_video(tmp_path / "wide.mp4", [np.zeros((16, 8200, 3), np.uint8)], fps=1)
    with pytest.raises(BastionError) as exc:
        probe(wide)
    assert exc.value.code == "video_too_large" and exc.value.details["width"] == 8200


def test_truncated_faststart_mp4_keeps_what_is_there(tmp_path: Path) -> None:
    path = write_video(
        tmp_path / "fast.mp4", cut_frames(), container_options={"movflags": "faststart"}
    )
    half = _cut(path, 0.5)
    sampler = sample_frames(half, VideoSampling(interval_s=1))
    got = stamps(sampler)
    assert got and got == list(range(0, got[-1] + 1, 1000)) and got[-1] < 9000
    assert any("truncated" in w for w in sampler.warnings), sampler.warnings


def test_damaged_videos_never_crash(media: dict[str, Path]) -> None:
    data = media["gop10"].read_bytes()
    rng = np.random.default_rng(3)
    outcomes = []
    for _ in range(12):
        bad = bytearray(data)
        for _ in range(3):
            at = int(rng.integers(100, len(bad) - 3000))
            bad[at : at + 2000] = rng.bytes(2000)
        try:
            got = stamps(sample_frames(bytes(bad), VideoSampling(interval_s=0.5)))
            outcomes.append(len(got))
            assert got == sorted(set(got))
        except CorruptMedia:
            outcomes.append(-1)
    assert any(n > 0 for n in outcomes)


# ---- memory -------------------------------------------------------------------------------
_PEAK = """
import sys
from pathlib import Path
from bastion.media.video import VideoSampling, sample_frames

def peak_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

held = []
count = 0
for frame in sample_frames(sys.argv[1], VideoSampling(interval_s=1)):
    count += 1
    if sys.argv[2] == "hold":
        held.append(frame)
print(count, peak_kb())
"""


def _peak(path: Path, mode: str = "stream") -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PEAK, str(path), mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_memory_stays_flat_on_a_long_video(tmp_path: Path) -> None:
    fps = 5
    short = write_video(tmp_path / "1min.mp4", noise_frames(60 * fps), fps=fps, gop=50)
    long = write_video(tmp_path / "10min.mp4", noise_frames(600 * fps), fps=fps, gop=50)
    n_short, kb_short = _peak(short)
    n_long, kb_long = _peak(long)
    assert (n_short, n_long) == (60, 600)
    assert kb_long - kb_short < 16 * 1024, (kb_short, kb_long)
    # the measurement does see frames that are kept: 600 × 230 KB
    _, kb_held = _peak(long, "hold")
    assert kb_held - kb_short > 100 * 1024
