"""Audio media: sniffing, bounded decoding to 16 kHz mono, windows, the sound of videos."""

from __future__ import annotations

import itertools
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from bastion.errors import BastionError
from bastion.media.audio import (
    SAMPLE_RATE,
    AudioLimits,
    audio_windows,
    decode_audio,
    is_audio,
    iter_audio_windows,
    probe_audio,
)
from bastion.media.types import AudioWindow
from tests.support.media import encode as encode_image
from tests.support.speech import (
    VOICES,
    encode,
    sentence_wav,
    silent_video,
    speech_video,
    spoken_track,
    tone,
    wav_duration,
)
from tests.support.video import audio_only_mp4, bigbuckbunny

# what each format is sniffed as, and its codec
SNIFFED = {
    "wav": ("WAV audio", "pcm_s16le"),
    "mp3": ("MP3 audio", "mp3"),
    "m4a": ("MPEG-4 audio", "aac"),
    "aac": ("AAC audio", "aac"),
    "opus": ("Ogg media", "opus"),
    "vorbis": ("Ogg media", "vorbis"),
    "flac": ("FLAC audio", "flac"),
}
TOLERANCE_S = 0.05
# Raw ADTS says nothing of the encoder's priming and padding (two AAC frames at most).
ADTS_TOLERANCE_S = 2 * 1024 / SAMPLE_RATE
# Speech of the timing track: (start s, text, voice), 65 s in all.
TIMED = ((1.0, "hello there", "en"), (40.0, "good morning", "en"))
TIMED_S = 65.0


def _code(exc: pytest.ExceptionInfo[BastionError]) -> str:
    return exc.value.code


def _onset(samples: np.ndarray, level: float = 0.05) -> float:
    """Seconds to the first sample louder than ``level``."""
    loud = np.flatnonzero(np.abs(samples) > level)
    assert loud.size, "no sound"
    return float(loud[0]) / SAMPLE_RATE


def _check_cover(windows: list[AudioWindow], duration_s: float, window_s: float) -> None:
    """Windows follow each other from 0 to the end, each as long as its times say."""
    assert windows[0].start_s == 0.0
    for before, after in itertools.pairwise(windows):
        assert after.start_s == pytest.approx(before.end_s)
        assert before.end_s - before.start_s == pytest.approx(window_s)
    assert windows[-1].end_s == pytest.approx(duration_s, abs=1e-3)
    for w in windows:
        assert w.sample_rate == SAMPLE_RATE
        assert w.samples.dtype == np.float32 and w.samples.ndim == 1
        assert len(w.samples) == round((w.end_s - w.start_s) * SAMPLE_RATE)


@pytest.mark.parametrize("fmt", sorted(SNIFFED))
def test_each_format_is_sniffed_and_decoded_to_16k_mono(fmt: str) -> None:
    wav = sentence_wav("en")
    data = encode(wav, fmt, sample_rate=44_100, channels=2)
    assert is_audio(data[:8192])
    info = probe_audio(data)
    assert (info.format, info.codec) == SNIFFED[fmt]
    assert info.has_audio and not info.has_video
    assert info.channels == 2
    decoded = decode_audio(data)
    assert decoded.sample_rate == SAMPLE_RATE
    assert decoded.samples.dtype == np.float32 and decoded.samples.ndim == 1
    tolerance = ADTS_TOLERANCE_S if fmt == "aac" else TOLERANCE_S
    assert decoded.duration_s == pytest.approx(wav_duration(wav), abs=tolerance)
    peak = float(np.abs(decoded.samples).max())
    assert 0.2 < peak <= 1.0  # speech, at about its level
    assert decoded.warnings == ()


