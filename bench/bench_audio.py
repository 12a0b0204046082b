"""Benchmark of speech: Whisper transcription per language, and a video with its sound.

One run measures, side by side on the same audio:
  (a) transcription of a passage of five plain sentences per language, read aloud by
      espeak-ng (about 20–30 s each, 16 kHz mono), by
        - faster-whisper's own ``WhisperModel.transcribe``, called directly with the same
          model files and settings as Bastion (int8 on the CPU, beam 5, word timestamps,
          the same Silero VAD parameters): the baseline;
        - Bastion's :class:`~bastion.models.whisper.WhisperTranscriber` (the same call
          plus checking the samples, choosing the model and converting the segments);
        - :func:`~bastion.pipeline.audio.moderate_audio` over the passage as WAV bytes
          under a policy naming ``speech`` alone (probing, decoding and resampling,
          30 s windows, the engine): language detected only;
      for Whisper base with the language detected, Whisper base with the language forced,
      and Whisper tiny.en for English (what a request forcing English gets). The real-time
      factor (RTF) is seconds of compute per second of audio; the ratio is Bastion's time
      over faster-whisper's (1.00 = no overhead). Errors: word error rate, character error
      rate for Japanese, Chinese, Thai and Korean (``tests/support/wer.py``).
  (b) a 1280×720 H.264 clip (``bench_video``'s) with speech muxed over it as AAC, 48 kHz
      stereo, moderated by :func:`~bastion.pipeline.video.moderate_video` at one frame per
      second under the default policy without ``speech``, then with it (language
      detected by Whisper base), and its sound alone under a policy naming ``speech``
      alone; reported as multiples of real time (seconds of video per second of wall
      time) and their ratio. No result is reused: the result caches are off.
Target (b): ≥ 4× real time with transcription on, at one frame per second, on 2 cores.

    .venv/bin/python -m bench.bench_audio [--languages en,de,ja] [--seconds 60]
        [--repeat 3] [--skip-video] [--skip-transcription]

espeak-ng's voice is robotic and was never heard by Whisper in training: the error rates
are those of this voice, not of people.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from tests.support.speech import VOICES, encode, speech_wav, spoken_track, wav_samples
from tests.support.wer import character_error_rate, word_error_rate

from bastion.config import DEFAULT_ANALYZERS, Settings
from bastion.models import whisper_files
from bastion.models.whisper import SAMPLE_RATE, WhisperTranscriber
from bastion.models.whisper_config import WhisperConfig, WhisperModelName
from bastion.pipeline.audio import moderate_audio
from bastion.pipeline.moderation import Moderation
from bastion.pipeline.video import moderate_video
from bastion.policy.loader import default_policy
from bastion.policy.model import Policy
from bastion.process.components import build_core
from bench.bench_video import make_clip
from bench.common import machine

# Five plain sentences per language (Japanese in kana: espeak-ng reads no kanji).
PASSAGES: dict[str, str] = {
    "en": "The weather is lovely today and we are going to the park. My sister will bring "
    "some sandwiches and a bottle of cold water. After lunch we want to play football with "
    "our friends until the evening. The park has a small lake with ducks and a wooden "
    "bridge. We will take the bus home when it gets dark.",
    "de": "Heute ist das Wetter schön und wir gehen in den Park. Meine Schwester bringt Brot "
    "und eine Flasche kaltes Wasser mit. Nach dem Essen spielen wir mit unseren Freunden "
    "Fußball bis zum Abend. Der Park hat einen kleinen See mit Enten und einer Holzbrücke. "
    "Wir fahren mit dem Bus nach Hause, wenn es dunkel wird.",
    "es": "Hoy hace muy buen tiempo y vamos al parque. Mi hermana trae unos bocadillos y una "
    "botella de agua fría. Después de comer queremos jugar al fútbol con nuestros amigos "
    "hasta la noche. El parque tiene un pequeño lago con patos y un puente de madera. "
    "Volveremos a casa en autobús cuando oscurezca.",
    "fr": "Il fait très beau aujourd'hui et nous allons au parc. Ma sœur apporte des "
    "sandwichs et une bouteille d'eau fraîche. Après le déjeuner, nous voulons jouer au "
    "football avec nos amis jusqu'au soir. Le parc a un petit lac avec des canards et un "
    "pont en bois. Nous rentrerons en bus quand il fera nuit.",
    "id": "Hari ini cuacanya sangat bagus dan kami pergi ke taman. Adik saya membawa roti dan "
    "sebotol air dingin. Setelah makan siang kami ingin bermain sepak bola dengan "
    "teman-teman sampai sore. Taman itu punya danau kecil dengan bebek dan jembatan kayu. "
    "Kami akan pulang naik bus ketika hari sudah gelap.",
    "ja": "きょうは とても いい てんき なので、こうえんに いきます。いもうとが おにぎりと "
    "つめたい みずを もってきます。ひるごはんの あとで、ともだちと さっかーを します。"
    "こうえんには ちいさな いけと きの はしが あります。くらく なったら ばすで いえに "
    "かえります。",
    "ko": "오늘은 날씨가 아주 좋아서 공원에 갑니다. 여동생이 샌드위치와 시원한 물을 "
    "가져옵니다. 점심을 먹고 나서 친구들과 저녁까지 축구를 합니다. 공원에는 오리가 있는 "
    "작은 호수와 나무 다리가 있습니다. 어두워지면 버스를 타고 집에 갑니다.",
    "th": "วันนี้อากาศดีมาก เราจะไปสวนสาธารณะ น้องสาวของฉันจะเอาขนมปังและน้ำเย็นมาด้วย "
    "หลังอาหารกลางวันเราจะเล่นฟุตบอลกับเพื่อนจนถึงตอนเย็น ในสวนมีทะเลสาบเล็กๆ "
    "ที่มีเป็ดและสะพานไม้ เราจะนั่งรถเมล์กลับบ้านตอนมืด",
    "zh": "今天天气很好，我们去公园散步。我妹妹带了面包和一瓶冷水。吃完午饭以后，"
    "我们和朋友一起踢足球，一直到晚上。公园里有一个小湖，湖里有鸭子，还有一座木桥。"
    "天黑以后我们坐公共汽车回家。",
}
CHARACTER_LANGUAGES = frozenset({"ja", "zh", "th", "ko"})
"""Judged by character error rate (Korean too: its words carry particles)."""

Audio = npt.NDArray[np.float32]


def error(language: str, reference: str, heard: str) -> float:
    """CER for ja/zh/th/ko, WER for the others."""
    if language in CHARACTER_LANGUAGES:
        return character_error_rate(reference, heard)
    return word_error_rate(reference, heard)


def passage_wav(language: str) -> bytes:
    """The language's passage read by espeak-ng: WAV bytes, 16 kHz mono."""
    return encode(speech_wav(PASSAGES[language], VOICES[language]), "wav")


