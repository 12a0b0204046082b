"""Video jobs: configured limits and sampling, per-job overrides, linked thumbnails."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from bastion.media.video import VideoLimits, VideoSampling
from bastion.media.video_config import VideoConfig
from bastion.pipeline.engine import Engine
from tests.support.app import running
from tests.support.auth import AUTH
from tests.support.jobs import CODES_POLICY, wait_for
from tests.support.settings import JobBackend
from tests.support.timecoded import WORDS_POLICY, coded, encode, joined, qr_clip
from tests.support.video import qr_video

MP4 = {**AUTH, "Content-Type": "video/mp4"}
pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("policies")
    (d / "codes-only.yaml").write_text(CODES_POLICY)
    (d / "words-in-codes.yaml").write_text(WORDS_POLICY)
    return d


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    # two MPEG-TS clips joined byte for byte (timestamps restart at 6 s); a blocked word
    # from 9 to 11 s
    parts = [qr_clip(d / "a.ts", 6), qr_clip(d / "b.ts", 6, (3, 5))]
    plain = encode(d / "plain.mp4", coded(range(12), noisy=True), options={"movflags": "faststart"})
    cut = d / "cut.mp4"
    cut.write_bytes(plain.read_bytes()[: plain.stat().st_size // 2])
    return {
        "qr": qr_video(d / "qr.mp4"),  # 10 s, QR code from 3 to 6 s
        "long": qr_video(d / "long.mp4", seconds=30, qr_from=20, qr_to=30),
        "joined": joined(d / "joined.ts", parts),
        "cut": cut,  # a clean video cut in half
    }


async def _run(
    client: httpx.AsyncClient,
    clip: Path,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, object]:
    r = await client.post(
        "/v1/jobs",
        content=clip.read_bytes(),
        params={"policy": "codes-only", **(params or {})},
        headers=headers or MP4,
    )
    assert r.status_code == 202, r.text
    return await wait_for(client, r.json()["id"], {"succeeded", "failed"}, timeout=120)


async def test_flagged_frames_link_their_thumbnails(
    engine: Engine,
    tmp_path: Path,
    policies: Path,
    clips: dict[str, Path],
    job_backend: JobBackend,
) -> None:
    settings = job_backend.settings(
        tmp_path, policies_dir=policies, jobs={"poll_s": 0.05, "lease_s": 5}
    )
    async with running(settings, engine) as api:
        client = api.client
        done = await _run(client, clips["qr"])
        assert done["status"] == "succeeded", done
        result = done["result"]
        assert isinstance(result, dict) and result["decision"] == "block"
        job_id = done["id"]
        flagged = [f for f in result["frames"] if f["decision"] != "allow"]
        assert [f["timestamp_ms"] for f in flagged] == [3000, 4000, 5000]
        assert all(f["thumbnail"] is None for f in result["frames"] if f["decision"] == "allow")
        for frame in flagged:
            url = frame["thumbnail"]
            prefix = f"/v1/jobs/{job_id}/thumbnails/"
            assert url.startswith(prefix) and len(url) == len(prefix) + 36, url
            r = await client.get(url, headers=AUTH)
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
            assert r.content[:3] == b"\xff\xd8\xff"
            assert url.endswith(hashlib.sha256(r.content).hexdigest()[:32] + ".jpg")
            assert (await client.get(url)).status_code == 401
        # stored per job under the data folder, nowhere else
        folder = tmp_path / "thumbnails" / str(job_id)
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            {f["thumbnail"].rsplit("/", 1)[1] for f in flagged}
        )

        # another tenant cannot see them
        r = await client.post("/v1/tenants", json={"id": "other", "name": "Other"}, headers=AUTH)
        other = {"Authorization": f"Bearer {r.json()['admin_key']['key']}"}
        r = await client.get(flagged[0]["thumbnail"], headers=other)
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
        # nothing outside the job's folder can be named
        base = f"/v1/jobs/{job_id}/thumbnails"
        for name in (
            "..%2F..%2Fbastion.db",
            "%2e%2e",
            "%2e%2e%2f%2e%2e%2fmedia",
            "0" * 32 + ".png",
            "0" * 32 + ".jpg",
            "bastion.db",
        ):
            r = await client.get(f"{base}/{name}", headers=AUTH)
            assert r.status_code == 404, (name, r.text)
        r = await client.get(f"{base}/{'0' * 32}.jpg", headers=AUTH)
        assert r.json()["error"]["code"] == "thumbnail_not_found"
        r = await client.get(f"/v1/jobs/job_{'0' * 32}/thumbnails/{'0' * 32}.jpg", headers=AUTH)
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"


async def test_jobs_override_the_configured_sampling(
    engine: Engine,
    tmp_path: Path,
    policies: Path,
    clips: dict[str, Path],
    job_backend: JobBackend,
) -> None:
    video = VideoConfig(
        sampling=VideoSampling(interval_s=2, max_frames=50),
        limits=VideoLimits(max_duration_s=20),
        thumbnails=False,
    )
    settings = job_backend.settings(
        tmp_path, policies_dir=policies, video=video, jobs={"poll_s": 0.05, "lease_s": 5}
    )
    async with running(settings, engine) as api:
        client = api.client
        # the configured defaults: every 2 s, no thumbnails
        done = await _run(client, clips["qr"])
        result = done["result"]
        assert isinstance(result, dict)
        assert [f["timestamp_ms"] for f in result["frames"]] == [0, 2000, 4000, 6000, 8000]
        assert result["sampling"]["interval_s"] == 2 and result["decision"] == "block"
        assert all(f["thumbnail"] is None for f in result["frames"])
        # the job's own choice
        done = await _run(client, clips["qr"], {"sample_every": "3", "max_frames": "4"})
        result = done["result"]
        assert isinstance(result, dict)
        assert [f["timestamp_ms"] for f in result["frames"]] == [0, 3000, 6000, 9000]
        assert done["options"] == {"video": {"sample_every": 3.0, "max_frames": 4}}
        done = await _run(client, clips["qr"], {"max_frames": "2"})  # spread over the video
        result = done["result"]
        assert isinstance(result, dict)
        assert [f["timestamp_ms"] for f in result["frames"]] == [0, 5000]
        done = await _run(client, clips["qr"], {"sample_every": "1", "stop_on_block": "true"})
        result = done["result"]
        assert isinstance(result, dict) and result["stopped_early"] is True
        assert result["decision"] == "block" and result["frames"][-1]["timestamp_ms"] < 9000
        # the configured limits: a 30 s video is over max_duration_s
        done = await _run(client, clips["long"])
        assert done["status"] == "failed"
        assert done["error"] == {
            "code": "media_too_large",
            "message": "the video lasts 30 s; at most 20 s are accepted",
        }
        r = await client.post(
            "/v1/jobs", content=clips["qr"].read_bytes(), params={"max_frames": "51"}, headers=MP4
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_video_options"


async def test_video_jobs_follow_the_content_not_the_timestamps(
    engine: Engine,
    tmp_path: Path,
    policies: Path,
    clips: dict[str, Path],
    job_backend: JobBackend,
) -> None:
    settings = job_backend.settings(
        tmp_path, policies_dir=policies, jobs={"poll_s": 0.05, "lease_s": 5}
    )
    ts = {**AUTH, "Content-Type": "video/mp2t"}
    words = {"policy": "words-in-codes"}
    async with running(settings, engine) as api:
        client = api.client
        # the blocked word after the timestamp reset is found, at its place in the content
        done = await _run(client, clips["joined"], words, ts)
        result = done["result"]
        assert done["status"] == "succeeded" and isinstance(result, dict), done
        assert result["decision"] == "block" and result["complete"] is True
        assert [f["timestamp_ms"] for f in result["frames"]] == list(range(0, 12_000, 1000))
        flagged = [f["timestamp_ms"] for f in result["frames"] if f["decision"] != "allow"]
        assert flagged == [9000, 10_000]
        media = result["media"]
        assert media["duration_ms"] == 12_000 and media["declared_duration_ms"] < 12_000
        assert media["discontinuity_count"] == 1
        assert [(d["at_ms"], d["kind"]) for d in media["discontinuities"]] == [(6000, "backwards")]
        # a video that could not be analysed to its end is not allowed
        done = await _run(client, clips["cut"], words)
        result = done["result"]
        assert done["status"] == "succeeded" and isinstance(result, dict), done
        assert result["decision"] == "review" and result["complete"] is False
        [error] = [e for e in result["errors"] if e["code"] == "video_incomplete"]
        assert "truncated" in error["message"]
