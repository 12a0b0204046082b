"""Audio moderation end to end with the real models: Whisper hears espeak-ng speech at
known times, the policy's lists and the toxicity analyzer read what it heard, labels come
back with the time range they were heard in; a video's sound, `bastion scan` of audio
files and videos, and toxicity over text read in pictures.

One spoken track (30 s, three 10 s windows) is moderated once for the module: a plain
sentence, a blocked word, a blocked domain spoken, then an insult, each at a known time
and more than the VAD's two seconds of silence apart.
English is forced (``language: en``) so that Whisper tiny.en transcribes: the fast path.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from typer.testing import CliRunner

from bastion.analyzers.ocr import OcrConfig
from bastion.analyzers.speech import SpeechConfig
from bastion.analyzers.toxicity import ToxicityAnalyzerConfig
from bastion.cli import app
from bastion.errors import BastionError
from bastion.media.types import AudioWindow
from bastion.pipeline.audio import AudioLabel, AudioResult, moderate_audio
from bastion.pipeline.engine import Engine
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.video import moderate_video
from bastion.policy.model import Policy
from tests.support import textimages as ti
from tests.support.media import benign_photos
from tests.support.media import encode as encode_image
from tests.support.settings import make_settings
from tests.support.speech import (
    SpokenSpan,
    SpokenTrack,
    encode,
    silent_video,
    speech_video,
    speech_wav,
    spoken_track,
    wav_duration,
)

pytestmark = pytest.mark.models

PLAIN = "The weather is lovely today and we are going to the park."
GAMBLING = "The casino is open tonight."
DOMAIN = "Visit example dot com for great deals."
INSULT = "You are a stupid idiot and I hate you."
TRACK = ((1.0, PLAIN, "en"), (11.0, GAMBLING, "en"), (16.5, DOMAIN, "en"), (21.5, INSULT, "en"))

POLICY_YAML = """\
name: spoken
analyzers: [speech, toxicity]
rules:
  - categories: [Blocked Word, Blocked Domain]
    block: 50
  - categories: [Toxic Speech]
    review: 50
lists:
  blocked_words: [casino]
  blocked_domains: [example.com]
