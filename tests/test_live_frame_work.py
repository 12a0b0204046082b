"""The per-frame work of the live path done once and off the event loop: a frame's
sha256 from the reader's thread, thumbnails without a copy of the frame, search
indexing on the feed's own threads."""

from __future__ import annotations

import io
import threading

import numpy as np
from PIL import Image

from bastion.live.reading.config import StreamReaderConfig
from bastion.live.reading.source import parse_source
from bastion.live.thumbnails import encode_thumbnail
from bastion.media.digest import frame_sha256
from bastion.media.types import Frame
from bastion.pipeline.video import frame_image
from bastion.search.config import SearchConfig
from bastion.search.feed import SearchFeed
from tests.support.media import benign_photos
from tests.support.video import tagged_frame_result


def _frame_720p() -> np.ndarray:
    photo = Image.fromarray(benign_photos()["skimage-astronaut"]).convert("RGB")
    return np.asarray(photo.resize((1280, 720), Image.Resampling.BILINEAR))


def test_a_frame_hashed_by_its_reader_is_the_frame_moderation_would_hash() -> None:
    rgb = _frame_720p()
    frame = Frame(rgb=rgb, index=0, timestamp_ms=0)
    hashed_here = frame_image(frame, None)
    assert hashed_here.sha256 == frame_sha256(rgb)
    handed_in = frame_image(frame, None, frame_sha256(rgb))
    assert handed_in == hashed_here
    other = frame_image(Frame(rgb=rgb[:, ::-1], index=0, timestamp_ms=0), None)
    assert other.sha256 != hashed_here.sha256  # the digest is of the pixels


def test_a_thumbnail_is_the_frame_made_small() -> None:
    rgb = _frame_720p()
    data = encode_thumbnail(rgb)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.size == (480, 270)
        small = np.asarray(image.convert("RGB"), dtype=np.float32)
    reference = np.asarray(
        Image.fromarray(rgb).resize((480, 270), Image.Resampling.BILINEAR), dtype=np.float32
    )
    assert float(np.abs(small - reference).mean()) < 4.0  # JPEG at quality 80, box then bilinear
    grey = encode_thumbnail(rgb[..., 0])  # a grey frame is converted
    with Image.open(io.BytesIO(grey)) as image:
        assert image.mode == "RGB" and image.size == (480, 270)


async def test_live_frames_are_indexed_on_the_feeds_own_thread() -> None:
    threads: list[str] = []

    class _Indexer:
        config = SearchConfig(index_threads=1)

        def index_frame(self, *args: object, **kw: object) -> list[int]:
            threads.append(threading.current_thread().name)
            return [1]

    feed = SearchFeed(_Indexer())  # type: ignore[arg-type]
    try:
        for at in (1.0, 2.0):
            assert await feed.frame("t", "cam-1", tagged_frame_result(), at) is True
    finally:
        feed.close()
    assert len(threads) == 2
    assert all(name.startswith("search-index") for name in threads), threads
    assert len(set(threads)) == 1  # one thread: its writes never compete with each other


def test_reads_that_ffmpeg_times_out_itself_need_no_interrupt_timeout() -> None:
    for url in ("rtmp://cams.example/live/k", "rtsp://cams.example/1", "srt://cams.example:9000"):
        source = parse_source(url)
        assert source.times_out_reads, url
        assert "rw_timeout" in source.container_options(StreamReaderConfig()), url
    for url in ("https://cams.example/live.m3u8", "http://cams.example/live.flv"):
        assert not parse_source(url).times_out_reads, url  # read through Python I/O
