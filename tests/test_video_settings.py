"""Video settings: the `video` section, per-job and per-scan overrides, `bastion scan`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from bastion.cli import app
from bastion.config import Settings, load_settings
from bastion.errors import InputError
from bastion.media.video import VideoSampling
from bastion.media.video_config import VideoConfig, VideoOptions
from tests.support.jobs import CODES_POLICY
from tests.support.video import qr_video

runner = CliRunner()


def test_overrides_apply_to_the_configured_sampling() -> None:
    config = VideoConfig(
        sampling=VideoSampling(mode="keyframes", min_gap_s=2, max_frames=100),
        early_stop_on_block=True,
    )
    assert VideoOptions().sampling(config) == config.sampling
    assert VideoOptions().early_stop(config) is True
    every = VideoOptions(sample_every=0.5).sampling(config)
    assert (every.mode, every.interval_s, every.min_gap_s) == ("interval", 0.5, 2)
    assert VideoOptions(keyframes_only=False).sampling(config).mode == "interval"
    assert VideoOptions(keyframes_only=True).sampling(VideoConfig()).mode == "keyframes"
    assert VideoOptions(max_frames=10).sampling(config).max_frames == 10
    assert VideoOptions(max_frames=500).sampling(config).max_frames == 100  # clamped
    assert VideoOptions(stop_on_block=False).early_stop(config) is False


def test_bad_overrides_get_a_stable_code() -> None:
    for values in (
        {"sample_every": 0},
        {"sample_every": 5000},
        {"max_frames": 0},
        {"sample_every": 1, "keyframes_only": True},
        {"sampling": "scene"},
    ):
        with pytest.raises(InputError) as caught:
            VideoOptions.parse(values)
        assert caught.value.code == "invalid_video_options" and caught.value.status == 400
    options = VideoOptions.parse({"max_frames": 101, "sample_every": None})
    with pytest.raises(InputError) as caught:
        options.check(VideoConfig(sampling=VideoSampling(max_frames=100)))
    assert caught.value.code == "invalid_video_options"
    assert caught.value.details == {"max_frames": 101, "limit": 100}


def test_video_settings_from_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().video == VideoConfig()
    cfg = tmp_path / "bastion.yaml"
    cfg.write_text(
        "video:\n"
        "  limits: {max_duration_s: 60, max_pixels: 2000000}\n"
        "  sampling: {mode: scene, max_frames: 300}\n"
        "  early_stop_on_block: true\n"
    )
    settings = load_settings(cfg)
    assert settings.video.limits.max_duration_s == 60
    assert settings.video.limits.max_pixels == 2_000_000
    assert settings.video.sampling.mode == "scene" and settings.video.sampling.max_frames == 300
    assert settings.video.early_stop_on_block is True
    monkeypatch.setenv("BASTION_VIDEO__SAMPLING__INTERVAL_S", "4")
    assert Settings().video.sampling.interval_s == 4
    cfg.write_text("video:\n  sampling: {every: 3}\n")
    with pytest.raises(ValidationError):
        load_settings(cfg)
    # every field says what it is for
    for model in (VideoConfig, VideoOptions):
        assert all(f.description for f in model.model_fields.values()), model


@pytest.mark.models
def test_scan_uses_the_video_settings(tmp_path: Path) -> None:
    clip = qr_video(tmp_path / "qr.mp4")  # QR code from 3 to 6 s
    policy = tmp_path / "codes.yaml"
    policy.write_text(CODES_POLICY)
    cfg = tmp_path / "bastion.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "video:\n"
        "  sampling: {interval_s: 2, max_frames: 20}\n"
        "  early_stop_on_block: true\n"
        "  concurrency: 1\n"
    )
    base = ["scan", str(clip), "--policy", str(policy), "--config", str(cfg)]

    def frames(*extra: str) -> tuple[list[int], bool]:
        res = runner.invoke(app, [*base, "--no-fail-on-block", *extra])
        assert res.exit_code == 0, res.output
        [row] = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
        body = row["result"]
        return [f["timestamp_ms"] for f in body["frames"]], body["stopped_early"]

    # every 2 s, stopping at the first blocked frame (4 s)
    assert frames() == ([0, 2000, 4000], True)
    assert frames("--no-stop-on-block") == ([0, 2000, 4000, 6000, 8000], False)
    assert frames("--no-stop-on-block", "--max-frames", "2") == ([0, 5000], False)
    assert frames("--sample-every", "3", "--no-stop-on-block") == ([0, 3000, 6000, 9000], False)
    res = runner.invoke(app, [*base, "--max-frames", "21"])
    assert res.exit_code == 2 and "invalid_video_options" in res.output
