"""The stream reader on real streams: RTMP and HLS from nginx-rtmp fed by ffmpeg, local
files, a server that answers with garbage, sources that drop, come back or never come."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import zxingcpp
from av.video.stream import VideoStream

from bastion.errors import UrlRejected
from bastion.live.reading.config import LiveSampling, StreamReaderConfig
from bastion.live.reading.reader import StreamReader
from bastion.live.reading.sampler import StreamSampler
from bastion.live.reading.status import LiveFrame, StreamState, StreamStatus
from bastion.media.fetch import FetchPolicy
from tests.support.live_server import LiveServer, Publisher, live_server, still_then, write_clip
from tests.support.loopback import free_port
from tests.support.textimages import banner
from tests.support.video import QR_URL, audio_only_mp4, fitted, noise_frames, with_qr

FAST = StreamReaderConfig(
    open_timeout_s=3,
    read_timeout_s=3,
    backoff_min_s=0.2,
    backoff_max_s=1.0,
    give_up_after_s=20,
)
FILES = FAST.model_copy(update={"allow_files": True, "pace_files": False})
FPS = 15
LOOPBACK = FetchPolicy(allow_private=True)  # nginx and the test servers are on loopback


def loopback_reader(
    source: str | Path,
    config: StreamReaderConfig = FAST,
    *,
    sampler: StreamSampler | None = None,
    on_status: Callable[[StreamStatus], None] | None = None,
) -> StreamReader:
    """A reader allowed to connect to loopback, as the tests' servers are there."""
    return StreamReader(source, config, sampler=sampler, on_status=on_status, url_policy=LOOPBACK)


class Statuses(list[StreamStatus]):
    """Records the status changes a reader reports."""

    def __call__(self, status: StreamStatus) -> None:
        self.append(status)

    def states(self) -> list[StreamState]:
        return [s.state for s in self]


async def take(
    reader: StreamReader,
    count: int,
    timeout: float = 15.0,
    *,
    where: Callable[[LiveFrame], bool] | None = None,
) -> list[LiveFrame]:
    got: list[LiveFrame] = []
    async with asyncio.timeout(timeout):
        async for live in reader:
            if where is None or where(live):
                got.append(live)
            if len(got) == count:
                break
    return got


async def wait_until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


def key() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with live_server() as running:
        yield running


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("live")
    plain = fitted("skimage-rocket", (320, 240))
    marked = with_qr(plain, side=140)
    texted = banner(plain, "en", "WIN CASH NOW at bit.ly/free-cash")
    changes = [*still_then(plain, marked, 3.5, 1.5, FPS), *[texted] * (2 * FPS)]
    return {
        "changes": write_clip(d / "changes.mp4", changes, fps=FPS, gop=FPS),
        "moving": write_clip(d / "moving.mp4", noise_frames(10 * FPS, 160, 120), fps=FPS, gop=FPS),
        "short": write_clip(d / "short.mp4", noise_frames(2 * FPS, 160, 120), fps=FPS, gop=FPS),
        "bframes": write_clip(
            d / "bframes.mp4", noise_frames(7 * FPS, 160, 120), fps=FPS, gop=FPS, preset="veryfast"
        ),
        "audio": audio_only_mp4(d / "audio.mp4"),
    }


@pytest.fixture
def publisher(server: LiveServer) -> Iterator[Publisher]:
    """ffmpeg's moving test pattern (320×240, 15 fps, a keyframe a second) on a fresh key."""
    with Publisher(server.rtmp_url(key()), fps=FPS, gop=FPS) as pushing:
        server.wait_publishing(pushing.url.rsplit("/", 1)[1])
        yield pushing