"""

SLACK_S = 0.6
"""How far a segment's times may lie outside the span the words were laid at (espeak's
quiet ends, the VAD's padding, Whisper's timestamps)."""


def spoken_policy() -> Policy:
    return Policy.model_validate(
        {
            "name": "spoken",
            "analyzers": ["speech", "toxicity"],
            "rules": [
                {"categories": ["Blocked Word", "Blocked Domain"], "block": 50},
                {"categories": ["Toxic Speech"], "review": 50},
            ],
            "lists": {"blocked_words": ["casino"], "blocked_domains": ["example.com"]},
        }
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def moderation(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Moderation]:
    settings = make_settings(
        tmp_path_factory.mktemp("audio"),
        analyzers=[
            SpeechConfig(language="en"),
            ToxicityAnalyzerConfig(lines_from=None),  # OCR's lines too, not speech alone
            OcrConfig(),
        ],
    )
    engine = Engine(settings)
    assert not engine.load_all()
    yield Moderation(engine)
    await engine.close()


@pytest.fixture(scope="module")
def track() -> SpokenTrack:
    return spoken_track(TRACK, 30.0)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def heard(moderation: Moderation, track: SpokenTrack) -> AudioResult:
    fractions: list[float] = []
    result = await moderate_audio(
        moderation,
        encode(track.wav, "mp3"),
        spoken_policy(),
        window_s=10,
        progress=fractions.append,
    )
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0
    return result


def alone(text: str) -> bytes:
    """``text`` said once, with a second of silence before it (WAV bytes)."""
    return spoken_track(((1.0, text, "en"),), round(wav_duration(speech_wav(text)) + 2.0, 1)).wav


def span_of(track: SpokenTrack, text: str) -> SpokenSpan:
    return next(s for s in track.spans if s.text == text)


def within(label: AudioLabel, span: SpokenSpan) -> bool:
    return span.start_s - SLACK_S <= label.start_s < label.end_s <= span.end_s + SLACK_S


def labels_named(result: AudioResult, name: str) -> list[AudioLabel]:
    return [lab for lab in result.labels if lab.name == name]


def test_a_spoken_blocked_word_is_blocked_in_the_time_range_it_was_said(
    heard: AudioResult, track: SpokenTrack
) -> None:
    (word,) = labels_named(heard, "Blocked Word")
    assert word.source == "text:casino" and word.text and "casino" in word.text.lower()
    assert within(word, span_of(track, GAMBLING)), (word, span_of(track, GAMBLING))
    assert word.end_s - word.start_s < 1.5, word  # the word's own times, not the sentence's
    assert heard.decision == "block"
    # the second window (10-20 s) holds it; the first, plain speech only, is allowed
    assert [(w.start_s, w.end_s, w.decision) for w in heard.windows] == [
        (0.0, 10.0, "allow"),
        (10.0, 20.0, "block"),
        (20.0, 30.0, "review"),
    ]
    assert [(s.start_s, s.end_s, s.decision, s.windows) for s in heard.segments] == [
        (10.0, 30.0, "block", 2)
    ]


def test_a_spoken_domain_is_a_blocked_domain_in_its_time_range(
    heard: AudioResult, track: SpokenTrack
) -> None:
    (domain,) = labels_named(heard, "Blocked Domain")
    assert domain.source is not None and "example.com" in domain.source
    assert within(domain, span_of(track, DOMAIN)), domain


def test_an_insult_is_toxic_speech_and_plain_speech_is_not(
    heard: AudioResult, track: SpokenTrack
) -> None:
    toxic = [lab for lab in heard.labels if lab.parent == "Toxic Speech"]
    assert "Insults" in {lab.name for lab in toxic}
    assert all(within(lab, span_of(track, INSULT)) for lab in toxic), toxic
    assert all(lab.analyzer == "toxicity" and lab.source == "line:speech:0" for lab in toxic)
    plain = span_of(track, PLAIN)
    assert not [lab for lab in heard.labels if lab.start_s < plain.end_s + SLACK_S]


def test_the_transcript_has_every_sentence_with_its_times_and_words(
    heard: AudioResult, track: SpokenTrack
) -> None:
    assert heard.language == "en" and heard.media.format == "MP3 audio"
    assert heard.media.windows == 3 and heard.media.duration_s == pytest.approx(30.0, abs=0.1)
    said = " ".join(seg.text.lower() for seg in heard.transcript)
    for keyword in ("park", "casino", "example", "stupid"):
        assert keyword in said, said
    for seg in heard.transcript:
        assert seg.words and seg.analyzer == "speech" and seg.language == "en"
        assert seg.start_s <= seg.words[0].start_s <= seg.words[-1].end_s <= seg.end_s + 0.01
        assert any(seg.start_s < s.end_s and s.start_s < seg.end_s for s in track.spans), seg
    assert not heard.errors and heard.undetectable == []
    assert set(heard.versions) == {"speech", "toxicity"}
    assert heard.versions["speech"].startswith("whisper-base-")


async def test_the_same_window_again_comes_from_the_cache(moderation: Moderation) -> None:
    samples = np.zeros(16_000, dtype=np.float32)
    window = AudioWindow(samples=samples, sample_rate=16_000, start_s=0.0, end_s=1.0)
    first = await moderation.moderate_audio_window(window, spoken_policy())
    again = await moderation.moderate_audio_window(window, spoken_policy())
    elsewhere = await moderation.moderate_audio_window(
        AudioWindow(samples=samples, sample_rate=16_000, start_s=5.0, end_s=6.0), spoken_policy()
    )
    assert (first.cached, again.cached, elsewhere.cached) == (False, True, False)
    assert first.decision == "allow" and first.transcript == [] and not first.errors


async def test_a_policy_without_speech_refuses_audio(moderation: Moderation) -> None:
    with pytest.raises(BastionError) as caught:
        await moderate_audio(moderation, speech_wav(PLAIN), Policy(name="p", analyzers=["ocr"]))
    assert caught.value.code == "no_audio_analyzer"


async def test_a_video_with_speech_carries_its_audio_and_a_silent_one_none(
    moderation: Moderation,
) -> None:
    talking = await moderate_video(moderation, speech_video(alone(GAMBLING)), spoken_policy())
    assert talking.audio is not None
    assert "casino" in " ".join(s.text.lower() for s in talking.audio.transcript)
    assert [lab.name for lab in talking.audio.labels] == ["Blocked Word"]
    assert talking.decision == "block" == talking.audio.decision
    assert [f.decision for f in talking.frames] == ["allow"] * len(talking.frames)
    assert any(r.label == "Blocked Word" for r in talking.reasons)

    silent = await moderate_video(moderation, silent_video(), spoken_policy())
    assert silent.audio is None and not silent.errors and silent.decision == "allow"
    assert silent.model_dump(mode="json")["audio"] is None


async def test_text_in_a_picture_reaches_the_toxicity_analyzer(moderation: Moderation) -> None:
    photo = ti.banner(benign_photos()["skimage-chelsea"], "en", text="You stupid idiot")
    policy = Policy.model_validate(
        {
            "name": "written",
            "analyzers": ["ocr", "toxicity"],
            "rules": [{"categories": ["Toxic Speech"], "review": 50}],
        }
    )
    result = await moderation.moderate_bytes(encode_image(photo, "PNG"), policy)
    toxic = [lab for lab in result.labels if lab.parent == "Toxic Speech"]
    assert "Insults" in {lab.name for lab in toxic}, (result.text, result.labels)
    assert all(lab.source and lab.source.startswith("line:ocr:") for lab in toxic)
    assert result.decision == "review" and result.transcript == []


def test_scan_prints_audio_and_video_results_with_their_transcripts(tmp_path: Path) -> None:
    config = tmp_path / "bastion.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "analyzers:\n  - {type: speech, language: en}\n  - {type: toxicity}\n"
    )
    policy = tmp_path / "spoken.yaml"
    policy.write_text(POLICY_YAML)
    spoken = tmp_path / "spoken.mp3"
    spoken.write_bytes(encode(alone(GAMBLING), "mp3"))
    film = tmp_path / "film.mp4"
    film.write_bytes(speech_video(alone(PLAIN)))
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(spoken.read_bytes()[:10] + bytes(4000))
    args = ["scan", str(spoken), str(film), str(broken), "--policy", str(policy)]
    res = CliRunner().invoke(app, [*args, "--config", str(config)])
    assert res.exit_code == 1, res.output  # the blocked word blocks
    rows = {
        Path(r["file"]).name: r
        for r in (json.loads(line) for line in res.stdout.splitlines() if line.startswith("{"))
    }
    audio = rows["spoken.mp3"]
    assert audio["kind"] == "audio" and audio["result"]["decision"] == "block"
    assert "casino" in " ".join(s["text"].lower() for s in audio["result"]["transcript"])
    assert [lab["name"] for lab in audio["result"]["labels"]] == ["Blocked Word"]
    video = rows["film.mp4"]
    assert video["kind"] == "video" and video["result"]["decision"] == "allow"
    said = " ".join(s["text"].lower() for s in video["result"]["audio"]["transcript"])
    assert "lovely" in said and "park" in said
    assert rows["broken.mp3"]["error"]["code"] == "corrupt_media"