def test_mp3_without_a_tag_and_audio_only_webm() -> None:
    wav = sentence_wav("en")
    mp3 = encode(wav, "mp3")
    assert mp3[:3] == b"ID3"
    tag = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(mp3[6:10]))
    bare = mp3[tag:]  # starts with an MPEG frame sync
    assert is_audio(bare[:8192]) and probe_audio(bare).format == "MPEG audio"
    assert decode_audio(bare).duration_s == pytest.approx(wav_duration(wav), abs=TOLERANCE_S)
    webm = encode(wav, "webm")  # a video container: told from video by its streams
    assert not is_audio(webm[:8192])
    info = probe_audio(webm)
    assert info.has_audio and not info.has_video and info.codec == "opus"
    assert decode_audio(webm).duration_s == pytest.approx(wav_duration(wav), abs=TOLERANCE_S)


@pytest.mark.parametrize("language", sorted(VOICES))
def test_every_language_is_spoken_and_decoded_with_its_length(language: str) -> None:
    wav = sentence_wav(language)
    assert wav_duration(wav) > 1.5  # read aloud, not skipped as unknown characters
    decoded = decode_audio(encode(wav, "opus"))
    assert decoded.duration_s == pytest.approx(wav_duration(wav), abs=TOLERANCE_S)
    assert float(np.abs(decoded.samples).max()) > 0.2


@pytest.mark.parametrize("fmt", ["wav", "mp3", "m4a", "opus", "vorbis", "flac"])
def test_speech_is_heard_when_it_is_spoken(fmt: str) -> None:
    track = spoken_track(((1.0, "hello there", "en"), (6.0, "good morning", "en")), 10.0)
    reference = decode_audio(track.wav).samples
    decoded = decode_audio(encode(track.wav, fmt)).samples
    assert len(decoded) / SAMPLE_RATE == pytest.approx(track.duration_s, abs=TOLERANCE_S)
    for span in track.spans:
        at = round(span.start_s * SAMPLE_RATE)
        expected = span.start_s + _onset(reference[at:])
        assert span.start_s + _onset(decoded[at:]) == pytest.approx(expected, abs=TOLERANCE_S)
    # nothing is heard before the first piece
    assert float(np.abs(decoded[: round(0.9 * SAMPLE_RATE)]).max()) < 0.02


def test_windows_cover_the_audio_with_their_times() -> None:
    track = spoken_track(TIMED, TIMED_S)
    data = encode(track.wav, "m4a")
    whole = decode_audio(data)
    windows = list(iter_audio_windows(data))
    assert len(windows) == 3
    _check_cover(windows, TIMED_S, 30.0)
    assert windows[-1].end_s - windows[-1].start_s == pytest.approx(5.0, abs=1e-3)
    np.testing.assert_array_equal(np.concatenate([w.samples for w in windows]), whole.samples)
    # the second piece, spoken 40 s in, is 10 s into the second window
    second = windows[1]
    onset = second.start_s + _onset(second.samples)
    assert onset == pytest.approx(TIMED[1][0] + _onset(whole.samples[40 * SAMPLE_RATE :]))
    assert 40.0 <= onset < 40.5
    assert float(np.abs(windows[2].samples).max()) < 0.02  # silence after it
    # other window lengths; the same cut from samples in memory
    tens = list(iter_audio_windows(data, window_s=10.0))
    assert len(tens) == 7
    _check_cover(tens, TIMED_S, 10.0)
    cut = whole.windows(10.0)
    assert [(w.start_s, w.end_s) for w in cut] == [(w.start_s, w.end_s) for w in tens]
    assert audio_windows(np.zeros(0, dtype=np.float32)) == []
    with pytest.raises(ValueError):
        audio_windows(whole.samples, window_s=0)


def test_video_with_speech_gives_windows_of_its_sound() -> None:
    wav = sentence_wav("en")
    video = speech_video(wav)
    assert not is_audio(video[:8192])
    info = probe_audio(video)
    assert info.has_video and info.has_audio and info.codec == "aac"
    windows = list(iter_audio_windows(video, window_s=2.0))
    assert len(windows) == 2
    _check_cover(windows, wav_duration(wav), 2.0)
    assert windows[-1].end_s == pytest.approx(wav_duration(wav), abs=TOLERANCE_S)
    assert float(np.abs(windows[0].samples).max()) > 0.2


