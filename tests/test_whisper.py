"""Offline speech recognition: the Whisper model files and the transcriber.

Speech is rendered by espeak-ng (a robotic voice Whisper was never trained on), so the
error bounds per language are what Whisper base reaches on it, with some margin, and
not what it reaches on people: they catch a broken model, a wrong language or lost
words. Error rates and real-time factors are printed (``pytest -s``).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from bastion.errors import MediaError
from bastion.models import whisper_files
from bastion.models.whisper import SAMPLE_RATE, Transcript, UnsupportedLanguage, WhisperTranscriber
from bastion.models.whisper_config import WhisperConfig
from bastion.runtime.config import RuntimeConfig
from tests.support.speech import VOICES, encode, speech_wav, spoken_track, wav_samples
from tests.support.wer import error_rate

pytestmark = pytest.mark.models

# Three plain sentences per language (Japanese in kana: espeak-ng reads no kanji).
PASSAGES: dict[str, str] = {
    "en": "The weather is lovely today and we are going to the park. My sister will bring "
    "some sandwiches and a bottle of cold water. After lunch we want to play football with "
    "our friends until the evening.",
    "de": "Heute ist das Wetter schön und wir gehen in den Park. Meine Schwester bringt Brot "
    "und eine Flasche kaltes Wasser mit. Nach dem Essen spielen wir mit unseren Freunden "
    "Fußball bis zum Abend.",
    "es": "Hoy hace muy buen tiempo y vamos al parque. Mi hermana trae unos bocadillos y una "
    "botella de agua fría. Después de comer queremos jugar al fútbol con nuestros amigos "
    "hasta la noche.",
    "fr": "Il fait très beau aujourd'hui et nous allons au parc. Ma sœur apporte des "
    "sandwichs et une bouteille d'eau fraîche. Après le déjeuner, nous voulons jouer au "
    "football avec nos amis jusqu'au soir.",
    "id": "Hari ini cuacanya sangat bagus dan kami pergi ke taman. Adik saya membawa roti dan "
    "sebotol air dingin. Setelah makan siang kami ingin bermain sepak bola dengan "
    "teman-teman sampai sore.",
    "ja": "きょうは とても いい てんき なので、こうえんに いきます。いもうとが おにぎりと "
    "つめたい みずを もってきます。ひるごはんの あとで、ともだちと さっかーを します。",
    "ko": "오늘은 날씨가 아주 좋아서 공원에 갑니다. 여동생이 샌드위치와 시원한 물을 "
    "가져옵니다. 점심을 먹고 나서 친구들과 저녁까지 축구를 합니다.",
    "th": "วันนี้อากาศดีมาก เราจะไปสวนสาธารณะ น้องสาวของฉันจะเอาขนมปังและน้ำเย็นมาด้วย "
    "หลังอาหารกลางวันเราจะเล่นฟุตบอลกับเพื่อนจนถึงตอนเย็น",
    "zh": "今天天气很好，我们去公园散步。我妹妹带了面包和一瓶冷水。吃完午饭以后，"
    "我们和朋友一起踢足球，一直到晚上。",
}

# Error bounds of Whisper base (forced language) on espeak-ng speech: word error rate,
# character error rate for ja, th and zh.
BASE_BOUNDS: dict[str, float] = {
    "de": 0.40,
    "es": 0.15,
    "fr": 0.45,  # 0.39 with espeak-ng 1.51 (Debian 12), 0.22 with another build
    "id": 0.35,
    "ja": 0.55,
    "ko": 0.90,
    "th": 0.90,
    "zh": 0.90,
}
# Whisper base: 0.00 on an AMD EPYC, 0.108 on an Intel Xeon (its int8 kernels hear espeak's
# opening "The weather ... today" as "But whenever ... to me": 4 of 37 words)
ENGLISH_BOUND = 0.15
TINY_EN_BOUND = 0.15  # tiny.en hears espeak's "The weather" as "But when there"


@cache
def passage(language: str) -> npt.NDArray[np.float32]:
    """The language's passage read by espeak-ng: 16 kHz mono float32 samples."""
    samples, rate = wav_samples(encode(speech_wav(PASSAGES[language], VOICES[language]), "wav"))
    assert rate == SAMPLE_RATE
    return samples


