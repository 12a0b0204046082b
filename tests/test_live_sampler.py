"""Live-stream building blocks without a server: sampling by time and by picture, the
similarity filter, backoff, stream time across reconnections and source validation."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from bastion.errors import UrlRejected
from bastion.live.reading.backoff import Backoff
from bastion.live.reading.clock import StreamClock
from bastion.live.reading.config import LiveSampling, StreamReaderConfig
from bastion.live.reading.sampler import StreamSampler
from bastion.live.reading.similarity import Fingerprinter, SimilarityFilter
from bastion.live.reading.source import parse_source
from bastion.media.hashing import dhash, hamming
from tests.support.textimages import banner
from tests.support.video import fitted, with_qr


def taken(sampler: StreamSampler, times: list[float]) -> list[float]:
    return [t for t in times if sampler.due(t)]


def frames_at(fps: float, seconds: float, start: float = 0.0) -> list[float]:
    return [round(start + i / fps, 3) for i in range(round(seconds * fps))]


# ---- sampling by stream time ----------------------------------------------------------
def test_first_frame_at_once_then_one_per_interval() -> None:
    sampler = StreamSampler(LiveSampling(interval_s=1.0))
    got = taken(sampler, frames_at(30, 5.0, start=7.25))
    assert got == [7.25, 8.25, 9.25, 10.25, 11.25]
    assert sampler.stats.offered == 150 and sampler.stats.due == 5


def test_grid_does_not_drift_with_late_frames() -> None:
    # 29.97 fps with timestamps rounded to ms: the n-th second's frame is a little late
    sampler = StreamSampler(LiveSampling(interval_s=1.0))
    got = taken(sampler, frames_at(30000 / 1001, 60.0))
    assert len(got) == 60
    assert all(abs(t - round(t)) < 0.04 for t in got), got


def test_a_gap_or_time_going_back_reanchors_the_grid() -> None:
    sampler = StreamSampler(LiveSampling(interval_s=2.0))
    assert taken(sampler, [0.0, 1.0, 2.0, 2.9]) == [0.0, 2.0]
    assert taken(sampler, [9.5, 10.0, 11.4, 11.5, 12.0]) == [9.5, 11.5]  # after a gap
    assert taken(sampler, [3.0, 4.0, 5.0]) == [3.0, 5.0]  # the source restarted its clock


def test_interval_changes_at_run_time() -> None:
    sampler = StreamSampler(LiveSampling(interval_s=4.0))
    assert taken(sampler, frames_at(10, 4.15)) == [0.0, 4.0]
    sampler.update(LiveSampling(interval_s=1.0))
    assert sampler.interval_s == 1.0
    assert taken(sampler, frames_at(10, 3.05, start=4.1)) == [5.0, 6.0, 7.0]
    sampler.update(LiveSampling(interval_s=0.5))  # shorter than the time since the last
    assert taken(sampler, [7.6, 7.7]) == [7.6]


def test_is_due_only_peeks() -> None:
    sampler = StreamSampler(LiveSampling(interval_s=1.0))
    assert sampler.is_due(0.0) and sampler.is_due(0.0)
    assert sampler.stats.due == 0
    assert sampler.due(0.0) and not sampler.is_due(0.5) and sampler.is_due(1.0)


# ---- sampling by picture ----------------------------------------------------------------
@pytest.fixture(scope="module")
def pictures() -> dict[str, np.ndarray]:
    plain = fitted("skimage-rocket", (480, 360))
    rng = np.random.default_rng(3)
    noise = rng.integers(-5, 6, plain.shape)
    return {
        "plain": plain,
        "noisy": np.clip(plain.astype(int) + noise, 0, 255).astype(np.uint8),
        "qr": with_qr(plain, side=160),
        "banner": banner(plain, "en", "WIN CASH NOW at bit.ly/free-cash"),
        "other": fitted("skimage-coffee", (480, 360)),
    }


def test_fingerprints_are_the_hashes_analyzers(pictures: dict[str, np.ndarray]) -> None:
    plain = pictures["plain"]
    got = Fingerprinter("dhash")(plain)
    grey = (plain @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    assert hamming(got, dhash(grey)) <= 4  # computed on a 256 px copy here
    assert len(Fingerprinter("pdq")(plain)) == 64


@pytest.mark.parametrize(("kind", "threshold"), [("pdq", 20), ("dhash", 5)])
def test_similarity_filter_compares_with_the_last_analysed_frame(
    pictures: dict[str, np.ndarray], kind: str, threshold: int
) -> None:
    filt = SimilarityFilter(threshold, kind)  # type: ignore[arg-type]
    first = filt.fingerprint(pictures["plain"])
    assert filt.check(first) == (False, None)  # nothing to compare with: analysed
    similar, distance = filt.check(filt.fingerprint(pictures["noisy"]))
    assert similar and distance is not None and distance <= threshold
    similar, distance = filt.check(filt.fingerprint(pictures["other"]))
    assert not similar and distance is not None and distance > threshold
    # the reference moved to the analysed frame: the plain picture is new again
    assert not filt.check(first)[0]


def test_pdq_sees_overlays_on_a_still_picture(pictures: dict[str, np.ndarray]) -> None:
    sampler = StreamSampler(LiveSampling(interval_s=1.0, similarity_threshold=20, hash="pdq"))
    order = ["plain", "noisy", "plain", "qr", "qr", "banner", "banner", "noisy"]
    kept = [name for t, name in enumerate(order) if sampler.select(float(t), pictures[name])]
    assert kept == ["plain", "qr", "banner", "noisy"]
    stats = sampler.stats
    assert (stats.due, stats.analyzed, stats.similar) == (8, 4, 4)


def test_threshold_none_analyses_every_due_frame(pictures: dict[str, np.ndarray]) -> None:
    sampler = StreamSampler(LiveSampling(interval_s=1.0))
    assert not sampler.similarity_enabled
    assert sampler.fingerprint(pictures["plain"]) is None
    assert all(sampler.select(float(t), pictures["plain"]) for t in range(5))
    sampler.update(LiveSampling(interval_s=1.0, similarity_threshold=10))  # turned on live
    assert sampler.select(5.0, pictures["plain"])
    assert not sampler.select(6.0, pictures["plain"])
    sampler.reset_similarity()
    assert sampler.select(7.0, pictures["plain"])


def test_sampling_settings_are_checked() -> None:
    with pytest.raises(ValidationError):
        LiveSampling(similarity_threshold=65, hash="dhash")
    with pytest.raises(ValidationError):
        LiveSampling(interval_s=0)
    with pytest.raises(ValidationError):
        LiveSampling.model_validate({"interval_s": 1, "every": 2})
    assert LiveSampling(similarity_threshold=200).hash == "pdq"


# ---- backoff and giving up ----------------------------------------------------------------
def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    config = StreamReaderConfig(backoff_min_s=0.5, backoff_max_s=8, backoff_jitter=0.5)
    backoff = Backoff(config, random.Random(1))
    assert [backoff.nominal(k) for k in range(1, 8)] == [0.5, 1, 2, 4, 8, 8, 8]
    for k in range(1, 8):
        draws = [backoff.delay(k) for _ in range(200)]
        assert backoff.nominal(k) / 2 <= min(draws) < max(draws) <= backoff.nominal(k)
    plain = Backoff(config.model_copy(update={"backoff_jitter": 0.0}))
    assert plain.delay(3) == 2


def test_give_up_by_time_and_by_attempts() -> None:
    config = StreamReaderConfig(backoff_min_s=1, backoff_jitter=0, give_up_after_s=10)
    backoff = Backoff(config)
    assert backoff.next_delay(1, since_frame_s=0) == 1
    assert backoff.next_delay(5, since_frame_s=7.5) == 2.5  # the last try at the deadline
    assert backoff.next_delay(6, since_frame_s=10) is None
    by_count = Backoff(config.model_copy(update={"give_up_after_attempts": 3}))
    assert by_count.next_delay(3, since_frame_s=0) == 4
    assert by_count.next_delay(4, since_frame_s=0) is None
    never = Backoff(config.model_copy(update={"give_up_after_s": None}))
    assert never.next_delay(1000, since_frame_s=1e9) == config.backoff_max_s
    with pytest.raises(ValidationError):
        StreamReaderConfig(backoff_min_s=5, backoff_max_s=1)


# ---- stream time ------------------------------------------------------------------------------
class FakeWallClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stream_time_is_monotonic_across_reconnections() -> None:
    wall = FakeWallClock()
    clock = StreamClock(wall)
    assert [clock.time(p) for p in (1.0, 1.5, 2.0)] == [0.0, 0.5, 1.0]
    wall.now += 3.0  # reconnecting for 3 s; the source restarts its timestamps at 0
    clock.new_connection()
    assert clock.peek(0.0) == 4.0
    assert [clock.time(p) for p in (0.0, 0.5)] == [4.0, 4.5]
    wall.now += 0.1
    assert clock.time(0.2) == pytest.approx(4.6)  # went backwards: continue from the last
    assert clock.time(500.0) == pytest.approx(4.6)  # jumped far ahead: continue too
    assert clock.time(None) == pytest.approx(4.6)  # no timestamp: wall clock


# ---- sources -------------------------------------------------------------------------------------
def test_sources_are_validated(tmp_path: Path) -> None:
    for url in (
        "rtmp://live.example/app/key",
        "rtmps://live.example:443/app/key",
        "https://cdn.example/live/index.m3u8",
        "http://cdn.example/live.flv",
        "rtsp://cam.example/stream",
        "srt://ingest.example:9000",
    ):
        assert parse_source(url).url == url
    for bad in ("", "ftp://example.com/a", "gopher://x", "rtmp:///nohost", "rtmp://a\nb/c"):
        with pytest.raises(UrlRejected) as info:
            parse_source(bad)
        assert info.value.code == "url_rejected" and info.value.status == 400
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    with pytest.raises(UrlRejected, match="local files"):
        parse_source(str(clip))
    assert parse_source(clip, allow_files=True).is_file
    assert parse_source(f"file://{clip}", allow_files=True).url == str(clip)
    with pytest.raises(UrlRejected, match="no such file"):
        parse_source(tmp_path / "missing.mp4", allow_files=True)


def test_ffmpeg_options_per_protocol() -> None:
    config = StreamReaderConfig(read_timeout_s=2.5, open_timeout_s=4)
    rtmp = parse_source("rtmp://u:secret@live.example/app/key")
    options = rtmp.container_options(config)
    assert options["rw_timeout"] == "2500000" and "timeout" not in options  # listen on RTMP
    assert options["protocol_whitelist"] == "rtmp,tcp"
    assert "secret" not in rtmp.display
    hls = parse_source("https://cdn.example/a.m3u8").container_options(config)
    # HTTP(S) is read by Bastion's guarded client: FFmpeg may open no protocol of its own
    assert hls["protocol_whitelist"] == "none" and hls["http_persistent"] == "0"
    rtsp = parse_source("rtsp://cam.example/s").container_options(config)
    assert rtsp["rtsp_transport"] == "tcp" and rtsp["timeout"] == "2500000"
    srt = parse_source("srt://in.example:9000").container_options(config)
    assert srt["connect_timeout"] == "4000"
