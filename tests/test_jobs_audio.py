"""Audio jobs through the API and the worker, and their subtitles.

Two spoken jobs run once for the module (Whisper on a few seconds of espeak-ng speech):
an English MP3 (a plain sentence at 1 s, a blocked word at 8 s) whose request forces
English over a policy that says Spanish, and a Spanish track the policy alone forces to
Spanish. Silent audio files (FLAC, M4A, WebM) go through the VAD without reaching
Whisper, so the sniffing tests stay cheap.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import srt  # type: ignore[import-untyped]

from bastion.jobs.audio_job import Listening, job_listening
from bastion.jobs.config import JobsConfig
from bastion.jobs.tables import Job
from bastion.pipeline.engine import Engine
from bastion.policy.model import Policy
from tests.support.app import Api, running
from tests.support.auth import AUTH
from tests.support.jobs import wait_for
from tests.support.settings import make_settings
from tests.support.speech import (
    SENTENCES,
    SpokenTrack,
    encode,
    silence_wav,
    silent_video,
    speech_wav,
    spoken_track,
)
from tests.support.wer import word_error_rate

PLAIN = "The weather is lovely today and we are going to the park."
GAMBLING = "The casino is open tonight."
TRACK = ((1.0, PLAIN, "en"), (8.0, GAMBLING, "en"))
START_SLACK_S = 0.7

SPOKEN_ES = """\
name: spoken-es
analyzers: [speech, toxicity]
speech:
  language: es
rules:
  - categories: [Blocked Word]
    block: 50
  - categories: [Toxic Speech]
    review: 60
lists:
  blocked_words: [casino]
"""
PICTURES = """\
name: pictures
analyzers: [nsfw]
rules:
  - categories: [Explicit Nudity]
    block: 85