def test_silent_video_gives_no_windows() -> None:
    video = silent_video()
    info = probe_audio(video)
    assert info.has_video and not info.has_audio and info.codec is None
    assert list(iter_audio_windows(video)) == []
    assert len(decode_audio(video).samples) == 0


def test_real_clip_and_audio_only_mp4(tmp_path: Path) -> None:
    clip = bigbuckbunny()
    if clip is not None:  # its AAC 5.1 track at 48 kHz, by path, mixed down
        decoded = decode_audio(clip)
        assert decoded.info.has_video and decoded.info.channels == 6
        assert decoded.duration_s == pytest.approx(decoded.info.duration_s or 0, abs=0.1)
        assert float(np.abs(decoded.samples).max()) > 0.1
    mp4 = audio_only_mp4(tmp_path / "audio.mp4")  # MP4 brand, no video stream
    info = probe_audio(mp4)
    assert info.format == "MP4 video" and not info.has_video
    assert decode_audio(mp4).duration_s == pytest.approx(20 * 1024 / 16000, abs=TOLERANCE_S)


def test_wrong_types_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "song.mp3"
    text.write_text("Not a song at all, just some words in a text file.\n" * 20)
    rng = np.random.default_rng(12)
    noise = b"\x00" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    picture = np.full((48, 64, 3), 200, dtype=np.uint8)
    images = [encode_image(picture, fmt) for fmt in ("JPEG", "PNG", "WEBP")]
    refused: list[bytes | Path] = [*images, noise, text]
    for data in refused:
        assert isinstance(data, Path) or not is_audio(data[:8192])
        with pytest.raises(BastionError) as exc:
            decode_audio(data)
        assert _code(exc) == "unsupported_media_type"
        assert exc.value.status == 415
    with pytest.raises(BastionError) as exc:
        decode_audio(b"")
    assert _code(exc) == "empty_input"