# ---- reading --------------------------------------------------------------------------------
async def test_reads_an_rtmp_stream(publisher: Publisher) -> None:
    statuses = Statuses()
    started = time.time()
    async with loopback_reader(publisher.url, FAST, on_status=statuses) as reader:
        frames = await take(reader, 20)
    assert statuses.states() == [StreamState.STARTING, StreamState.LIVE, StreamState.STOPPED]
    assert not reader.running
    first = frames[0]
    assert first.frame.rgb.shape == (240, 320, 3) and first.frame.rgb.dtype == np.uint8
    assert (first.source_width, first.source_height, first.connection) == (320, 240, 1)
    assert started <= first.received_at <= frames[-1].received_at <= time.time()
    gaps = np.diff([f.stream_time_s for f in frames])
    assert np.allclose(gaps, 1 / FPS, atol=0.01), gaps
    assert [f.frame.index for f in frames] == list(range(first.frame.index, first.frame.index + 20))
    assert frames[-1].frame.timestamp_ms == round(frames[-1].stream_time_s * 1000)
    assert not np.array_equal(frames[0].frame.rgb, frames[-1].frame.rgb)  # a moving pattern
    stats = reader.stats
    assert stats.connections == 1 and stats.reconnects == 0 and stats.codec == "h264"
    assert stats.frames_decoded >= 20 and stats.frames_delivered == 20
    assert stats.bytes_read > 10_000 and stats.packets >= 20 and stats.decode_errors == 0
    assert 0 < stats.cpu_s < time.time() - started


async def test_reads_the_hls_output_of_the_same_server(
    server: LiveServer, publisher: Publisher
) -> None:
    stream_key = publisher.url.rsplit("/", 1)[1]
    server.wait_hls(stream_key)
    statuses = Statuses()
    sampler = StreamSampler(LiveSampling(interval_s=0.5))
    url = server.hls_url(stream_key)
    async with loopback_reader(url, FAST, sampler=sampler, on_status=statuses) as reader:
        frames = await take(reader, 4)
    assert statuses.states()[:2] == [StreamState.STARTING, StreamState.LIVE]
    assert all(f.frame.rgb.shape == (240, 320, 3) for f in frames)
    assert np.allclose(np.diff([f.stream_time_s for f in frames]), 0.5, atol=0.07)
    assert reader.stats.codec == "h264"


def remux_flv(clip: Path, target: Path) -> Path:
    with av.open(str(clip)) as src, av.open(str(target), "w", format="flv") as out:
        video = src.streams.video[0]
        stream = out.add_stream_from_template(video)
        for packet in src.demux(video):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return target


async def test_reads_http_flv(server: LiveServer, clips: dict[str, Path], tmp_path: Path) -> None:
    url = server.serve_file(remux_flv(clips["short"], tmp_path / "clip.flv"))
    statuses = Statuses()
    async with loopback_reader(url, FAST, on_status=statuses) as reader:
        frames = [f async for f in reader]
    assert len(frames) == 2 * FPS and frames[0].frame.rgb.shape == (120, 160, 3)
    assert statuses.states() == [StreamState.STARTING, StreamState.LIVE, StreamState.ENDED]
    assert reader.stats.codec == "h264"


async def test_keyframes_only_when_the_interval_allows_it(publisher: Publisher) -> None:
    """2 s interval, a keyframe every second: auto decoding decodes keyframes only (after
    the first GOP, which measures the keyframe spacing); full decoding decodes all."""

    async def read(decode: str) -> tuple[list[LiveFrame], StreamReader]:
        config = FAST.model_copy(update={"decode": decode})
        sampler = StreamSampler(LiveSampling(interval_s=2.0))
        async with loopback_reader(publisher.url, config, sampler=sampler) as reader:
            return await take(reader, 3, timeout=20), reader

    (sparse, auto), (dense, full) = await asyncio.gather(read("auto"), read("all"))
    for frames in (sparse, dense):
        assert np.allclose(np.diff([f.stream_time_s for f in frames]), 2.0, atol=0.07)
    assert all(f.keyframe for f in sparse[1:])
    assert auto.stats.keyframes_only and not full.stats.keyframes_only
    assert auto.stats.keyframe_interval_s == pytest.approx(1.0, abs=0.05)
    # full: every frame of ~4 s; auto: the first GOP, then one keyframe in two
    assert full.stats.frames_decoded >= 4 * FPS
    assert auto.stats.frames_decoded <= FPS + 6
    assert auto.stats.frames_sampled == full.stats.frames_sampled == 3