"""


@pytest.fixture(scope="module")
def track() -> SpokenTrack:
    return spoken_track(TRACK, 12.0)


@pytest_asyncio.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> AsyncIterator[Api]:
    root = tmp_path_factory.mktemp("audio-jobs")
    policies = root / "policies"
    policies.mkdir()
    (policies / "spoken-es.yaml").write_text(SPOKEN_ES)
    (policies / "pictures.yaml").write_text(PICTURES)
    settings = make_settings(
        root / "data", policies_dir=policies, jobs=JobsConfig(poll_s=0.05, lease_s=10)
    )
    async with running(settings, engine) as started:
        yield started


async def _post(
    api: Api, data: bytes, content_type: str, **params: str
) -> tuple[int, dict[str, Any]]:
    r = await api.client.post(
        "/v1/jobs", content=data, params=params, headers={**AUTH, "Content-Type": content_type}
    )
    body: dict[str, Any] = r.json()
    return r.status_code, body


async def _done(api: Api, job_id: str) -> dict[str, Any]:
    return await wait_for(api.client, job_id, {"succeeded", "failed"}, timeout=300)


@pytest_asyncio.fixture(scope="module")
async def spoken(api: Api, track: SpokenTrack) -> dict[str, Any]:
    """The English job, and what its subtitles answered while it was still running."""
    status, job = await _post(
        api, encode(track.wav, "mp3"), "audio/mpeg", policy="spoken-es", language="en"
    )
    assert status == 202, job
    early = await api.client.get(f"/v1/jobs/{job['id']}/subtitles.srt", headers=AUTH)
    done = await _done(api, job["id"])
    return {"job": done, "early": (early.status_code, early.json())}


@pytest_asyncio.fixture(scope="module")
async def spanish(api: Api) -> dict[str, Any]:
    status, job = await _post(
        api, encode(speech_wav(SENTENCES["es"], "es"), "opus"), "audio/ogg", policy="spoken-es"
    )
    assert status == 202, job
    return await _done(api, job["id"])


# -- spoken jobs (Whisper) ----------------------------------------------------------


@pytest.mark.models
def test_an_audio_job_transcribes_and_labels_in_time(
    spoken: dict[str, Any], track: SpokenTrack
) -> None:
    job = spoken["job"]
    assert job["status"] == "succeeded" and job["kind"] == "audio", job
    result = job["result"]
    assert result["media"]["format"] == "MP3 audio" and result["language"] == "en"
    said = " ".join(seg["text"] for seg in result["transcript"])
    assert word_error_rate(f"{PLAIN} {GAMBLING}", said) <= 0.25, said
    assert all(seg["words"] for seg in result["transcript"])
    assert result["decision"] == "block" and result["policy"] == "spoken-es"
    (word,) = [lab for lab in result["labels"] if lab["name"] == "Blocked Word"]
    gambling = track.spans[1]
    assert gambling.start_s - 0.6 <= word["start_s"] < word["end_s"] <= gambling.end_s + 0.6
    assert job["options"] == {"audio": {"language": "en"}}
    assert job["progress"] == 1.0


@pytest.mark.models
def test_the_policy_forces_the_language_when_the_request_does_not(
    spanish: dict[str, Any],
) -> None:
    assert spanish["status"] == "succeeded" and spanish["kind"] == "audio", spanish
    result = spanish["result"]
    assert result["language"] == "es" and result["media"]["format"] == "Ogg media"
    assert {seg["language"] for seg in result["transcript"]} == {"es"}
    said = " ".join(seg["text"] for seg in result["transcript"])
    assert word_error_rate(SENTENCES["es"], said) <= 0.5, said


@pytest.mark.models
def test_subtitles_are_refused_until_the_job_succeeded(spoken: dict[str, Any]) -> None:
    status, body = spoken["early"]
    assert status == 409 and body["error"]["code"] == "job_not_succeeded", body


@pytest.mark.models
async def test_srt_subtitles_follow_the_speech(
    api: Api, spoken: dict[str, Any], track: SpokenTrack
) -> None:
    r = await api.client.get(f"/v1/jobs/{spoken['job']['id']}/subtitles.srt", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-subrip; charset=utf-8"
    cues = list(srt.parse(r.text))
    assert cues and [c.index for c in cues] == list(range(1, len(cues) + 1))
    first = cues[0].start.total_seconds()
    assert abs(first - track.spans[0].start_s) <= START_SLACK_S, first
    for cue, after in itertools.pairwise(cues):
        assert cue.start < cue.end <= after.start
    for cue in cues:
        assert (cue.end - cue.start).total_seconds() <= 7.0 and len(cue.content) <= 84 + 2
    text = " ".join(c.content for c in cues)
    assert word_error_rate(f"{PLAIN} {GAMBLING}", text) <= 0.25, text


@pytest.mark.models
async def test_vtt_subtitles_have_the_header_and_cue_times(
    api: Api, spoken: dict[str, Any], track: SpokenTrack
) -> None:
    r = await api.client.get(f"/v1/jobs/{spoken['job']['id']}/subtitles.vtt", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/vtt; charset=utf-8"
    lines = r.text.split("\n")
    assert lines[0] == "WEBVTT" and lines[1] == ""
    times = [
        re.fullmatch(r"(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})", line)
        for line in lines
        if "-->" in line
    ]
    assert times and all(times), lines

    def seconds(h: str, m: str, s: str, ms: str) -> float:
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    spans = [(seconds(*t.groups()[:4]), seconds(*t.groups()[4:])) for t in times if t is not None]
    assert abs(spans[0][0] - track.spans[0].start_s) <= START_SLACK_S, spans
    for (start, end), (after, _) in itertools.pairwise(spans):
        assert start < end <= after


@pytest.mark.models
async def test_another_tenant_gets_no_subtitles(api: Api, spoken: dict[str, Any]) -> None:
    other = await api.tenant()
    for fmt in ("srt", "vtt"):
        r = await api.client.get(f"/v1/jobs/{spoken['job']['id']}/subtitles.{fmt}", headers=other)
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found", r.text
        r = await api.client.get(f"/v1/jobs/{spoken['job']['id']}/subtitles.{fmt}")
        assert r.status_code == 401


# -- files without speech: no Whisper -------------------------------------------------


@pytest.mark.models
@pytest.mark.parametrize(
    ("fmt", "content_type", "format_name"),
    [
        ("flac", "audio/flac", "FLAC audio"),
        ("m4a", "audio/mp4", "MPEG-4 audio"),
        ("webm", "audio/webm", "WebM/Matroska video"),  # told from a video by its streams
    ],
)
async def test_audio_files_are_audio_jobs(
    api: Api, fmt: str, content_type: str, format_name: str
) -> None:
    status, job = await _post(api, encode(silence_wav(2.0), fmt), content_type, policy="spoken-es")
    assert status == 202 and job["kind"] == "audio", job
    done = await _done(api, job["id"])
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert result["media"]["format"] == format_name and result["transcript"] == []
    assert result["decision"] == "allow" and result["media"]["duration_s"] > 1.5
    r = await api.client.get(f"/v1/jobs/{job['id']}/subtitles.vtt", headers=AUTH)
    assert r.status_code == 200 and r.text == "WEBVTT\n", r.text


@pytest.mark.models
async def test_a_silent_video_under_the_default_policy_has_no_transcript(api: Api) -> None:
    status, job = await _post(api, silent_video(), "video/mp4")
    assert status == 202 and job["kind"] == "video", job
    done = await _done(api, job["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["audio"] is None and done["result"]["policy"] == "default"
    for fmt in ("srt", "vtt"):
        r = await api.client.get(f"/v1/jobs/{job['id']}/subtitles.{fmt}", headers=AUTH)
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_transcript", r.text


# -- refused at the door --------------------------------------------------------------


@pytest.mark.models
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(lambda: encode(speech_wav(GAMBLING), "mp3")[:10] + bytes(4000), id="mp3-cut"),
        pytest.param(lambda: b"fLaC" + bytes(range(256)) * 24, id="flac-magic-junk"),
        pytest.param(lambda: b"OggS" + bytes(range(255, -1, -1)) * 24, id="ogg-magic-junk"),
        pytest.param(
            lambda: b"RIFF\x00\x18\x00\x00WAVEfmt " + bytes(range(256)) * 24, id="wav-magic-junk"
        ),
    ],
)
async def test_corrupt_audio_is_refused_with_its_media_error(api: Api, data: Any) -> None:
    status, body = await _post(api, data(), "audio/mpeg", policy="spoken-es")
    assert status == 422 and body["error"]["code"] == "corrupt_media", body


@pytest.mark.models
async def test_audio_under_a_policy_without_speech_is_refused(api: Api) -> None:
    status, body = await _post(
        api, encode(silence_wav(1.0), "flac"), "audio/flac", policy="pictures"
    )
    assert status == 422 and body["error"]["code"] == "no_audio_analyzer", body


@pytest.mark.models
async def test_a_language_whisper_does_not_know_is_refused(api: Api) -> None:
    wav = encode(silence_wav(1.0), "wav")
    status, body = await _post(api, wav, "audio/wav", policy="spoken-es", language="qq")
    assert status == 400 and body["error"]["code"] == "unsupported_language", body
    status, body = await _post(api, wav, "audio/wav", policy="spoken-es", language="Spanish")
    assert status == 422, body


# -- the language a job forces ----------------------------------------------------------


def _policy(language: str | None, languages: list[str] | None = None) -> Policy:
    speech: dict[str, object] = {}
    if language or languages:
        speech = {"speech": {"language": language, "languages": languages}}
    return Policy.model_validate({"name": "p", "analyzers": ["speech"], **speech})


def test_the_request_language_overrides_the_policy_language() -> None:
    asked = Job(options={"audio": {"language": "en"}})
    plain = Job(options=None)
    assert job_listening(asked, _policy("es")) == Listening("en", None)
    assert job_listening(plain, _policy("es")) == Listening("es", None)
    assert job_listening(plain, _policy(None)) == Listening()
    assert job_listening(Job(options={"video": {"max_frames": 3}}), _policy(None)) == Listening()


def test_the_request_languages_override_the_policy_languages() -> None:
    among = Job(options={"audio": {"languages": ["de", "en"]}})
    assert job_listening(among, _policy(None, ["es", "fr"])) == Listening(None, ("de", "en"))
    assert job_listening(Job(options=None), _policy(None, ["es"])) == Listening(None, ("es",))
    # a request that forces a language drops the policy's restriction with it
    forced = Job(options={"audio": {"language": "fr"}})
    assert job_listening(forced, _policy(None, ["es"])) == Listening("fr", None)


async def test_languages_outside_what_whisper_knows_are_refused(api: Api) -> None:
    wav = encode(silence_wav(1.0), "wav")
    status, body = await _post(api, wav, "audio/wav", policy="spoken-es", languages="en,qq")
    assert status == 400 and body["error"]["code"] == "unsupported_language", body
    status, body = await _post(api, wav, "audio/wav", policy="spoken-es", languages="en;de")
    assert status == 422, body


def test_speech_options_leave_the_version_of_other_policies_alone() -> None:
    bare = Policy.model_validate({"name": "p", "analyzers": ["speech"]})
    content = {k: v for k, v in bare.model_dump(mode="json").items() if k != "speech"}
    canon = json.dumps(content, sort_keys=True, ensure_ascii=False)
    assert bare.version == hashlib.sha256(canon.encode()).hexdigest()[:12]
    assert bare.version != _policy("es").version
    assert _policy("es").version != _policy("de").version
