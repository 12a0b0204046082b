"""Video moderation end to end: sampled frames through the engine, segments, CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import bastion.pipeline.video as video_pipeline
from bastion.cli import app
from bastion.errors import BastionError
from bastion.media.types import DecodedImage
from bastion.media.video import FrameSampler, VideoSampling, sample_frames
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.video import FrameResult, default_segment_gap_ms, moderate_video
from bastion.policy.loader import default_policy, parse_policy
from bastion.policy.model import Lists, Policy
from bastion.results import Decision, ModerationResult, Reason
from tests.support.jobs import CODES_POLICY
from tests.support.media import OPENCV_DOC, benign_photos, encode
from tests.support.video import (
    QR_URL,
    audio_only_mp4,
    bigbuckbunny,
    frame_result,
    qr_frames,
    write_video,
)

BLOCK_EVIL = Lists(blocked_domains=["evil.example"])


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    return {
        # 10 s at 5 fps; the QR code is on screen from 3 s to 6 s
        "qr": write_video(d / "qr.mp4", qr_frames(10, 3, 6), fps=5),
        # 30 s; the QR code appears at 5 s and stays
        "qr_long": write_video(d / "qr_long.mp4", qr_frames(30, 5, 30), fps=5),
        # 6 s; the QR code is on the last second only
        "qr_end": write_video(d / "qr_end.mp4", qr_frames(6, 5, 6), fps=5),
        "audio": audio_only_mp4(d / "audio.mp4"),
    }


@pytest.fixture(scope="module")
def codes_policy() -> Policy:
    return parse_policy(CODES_POLICY)


# ---- with the real models -------------------------------------------------------------
@pytest.mark.models
async def test_qr_section_is_one_blocked_segment(
    moderation: Moderation, videos: dict[str, Path], tmp_path: Path
) -> None:
    seen: list[float] = []
    res = await moderate_video(
        moderation,
        videos["qr"],
        default_policy(),
        extra_lists=BLOCK_EVIL,
        thumbnails_dir=tmp_path / "thumbs",
        progress=seen.append,
    )
    assert res.decision == "block" and not res.stopped_early
    assert [f.timestamp_ms for f in res.frames] == list(range(0, 10_000, 1000))
    flagged = [f for f in res.frames if f.decision != "allow"]
    assert [f.timestamp_ms for f in flagged] == [3000, 4000, 5000]
    assert all(QR_URL in f.codes and QR_URL in f.urls for f in flagged)
    [seg] = res.segments
    assert (seg.start_ms, seg.end_ms, seg.decision, seg.frames) == (3000, 5000, "block", 3)
    assert seg.labels == ["Blocked Domain"] and seg.max_confidence >= 50
    summary = {s.name: s for s in res.labels}["Blocked Domain"]
    assert (summary.first_seen_ms, summary.last_seen_ms, summary.frames) == (3000, 5000, 3)
    assert res.reasons[0].rule == "illegal-ads" and res.reasons[0].action == "block"
    # thumbnails of flagged frames only, named by their content
    for f in res.frames:
        if f.decision == "allow":
            assert f.thumbnail is None
            continue
        assert f.thumbnail is not None
        data = Path(f.thumbnail).read_bytes()
        assert data[:3] == b"\xff\xd8\xff"
        assert Path(f.thumbnail).name == hashlib.sha256(data).hexdigest()[:32] + ".jpg"
    # progress: growing fractions of the duration, ending at 1
    assert len(seen) > 3 and seen == sorted(seen) and seen[-1] == 1.0 and seen[0] > 0
    assert res.media.codec == "h264" and res.media.duration_ms == 10_000
    assert res.media.frames_analyzed == res.media.frames_sampled == 10
    assert set(res.versions) == set(default_policy().analyzers)
    assert res.timings.realtime_factor and res.timings.realtime_factor > 0
    assert res.hashes["sha256"] == hashlib.sha256(videos["qr"].read_bytes()).hexdigest()


@pytest.mark.models
async def test_without_the_blocked_domain_the_video_is_allowed(
    moderation: Moderation, videos: dict[str, Path], codes_policy: Policy
) -> None:
    open_policy = codes_policy.model_copy(update={"lists": Lists()})
    res = await moderate_video(moderation, videos["qr"], open_policy)
    assert res.decision == "allow" and res.segments == [] and res.reasons == []
    assert [f.codes for f in res.frames if f.codes] == [[QR_URL]] * 3


@pytest.mark.models
async def test_early_stop_on_block(
    moderation: Moderation, videos: dict[str, Path], codes_policy: Policy
) -> None:
    whole = await moderate_video(moderation, videos["qr_long"], codes_policy, concurrency=4)
    assert not whole.stopped_early and len(whole.frames) == 30
    [seg] = whole.segments
    assert (seg.start_ms, seg.end_ms, seg.frames) == (5000, 29_000, 25)
    stopped = await moderate_video(
        moderation, videos["qr_long"], codes_policy, early_stop_on_block=True, concurrency=1
    )
    assert stopped.stopped_early and stopped.decision == "block"
    assert [f.timestamp_ms for f in stopped.frames] == list(range(0, 6000, 1000))
    assert stopped.segments[0].start_ms == 5000
    # blocked on the last frame: nothing was left out
    last = await moderate_video(
        moderation, videos["qr_end"], codes_policy, early_stop_on_block=True, concurrency=1
    )
    assert last.decision == "block" and not last.stopped_early and len(last.frames) == 6


@pytest.mark.models
async def test_frames_take_the_image_path_and_its_cache(
    moderation: Moderation, videos: dict[str, Path], codes_policy: Policy
) -> None:
    sampling = VideoSampling(interval_s=2)
    first = await moderate_video(moderation, videos["qr"], codes_policy, sampling)
    again = await moderate_video(moderation, videos["qr"].read_bytes(), codes_policy, sampling)
    assert [f.cached for f in again.frames] == [True] * 5
    strip = {"cached", "thumbnail"}
    assert [f.model_dump(exclude=strip) for f in first.frames] == [
        f.model_dump(exclude=strip) for f in again.frames
    ]


@pytest.mark.models
@pytest.mark.skipif(not OPENCV_DOC.is_dir(), reason="Debian opencv-doc not installed")
async def test_benign_real_videos_are_allowed(moderation: Moderation) -> None:
    clips: list[tuple[Path | None, VideoSampling, int]] = [
        (OPENCV_DOC / "vtest.avi", VideoSampling(interval_s=10), 8),  # 79.5 s
        (OPENCV_DOC / "Megamind.avi", VideoSampling(interval_s=3), 4),
        (bigbuckbunny(), VideoSampling(), 6),  # 5.3 s, one frame per second
    ]
    for path, sampling, count in clips:
        if path is None:
            continue
        res = await moderate_video(moderation, path, default_policy(), sampling)
        assert res.decision == "allow", (path.name, res.reasons)
        assert res.segments == [] and len(res.frames) == count
        assert res.media.duration_ms
        whole = res.media.duration_ms / res.timings.total_ms
        assert res.timings.realtime_factor == pytest.approx(whole, rel=0.01)


@pytest.mark.models
async def test_bad_videos_raise_media_errors(
    moderation: Moderation, videos: dict[str, Path], codes_policy: Policy
) -> None:
    data = videos["qr"].read_bytes()
    cases: list[tuple[bytes | Path, str]] = [
        (data[: len(data) // 2], "corrupt_media"),
        (videos["audio"], "no_video_stream"),
        (b"", "empty_input"),
        (encode(benign_photos()["skimage-coffee"]), "unsupported_media_type"),
    ]
    for source, code in cases:
        with pytest.raises(BastionError) as exc:
            await moderate_video(moderation, source, codes_policy)
        assert exc.value.code == code


# ---- CLI ------------------------------------------------------------------------------------
runner = CliRunner()


def _rows(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.mark.models
def test_cli_scan_video_prints_one_line_and_exits_1_on_block(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    policy = tmp_path / "codes.yaml"
    policy.write_text(CODES_POLICY)
    res = runner.invoke(app, ["scan", str(videos["qr"]), "--policy", str(policy)])
    assert res.exit_code == 1, res.output
    [row] = _rows(res.stdout)
    assert row["kind"] == "video" and row["file"] == str(videos["qr"])
    body = row["result"]
    assert body["decision"] == "block" and body["sampling"]["interval_s"] == 1.0
    assert [(s["start_ms"], s["end_ms"]) for s in body["segments"]] == [(3000, 5000)]


@pytest.mark.models
def test_cli_scan_folder_with_sampling_options(videos: dict[str, Path], tmp_path: Path) -> None:
    policy = tmp_path / "codes.yaml"
    policy.write_text(CODES_POLICY)
    folder = tmp_path / "mixed"
    folder.mkdir()
    # one keyframe a second: --keyframes sees the QR code at 3, 4 and 5 s
    write_video(folder / "clip.bin.mov", qr_frames(10, 3, 6), fps=5, gop=5)
    (folder / "photo.jpg").write_bytes(encode(benign_photos()["skimage-chelsea"]))
    (folder / "notes.txt").write_text("not media")
    base = ["scan", str(folder), "--policy", str(policy), "--no-fail-on-block"]
    res = runner.invoke(app, [*base, "--sample-every", "2"])
    assert res.exit_code == 0, res.output
    rows = {Path(r["file"]).name: r for r in _rows(res.stdout)}
    assert set(rows) == {"clip.bin.mov", "photo.jpg"}
    assert "kind" not in rows["photo.jpg"] and rows["photo.jpg"]["result"]["decision"] == "allow"
    clip = rows["clip.bin.mov"]["result"]
    assert [f["timestamp_ms"] for f in clip["frames"]] == [0, 2000, 4000, 6000, 8000]
    res = runner.invoke(app, [*base, "--keyframes", "--format", "table"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "clip.bin.mov" in res.stdout and "3.0–5.0 s block" in res.stdout.replace("\n", "")
    res = runner.invoke(app, [*base, "--keyframes", "--sample-every", "2"])
    assert res.exit_code == 2


# ---- without models ---------------------------------------------------------------------------
def _frame(ms: int, decision: Decision, label: str = "Weapons", conf: float = 70) -> FrameResult:
    reasons = []
    if decision != "allow":
        reasons = [
            Reason(
                rule="r",
                label=label,
                confidence=conf,
                threshold=60,
                action=decision,
                analyzer="a",
            )
        ]
    return FrameResult(index=ms // 40, timestamp_ms=ms, decision=decision, reasons=reasons)


def test_segments_merge_flagged_frames_within_the_gap() -> None:
    frames = [
        _frame(0, "review"),
        _frame(1000, "allow"),
        _frame(2000, "block", "Blocked Word", 90),
        _frame(3000, "allow"),
        _frame(4000, "allow"),
        _frame(5000, "review", conf=65),
    ]
    assert default_segment_gap_ms(frames) == 2000
    close = video_pipeline._segments(frames, 2000)
    assert [(s.start_ms, s.end_ms, s.decision, s.frames) for s in close] == [
        (0, 2000, "block", 2),
        (5000, 5000, "review", 1),
    ]
    assert close[0].labels == ["Blocked Word", "Weapons"] and close[0].max_confidence == 90
    wide = video_pipeline._segments(frames, 3000)
    assert [(s.start_ms, s.end_ms, s.frames) for s in wide] == [(0, 5000, 3)]
    assert [s.start_ms for s in video_pipeline._segments(frames, 999)] == [0, 2000, 5000]


class _SlowModeration:
    """Stands in for moderation: slow frames, and a record of how far decoding ran ahead."""

    def __init__(self) -> None:
        self.sampled: list[FrameSampler] = []
        self.ahead: list[int] = []
        self.finished = 0

    async def moderate_decoded(
        self,
        decoded: DecodedImage,
        policy: Policy,
        *,
        tenant: str | None = None,
        extra_lists: Lists | None = None,
    ) -> ModerationResult:
        await asyncio.sleep(0.01)
        self.ahead.append(self.sampled[0].frames_sampled - self.finished)
        self.finished += 1
        return frame_result(decoded, policy, total_ms=10)


async def test_decoding_runs_ahead_of_moderation_by_a_bounded_amount(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, codes_policy: Policy
) -> None:
    fake = _SlowModeration()
    real = sample_frames

    def recording(*args: Any, **kw: Any) -> FrameSampler:
        sampler = real(*args, **kw)
        fake.sampled.append(sampler)
        return sampler

    monkeypatch.setattr(video_pipeline, "sample_frames", recording)
    frames = (np.full((48, 64, 3), i % 256, dtype=np.uint8) for i in range(300))
    path = write_video(tmp_path / "many.mp4", frames, fps=10)
    res = await moderate_video(
        fake,  # type: ignore[arg-type]
        path,
        codes_policy,
        VideoSampling(interval_s=0.1),
        concurrency=3,
    )
    assert len(res.frames) == 300
    # in flight (3) + queued (3) + the one being decoded
    assert max(fake.ahead) <= 7, max(fake.ahead)