async def test_frames_are_sampled_at_the_interval(publisher: Publisher) -> None:
    sampler = StreamSampler(LiveSampling(interval_s=0.5))
    async with loopback_reader(publisher.url, FAST, sampler=sampler) as reader:
        frames = await take(reader, 6)
    gaps = np.diff([f.stream_time_s for f in frames])
    assert np.all((gaps > 0.45) & (gaps < 0.55)), gaps
    assert not reader.stats.keyframes_only  # 0.5 s is below keyframes_min_interval_s
    assert sampler.stats.due == reader.stats.frames_sampled
    assert reader.stats.frames_decoded >= 5 * 0.5 * FPS


async def test_similar_frames_are_skipped_and_changes_analysed(
    server: LiveServer, clips: dict[str, Path]
) -> None:
    """A still picture for 1.5 s, then a QR code on it for 2 s, then a text banner instead.

    The reader starts before anyone publishes, so it also goes through reconnecting."""
    url = server.rtmp_url(key())
    sampler = StreamSampler(LiveSampling(interval_s=0.25, similarity_threshold=20))
    statuses = Statuses()
    async with loopback_reader(url, FAST, sampler=sampler, on_status=statuses) as reader:
        await wait_until(lambda: StreamState.RECONNECTING in statuses.states())
        with Publisher(url, clips["changes"], loop=False):
            frames = await take(reader, 3, timeout=20)
    assert statuses[1].code == "stream_not_found"
    times = [f.pts_s or 0 for f in frames]
    assert times[0] < 1.5 and 1.5 <= times[1] < 1.8 and 3.5 <= times[2] < 3.8, times
    found = zxingcpp.read_barcodes(np.ascontiguousarray(frames[1].frame.rgb))
    assert [code.text for code in found] == [QR_URL]
    assert not zxingcpp.read_barcodes(np.ascontiguousarray(frames[0].frame.rgb))
    stats = sampler.stats
    assert stats.analyzed == 3 and stats.similar >= 8
    assert reader.stats.frames_similar == stats.similar


# ---- dropping, coming back, never coming ---------------------------------------------
async def test_source_drops_and_comes_back(publisher: Publisher) -> None:
    statuses = Statuses()
    sampler = StreamSampler(LiveSampling(interval_s=0.5))
    async with loopback_reader(publisher.url, FAST, sampler=sampler, on_status=statuses) as reader:
        before = await take(reader, 2)
        publisher.kill()
        await wait_until(lambda: StreamState.RECONNECTING in statuses.states())
        publisher.start()
        after = await take(reader, 2, timeout=20, where=lambda f: f.connection > 1)
    states = statuses.states()
    assert states[:3] == [StreamState.STARTING, StreamState.LIVE, StreamState.RECONNECTING]
    lost = statuses[2]
    assert lost.attempt == 1 and lost.code in ("connection_lost", "source_ended")
    assert lost.retry_in_s is not None and 0.1 <= lost.retry_in_s <= 0.2
    back = states.index(StreamState.LIVE, 2)
    assert all(s == StreamState.RECONNECTING for s in states[2:back])
    assert [s.attempt for s in statuses[2:back]] == list(range(1, back - 1))
    assert states[-1] == StreamState.STOPPED
    assert after[0].stream_time_s > before[-1].stream_time_s
    assert reader.stats.connections >= 2 and reader.stats.reconnects >= 1


async def test_closed_port_goes_offline_after_the_give_up_time() -> None:
    statuses = Statuses()
    config = FAST.model_copy(update={"give_up_after_s": 1.5, "backoff_min_s": 0.1})
    started = time.monotonic()
    url = f"rtmp://127.0.0.1:{free_port()}/live/nobody"
    async with loopback_reader(url, config, on_status=statuses) as reader:
        assert [f async for f in reader] == []
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 4.0
    assert statuses[0].state == StreamState.STARTING
    assert set(statuses.states()[1:-1]) == {StreamState.RECONNECTING}
    assert len(statuses) >= 4
    last = statuses[-1]
    assert last.state == StreamState.OFFLINE and last.code == "connection_refused"
    assert last.attempt == len(statuses) - 1  # one reconnecting per failed retry before
    assert reader.status == last and not reader.running