def samples_of(wav: bytes) -> Audio:
    samples, rate = wav_samples(wav)
    assert rate == SAMPLE_RATE
    return samples


# -- (a) transcription ----------------------------------------------------------------


@dataclass
class Heard:
    """One transcription: wall seconds, the text and the language."""

    seconds: float
    text: str
    language: str | None


class DirectWhisper:
    """The baseline: faster-whisper's ``WhisperModel`` called directly, Bastion's model
    files and settings (``WhisperConfig`` defaults)."""

    def __init__(self, config: WhisperConfig, cache_dir: Path) -> None:
        from faster_whisper import WhisperModel

        self.config = config
        threads = config.cpu_threads or (os.cpu_count() or 1)
        folders: dict[WhisperModelName, Path] = {
            "base": whisper_files.base_model_dir(cache_dir),
            "tiny.en": whisper_files.tiny_en_model_dir(),
        }
        self.models: dict[WhisperModelName, Any] = {
            name: WhisperModel(
                str(folder),
                device="cpu",
                compute_type="int8",
                cpu_threads=threads,
                local_files_only=True,
            )
            for name, folder in folders.items()
        }

    def transcribe(self, model: WhisperModelName, audio: Audio, language: str | None) -> Heard:
        v = self.config.vad
        started = time.perf_counter()
        segments, info = self.models[model].transcribe(
            audio,
            language=language,
            beam_size=self.config.beam_size,
            word_timestamps=True,
            vad_filter=True,
            vad_parameters={
                "threshold": v.threshold,
                "min_speech_duration_ms": v.min_speech_duration_ms,
                "max_speech_duration_s": v.max_speech_duration_s or float("inf"),
                "min_silence_duration_ms": v.min_silence_duration_ms,
                "speech_pad_ms": v.speech_pad_ms,
            },
        )
        texts = [str(s.text).strip() for s in segments]  # decoding happens here
        joiner = "" if info.language in ("ja", "zh", "th") else " "
        return Heard(time.perf_counter() - started, joiner.join(texts), str(info.language))


