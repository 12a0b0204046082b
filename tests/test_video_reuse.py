"""Video frames that did not change reuse the last analysed frame's analysis.

Without models: which frames of real encoded clips count as unchanged (a line of small
text or a small QR code appearing on a still scene must not: the 64-bit hash alone does
not see them), the time cap and a slow drift, and the pipeline around a stand-in for
moderation (counts of analysed and reused frames, times, segments, embeddings,
thumbnails, reuse off). With the models: a still QR code to a blocked domain is
analysed once and blocked as one segment, and a QR code appearing midway is analysed
at the frame it appears on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bastion.media.hashing import hamming
from bastion.media.types import DecodedImage, Frame
from bastion.media.video import VideoSampling, sample_frames
from bastion.media.video_config import FrameReuse, VideoConfig
from bastion.pipeline.frame_reuse import UnchangedFrames, glance
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.video import moderate_video
from bastion.policy.loader import parse_policy
from bastion.policy.model import Lists, Policy
from bastion.results import Label, ModerationResult, Reason
from tests.support.jobs import CODES_POLICY
from tests.support.video import QR_URL, fitted, frame_result, qr_frames, with_qr, write_video

SIZE = (640, 360)


def _small_text(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` with one line of PIL's default bitmap font (about 11 px high) on it."""
    img = Image.fromarray(rgb).copy()
    draw = ImageDraw.Draw(img)
    draw.text((30, rgb.shape[0] // 2), "buy now at evil.example", fill=(255, 255, 255))
    return np.asarray(img)


def _still_then(tmp_path: Path, name: str, changed: np.ndarray, base: np.ndarray) -> list[Frame]:
    """A 4 s clip at 5 fps (``base`` for 2 s, then ``changed``), encoded and sampled
    again at one frame per second: what the pipeline compares."""
    path = write_video(tmp_path / f"{name}.mp4", [base] * 10 + [changed] * 10, fps=5)
    with sample_frames(path, VideoSampling()) as sampler:
        return list(sampler)


@pytest.mark.parametrize("change", ["small text", "small QR code"])
def test_text_or_a_code_appearing_is_not_reused(tmp_path: Path, change: str) -> None:
    base = fitted("skimage-chelsea", SIZE)
    changed = _small_text(base) if change == "small text" else with_qr(base, side=48)
    frames = _still_then(tmp_path, change.replace(" ", "_"), changed, base)
    assert [f.timestamp_ms for f in frames] == [0, 1000, 2000, 3000]
    unchanged = UnchangedFrames(FrameReuse())
    assert [unchanged.check(f) for f in frames] == [None, 0, None, 10]  # frame indices
    # the 64-bit hash alone would have reused the changed frame: the coarse grid saw it
    settings = FrameReuse()
    first, after = glance(frames[0].rgb, settings.grid), glance(frames[2].rgb, settings.grid)
    assert hamming(first.dhash, after.dhash) <= settings.max_hash_distance
    assert first.differs(after, settings)
    assert unchanged.seconds > 0


def test_a_still_scene_is_reanalysed_after_max_reuse_s() -> None:
    rgb = fitted("skimage-coffee", (320, 240))
    unchanged = UnchangedFrames(FrameReuse(max_reuse_s=3))
    got = [unchanged.check(Frame(rgb=rgb, index=i, timestamp_ms=i * 1000)) for i in range(9)]
    assert got == [None, 0, 0, 0, None, 4, 4, 4, None]


def test_a_slow_drift_adds_up_until_the_frame_is_analysed() -> None:
    base = fitted("skimage-coffee", (320, 240)).astype(np.int16)
    unchanged = UnchangedFrames(FrameReuse(max_cell_difference=6))
    got = []
    for i in range(10):  # one grey level brighter every second
        rgb = np.clip(base + i, 0, 255).astype(np.uint8)
        got.append(unchanged.check(Frame(rgb=rgb, index=i, timestamp_ms=i * 1000)))
    # compared with the last analysed frame, not the previous one: 7 levels at 7 s
    assert got == [None, 0, 0, 0, 0, 0, 0, None, 7, 7]


def test_reuse_settings_are_described_and_on_by_default() -> None:
    assert VideoConfig().reuse.enabled
    assert all(f.description for f in FrameReuse.model_fields.values())
    with pytest.raises(ValueError):
        FrameReuse.model_validate({"max_hash_distance": 65})
    with pytest.raises(ValueError):
        FrameReuse.model_validate({"threshold": 3})  # extra fields are refused


class _Blocking:
    """Stands in for moderation: blocks every frame, counts the frames it is given and
    gives each result an embedding."""

    def __init__(self) -> None:
        self.calls = 0

    async def moderate_decoded(
        self,
        decoded: DecodedImage,
        policy: Policy,
        *,
        tenant: str | None = None,
        extra_lists: Lists | None = None,
    ) -> ModerationResult:
        self.calls += 1
        await asyncio.sleep(0)
        res = frame_result(
            decoded,
            policy,
            reasons=[
                Reason(
                    rule="r",
                    label="Weapons",
                    confidence=90,
                    threshold=50,
                    action="block",
                    analyzer="fake",
                )
            ],
            labels=[
                Label(
                    name="Weapons", confidence=90, level=1, analyzer="fake", model="m", version="1"
                )
            ],
        )
        res.keep_embeddings({"fake": np.ones(4, dtype=np.float32) * self.calls})
        return res


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s of one photo at 5 fps."""
    d = tmp_path_factory.mktemp("still")
    return write_video(d / "still.mp4", [fitted("skimage-coffee", (320, 240))] * 40, fps=5)


@pytest.fixture(scope="module")
def codes_policy() -> Policy:
    return parse_policy(CODES_POLICY)


async def test_a_still_blocked_scene_is_analysed_once_and_is_one_segment(
    still_clip: Path, codes_policy: Policy, tmp_path: Path
) -> None:
    fake = _Blocking()
    res = await moderate_video(
        fake,  # type: ignore[arg-type]
        still_clip,
        codes_policy,
        reuse=FrameReuse(),
        thumbnails_dir=tmp_path / "thumbs",
        concurrency=3,
    )
    assert fake.calls == 1
    assert [f.timestamp_ms for f in res.frames] == list(range(0, 8000, 1000))
    assert [f.index for f in res.frames] == list(range(0, 40, 5))
    assert [f.reused_from for f in res.frames] == [None] + [0] * 7
    assert all(f.decision == "block" and f.labels[0].name == "Weapons" for f in res.frames)
    assert all(not f.cached for f in res.frames)
    # one thumbnail, of the analysed frame, shared by the frames that reuse it
    assert len({f.thumbnail for f in res.frames}) == 1 and res.frames[0].thumbnail
    [seg] = res.segments
    assert (seg.start_ms, seg.end_ms, seg.frames, seg.decision) == (0, 7000, 8, "block")
    [summary] = res.labels
    assert (summary.first_seen_ms, summary.last_seen_ms, summary.frames) == (0, 7000, 8)
    assert (res.media.frames_sampled, res.media.frames_analyzed) == (8, 1)
    assert res.media.frames_reused == 7 and res.complete
    assert res.timings.compare_ms > 0
    # only the analysed frame has an embedding, for search
    assert list(res.frame_embeddings()) == [0]
    # the result reads back as it was written
    assert type(res).model_validate_json(res.model_dump_json()) == res


async def test_reuse_off_analyses_every_frame(still_clip: Path, codes_policy: Policy) -> None:
    for reuse in (None, FrameReuse(enabled=False)):
        fake = _Blocking()
        res = await moderate_video(
            fake,  # type: ignore[arg-type]
            still_clip,
            codes_policy,
            reuse=reuse,
        )
        assert fake.calls == 8 and res.media.frames_analyzed == 8
        assert res.media.frames_reused == 0
        assert all(f.reused_from is None for f in res.frames)
        assert sorted(res.frame_embeddings()) == list(range(0, 40, 5))


async def test_early_stop_leaves_out_what_reuses_a_left_out_frame(
    tmp_path: Path, codes_policy: Policy
) -> None:
    """Early stop on a still blocked scene: the frames sampled before the block was seen
    reuse it; the result stops there and says so."""
    clip = write_video(tmp_path / "long.mp4", [fitted("skimage-coffee", (160, 120))] * 150)
    fake = _Blocking()
    res = await moderate_video(
        fake,  # type: ignore[arg-type]
        clip,
        codes_policy,
        VideoSampling(),
        reuse=FrameReuse(max_reuse_s=2),
        early_stop_on_block=True,
        concurrency=1,
    )
    assert res.decision == "block" and res.stopped_early and not res.complete
    analysed = [f.index for f in res.frames if f.reused_from is None]
    assert fake.calls == len(analysed) >= 1
    assert all(f.reused_from in analysed for f in res.frames if f.reused_from is not None)


# ---- with the real models -------------------------------------------------------------
@pytest.mark.models
async def test_a_qr_code_appearing_midway_is_analysed_where_it_appears(
    moderation: Moderation, tmp_path: Path, codes_policy: Policy
) -> None:
    clip = write_video(tmp_path / "qr.mp4", qr_frames(10, 4, 10), fps=5)
    res = await moderate_video(moderation, clip, codes_policy, reuse=FrameReuse())
    assert [f.timestamp_ms for f in res.frames] == list(range(0, 10_000, 1000))
    assert [f.reused_from for f in res.frames] == [None, 0, 0, 0, None, 20, 20, 20, 20, 20]
    assert [f.decision for f in res.frames] == ["allow"] * 4 + ["block"] * 6
    assert all(QR_URL in f.codes for f in res.frames[4:])
    [seg] = res.segments
    assert (seg.start_ms, seg.end_ms, seg.frames) == (4000, 9000, 6)
    assert (res.media.frames_analyzed, res.media.frames_reused) == (2, 8)
    # reuse off: every frame analysed, the same decisions
    every = await moderate_video(moderation, clip, codes_policy, reuse=FrameReuse(enabled=False))
    assert every.media.frames_analyzed == 10
    assert [f.decision for f in every.frames] == [f.decision for f in res.frames]
    assert every.segments == res.segments


@pytest.mark.models
async def test_a_still_qr_code_is_blocked_as_one_segment(
    moderation: Moderation, tmp_path: Path, codes_policy: Policy
) -> None:
    clip = write_video(tmp_path / "still_qr.mp4", qr_frames(8, 0, 8), fps=5)
    res = await moderate_video(moderation, clip, codes_policy, reuse=FrameReuse())
    assert res.decision == "block"
    assert (res.media.frames_analyzed, res.media.frames_reused) == (1, 7)
    [seg] = res.segments
    assert (seg.start_ms, seg.end_ms, seg.frames) == (0, 7000, 8)
    assert seg.labels == ["Blocked Domain"]
