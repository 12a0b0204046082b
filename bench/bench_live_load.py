"""Benchmark of live-stream moderation under load: concurrent 720p streams on one machine.

The target: at a 10 s sampling interval, how many concurrent 1280×720 streams one
machine holds with p95 frame-to-alert latency under 1 s, every stream live and on
its cadence; CPU per stream with keyframe-only decoding and with full decoding.

Each step of the ladder runs a fresh ``bastion up`` process (SQLite in its data folder,
the in-process stream workers) and a local nginx-rtmp. A few ffmpeg processes push one
pre-encoded clip, looped with ``-c copy`` (so they cost little), started half a second
apart so that the streams' keyframes do not all fall at the same instants; N Bastion
streams (``load-000`` …) read those RTMP URLs, nginx fanning each publisher out to its
readers, so Bastion makes N independent connections and decodes. The streams are
registered one after another over ``--spread`` seconds (one sampling interval), as
streams that start at independent times would be: registered at once they are claimed
together, their sampling grids start at the same keyframes, and their frames come in
bursts (``--spread 0`` measures that case). One rule set matches
every ``load-`` channel: one frame every 10 s, similar frames skipped (PDQ), a policy of
light analyzers (nsfw, codes, hashes) and two rules with action ``alert`` (the streams
keep running): Explicit Nudity, and URLs to the blocked domain.

The clip: 40 s at 30 fps with a keyframe every 2 s (x264 veryfast, 2.5 Mbit/s), a
slow pan over a strip of benign photos, so that every sampled frame differs from the
last one and is analysed (the worst case for CPU: the similarity skip saves nothing).
Moderation's cache of frames is off (``dedup.frame_cache_size: 0``): the streams carry
the same clip, so without that a frame equal to another stream's would be answered
from the cache instead of analysed.
During the second half of each loop a QR code to the blocked domain sits in a corner;
its URL carries the clip's frame number (``?f=NNNN``), so each alert's frame can be
placed in publishing time. Half the analysed frames raise an alert (the first raise of
a stream creates its alert, later ones raise its count: each is one change on the
alert WebSocket).

For each step, after every stream is live and a warm-up, over the measured window:
CPU seconds of the Bastion process (utime + stime from /proc, every thread), of
nginx, of the publishers and of the whole machine (the rest is other work); frames
sampled and analysed per stream from the streams API; and for every alert change
whose frame was decoded in the window (after the window the run waits until they stop
coming, up to a minute), from the WebSocket: alert lag =
``updated_at − evidence.sampled_at`` (``created_at`` for a new alert: the frame's
decoding to the committed alert), WebSocket lag = arrival − ``sampled_at``, and
publish lag = arrival − the time the publisher sent that frame (its start + loop ×
40 s + frame / 30; includes the publisher's ~0.1 s start-up, so it errs high).
A step meets the target when every stream is live at the end, every stream sampled at
least ``⌊window / 10 s⌋ − 1`` frames with none dropped, and the alert lag's p95 < 1 s.
A ladder climbs no further after a step that misses it by far (a stream not live or
off its cadence, or p95 ≥ 2 s).

``--full`` runs those steps again decoding every frame; ``--split`` runs steps with the
streams split evenly over ``--processes`` processes on the same machine (``bastion up``
and ``bastion worker``, one database, ``live.max_streams`` = N / processes);
``--database postgres`` uses the local PostgreSQL (a fresh schema per step) instead of
the embedded SQLite.

    .venv/bin/python -m bench.bench_live_load [--ladder 10,25,50,75,100,150] [--full 25]
        [--split 100,150,200 --processes 2] [--database sqlite] [--seconds 60] [--warmup 20]
        [--spread 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import av
import httpx
import numpy as np
import qrcode
import websockets
from av.video.stream import VideoStream
from PIL import Image
from tests.support.auth import bearer
from tests.support.databases import pg_schema
from tests.support.live_server import Publisher, live_server
from tests.support.media import benign_photos
from tests.support.rules import BLOCKED_DOMAIN

from bench.common import BENCH_KEY, machine, server_process

FPS = 30
GOP = 2 * FPS
LOOP_S = 40
QR_FROM = LOOP_S * FPS // 2  # the QR code shows from this frame to the loop's end
WIDTH, HEIGHT = 1280, 720
BITRATE = 2_500_000
INTERVAL_S = 10.0
STAGGER_S = 0.5
TAIL_S = (5.0, 3.0, 60.0)  # after the window: at least, quiet for, at most (seconds)
LIVE_TIMEOUT_S = 90.0
LAG_TARGET_S = 1.0
WAYS = {"keyframes": "auto", "all": "all"}
AUTH = bearer(BENCH_KEY)
FRAME_NO = re.compile(r"[?&]f=(\d+)")

POLICY = """\
name: live-load
description: light analyzers for live frames
analyzers: [nsfw, codes, hashes]
rules: []
"""

RULES = f"""\
name: live-load
description: every load-test channel
channel_pattern: "^load-"
priority: 10
sample_interval_s: {INTERVAL_S:g}
ignore_similar: {{enabled: true, hash: pdq, threshold: 24}}
policy: live-load
rules:
  - name: explicit
    categories: [Explicit Nudity]
    min_confidence: 80
    action: alert
  - name: spam-domain
    urls: {{domains: [{BLOCKED_DOMAIN}]}}
    action: alert