async def test_unknown_stream_key_goes_offline_after_the_attempts(server: LiveServer) -> None:
    statuses = Statuses()
    config = FAST.model_copy(update={"give_up_after_attempts": 2, "backoff_min_s": 0.05})
    async with loopback_reader(server.rtmp_url(key()), config, on_status=statuses) as reader:
        assert [f async for f in reader] == []
    assert statuses.states() == [
        StreamState.STARTING,
        StreamState.RECONNECTING,
        StreamState.RECONNECTING,
        StreamState.OFFLINE,
    ]
    assert [s.attempt for s in statuses] == [0, 1, 2, 3]
    assert {s.code for s in statuses[1:]} == {"stream_not_found"}
    assert reader.stats.reconnects == 2


class _Garbage(http.server.BaseHTTPRequestHandler):
    """Random bytes (the same for a path each time), after an FLV header for ``.flv``."""

    def do_GET(self) -> None:
        seed = int.from_bytes(hashlib.sha256(self.path.encode()).digest()[:8], "big")
        body = np.random.default_rng(seed).bytes(256 * 1024)
        if self.path.endswith(".flv"):
            body = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00" + body
        self.send_response(200)
        self.send_header("Content-Type", "video/x-flv")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def garbage_url() -> Iterator[str]:
    """A tiny HTTP server that answers every request with random bytes."""
    httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("path", ["/live/stream.m3u8", "/live/stream.flv", "/random"])
async def test_garbage_bytes_are_an_error_without_retries(garbage_url: str, path: str) -> None:
    statuses = Statuses()
    async with loopback_reader(garbage_url + path, FAST, on_status=statuses) as reader:
        assert [f async for f in reader] == []
    assert statuses.states() == [StreamState.STARTING, StreamState.ERROR]
    assert statuses[-1].code == "corrupt_media" and statuses[-1].message
    assert reader.stats.reconnects == 0 and not reader.running


# ---- files, limits, the consumer -------------------------------------------------------
async def test_file_replay_at_real_time_ends(clips: dict[str, Path]) -> None:
    statuses = Statuses()
    config = FILES.model_copy(update={"pace_files": True})
    started = time.monotonic()
    async with loopback_reader(clips["short"], config, on_status=statuses) as reader:
        frames = [f async for f in reader]
    assert time.monotonic() - started >= 1.8  # 2 s of video, 30 frames
    assert len(frames) == 2 * FPS and reader.stats.frames_dropped == 0
    assert statuses.states() == [StreamState.STARTING, StreamState.LIVE, StreamState.ENDED]


async def test_interval_change_switches_between_keyframes_and_all_frames(
    clips: dict[str, Path],
) -> None:
    sampler = StreamSampler(LiveSampling(interval_s=2.0))
    async with loopback_reader(clips["moving"], FILES, sampler=sampler) as reader:
        sparse = await take(reader, 3)
        assert reader.stats.keyframes_only
        decoded = reader.stats.frames_decoded
        sampler.update(LiveSampling(interval_s=0.5))
        dense = [f async for f in reader]
    assert [f.stream_time_s for f in sparse] == pytest.approx([0.0, 2.0, 4.0])
    assert decoded < 2 * FPS  # the first GOP, then keyframes only
    gaps = np.diff([f.stream_time_s for f in dense[-6:]])
    assert np.allclose(gaps, 0.5, atol=0.04), gaps
    assert not reader.stats.keyframes_only
    assert reader.status.state == StreamState.ENDED


