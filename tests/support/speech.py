"""Spoken test media: sentences read aloud by ``espeak-ng``, encoded by ``ffmpeg``.

:func:`speech_wav` renders a sentence in one of :data:`VOICES` (English, Japanese,
Korean, Thai, Chinese, Indonesian, German, Spanish, French) as WAV bytes; :data:`SENTENCES`
holds a plain sentence per language. :func:`encode` turns WAV bytes into MP3, M4A (AAC),
OGG (Opus or Vorbis), FLAC, raw AAC (ADTS), WebM (Opus) or WAV at 16 kHz; :func:`tone` makes long
inputs fast. :func:`spoken_track` lays speech over
silence at known start times (for timing tests) and :func:`silence_wav` is silence
alone. :func:`speech_video` muxes speech over the real clip of
:func:`tests.support.video.bigbuckbunny`, :func:`silent_video` is that clip without
sound. Everything is rendered once per test session (``functools.cache``).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from tests.support.databases import missing_tool
from tests.support.video import bigbuckbunny, cut_frames, write_video

# language (ISO 639-1, "zh" for Mandarin) -> espeak-ng voice
VOICES: dict[str, str] = {
    "en": "en",
    "ja": "ja",
    "ko": "ko",
    "th": "th",
    "zh": "cmn",
    "id": "id",
    "de": "de",
    "es": "es",
    "fr": "fr",
}

# A plain sentence per language of VOICES.
SENTENCES: dict[str, str] = {
    "en": "The weather is lovely today and we are going to the park.",
    # espeak-ng reads kana only (kanji come out as "Chinese letter")
    "ja": "きょうは とても いい てんき なので、こうえんに いきます。",
    "ko": "오늘은 날씨가 아주 좋아서 공원에 갑니다.",
    "th": "วันนี้อากาศดีมาก เราจะไปสวนสาธารณะ",
    "zh": "今天天气很好，我们去公园散步。",
    "id": "Hari ini cuacanya sangat bagus dan kami pergi ke taman.",
    "de": "Heute ist das Wetter schön und wir gehen in den Park.",
    "es": "Hoy hace muy buen tiempo y vamos al parque.",
    "fr": "Il fait très beau aujourd'hui et nous allons au parc.",
}

# format name -> (file suffix, ffmpeg audio options)
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "wav": (".wav", ("-c:a", "pcm_s16le")),
    "mp3": (".mp3", ("-c:a", "libmp3lame", "-b:a", "64k")),
    "m4a": (".m4a", ("-c:a", "aac", "-b:a", "64k")),
    "aac": (".aac", ("-c:a", "aac", "-b:a", "64k")),  # raw ADTS frames
    "opus": (".ogg", ("-c:a", "libopus", "-b:a", "32k")),
    "vorbis": (".ogg", ("-c:a", "libvorbis", "-q:a", "3")),
    "flac": (".flac", ("-c:a", "flac")),
    "webm": (".webm", ("-c:a", "libopus", "-b:a", "32k")),  # audio-only WebM, as browsers record
}


def require_tools() -> None:
    """Skip the test (fail it in CI) when ``espeak-ng`` or ``ffmpeg`` is not installed."""
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            missing_tool(f"{tool} is not installed (scripts/install.sh --test installs it)")


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


def _ffmpeg(*args: str) -> None:
    _run("ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args)


@cache
def speech_wav(text: str, voice: str = "en", *, words_per_minute: int = 150) -> bytes:
    """``text`` read aloud by espeak-ng ``voice`` (a voice name or a key of VOICES):
    WAV bytes, mono 16-bit PCM at espeak's 22,050 Hz."""
    require_tools()
    voice = VOICES.get(voice, voice)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        _run("espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(out), text)
        return out.read_bytes()


def sentence_wav(language: str) -> bytes:
    """The SENTENCES sentence of ``language`` read aloud in its voice (WAV bytes)."""
    return speech_wav(SENTENCES[language], VOICES[language])


@cache
def encode(wav: bytes, fmt: str, *, sample_rate: int = 16_000, channels: int = 1) -> bytes:
    """``wav`` re-encoded by ffmpeg as ``fmt`` (a key of FORMATS: wav, mp3, m4a, aac,
    opus, vorbis, flac, webm) at ``sample_rate`` Hz with ``channels`` channels (Opus: 48 kHz)."""
    require_tools()
    suffix, options = FORMATS[fmt]
    rate = 48_000 if fmt in ("opus", "webm") else sample_rate
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.wav", Path(tmp) / f"out{suffix}"
        src.write_bytes(wav)
        _ffmpeg("-i", str(src), "-vn", "-ar", str(rate), "-ac", str(channels), *options, str(out))
        return out.read_bytes()


def wav_samples(wav: bytes) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sample rate of 16-bit PCM WAV bytes."""
    with wave.open(io.BytesIO(wav)) as reader:
        rate, width, channels = reader.getframerate(), reader.getsampwidth(), reader.getnchannels()
        raw = reader.readframes(reader.getnframes())
    assert width == 2, "16-bit PCM expected"
    pcm = np.frombuffer(raw, dtype="<i2").reshape(-1, channels).mean(axis=1)
    return (pcm / 32768.0).astype(np.float32), rate


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """Mono float samples in [-1, 1] as 16-bit PCM WAV bytes."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(pcm.tobytes())
    return buf.getvalue()


def wav_duration(wav: bytes) -> float:
    """Length of WAV bytes in seconds."""
    samples, rate = wav_samples(wav)
    return len(samples) / rate


@cache
def silence_wav(seconds: float, sample_rate: int = 16_000) -> bytes:
    """``seconds`` of silence as WAV bytes."""
    return wav_bytes(np.zeros(round(seconds * sample_rate), dtype=np.float32), sample_rate)


@cache
def tone(seconds: float, fmt: str, *, frame_ms: float | None = None) -> bytes:
    """A quiet 440 Hz tone ``seconds`` long, made by ffmpeg and encoded as ``fmt`` (a key
    of FORMATS): long inputs made fast. ``frame_ms`` sets Opus's frame length (2.5 ms
    makes 400 tiny packets a second)."""
    require_tools()
    suffix, options = FORMATS[fmt]
    extra = ("-frame_duration", str(frame_ms)) if frame_ms is not None else ()
    rate = 48_000 if fmt in ("opus", "webm") else 16_000
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"tone{suffix}"
        _ffmpeg(
            *("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={rate}:duration={seconds}"),
            *("-af", "volume=0.1", "-ac", "1", *options, *extra, str(out)),
        )
        return out.read_bytes()


@dataclass(frozen=True, slots=True)
class SpokenSpan:
    """Where one piece of a :class:`SpokenTrack` is heard, in seconds, and what it says."""

    start_s: float
    end_s: float
    text: str
    voice: str


@dataclass(frozen=True, slots=True)
class SpokenTrack:
    """Speech laid over silence: the WAV bytes, and where each piece is heard."""

    wav: bytes
    spans: tuple[SpokenSpan, ...]
    duration_s: float


@cache
def spoken_track(
    pieces: tuple[tuple[float, str, str], ...], total_s: float, sample_rate: int = 16_000
) -> SpokenTrack:
    """Silence ``total_s`` long with each ``(start_s, text, voice)`` spoken from its start
    time. The spans end where espeak's rendering ends (it has ~0.1 s of quiet at each end);
    pieces must not overlap nor run past ``total_s``."""
    track = np.zeros(round(total_s * sample_rate), dtype=np.float32)
    spans: list[SpokenSpan] = []
    last_end = 0.0
    for start_s, text, voice in sorted(pieces):
        samples, rate = wav_samples(speech_wav(text, voice))
        if rate != sample_rate:
            old = np.arange(len(samples)) / rate
            new = np.arange(round(len(samples) * sample_rate / rate)) / sample_rate
            samples = np.interp(new, old, samples).astype(np.float32)
        begin = round(start_s * sample_rate)
        end_s = start_s + len(samples) / sample_rate
        if start_s < last_end or begin + len(samples) > len(track):
            raise ValueError(f"piece at {start_s} s overlaps another or runs past {total_s} s")
        track[begin : begin + len(samples)] = samples
        spans.append(SpokenSpan(start_s, end_s, text, voice))
        last_end = end_s
    return SpokenTrack(wav_bytes(track, sample_rate), tuple(spans), len(track) / sample_rate)


@cache
def _clip() -> bytes:
    """A real video clip (H.264 + AAC): bigbuckbunny, or a generated one without it."""
    path = bigbuckbunny()
    if path is not None:
        return path.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        return write_video(Path(tmp) / "clip.mp4", cut_frames(seconds=6.0)).read_bytes()


@cache
def speech_video(wav: bytes) -> bytes:
    """An MP4: the real clip's picture (looped to the speech's length) with ``wav`` as its
    only audio track (AAC, 16 kHz mono). Lasts as long as the speech."""
    require_tools()
    with tempfile.TemporaryDirectory() as tmp:
        clip, speech, out = Path(tmp) / "clip.mp4", Path(tmp) / "s.wav", Path(tmp) / "out.mp4"
        clip.write_bytes(_clip())
        speech.write_bytes(wav)
        _ffmpeg(
            *("-stream_loop", "-1", "-i", str(clip), "-i", str(speech)),
            *("-map", "0:v:0", "-map", "1:a:0", "-vf", "scale=320:-2"),
            *("-c:v", "libx264", "-preset", "ultrafast"),
            *("-c:a", "aac", "-ar", "16000", "-ac", "1", "-shortest", str(out)),
        )
        return out.read_bytes()


@cache
def silent_video() -> bytes:
    """The real clip (an MP4 of ~5 s) with its audio track removed."""
    require_tools()
    with tempfile.TemporaryDirectory() as tmp:
        clip, out = Path(tmp) / "clip.mp4", Path(tmp) / "out.mp4"
        clip.write_bytes(_clip())
        _ffmpeg("-i", str(clip), "-map", "0:v:0", "-c:v", "copy", "-an", str(out))
        return out.read_bytes()