"""


# ---- the clip --------------------------------------------------------------------------
def _strip() -> np.ndarray:
    """The benign photos side by side, each scaled to the frame's height."""
    parts = []
    for rgb in benign_photos().values():
        img = Image.fromarray(rgb).convert("RGB")
        parts.append(np.asarray(img.resize((round(img.width * HEIGHT / img.height), HEIGHT))))
    return np.concatenate(parts, axis=1)


def _qr(frame_no: int) -> np.ndarray:
    url = f"https://{BLOCKED_DOMAIN}/live?f={frame_no:04d}"
    code = qrcode.make(url, box_size=8, border=2).get_image().convert("RGB")
    return np.asarray(code.resize((288, 288), Image.Resampling.NEAREST))


def _picture(strip: np.ndarray, frame_no: int) -> np.ndarray:
    x = round((strip.shape[1] - WIDTH) * frame_no / (LOOP_S * FPS))
    picture = strip[:, x : x + WIDTH].copy()
    if frame_no >= QR_FROM:
        picture[40:328, 40:328] = _qr(frame_no)
    return picture


def make_clip() -> Path:
    """The looped clip, built once into the temp folder."""
    folder = Path(tempfile.gettempdir()) / "bastion-bench-live"
    folder.mkdir(exist_ok=True)
    path = folder / f"pan-qr-720p-{LOOP_S}s-30fps-gop{GOP}.mp4"
    if path.exists():
        return path
    strip = _strip()
    options = {"preset": "veryfast", "g": str(GOP), "keyint_min": str(GOP)}
    options |= {"sc_threshold": "0", "maxrate": "3000k", "bufsize": "6000k"}
    part = path.with_suffix(".part.mp4")
    with av.open(str(part), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options=options)
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.bit_rate = BITRATE
        for i in range(LOOP_S * FPS):
            frame = av.VideoFrame.from_ndarray(_picture(strip, i), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    part.rename(path)
    return path


# ---- CPU time ----------------------------------------------------------------------------
TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def pids_named(name: str) -> list[int]:
    """Every process whose command name is ``name`` (e.g. the database server's)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if stat.read_text().strip() == name:
                found.append(int(stat.parent.name))
    return found


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent on anything but idle and I/O wait."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / TICK


@dataclass(frozen=True)
class Snapshot:
    at: float
    cpu: dict[str, float]
    streams: dict[str, dict[str, Any]]


@contextlib.contextmanager
def worker_process(data_dir: Path, env: dict[str, str], log: Path) -> Iterator[int]:
    """A `bastion worker` (stream sessions, no API) beside the server; yields its pid."""
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bastion.cli", "worker", "--data-dir", str(data_dir)],
            env={**os.environ, "BASTION_LOG_LEVEL": "WARNING", **env},
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# ---- one step ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    streams: int
    decoding: str  # a key of WAYS
    database: str = "sqlite"
    processes: int = 1  # `bastion up` and processes - 1 `bastion worker`
    code: str = "this tree"  # or "baseline": the code of --baseline-tree


@dataclass
class Lags:
    alert: list[float] = field(default_factory=list)
    ws: list[float] = field(default_factory=list)
    publish: list[float] = field(default_factory=list)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class Result:
    step: Step
    window_s: float = 0.0
    cpu_pct: dict[str, float] = field(default_factory=dict)  # % of the machine's cores
    live_end: int = 0
    not_live: dict[str, int] = field(default_factory=dict)  # "status code" → streams
    on_cadence: int = 0
    sampled_min: int = 0
    sampled_max: int = 0
    analysed: int = 0
    similar: int = 0
    dropped: int = 0
    reconnects: int = 0
    alerts_counted: int = 0
    lags: Lags = field(default_factory=Lags)
    error: str | None = None

    @property
    def expected(self) -> int:
        """Frames a stream on its cadence samples in the window (± 1: counters are
        reported about once a second, so either end may be a second behind)."""
        return int(self.window_s // INTERVAL_S)

    def ms_per_stream_s(self, who: str = "bastion") -> float:
        cores = os.cpu_count() or 1
        return self.cpu_pct.get(who, 0.0) / 100 * cores * 1000 / self.step.streams

    def misses(self) -> list[str]:
        if self.error:
            return [self.error]
        n = self.step.streams
        out = []
        if self.live_end < n:
            states = ", ".join(f"{k}: {v}" for k, v in sorted(self.not_live.items()))
            out.append(f"{n - self.live_end} not live ({states})")
        if self.on_cadence < n:
            out.append(f"{n - self.on_cadence} off cadence")
        if self.dropped:
            out.append(f"{self.dropped} frames dropped")
        p95 = pct(self.lags.alert, 95)
        if not self.lags.alert:
            out.append("no alerts seen")
        elif not p95 < LAG_TARGET_S:
            out.append(f"p95 alert lag {p95:.2f} s")
        return out

    def line(self) -> str:
        n, lags, cpu = self.step.streams, self.lags, self.cpu_pct
        where = "" if self.step.code == "this tree" else f" ({self.step.code})"
        what = (
            f"| {self.step.database} × {self.step.processes}{where} | {self.step.decoding} | {n} |"
        )
        if self.error:
            return f"{what} error: {self.error} |"
        misses = self.misses()
        verdict = "**yes**" if not misses else "no: " + "; ".join(misses)
        db = f"{cpu['database']:.0f}" if self.step.database == "postgres" else "in Bastion"
        return (
            f"{what} {self.live_end}/{n} | "
            f"{self.on_cadence}/{n} ({self.sampled_min}–{self.sampled_max} of "
            f"{self.expected}) | {self.analysed / self.window_s:.2f} | "
            f"{cpu['bastion']:.0f} % | {self.ms_per_stream_s():.1f} ms | "
            f"{pct(lags.alert, 50):.2f} / **{pct(lags.alert, 95):.2f}** / "
            f"{max(lags.alert, default=float('nan')):.2f} | "
            f"{pct(lags.ws, 50):.2f} / {pct(lags.ws, 95):.2f} | "
            f"{pct(lags.publish, 50):.2f} / {pct(lags.publish, 95):.2f} | "
            f"{len(lags.alert)} ({self.alerts_counted}) | {self.dropped} | "
            f"{cpu['nginx']:.0f} / {cpu['ffmpeg']:.0f} / {db} / {cpu['other']:.0f} % | "
            f"{verdict} |"
        )

    def clearly_fails(self) -> bool:
        """Missed the target by far: the ladder climbs no further."""
        n = self.step.streams
        if self.error or self.live_end < n or self.on_cadence < n:
            return True
        return not pct(self.lags.alert, 95) < 2 * LAG_TARGET_S


HEADER = (
    "| database × processes | decoding | streams | live at end | "
    "on cadence (frames sampled per stream) | "
    "frames analysed/s | Bastion CPU | CPU per stream-second | alert lag p50 / p95 / max s | "
    "WebSocket lag p50 / p95 s | publish lag p50 / p95 s | alert changes (counted) | "
    "dropped | nginx / ffmpeg / database / other CPU | meets target |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _stamp(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


async def _collect(ws: websockets.ClientConnection, events: list[tuple[float, Any]]) -> None:
    async for message in ws:
        arrived = time.time()
        body = json.loads(message)
        if body.get("type") in ("alert.created", "alert.updated"):
            events.append((arrived, body["alert"]))


async def _streams(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    reply = await client.get("/v1/streams", params={"limit": 1000})
    reply.raise_for_status()
    return {s["id"]: s for s in reply.json()["streams"]}


async def _snapshot(
    client: httpx.AsyncClient, pids: dict[str, list[int]], database: str
) -> Snapshot:
    streams = await _streams(client)
    pids = pids | {"database": pids_named("postgres") if database == "postgres" else []}
    cpu = {who: sum(process_cpu_s(p) for p in group) for who, group in pids.items()}
    times = os.times()
    cpu["bench"] = times.user + times.system
    cpu["machine"] = machine_busy_s()
    return Snapshot(time.time(), cpu, streams)


async def _drain(events: list[tuple[float, Any]], start: float, end: float) -> None:
    """Wait until the alert changes of frames decoded in [start, end) stop arriving."""
    least, quiet, most = TAIL_S
    began = time.time()
    while time.time() - began < most:
        await asyncio.sleep(0.5)
        inside = [
            arrived
            for arrived, alert in events
            if (at := alert["evidence"].get("sampled_at")) and start <= _stamp(at) < end
        ]
        now = time.time()
        if now - began >= least and now - max(inside, default=began) >= quiet:
            return
    print(f"  alert changes still arriving {most:g} s after the window")


async def _wait_live(client: httpx.AsyncClient, ids: list[str]) -> None:
    deadline = time.monotonic() + LIVE_TIMEOUT_S
    while time.monotonic() < deadline:
        streams = await _streams(client)
        if all(streams.get(i, {}).get("status") == "live" for i in ids):
            return
        await asyncio.sleep(0.5)
    print(f"  not all {len(ids)} streams live after {LIVE_TIMEOUT_S:g} s; measuring anyway")


def _lags(events: list[tuple[float, Any]], a: Snapshot, b: Snapshot, starts: list[float]) -> Lags:
    lags = Lags()
    for arrived, alert in events:
        sampled_raw = alert["evidence"].get("sampled_at")
        if sampled_raw is None:
            continue
        sampled = _stamp(sampled_raw)
        if not a.at <= sampled < b.at:
            continue
        lags.alert.append(_stamp(alert["updated_at"]) - sampled)
        lags.ws.append(arrived - sampled)
        found = next((m for u in alert["evidence"]["urls"] if (m := FRAME_NO.search(u))), None)
        if found is not None:
            start = starts[int(alert["stream_id"].split("-")[1]) % len(starts)]
            offset = int(found.group(1)) / FPS
            loop = round((sampled - start - offset) / LOOP_S)
            lags.publish.append(arrived - (start + loop * LOOP_S + offset))
    return lags


def _summarise(
    step: Step, a: Snapshot, b: Snapshot, events: list[tuple[float, Any]], starts: list[float]
) -> Result:
    window = b.at - a.at
    cores = os.cpu_count() or 1
    used = {k: (b.cpu[k] - a.cpu[k]) / window / cores * 100 for k in b.cpu}
    used["other"] = used["machine"] - sum(
        used[k] for k in ("bastion", "nginx", "ffmpeg", "database", "bench")
    )
    result = Result(step, window_s=window, cpu_pct=used)
    sampled = []
    for sid, after in b.streams.items():
        before = a.streams.get(sid, {}).get("counters", {})
        delta = {k: v - before.get(k, 0) for k, v in after["counters"].items()}
        sampled.append(delta.get("frames_sampled", 0))
        result.live_end += after["status"] == "live"
        if after["status"] != "live":
            why = after.get("status_code") or (after.get("status_reason") or "")[:60]
            state = f"{after['status']} {why}".strip()
            result.not_live[state] = result.not_live.get(state, 0) + 1
        dropped = delta.get("frames_dropped", 0)
        result.on_cadence += sampled[-1] >= result.expected - 1 and dropped == 0
        result.analysed += delta.get("frames_analysed", 0)
        result.similar += delta.get("frames_skipped_similar", 0)
        result.dropped += dropped
        result.reconnects += delta.get("reconnects", 0)
        result.alerts_counted += delta.get("alerts", 0)
    result.sampled_min, result.sampled_max = min(sampled, default=0), max(sampled, default=0)
    result.lags = _lags(events, a, b, starts)
    return result


async def run_step(step: Step, clip: Path, args: argparse.Namespace) -> Result:
    """One step in a temporary folder; the processes' logs are kept when it misses."""
    with tempfile.TemporaryDirectory(prefix="bastion-bench-load-") as tmp:
        root = Path(tmp)
        result = None
        try:
            result = await _measure(step, clip, args, root)
        finally:  # every process has stopped and written its last words
            if result is None or result.misses():
                kept = Path(tempfile.gettempdir()) / "bastion-bench-live" / "logs"
                kept.mkdir(parents=True, exist_ok=True)
                name = f"{step.database}-{step.processes}-{step.decoding}-{step.streams}"
                for log in root.glob("*.log"):
                    shutil.copyfile(log, kept / f"{name}-{log.name}")
                print(f"  logs of the step in {kept}")
        return result


async def _measure(step: Step, clip: Path, args: argparse.Namespace, root: Path) -> Result:
    n, publishers = step.streams, args.publishers
    with live_server() as ingest, contextlib.ExitStack() as stack:
        (root / "policies").mkdir()
        (root / "policies" / "live-load.yaml").write_text(POLICY)
        starts: list[float] = []
        pushing: list[Publisher] = []
        for p in range(publishers):
            if p:
                await asyncio.sleep(STAGGER_S)
            starts.append(time.time())
            pushing.append(stack.enter_context(Publisher(ingest.rtmp_url(f"pub{p}"), clip)))
        for p in range(publishers):
            ingest.wait_publishing(f"pub{p}")
        env = {
            "BASTION_ALLOW_PRIVATE_URLS": "1",
            "BASTION_POLICIES_DIR": str(root / "policies"),
            "BASTION_LIVE__READER__DECODE": WAYS[step.decoding],
            # every sampled frame analysed: the streams carry the same clip, and frames
            # equal to pixel across streams would otherwise come from moderation's cache
            "BASTION_DEDUP__FRAME_CACHE_SIZE": "0",
        }
        if step.database == "postgres":  # a schema of its own, dropped afterwards
            env["BASTION_DATABASE_URL"] = stack.enter_context(pg_schema())
        if step.code == "baseline":  # the baseline tree's code, this tree's benchmark
            env["PYTHONPATH"] = os.pathsep.join(
                [str(args.baseline_tree.resolve() / "src"), os.environ.get("PYTHONPATH", "")]
            )
        if step.processes > 1:  # the streams split evenly between the processes
            env["BASTION_LIVE__MAX_STREAMS"] = str(-(-n // step.processes))
        base, proc = stack.enter_context(server_process(root / "data", env, root / "server.log"))
        workers = [
            stack.enter_context(worker_process(root / "data", env, root / f"worker{w}.log"))
            for w in range(1, step.processes)
        ]
        pids = {
            "bastion": [proc.pid, *workers],
            "nginx": [ingest.process.pid],
            "ffmpeg": [p.process.pid for p in pushing if p.process is not None],
        }
        ws_url = base.replace("http", "ws", 1) + f"/v1/alerts/ws?token={BENCH_KEY}"
        async with (
            httpx.AsyncClient(base_url=base, headers=AUTH, timeout=60) as client,
            websockets.connect(ws_url, max_size=None) as ws,
        ):
            reply = await client.post(
                "/v1/rules", content=RULES, headers={"Content-Type": "application/yaml"}
            )
            reply.raise_for_status()
            assert json.loads(await ws.recv())["type"] == "hello"
            events: list[tuple[float, Any]] = []
            collector = asyncio.create_task(_collect(ws, events))
            ids = [f"load-{i:03d}" for i in range(n)]
            began = time.monotonic()
            for i, sid in enumerate(ids):
                # spread over --spread seconds: the streams' sampling grids do not line up
                await asyncio.sleep(max(0.0, began + i * args.spread / n - time.monotonic()))
                spec = {
                    "id": sid,
                    "channel": sid,
                    "source_url": ingest.rtmp_url(f"pub{i % publishers}"),
                    "streamer_id": f"streamer-{i}",
                    "streamer_tier": "standard",
                    "metadata": {"bench": "live-load"},
                }
                (await client.post("/v1/streams", json=spec)).raise_for_status()
            await _wait_live(client, ids)
            await asyncio.sleep(args.warmup)
            a = await _snapshot(client, pids, step.database)
            await asyncio.sleep(args.seconds)
            b = await _snapshot(client, pids, step.database)
            await _drain(events, a.at, b.at)
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await collector
        result = _summarise(step, a, b, events, starts)
        for sid, body in list(b.streams.items()):
            if body["status"] != "live":
                facts = {k: body.get(k) for k in ("status", "status_reason", "worker")}
                print(f"  {sid} not live: {facts} {body.get('counters')}")
        return result


# ---- the ladder ------------------------------------------------------------------------------
def _plan(args: argparse.Namespace) -> list[Step]:
    """Keyframe steps climbing; each full-decoding step right after its keyframe twin; then
    the steps with more processes."""
    steps = []
    for db in args.database:
        for n in args.ladder:
            steps.append(Step(n, "keyframes", db))
            if n in args.full:
                steps.append(Step(n, "all", db))
        steps += [Step(n, "all", db) for n in args.full if n not in args.ladder]
        steps += [Step(n, "keyframes", db, args.processes) for n in args.split]
    if args.baseline_tree is not None:  # each step first on the baseline's code, then on ours
        steps = [s for step in steps for s in (replace(step, code="baseline"), step)]
    return steps


async def run(args: argparse.Namespace) -> list[Result]:
    clip = make_clip()
    results: list[Result] = []
    failed: set[tuple[str, str, int, str]] = set()
    for step in _plan(args):
        if (step.database, step.decoding, step.processes, step.code) in failed:
            continue
        began = time.monotonic()
        try:
            result = await run_step(step, clip, args)
        except Exception as exc:  # report the step, go on with the next
            result = Result(step, error=f"{type(exc).__name__}: {exc}"[:300])
        results.append(result)
        print(f"  {time.monotonic() - began:.0f} s: {result.line()}", flush=True)
        if result.clearly_fails():
            failed.add((step.database, step.decoding, step.processes, step.code))
    return results


def _numbers(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the context managers: every process is stopped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ladder", type=_numbers, default=[10, 25, 50, 75, 100, 150])
    ap.add_argument("--full", type=_numbers, default=[25], help="steps also run decoding all")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured window of a step")
    ap.add_argument("--warmup", type=float, default=20.0, help="after all streams are live")
    ap.add_argument("--publishers", type=int, default=4, help="ffmpeg processes pushing")
    ap.add_argument(
        "--spread",
        type=float,
        default=INTERVAL_S,
        help="seconds over which the streams are registered (0: all at once)",
    )
    ap.add_argument(
        "--split",
        type=_numbers,
        default=[],
        help="keyframe steps run again with the streams split over --processes processes",
    )
    ap.add_argument("--processes", type=int, default=2, help="processes of the --split steps")
    ap.add_argument(
        "--database",
        type=lambda text: [v for v in text.split(",") if v],
        default=["sqlite"],
        help="sqlite (embedded, the default of `bastion up`) and/or postgres (the local "
        "server, a fresh schema per step)",
    )
    ap.add_argument(
        "--baseline-tree",
        type=Path,
        default=None,
        help="a checkout of the code to compare with (git worktree add DIR REV): every step "
        "runs on it first, then on this tree",
    )
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    load = os.getloadavg()
    started = time.monotonic()
    results = asyncio.run(run(args))
    print(
        f"\ncommand: python -m bench.bench_live_load --ladder {','.join(map(str, args.ladder))} "
        f"--full {','.join(map(str, args.full))} --seconds {args.seconds:g} "
        f"--warmup {args.warmup:g} --publishers {args.publishers} --spread {args.spread:g} "
        f"--database {','.join(args.database)}"
        + (f" --baseline-tree {args.baseline_tree}" if args.baseline_tree else "")
        + (f" --split {','.join(map(str, args.split))} --processes {args.processes}"
           if args.split else "")
    )  # fmt: skip
    print(f"machine: {machine()}, PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})")
    print(
        f"load average at the start {load[0]:.2f}, at the end {os.getloadavg()[0]:.2f}; "
        f"wall time {time.monotonic() - started:.0f} s\n"
    )
    print(HEADER)
    for result in results:
        print(result.line())
    print()
    kinds = {(r.step.database, r.step.processes, r.step.decoding, r.step.code) for r in results}
    for kind in sorted(kinds):
        held = [
            r.step.streams
            for r in results
            if (r.step.database, r.step.processes, r.step.decoding, r.step.code) == kind
            and not r.misses()
        ]
        print(f"{kind[0]} × {kind[1]}, decoding {kind[2]}, {kind[3]}: most streams meeting "
              f"the target {max(held, default=0)}")  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