@pytest.fixture(scope="module")
def transcriber() -> WhisperTranscriber:
    """Base and tiny.en, loaded once, from the runtime cache the other model tests use."""
    t = WhisperTranscriber(
        WhisperConfig(cpu_threads=os.cpu_count() or 1), RuntimeConfig().cache_dir
    )
    t.load()
    return t


def report(what: str, language: str, transcript: Transcript, error: float | None = None) -> None:
    rate = "" if error is None else f" error {error:.3f}"
    print(
        f"\n{what} [{language}] {transcript.model}: heard {transcript.language} "
        f"({transcript.language_probability:.2f}){rate} "
        f"RTF {transcript.real_time_factor:.3f} over {transcript.duration:.1f} s: "
        f"{transcript.text!r}"
    )


def check_times(transcript: Transcript) -> None:
    """Segments and words in order, each word inside its segment and the audio."""
    assert transcript.segments
    previous_end = 0.0
    for segment in transcript.segments:
        assert previous_end - 0.01 <= segment.start < segment.end <= transcript.duration + 0.05
        previous_end = segment.end
        assert segment.words, "word timestamps were asked for"
        word_end = segment.start
        for word in segment.words:
            assert segment.start - 0.01 <= word.start <= word.end <= segment.end + 0.01
            assert word.start >= word_end - 0.01
            assert 0.0 <= word.probability <= 1.0
            word_end = word.end


# -- model files ----------------------------------------------------------------------