def bastion_transcribe(
    transcriber: WhisperTranscriber, audio: Audio, language: str | None
) -> Heard:
    started = time.perf_counter()
    t = transcriber.transcribe(audio, language=language)
    return Heard(time.perf_counter() - started, t.text, t.language)


async def pipeline_transcribe(moderation: Moderation, wav: bytes, policy: Policy) -> Heard:
    res = await moderate_audio(moderation, wav, policy)
    joiner = "" if res.language in ("ja", "zh", "th") else " "
    text = joiner.join(s.text for s in res.transcript)
    return Heard(res.timings.total_ms / 1000, text, res.language)


@dataclass
class Row:
    language: str
    how: str
    audio_s: float
    baseline: Heard
    bastion: Heard
    pipeline: Heard | None = None

    def line(self) -> str:
        ref = PASSAGES[self.language]
        metric = "CER" if self.language in CHARACTER_LANGUAGES else "WER"
        cells = [
            self.language,
            self.how,
            f"{self.audio_s:.1f}",
            f"{self.baseline.seconds / self.audio_s:.3f}",
            f"{self.bastion.seconds / self.audio_s:.3f}",
            f"**{self.bastion.seconds / self.baseline.seconds:.2f}**",
        ]
        if self.pipeline is not None:
            cells += [
                f"{self.pipeline.seconds / self.audio_s:.3f}",
                f"{self.pipeline.seconds / self.baseline.seconds:.2f}",
            ]
        else:
            cells += ["–", "–"]
        cells += [
            f"{metric} {error(self.language, ref, self.baseline.text):.2f}",
            f"{error(self.language, ref, self.bastion.text):.2f}",
            "–"
            if self.pipeline is None
            else f"{error(self.language, ref, self.pipeline.text):.2f}",
            " / ".join(str(h.language) for h in (self.baseline, self.bastion, self.pipeline) if h),
        ]
        return "| " + " | ".join(cells) + " |"