def test_corrupt_and_truncated_audio_is_refused() -> None:
    rng = np.random.default_rng(3)
    junk = rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    wav = sentence_wav("en")
    m4a = encode(wav, "m4a")
    broken = [
        b"fLaC" + junk,  # right magic, nothing valid after it
        b"OggS" + junk,
        b"RIFF\x24\x00\x00\x00WAVEfmt ",  # a header cut short
        m4a[: len(m4a) // 2],  # the index (moov, at the end) is lost
    ]
    for data in broken:
        with pytest.raises(BastionError) as exc:
            decode_audio(data)
        assert _code(exc) == "corrupt_media", data[:12]
        assert exc.value.status == 422
    # a stream cut half-way decodes what is there, and says it ended early
    flac = encode(wav, "flac")
    half = decode_audio(flac[: len(flac) // 2])
    assert 0.5 < half.duration_s < wav_duration(wav) - 1.0
    assert any("before its declared end" in w for w in half.warnings)
    found: list[str] = []
    windows = list(iter_audio_windows(flac[: len(flac) // 2], window_s=1.0, warnings=found))
    assert windows[-1].end_s == pytest.approx(half.duration_s)
    assert found == list(half.warnings)


def test_joined_files_that_change_rate_decode_whole() -> None:
    wav = sentence_wav("en")
    joined = b"".join(
        encode(wav, "mp3", sample_rate=rate, channels=channels)
        for rate, channels in ((44_100, 1), (22_050, 2), (8_000, 1))
    )
    decoded = decode_audio(joined)
    assert decoded.duration_s == pytest.approx(3 * wav_duration(wav), abs=0.3)
    third = len(decoded.samples) // 3  # speech in each part
    for part in range(3):
        assert float(np.abs(decoded.samples[part * third : (part + 1) * third]).max()) > 0.2


def test_too_long_and_too_large_are_refused() -> None:
    data = encode(sentence_wav("en"), "flac")  # 3.5 s
    with pytest.raises(BastionError) as exc:
        probe_audio(data, AudioLimits(max_duration_s=2.0))
    assert _code(exc) == "media_too_large" and exc.value.status == 413
    assert "declares" in str(exc.value)
    with pytest.raises(BastionError) as exc:
        decode_audio(data, AudioLimits(max_bytes=len(data) - 1))
    assert _code(exc) == "media_too_large"
    assert exc.value.details["max_bytes"] == len(data) - 1
    assert decode_audio(data, AudioLimits(max_duration_s=4.0, max_bytes=len(data))).samples.size


def test_a_header_that_understates_the_length_does_not_stretch_the_limit() -> None:
    # Ogg streams chained end to end: the header says 3.5 s, the content lasts 35 s.
    chained = encode(sentence_wav("en"), "opus") * 10
    assert probe_audio(chained).duration_s == pytest.approx(3.5, abs=0.1)
    limits = AudioLimits(max_duration_s=10.0)
    seen: list[AudioWindow] = []
    with pytest.raises(BastionError) as exc:
        seen.extend(iter_audio_windows(chained, limits, window_s=4.0))
    assert _code(exc) == "media_too_large" and "more than" in str(exc.value)
    assert seen and seen[-1].end_s <= 10.0  # stopped at the limit, not at the end
    assert decode_audio(chained).duration_s == pytest.approx(35.3, abs=0.2)


def test_huge_declared_duration_is_refused_before_decoding() -> None:
    flac = bytearray(encode(sentence_wav("en"), "flac"))
    # STREAMINFO: 36-bit total samples in the low nibble of byte 21 and bytes 22-25
    flac[21] |= 0x0F
    flac[22:26] = b"\xff\xff\xff\xff"
    started = time.perf_counter()
    with pytest.raises(BastionError) as exc:
        decode_audio(bytes(flac))
    assert _code(exc) == "media_too_large" and "declares" in str(exc.value)
    assert time.perf_counter() - started < 0.5
    # a WAV whose data chunk claims 4 GB is taken at the size of the file
    pcm = b"\x80" * 8000
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 8000, 8000, 1, 8)
    wav = b"RIFF\xf0\xff\xff\xffWAVEfmt " + fmt + b"data\xd0\xff\xff\xff" + pcm
    assert decode_audio(wav).duration_s == pytest.approx(1.0)


def test_many_tiny_packets_stay_bounded_in_time() -> None:
    data = tone(30, "opus", frame_ms=2.5)  # 12,000 packets
    with pytest.raises(BastionError) as exc:
        decode_audio(data, AudioLimits(max_packets=5_000))
    assert _code(exc) == "media_too_large" and exc.value.details["max_packets"] == 5_000
    started = time.perf_counter()
    with pytest.raises(BastionError) as exc:
        decode_audio(data, AudioLimits(max_decode_s=0.2))
    assert _code(exc) == "media_too_large" and "took more than" in str(exc.value)
    assert time.perf_counter() - started < 1.0


def test_windows_hold_one_window_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "long.flac"
    path.write_bytes(tone(300, "flac"))  # 300 s: 19 MB of decoded samples
    tracemalloc.start()
    try:
        count = 0
        for window in iter_audio_windows(path, window_s=30.0):
            count += 1
            assert float(np.abs(window.samples).max()) > 0.01  # the tone, at 1/80
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 10
    assert peak < 8 * 1024 * 1024  # a 30 s window is 1.9 MB
    # the whole track is held, twice at most while it is joined
    tracemalloc.start()
    try:
        decoded = decode_audio(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert decoded.samples.nbytes == 300 * SAMPLE_RATE * 4
    assert peak < 2.2 * decoded.samples.nbytes