def test_base_model_is_joined_checked_and_rebuilt(tmp_path: Path) -> None:
    folder = whisper_files.base_model_dir(tmp_path)
    model_bin = folder / "model.bin"
    assert model_bin.stat().st_size == whisper_files.BASE_MODEL_BIN.size
    assert whisper_files.sha256_of([model_bin]) == whisper_files.BASE_MODEL_BIN.sha256
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.json",
    ]

    # a flipped byte (same size) and a truncated file are found and rebuilt
    with model_bin.open("r+b") as fh:
        fh.seek(50_000_000)
        byte = fh.read(1)
        fh.seek(50_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    (folder / "tokenizer.json").write_bytes(b"{}")
    assert whisper_files.sha256_of([model_bin]) != whisper_files.BASE_MODEL_BIN.sha256
    assert whisper_files.base_model_dir(tmp_path) == folder
    assert whisper_files.sha256_of([model_bin]) == whisper_files.BASE_MODEL_BIN.sha256
    tokenizer = whisper_files.BASE_FILES[1]
    assert whisper_files.sha256_of([folder / tokenizer.name]) == tokenizer.sha256
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "temp files left"


def test_parts_that_do_not_make_the_model_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = whisper_files.ModelFile("model.bin", whisper_files.BASE_MODEL_BIN.size, "0" * 64)
    monkeypatch.setattr(whisper_files, "BASE_MODEL_BIN", wrong)
    with pytest.raises(whisper_files.WhisperModelCorrupt) as caught:
        whisper_files.base_model_dir(tmp_path)
    assert caught.value.code == "whisper_model_corrupt"
    assert "sha256" in caught.value.message
    folder = tmp_path / whisper_files.BASE_DIR_NAME
    assert not (folder / "model.bin").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "temp files left"


def test_tiny_en_is_checked_in_its_package() -> None:
    folder = whisper_files.tiny_en_model_dir()
    assert (folder / "model.bin").stat().st_size == whisper_files.TINY_EN_FILES[0].size


# -- configuration and language choice (no model runs) --------------------------------


def test_config_is_strict() -> None:
    with pytest.raises(ValidationError):
        WhisperConfig.model_validate({"modle": "base"})
    with pytest.raises(ValidationError):
        WhisperConfig(language="German")
    with pytest.raises(ValidationError):
        WhisperConfig(allowed_languages=["de", "EN"])
    with pytest.raises(ValidationError):
        WhisperConfig(allowed_languages=[])
    assert WhisperConfig().vad.enabled


@pytest.mark.parametrize(
    ("config", "language", "allowed", "expected"),
    [
        ({}, None, None, ("base", None, None)),
        ({}, "en", None, ("tiny.en", "en", None)),
        ({}, None, ["en"], ("tiny.en", "en", None)),
        ({}, None, ["de", "en", "de"], ("base", None, ("de", "en"))),
        ({}, "de", ["de", "en"], ("base", "de", None)),
        ({"fast_english": False}, "en", None, ("base", "en", None)),
        ({"model": "tiny.en"}, None, None, ("tiny.en", "en", None)),
        ({"model": "tiny.en"}, None, ["en", "de"], ("tiny.en", "en", None)),
        ({"language": "fr"}, None, None, ("base", "fr", None)),
        ({"allowed_languages": ["de", "fr"]}, None, None, ("base", None, ("de", "fr"))),
        ({"allowed_languages": ["de", "fr"]}, "es", None, ("base", "es", None)),
    ],
)
def test_plan_picks_model_and_language(
    config: dict[str, object],
    language: str | None,
    allowed: list[str] | None,
    expected: tuple[str, str | None, tuple[str, ...] | None],
) -> None:
    t = WhisperTranscriber(WhisperConfig.model_validate(config), Path("unused"))
    assert t.plan(language, allowed) == expected


@pytest.mark.parametrize(
    ("config", "language", "allowed"),
    [
        ({}, "xx", None),
        ({}, None, ["de", "qq"]),
        ({}, "fr", ["de", "en"]),
        ({}, None, []),
        ({"model": "tiny.en"}, "de", None),
        ({"model": "tiny.en"}, None, ["de", "fr"]),
    ],
)
def test_plan_refuses_languages(
    config: dict[str, object], language: str | None, allowed: list[str] | None
) -> None:
    t = WhisperTranscriber(WhisperConfig.model_validate(config), Path("unused"))
    with pytest.raises(UnsupportedLanguage) as caught:
        t.plan(language, allowed)
    assert caught.value.code == "unsupported_language"
    assert caught.value.status == 400


def test_samples_must_be_mono_float_audio() -> None:
    t = WhisperTranscriber(WhisperConfig(), Path("unused"))
    bad_inputs: tuple[np.ndarray[Any, Any], ...] = (
        np.zeros((2, 16_000), np.float32),
        np.zeros(16_000, np.int16),
        np.array([0.0, np.nan], np.float32),
    )
    for bad in bad_inputs:
        with pytest.raises(MediaError):
            t.transcribe(bad)
    empty = t.transcribe(np.zeros(0, np.float32), language="de")
    assert empty.segments == () and empty.language == "de" and empty.duration == 0.0


# -- transcribing ----------------------------------------------------------------------


def test_english_with_tiny_en(transcriber: WhisperTranscriber) -> None:
    t = transcriber.transcribe(passage("en"), language="en")
    error = error_rate("en", PASSAGES["en"], t.text)
    report("forced", "en", t, error)
    assert t.model == "tiny.en" and t.language == "en" and t.language_probability == 1.0
    assert error <= TINY_EN_BOUND
    check_times(t)


def test_english_with_base_detected(transcriber: WhisperTranscriber) -> None:
    t = transcriber.transcribe(passage("en"))
    error = error_rate("en", PASSAGES["en"], t.text)
    report("detected", "en", t, error)
    assert t.model == "base" and t.language == "en" and t.language_probability > 0.5
    assert error <= ENGLISH_BOUND
    check_times(t)


def test_german_detected_forced_and_restricted(transcriber: WhisperTranscriber) -> None:
    audio = passage("de")
    detected = transcriber.transcribe(audio)
    report("detected", "de", detected)
    forced = transcriber.transcribe(audio, language="de")
    report("forced", "de", forced)
    restricted = transcriber.transcribe(audio, allowed_languages=["de", "en", "fr"])
    report("restricted", "de", restricted)
    assert detected.language == "de"
    assert forced.language == "de" and forced.language_probability == 1.0
    assert restricted.language == "de"
    assert restricted.language_probability == pytest.approx(detected.language_probability)
    for t in (detected, forced, restricted):
        assert error_rate("de", PASSAGES["de"], t.text) <= BASE_BOUNDS["de"]


def test_restriction_overrides_detection(transcriber: WhisperTranscriber) -> None:
    """English speech, only German or French allowed: one of them is taken, never English."""
    t = transcriber.transcribe(passage("en"), allowed_languages=["de", "fr"])
    report("restricted to de/fr", "en", t)
    assert t.model == "base"
    assert t.language in {"de", "fr"}
    assert 0.0 <= t.language_probability < 0.5


def test_silence_gives_no_segments(transcriber: WhisperTranscriber) -> None:
    quiet = np.random.default_rng(7).normal(0.0, 0.001, SAMPLE_RATE * 8).astype(np.float32)
    t = transcriber.transcribe(quiet)
    assert t.segments == () and t.language is None and t.speech_duration == 0.0
    assert transcriber.transcribe(quiet, language="en").segments == ()


def test_times_follow_the_speech(transcriber: WhisperTranscriber) -> None:
    """Two sentences at 1 s and 9 s of a 14 s track: their words are heard there (a
    segment may span both: the VAD cuts the silence out before decoding)."""
    track = spoken_track(
        ((1.0, "Good morning everybody.", "en"), (9.0, "See you tomorrow.", "en")), 14.0
    )
    samples, rate = wav_samples(track.wav)
    assert rate == SAMPLE_RATE
    t = transcriber.transcribe(samples, language="en")
    report("timed", "en", t)
    check_times(t)
    words = [w for s in t.segments for w in s.words]
    first = next(w for w in words if "morning" in w.text.lower())
    last = next(w for w in words if "tomorrow" in w.text.lower())
    first_span, last_span = track.spans
    assert abs(words[0].start - first_span.start_s) < 0.6
    assert first_span.start_s - 0.3 < first.start < first.end < first_span.end_s + 0.3
    assert last_span.start_s - 0.3 < last.start < last.end < last_span.end_s + 0.6
    assert not [w for w in words if first_span.end_s + 0.6 < w.start < last_span.start_s - 0.6]


@pytest.mark.slow
@pytest.mark.parametrize(
    "language",
    [
        pytest.param(
            code,
            marks=pytest.mark.xfail(
                # Korean depends on the CPU: nothing heard on an AMD EPYC, within its bound
                # on an Intel Xeon (int8 kernels differ); Thai and Mandarin fail on both
                strict=code != "ko",
                reason="Whisper base does not understand espeak-ng's Thai, Mandarin and "
                "Korean voices: Thai decodes into repetitions it drops (an empty "
                "transcript), Mandarin into hallucinated text, Korean (espeak-ng 1.51) "
                "into nothing on some CPUs; RTF above 2 from temperature fallbacks",
            ),
        )
        if code in ("th", "zh", "ko")
        else code
        for code in sorted(BASE_BOUNDS)
    ],
)
def test_languages_with_base(transcriber: WhisperTranscriber, language: str) -> None:
    t = transcriber.transcribe(passage(language), language=language)
    error = error_rate(language, PASSAGES[language], t.text)
    report("forced", language, t, error)
    assert t.model == "base" and t.language == language
    assert error <= BASE_BOUNDS[language]
    check_times(t)