HEADER = (
    "| lang | model, language | audio s | faster-whisper RTF | Bastion RTF | "
    "Bastion / f-w | moderate_audio RTF | moderate_audio / f-w | error f-w | "
    "error Bastion | error moderate_audio | heard (f-w / Bastion / moderate_audio) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def fastest(best: Heard | None, new: Heard) -> Heard:
    """The quicker of two runs of the same transcription (the shared cores make the
    slower one slow)."""
    return new if best is None or new.seconds < best.seconds else best


async def transcription(
    languages: list[str], moderation: Moderation, cache_dir: Path, repeat: int
) -> list[Row]:
    config = WhisperConfig()
    direct = DirectWhisper(config, cache_dir)
    base = WhisperTranscriber(config.model_copy(update={"fast_english": False}), cache_dir)
    fast = WhisperTranscriber(config, cache_dir)
    base.load()
    fast.load(["tiny.en"])
    speech_only = Policy(name="speech-only", analyzers=["speech"])
    warm = samples_of(passage_wav(languages[0]))[: SAMPLE_RATE * 5]
    direct.transcribe("base", warm, None)
    base.transcribe(warm)
    if "en" in languages:
        direct.transcribe("tiny.en", warm, "en")
        fast.transcribe(warm, language="en")
    await moderate_audio(moderation, encode(speech_wav("Hello there."), "wav"), speech_only)
    rows: list[Row] = []
    for i, lang in enumerate(languages):
        wav = passage_wav(lang)
        audio = samples_of(wav)
        seconds = len(audio) / SAMPLE_RATE
        for how, forced in (("base, detected", None), ("base, forced", lang)):
            fw: Heard | None = None
            ours: Heard | None = None
            piped: Heard | None = None
            for attempt in range(repeat):
                # alternate who goes first, so that load on the shared cores falls on both
                if (i + attempt) % 2 == 0:
                    fw = fastest(fw, direct.transcribe("base", audio, forced))
                    ours = fastest(ours, bastion_transcribe(base, audio, forced))
                else:
                    ours = fastest(ours, bastion_transcribe(base, audio, forced))
                    fw = fastest(fw, direct.transcribe("base", audio, forced))
                if not forced:
                    piped = fastest(piped, await pipeline_transcribe(moderation, wav, speech_only))
            assert fw is not None and ours is not None
            rows.append(Row(lang, how, seconds, fw, ours, piped))
            print(rows[-1].line(), flush=True)
        if lang == "en":
            fw, ours = None, None
            for _ in range(repeat):
                fw = fastest(fw, direct.transcribe("tiny.en", audio, "en"))
                ours = fastest(ours, bastion_transcribe(fast, audio, "en"))
            assert fw is not None and ours is not None
            rows.append(Row(lang, "tiny.en, forced", seconds, fw, ours))
            print(rows[-1].line(), flush=True)
    return rows


def detection_summary(rows: list[Row]) -> str:
    detected = [r for r in rows if r.how == "base, detected"]
    parts = []
    for who, heard in (
        ("faster-whisper", [r.baseline for r in detected]),
        ("Bastion", [r.bastion for r in detected]),
        ("moderate_audio", [r.pipeline for r in detected]),
    ):
        pairs = [(r.language, h.language) for r, h in zip(detected, heard, strict=True) if h]
        wrong = [f"{true}→{got}" for true, got in pairs if got != true]
        right = len(pairs) - len(wrong)
        told = f" (wrong: {', '.join(wrong)})" if wrong else ""
        parts.append(f"{who} {right}/{len(pairs)}{told}")
    return "language detected right: " + "; ".join(parts)


# -- (b) video with speech --------------------------------------------------------------


def speech_track(languages: list[str], seconds: int) -> bytes:
    """Passages of ``languages`` in turn, 1.5 s apart, as many as fit in ``seconds``
    (WAV, 16 kHz); the rest is silence."""
    pieces: list[tuple[float, str, str]] = []
    at, i = 0.5, 0
    while True:
        lang = languages[i % len(languages)]
        wav = speech_wav(PASSAGES[lang], VOICES[lang])
        samples, rate = wav_samples(wav)
        length = len(samples) / rate
        if at + length > seconds - 0.1:
            break
        pieces.append((at, PASSAGES[lang], VOICES[lang]))
        at += length + 1.5
        i += 1
    return spoken_track(tuple(pieces), float(seconds)).wav


def speech_clip(languages: list[str], seconds: int) -> Path:
    """``bench_video``'s 720p clip (GOP 1 s) with the speech track as its sound."""
    clip = make_clip(seconds, 25)
    tag = "-".join(languages)
    out = clip.with_name(f"{clip.stem}-speech-{tag}.mp4")
    if out.exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        speech = Path(tmp) / "speech.wav"
        speech.write_bytes(speech_track(languages, seconds))
        subprocess.run(
            [
                *("ffmpeg", "-nostdin", "-loglevel", "error", "-y"),
                *("-i", str(clip), "-i", str(speech), "-map", "0:v:0", "-map", "1:a:0"),
                *("-c:v", "copy", "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"),
                *("-shortest", str(out)),
            ],
            check=True,
            timeout=300,
        )
    return out


@dataclass
class VideoRow:
    what: str
    length_s: float
    wall_s: float
    frames: int
    heard: str

    def line(self, baseline: VideoRow | None) -> str:
        ratio = f"{baseline.wall_s / self.wall_s:.2f}" if baseline else "1.00"
        return (
            f"| {self.what} | {self.length_s:.1f} | {self.frames} | {self.wall_s:.1f} | "
            f"**{self.length_s / self.wall_s:.1f}×** | {ratio} | {self.heard} |"
        )


VIDEO_HEADER = (
    "| measurement | video s | frames analysed | wall s | real time | speed vs (b1) | "
    "transcript |\n|---|---|---|---|---|---|---|"
)


async def video(moderation: Moderation, languages: list[str], seconds: int) -> list[VideoRow]:
    clip = speech_clip(languages, seconds)
    short = speech_clip(languages[:1], 10)
    default = default_policy()
    plain = Policy.model_validate(
        {
            **default.model_dump(),
            "name": "default-no-speech",
            "analyzers": [a for a in default.analyzers if a != "speech"],
        }
    )
    with_speech = Policy.model_validate(
        {
            **default.model_dump(),
            "name": "default-speech",
            "analyzers": list(dict.fromkeys([*default.analyzers, "speech"])),
        }
    )
    speech_only = Policy(name="speech-only", analyzers=["speech"])
    for policy in (plain, with_speech):
        await moderate_video(moderation, short, policy)  # warm-up
    rows: list[VideoRow] = []
    for label, policy in (
        ("(b1) default policy without speech", plain),
        ("(b2) default policy with speech", with_speech),
    ):
        res = await moderate_video(moderation, clip, policy)
        heard = ""
        if res.audio is not None:
            words = sum(len(s.text.split()) for s in res.audio.transcript)
            heard = f"{len(res.audio.transcript)} segments, {words} words, {res.audio.language}"
        length = (res.media.duration_ms or 0) / 1000
        rows.append(VideoRow(label, length, res.timings.total_ms / 1000, len(res.frames), heard))
    sound = await moderate_audio(moderation, clip, speech_only)
    words = sum(len(s.text.split()) for s in sound.transcript)
    rows.append(
        VideoRow(
            "(b3) its sound alone, speech only",
            sound.media.duration_s,
            sound.timings.total_ms / 1000,
            0,
            f"{len(sound.transcript)} segments, {words} words, {sound.language}",
        )
    )
    return rows


# -- main -----------------------------------------------------------------------------


async def run(
    languages: list[str], seconds: int, do_transcription: bool, do_video: bool, repeat: int
) -> tuple[list[Row], list[VideoRow]]:
    settings = Settings.model_validate(
        {
            "data_dir": Path(tempfile.mkdtemp()),
            "result_cache_size": 0,
            "dedup": {"frame_cache_size": 0},
            "analyzers": [{"type": t} for t in dict.fromkeys([*DEFAULT_ANALYZERS, "speech"])],
        }
    )
    core = await build_core(settings)
    try:
        cache_dir = settings.runtime.cache_dir
        rows = (
            await transcription(languages, core.moderation, cache_dir, repeat)
            if do_transcription
            else []
        )
        video_rows = await video(core.moderation, languages, seconds) if do_video else []
    finally:
        await core.aclose()
    return rows, video_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--languages",
        default=",".join(PASSAGES),
        help=f"comma-separated, of {','.join(PASSAGES)} (default: all)",
    )
    ap.add_argument("--seconds", type=int, default=60, help="length of the video of (b)")
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs of each transcription; the fastest counts"
    )
    ap.add_argument("--skip-transcription", action="store_true", help="(b) only")
    ap.add_argument("--skip-video", action="store_true", help="(a) only")
    args = ap.parse_args()
    languages = [code.strip() for code in args.languages.split(",") if code.strip()]
    unknown = [code for code in languages if code not in PASSAGES]
    if unknown or not languages:
        raise SystemExit(f"unknown languages {unknown}; choose from {list(PASSAGES)}")
    started = time.perf_counter()
    print(HEADER, flush=True)
    rows, video_rows = asyncio.run(
        run(
            languages,
            args.seconds,
            not args.skip_transcription,
            not args.skip_video,
            args.repeat,
        )
    )
    print(
        f"\ncommand: python -m bench.bench_audio --languages {','.join(languages)} "
        f"--seconds {args.seconds} --repeat {args.repeat}"
        + (" --skip-transcription" if args.skip_transcription else "")
        + (" --skip-video" if args.skip_video else "")
    )
    took = time.perf_counter() - started
    print(f"machine: {machine()}, PyAV {av.__version__}; took {took:.0f} s")
    if rows:
        print(
            "\n(a) transcription; RTF = compute s / audio s; ratios = time over faster-whisper's\n"
        )
        print(HEADER)
        for row in rows:
            print(row.line())
        print("\n" + detection_summary(rows))
        for who, pick in (("faster-whisper", 0), ("Bastion", 1)):
            total = sum((r.baseline, r.bastion)[pick].seconds for r in rows)
            print(f"{who}: {total:.1f} s for {sum(r.audio_s for r in rows):.0f} s of audio")
    if video_rows:
        print("\n(b) 1280×720 H.264 with speech (AAC 48 kHz stereo), 1 frame/s\n")
        print(VIDEO_HEADER)
        for vrow in video_rows:
            print(vrow.line(video_rows[0] if vrow is not video_rows[0] else None))


if __name__ == "__main__":
    main()