async def test_keyframes_come_out_at_once_and_unwanted_ones_are_not_decoded(
    clips: dict[str, Path],
) -> None:
    """With B-frames the decoder holds frames back; a keyframe must not wait for the next."""
    config = FILES.model_copy(update={"decode": "keyframes"})
    sampler = StreamSampler(LiveSampling(interval_s=2.0))
    async with loopback_reader(clips["bframes"], config, sampler=sampler) as reader:
        frames = [f async for f in reader]
    assert [f.stream_time_s for f in frames] == pytest.approx([0.0, 2.0, 4.0, 6.0])
    assert [f.pts_s for f in frames] == pytest.approx([0.0, 2.0, 4.0, 6.0])
    assert all(f.keyframe for f in frames)
    assert reader.stats.frames_decoded == 4  # of 7 keyframes and 105 frames


async def test_slow_consumer_gets_the_latest_frames_and_memory_stays_bounded(
    clips: dict[str, Path],
) -> None:
    config = FILES.model_copy(update={"pace_files": True, "queue_size": 2})
    async with loopback_reader(clips["short"], config) as reader:
        async for _ in reader:
            await asyncio.sleep(0.3)  # a consumer far slower than 15 fps
    stats = reader.stats
    assert stats.frames_decoded == 2 * FPS
    assert stats.frames_dropped >= 2 * FPS - 12
    assert stats.frames_delivered + stats.frames_dropped == stats.frames_sampled


async def test_large_frames_are_scaled_down_or_refused(clips: dict[str, Path]) -> None:
    small = FILES.model_copy(update={"max_side": 80})
    async with loopback_reader(clips["short"], small) as reader:
        frames = await take(reader, 2)
    assert frames[0].frame.rgb.shape == (60, 80, 3)
    assert (frames[0].source_width, frames[0].source_height) == (160, 120)

    statuses = Statuses()
    strict = FILES.model_copy(update={"max_source_side": 100})
    async with loopback_reader(clips["short"], strict, on_status=statuses) as reader:
        assert [f async for f in reader] == []
    assert statuses[-1].state == StreamState.ERROR and statuses[-1].code == "video_too_large"


async def test_a_source_without_video_is_an_error(clips: dict[str, Path]) -> None:
    statuses = Statuses()
    async with loopback_reader(clips["audio"], FILES, on_status=statuses) as reader:
        assert [f async for f in reader] == []
    assert statuses.states() == [StreamState.STARTING, StreamState.ERROR]
    assert statuses[-1].code == "no_video_stream"


def unknown_codec_avi(path: Path) -> Path:
    """An AVI whose video codec tag no decoder knows (an MJPEG stream relabelled ZZZZ)."""
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=10)
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        for i, rgb in enumerate(noise_frames(10, 64, 48)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    data = path.read_bytes()
    assert data.count(b"MJPG") >= 1
    path.write_bytes(data.replace(b"MJPG", b"ZZZZ"))
    return path


async def test_an_unknown_codec_is_an_error(tmp_path: Path) -> None:
    statuses = Statuses()
    source = unknown_codec_avi(tmp_path / "unknown.avi")
    async with loopback_reader(source, FILES, on_status=statuses) as reader:
        assert [f async for f in reader] == []
    assert statuses.states() == [StreamState.STARTING, StreamState.ERROR]
    assert statuses[-1].code == "unsupported_codec"


async def test_close_stops_the_reader_promptly(clips: dict[str, Path]) -> None:
    statuses = Statuses()
    config = FILES.model_copy(update={"pace_files": True})
    reader = loopback_reader(clips["moving"], config, on_status=statuses)
    await take(reader, 3)
    started = time.monotonic()
    await reader.close()
    assert time.monotonic() - started < 1.0
    assert not reader.running and statuses[-1].state == StreamState.STOPPED
    assert [f async for f in reader] == []


def test_unaccepted_sources_fail_at_construction(clips: dict[str, Path]) -> None:
    with pytest.raises(UrlRejected):
        StreamReader("ftp://example.com/stream")
    with pytest.raises(UrlRejected):
        StreamReader(clips["short"])  # files need allow_files
