"""Videos whose timestamps do not follow their content are still analysed all through.

Broken or hostile timing — MPEG-TS clips joined byte for byte (the timestamps restart
at each join), a clip looped the same way, a header that declares too short, too long
or no duration, B-frame reordering, a variable frame rate, repeated, stalled, missing
or far-jumping timestamps — must neither end the sampling early nor drop frames, and
the times reported must follow the content. Damage and truncation are reported, and a
video of which part was not analysed is never allowed.

Most clips are coded by content: every frame of second k of the content is filled
with a colour that encodes k, so a sampled frame tells which second of the content it
shows, and its reported time can be checked against it.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from bastion.errors import CorruptMedia
from bastion.media.types import Frame
from bastion.media.video import (
    FrameSampler,
    VideoLimits,
    VideoSampling,
    _Timeline,
    probe,
    sample_frames,
)
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.video import moderate_video
from bastion.policy.loader import parse_policy
from bastion.policy.model import Policy
from tests.support.databases import missing_tool
from tests.support.timecoded import (
    FPS,
    WORDS_POLICY,
    H,
    W,
    coded,
    colour,
    encode,
    joined,
    qr_clip,
    second_shown,
)

EVERY_SECOND = VideoSampling(interval_s=1)
KEYFRAMES = VideoSampling(mode="keyframes", min_gap_s=0)


def retimed(
    source: Path, path: Path, times_ms: Callable[[int], int], fmt: str = "matroska"
) -> Path:
    """The packets of ``source`` (no B-frames) copied with new timestamps."""
    with av.open(str(source)) as src, av.open(str(path), "w", format=fmt) as out:
        video = src.streams.video[0]
        assert video.time_base is not None
        copy = out.add_stream_from_template(video)
        packets = (p for p in src.demux(video) if p.size)
        for i, packet in enumerate(packets):
            packet.pts = packet.dts = round(Fraction(times_ms(i), 1000) / video.time_base)
            packet.stream = copy
            out.mux(packet)
    return path


def ffmpeg(*args: str, stdin: bytes | None = None) -> None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        missing_tool("the ffmpeg program is not installed (Debian package ffmpeg)")
    subprocess.run(
        [exe, "-nostdin" if stdin is None else "-hide_banner", "-loglevel", "error", "-y", *args],
        input=stdin,
        check=True,
        capture_output=True,
        timeout=120,
    )


def ffmpeg_coded(
    path: Path, seconds: int, *codec: str, fmt: str | None = None, first: int = 0
) -> Path:
    """A clip encoded by the ffmpeg program from raw frames on stdin; each frame (not each
    second) has its colour, from frame number ``first``: ``second_shown`` tells it."""
    raw = b"".join(f.tobytes() for f in coded(range(first, first + seconds * FPS), fps=1))
    source = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", str(FPS), "-i", "-"]
    ffmpeg(*source, *codec, *(["-f", fmt] if fmt else []), str(path), stdin=raw)
    return path


def stamps(frames: Iterable[Frame]) -> list[int]:
    return [f.timestamp_ms if f.timestamp_ms is not None else -1 for f in frames]


def run(
    source: Path | bytes, sampling: VideoSampling = EVERY_SECOND, limits: VideoLimits | None = None
) -> tuple[FrameSampler, list[tuple[int, int]]]:
    """Sample a video to the end: the sampler, and (time, second shown) of each frame."""
    sampler = sample_frames(source, sampling, limits)
    got = [(f.timestamp_ms or 0, second_shown(f.rgb)) for f in sampler]
    return sampler, got


def every_second(total_s: int, loop_s: int | None = None) -> list[tuple[int, int]]:
    """(time, second shown) for one frame a second over ``total_s`` s of content."""
    return [(k * 1000, k % loop_s if loop_s else k) for k in range(total_s)]


def patched_duration(path: Path, factor: float) -> Path:
    """A copy of ``path`` whose header declares ``factor`` times its duration."""
    data = bytearray(path.read_bytes())
    if path.suffix == ".flv":  # onMetaData "duration": an AMF0 number, big-endian double
        at = data.index(b"duration") + 9
        (value,) = struct.unpack(">d", data[at : at + 8])
        data[at : at + 8] = struct.pack(">d", value * factor)
    elif path.suffix == ".mkv":  # the Duration element (0x4489) of the segment info
        at = data.index(b"\x44\x89")
        size = data[at + 2] & 0x7F
        form = ">d" if size == 8 else ">f"
        (value,) = struct.unpack(form, data[at + 3 : at + 3 + size])
        data[at + 3 : at + 3 + size] = struct.pack(form, value * factor)
    else:  # MP4: the duration fields of mvhd, tkhd and mdhd (version 0 boxes)
        for box, offset in ((b"mvhd", 20), (b"tkhd", 24), (b"mdhd", 20)):
            at = data.index(box)
            assert data[at + 4] == 0, "a version 1 box"
            (value,) = struct.unpack(">I", data[at + offset : at + offset + 4])
            data[at + offset : at + offset + 4] = struct.pack(">I", round(value * factor))
    out = path.with_name(f"{path.stem}-x{factor:g}{path.suffix}")
    out.write_bytes(bytes(data))
    return out


# ---- clips joined or looped byte for byte ------------------------------------------------
JOINS: list[tuple[tuple[int, ...], int, int]] = [  # seconds per clip, keyframe every, B-frames
    ((4, 6), 10, 0),
    ((10, 10), 25, 2),
    ((7, 3, 5), 5, 3),
    ((2, 12), 10, 0),
]


@pytest.mark.parametrize(
    ("lengths", "gop", "bframes"), JOINS, ids=["+".join(map(str, j[0])) for j in JOINS]
)
def test_ts_clips_joined_end_to_end_are_analysed_to_the_end(
    tmp_path: Path, lengths: tuple[int, ...], gop: int, bframes: int
) -> None:
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    parts = [
        encode(tmp_path / f"part{i}.ts", coded(range(s, s + n)), gop=gop, bframes=bframes)
        for i, (s, n) in enumerate(zip(starts, lengths, strict=True))
    ]
    path = joined(tmp_path / "joined.ts", parts)
    total = sum(lengths)
    declared = probe(path).duration_s
    assert declared is not None and declared < total - 1  # what the old sampler believed
    decode_all = VideoSampling(interval_s=1, seek_min_gap_s=1e9)
    for sampling in (EVERY_SECOND, decode_all):
        sampler, got = run(path, sampling)
        assert got == every_second(total)  # each second in place, the last clip included
        assert sampler.duration_s == pytest.approx(total, abs=0.01)
        assert [(d.at_ms, d.kind) for d in sampler.discontinuities] == [
            (s * 1000, "backwards") for s in starts[1:]
        ]
        assert sampler.discontinuity_count == len(lengths) - 1 and not sampler.unanalyzed
        assert any("discontinuous" in w for w in sampler.warnings)
    # keyframes only: every keyframe of every clip, at its place in the content
    _, got = run(path, KEYFRAMES)
    keys = [
        s * 1000 + k * gop * 1000 // FPS
        for s, n in zip(starts, lengths, strict=True)
        for k in range(-(-n * FPS // gop))
    ]
    assert got == [(ms, ms // 1000) for ms in keys]
    # scene mode, keeping a frame at least every second
    _, got = run(path, VideoSampling(mode="scene", scene_max_gap_s=1, min_gap_s=1))
    assert got == every_second(total)


@pytest.mark.parametrize("loops", [2, 3, 6])
def test_a_looped_clip_reports_its_whole_length(tmp_path: Path, loops: int) -> None:
    clip = encode(tmp_path / "clip.ts", coded(range(4)), gop=20)
    path = joined(tmp_path / "looped.ts", [clip] * loops)
    assert probe(path).duration_s == pytest.approx(4, abs=0.2)
    sampler, got = run(path)
    assert got == every_second(4 * loops, loop_s=4)
    assert sampler.duration_s == pytest.approx(4 * loops, abs=0.01)
    assert sampler.discontinuity_count == loops - 1 and not sampler.unanalyzed
    _, got = run(path, VideoSampling(interval_s=2.5))
    assert [ms for ms, _ in got] == list(range(0, 4000 * loops, 2500))


JOINED_FILES: dict[str, list[str]] = {  # suffix: ffmpeg encoder options
    ".mpg": ["-c:v", "mpeg2video", "-g", "10"],
    ".webm": ["-c:v", "libvpx", "-g", "10"],
    ".avi": ["-c:v", "mpeg4", "-g", "10"],
    ".mkv": ["-c:v", "libx264", "-g", "10"],
    ".ogv": ["-c:v", "libtheora", "-g", "10"],
    ".flv": ["-c:v", "libx264", "-g", "10"],
    ".mp4": ["-c:v", "libx264", "-g", "10"],
    ".ts": ["-c:v", "libx264", "-g", "10", "-mpegts_start_pid", "0x300"],  # other ids
}


@pytest.mark.parametrize("suffix", list(JOINED_FILES))
def test_other_files_joined_end_to_end_are_analysed_or_reported(
    tmp_path: Path, suffix: str
) -> None:
    """Every second of both files is analysed, or the result says what was not."""
    options = JOINED_FILES[suffix]
    first = ffmpeg_coded(tmp_path / f"a{suffix}", 4, *options[:4])
    second = ffmpeg_coded(tmp_path / f"b{suffix}", 6, *options, first=4 * FPS)
    path = joined(tmp_path / f"joined{suffix}", [first, second])
    sampler, got = run(path)
    if {frame // FPS for _, frame in got} != set(range(10)):
        assert sampler.unanalyzed, (got, sampler.warnings)


# ---- what the header declares ---------------------------------------------------------------
@pytest.mark.parametrize("factor", [0.1, 0.5])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".flv"])
def test_a_header_declaring_too_short_a_duration_is_ignored(
    tmp_path: Path, suffix: str, factor: float
) -> None:
    path = patched_duration(encode(tmp_path / f"clip{suffix}", coded(range(20))), factor)
    assert probe(path).duration_s == pytest.approx(20 * factor, rel=0.02)
    for sampling in (EVERY_SECOND, KEYFRAMES):
        sampler, got = run(path, sampling)
        assert got == every_second(20)
        assert sampler.duration_s == pytest.approx(20, abs=0.01) and not sampler.unanalyzed
        assert any("the header declares" in w for w in sampler.warnings)


@pytest.mark.parametrize("suffix", [".mkv", ".flv"])  # FFmpeg checks MP4 against its index
def test_a_header_declaring_more_than_the_data_holds_is_reported(
    tmp_path: Path, suffix: str
) -> None:
    path = patched_duration(encode(tmp_path / f"clip{suffix}", coded(range(12))), 10)
    sampler, got = run(path)
    assert got == every_second(12) and sampler.duration_s == pytest.approx(12, abs=0.01)
    assert any("truncated" in why for why in sampler.unanalyzed)


@pytest.mark.parametrize("fmt", ["mpeg2video", "matroska", "flv", "mpegts"])
def test_streams_without_a_declared_duration(tmp_path: Path, fmt: str) -> None:
    """Written to a pipe, as a live recorder does: no duration, no index."""
    codec = ["-c:v", "mpeg2video"] if fmt == "mpeg2video" else ["-c:v", "libx264"]
    raw = b"".join(f.tobytes() for f in coded(range(12)))
    exe = shutil.which("ffmpeg")
    if exe is None:
        missing_tool("the ffmpeg program is not installed (Debian package ffmpeg)")
    source = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", str(FPS), "-i", "-"]
    piped = subprocess.run(
        [exe, "-loglevel", "error", *source, *codec, "-g", "10", "-f", fmt, "pipe:1"],
        input=raw,
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout
    if fmt == "mpeg2video":
        assert probe(piped).duration_s is None
    for sampling in (EVERY_SECOND, KEYFRAMES):
        sampler, got = run(piped, sampling)
        assert got == every_second(12)
        assert sampler.duration_s == pytest.approx(12, abs=0.01) and not sampler.unanalyzed


# ---- frame order and frame rate -------------------------------------------------------------
@pytest.mark.parametrize("interval", [0.5, 1.0, 2.5])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
def test_b_frames_are_sampled_at_the_interval(tmp_path: Path, suffix: str, interval: float) -> None:
    path = encode(tmp_path / f"bframes{suffix}", coded(range(12)), gop=20, bframes=3)
    want = [round(k * interval * 1000) for k in range(int(11.9 / interval) + 1)]
    sampler, got = run(path, VideoSampling(interval_s=interval))
    assert got == [(ms, ms // 1000) for ms in want]
    assert not sampler.warnings and not sampler.unanalyzed
    decode_all = VideoSampling(interval_s=interval, seek_min_gap_s=1e9)
    assert run(path, decode_all)[1] == got


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("suffix", [".mkv", ".mp4", ".flv"])
def test_a_variable_frame_rate_is_sampled_at_the_interval(
    tmp_path: Path, suffix: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    gaps = rng.choice([10, 33, 40, 100, 250, 700], size=120)
    times = [0, *(int(t) for t in np.cumsum(gaps[:-1]))]
    frames = [np.full((H, W, 3), colour(t // 1000), np.uint8) for t in times]
    path = encode(tmp_path / f"vfr{suffix}", frames, times_ms=times, gop=12)
    sampler, got = run(path)
    assert not sampler.unanalyzed
    # each sampled frame is one of the frames, showing the second its time says
    assert all(any(abs(ms - t) <= 1 for t in times) for ms, _ in got)
    assert all(second == ms // 1000 for ms, second in got)
    # and for every second of the content the first frame there, or a keyframe within half
    # a frame of it (or one just before it, within half a frame)
    for k in range(times[-1] // 1000 + 1):
        first = next(t for t in times if t >= k * 1000)
        assert any(k * 1000 - 100 <= ms <= max(first, k * 1000 + 100) for ms, _ in got), k
    assert sampler.duration_s == pytest.approx(times[-1] / 1000, abs=1.0)


# ---- repeated, stalled, missing and far-jumping timestamps -----------------------------------
STALLS: dict[str, Callable[[int], int]] = {
    "pairs": lambda i: i // 2 * 200,
    "triples": lambda i: i // 3 * 300,
    "a stalled run": lambda i: 3000 if 30 <= i < 60 else i * 100,
    "all the same": lambda i: 0,
}


@pytest.mark.parametrize("fmt", ["matroska", "flv"])
@pytest.mark.parametrize("name", list(STALLS))
def test_repeated_timestamps_keep_every_frame(tmp_path: Path, name: str, fmt: str) -> None:
    source = encode(tmp_path / "clip.mkv", coded(range(10)))
    path = retimed(source, tmp_path / f"stalled.{fmt}", STALLS[name], fmt)
    for sampling in (EVERY_SECOND, KEYFRAMES):
        sampler, got = run(path, sampling)
        assert got == every_second(10)
        assert sampler.duration_s == pytest.approx(10, abs=0.01) and not sampler.unanalyzed
        assert any("repeat" in w for w in sampler.warnings)


@pytest.mark.parametrize("at", [30, 70])
@pytest.mark.parametrize("jump_s", [15, 3600, 5 * 3600])
def test_timestamps_jumping_far_ahead_are_bridged(tmp_path: Path, jump_s: int, at: int) -> None:
    source = encode(tmp_path / "clip.mkv", coded(range(10)))
    path = retimed(source, tmp_path / "jump.mkv", lambda i: i * 100 + (jump_s * 1000) * (i >= at))
    for sampling in (EVERY_SECOND, KEYFRAMES):
        sampler, got = run(path, sampling)  # 5 h is over max_duration_s: not refused
        assert got == every_second(10) and not sampler.unanalyzed
        assert sampler.duration_s == pytest.approx(10, abs=0.01)
        [jump] = sampler.discontinuities
        assert (jump.at_ms, jump.kind) == (at * 100, "forward")
        assert jump.jump_ms == pytest.approx(jump_s * 1000, abs=200)


def test_a_short_jump_is_real_time(tmp_path: Path) -> None:
    source = encode(tmp_path / "clip.mkv", coded(range(10)))
    path = retimed(source, tmp_path / "gap.mkv", lambda i: i * 100 + 4000 * (i >= 50))
    sampler, got = run(path)
    assert got == [
        (ms, ms // 1000 - 4 * (ms >= 9000))
        for ms in (*range(0, 5000, 1000), *range(9000, 14_000, 1000))
    ]
    assert sampler.duration_s == pytest.approx(14, abs=0.01) and not sampler.discontinuities


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [
        (".m2v", ["-c:v", "mpeg2video", "-g", "10", "-f", "mpeg2video"]),  # no timestamps at all
        (".avi", ["-c:v", "mpeg4", "-bf", "2", "-g", "10"]),  # decode order only
    ],
)
def test_containers_without_presentation_times(
    tmp_path: Path, suffix: str, codec: list[str]
) -> None:
    path = ffmpeg_coded(tmp_path / f"clip{suffix}", 12, *codec)
    keyframes = VideoSampling(mode="keyframes", min_gap_s=1)
    for sampling in (EVERY_SECOND, keyframes, VideoSampling(interval_s=1, seek_min_gap_s=1e9)):
        sampler, got = run(path, sampling)
        # a frame about every second all through, each within a frame of its place
        assert len(got) >= 11 and got[-1][1] >= 10 * FPS, got
        assert all(abs(ms - frame * 100) <= 100 for ms, frame in got), got
        assert sampler.duration_s == pytest.approx(12, abs=0.11) and not sampler.unanalyzed


def _hostile_packets(seed: int) -> Iterator[av.Packet[Any]]:
    """Packets (decode order) with resets, jumps, repeats, stalls, gaps and junk times."""
    rng = np.random.default_rng(seed)
    dts = int(rng.integers(-(2**40), 2**40))
    for i in range(600):
        event = rng.random()
        if event < 0.03:
            dts = int(rng.integers(-(2**62), 2**62))  # anywhere
        elif event < 0.08:
            dts -= int(rng.integers(1, 60_000))  # back
        elif event < 0.12:
            dts += int(rng.integers(10_000, 2**40))  # far ahead
        elif event > 0.25:
            dts += int(rng.choice([1, 40, 40, 40, 250]))  # repeats below
        packet = av.Packet(b"\0")
        packet.is_keyframe = i % 12 == 0 or rng.random() < 0.05
        pts_kind = rng.random()
        packet.dts = None if rng.random() < 0.05 else dts
        if pts_kind < 0.05:
            packet.pts = None
        elif pts_kind < 0.1:
            packet.pts = int(rng.integers(-(2**62), 2**62))
        else:
            packet.pts = dts + int(rng.choice([0, 40, 80, 120]))
        yield packet


@pytest.mark.parametrize("seed", range(10))
def test_the_content_clock_always_moves_forward_and_stays_bounded(seed: int) -> None:
    step_us, gap_us = 40_000, 10_000_000
    clock = _Timeline(Fraction(1, 1000), None, step_us, gap_us)
    last: int | None = None
    for n, packet in enumerate(_hostile_packets(seed), 1):
        clock.admit(packet)
        if packet.dts is not None:
            assert last is None or last < packet.dts <= last + 2 * gap_us + step_us
            last = packet.dts
        if packet.pts is not None and packet.dts is not None:
            assert packet.dts <= packet.pts <= packet.dts + gap_us
        assert clock.head is not None and abs(clock.head) <= n * (2 * gap_us + step_us)
    assert clock.count > 0 and not clock.regular


# ---- keyframes far apart ----------------------------------------------------------------------
def test_keyframes_too_far_apart_are_not_the_only_frames_analysed(tmp_path: Path) -> None:
    path = encode(tmp_path / "long-gop.mp4", coded(range(35)), gop=30 * FPS)
    sampler, got = run(path, KEYFRAMES)
    assert got == every_second(35)
    assert any("keyframes are up to 30.0 s apart" in w for w in sampler.warnings)
    relaxed = VideoSampling(mode="keyframes", min_gap_s=0, keyframe_max_gap_s=60)
    assert run(path, relaxed)[1] == [(0, 0), (30_000, 30)]


# ---- damage and truncation ---------------------------------------------------------------------
@pytest.mark.parametrize("cut", [0.3, 0.5, 0.75])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".ts"])
def test_a_truncated_file_says_it_was_not_analysed_to_the_end(
    tmp_path: Path, suffix: str, cut: float
) -> None:
    """Ends before its header says (MP4, Matroska), or in the middle of a TS packet."""
    options = {"movflags": "faststart"} if suffix == ".mp4" else {}
    path = encode(tmp_path / f"clip{suffix}", coded(range(20), noisy=True), options=options)
    data = path.read_bytes()
    end = int(len(data) * cut)
    sampler, got = run(data[: end - (end % 188 == 0)])
    # what is there, in place (the last frame may be cut short)
    assert 1 < len(got) < 20 and got[:-1] == every_second(len(got) - 1)
    assert any("truncated" in why for why in sampler.unanalyzed), sampler.warnings


def _noise(count: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(7)
    texture = rng.integers(0, 256, (H, W * 2, 3), dtype=np.uint8)
    for i in range(count):
        yield np.ascontiguousarray(texture[:, (i * 3) % W : (i * 3) % W + W])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("suffix", [".mp4", ".ts"])
def test_damaged_data_says_it_was_not_analysed(tmp_path: Path, suffix: str, seed: int) -> None:
    path = encode(tmp_path / f"noise{suffix}", _noise(100))
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    at = int(rng.integers(len(data) // 5, len(data) * 3 // 4))
    data[at : at + len(data) // 10] = rng.bytes(len(data) // 10)
    decode_all = VideoSampling(mode="scene")
    try:
        sampler, _ = run(bytes(data), decode_all)
    except CorruptMedia:
        return  # refused outright: not allowed either
    assert sampler.unanalyzed, sampler.warnings
    assert all(why in sampler.warnings for why in sampler.unanalyzed)


# ---- the whole path, with the real models ------------------------------------------------------
def damaged_ts(path: Path) -> bytes:
    """A noisy MPEG-TS with a tenth of its bytes, in the middle, overwritten."""
    data = bytearray(encode(path, coded(range(10), noisy=True)).read_bytes())
    at = len(data) // 2
    data[at : at + len(data) // 10] = np.random.default_rng(0).bytes(len(data) // 10)
    return bytes(data)


@pytest.fixture(scope="module")
def words_policy() -> Policy:
    return parse_policy(WORDS_POLICY)


JOINED_QR: list[tuple[tuple[int, int], tuple[int, int]]] = [  # clip lengths; code shown (s)
    ((10, 10), (3, 6)),
    ((6, 12), (8, 12)),
    ((15, 5), (0, 2)),
]


@pytest.mark.models
@pytest.mark.parametrize(("lengths", "shown"), JOINED_QR)
async def test_a_blocked_word_after_the_join_of_two_clips_is_found(
    moderation: Moderation,
    tmp_path: Path,
    words_policy: Policy,
    lengths: tuple[int, int],
    shown: tuple[int, int],
) -> None:
    a, b = lengths
    clips = [qr_clip(tmp_path / "a.ts", a), qr_clip(tmp_path / "b.ts", b, shown)]
    path = joined(tmp_path / "joined.ts", clips)
    res = await moderate_video(moderation, path, words_policy)
    assert res.decision == "block" and res.complete and not res.stopped_early
    assert len(res.frames) == a + b
    flagged = [f.timestamp_ms for f in res.frames if f.decision != "allow"]
    assert flagged == list(range((a + shown[0]) * 1000, (a + shown[1]) * 1000, 1000))
    assert res.media.duration_ms == (a + b) * 1000
    assert all(ms >= res.media.duration_ms / 2 for ms in flagged)  # in the second half
    assert res.media.declared_duration_ms is not None
    assert res.media.declared_duration_ms < res.media.duration_ms
    assert res.media.discontinuity_count == 1
    assert res.media.discontinuities[0].at_ms == a * 1000
    [segment] = res.segments
    assert (segment.start_ms, segment.end_ms) == (flagged[0], flagged[-1])
    word = {s.name: s for s in res.labels}["Blocked Word"]
    assert (word.first_seen_ms, word.last_seen_ms) == (flagged[0], flagged[-1])
    # keyframes only: the same, from the keyframes (one a second)
    keys = await moderate_video(moderation, path, words_policy, KEYFRAMES)
    assert [f.timestamp_ms for f in keys.frames if f.decision != "allow"] == flagged
    # stopping at the first blocked frame: it is the one after the join
    stopped = await moderate_video(
        moderation, path, words_policy, early_stop_on_block=True, concurrency=1
    )
    assert stopped.decision == "block" and stopped.frames[-1].timestamp_ms == flagged[0]


@pytest.mark.models
async def test_a_video_not_analysed_to_the_end_is_never_allowed(
    moderation: Moderation, tmp_path: Path, words_policy: Policy
) -> None:
    clean = encode(
        tmp_path / "clean.mp4", coded(range(20), noisy=True), options={"movflags": "faststart"}
    )
    whole = await moderate_video(moderation, clean, words_policy)
    assert whole.decision == "allow" and whole.complete and not whole.errors
    data = clean.read_bytes()
    few = VideoSampling(mode="keyframes", min_gap_s=0, max_frames=5)
    cases: list[tuple[str, Path | bytes, VideoSampling | None, str]] = [
        ("truncated", data[: len(data) // 2], None, "truncated"),
        ("damaged", damaged_ts(tmp_path / "noise.ts"), VideoSampling(mode="scene"), "damaged"),
        ("max_frames", clean, few, "max_frames"),
        (
            "header too long",
            patched_duration(encode(tmp_path / "c.mkv", coded(range(8))), 3),
            None,
            "truncated",
        ),
    ]
    for name, source, sampling, why in cases:
        res = await moderate_video(moderation, source, words_policy, sampling)
        assert res.decision == "review" and not res.complete, name
        [error] = [e for e in res.errors if e["code"] == "video_incomplete"]
        assert why in error["message"], (name, error)
        assert any(why in w for w in res.media.warnings), name
    # a blocked word in what could be analysed still blocks
    marked = qr_clip(tmp_path / "marked.mp4", 8, (1, 3), movflags="faststart")
    cut = marked.read_bytes()
    res = await moderate_video(moderation, cut[: len(cut) * 3 // 4], words_policy)
    assert res.decision == "block" and not res.complete
