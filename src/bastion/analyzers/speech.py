"""Speech in audio windows: Whisper (faster-whisper, CTranslate2), offline.

Each audio window is transcribed by :class:`~bastion.models.whisper.WhisperTranscriber`
(loaded once per analyzer): Whisper base for any language, Whisper tiny.en when the
language is English and ``fast_english`` is on, voice activity detection first so that
silence and noise give no text. The output of a window is

- one :class:`~bastion.results.TextLine` per transcript segment (engine ``whisper``,
  the language heard, confidence ``exp(avg_logprob) × 100``), which the engine hands to
  the policy's lists (``Blocked Word``, ``Blocked Domain`` for words and URLs spoken) and
  to the ``text`` analyzers of stage two (``toxicity``) like OCR's lines;
- the transcript (``extra["transcript"]``): the same segments as
  :class:`~bastion.results.TranscriptSegment` with times in seconds from the start of
  the media (the window's start plus the segment's time), and their words.

The analyzer emits no labels of its own. Its version names the model files it may use
by their sha256 (``whisper-base-<sha256 prefix>``), so results of another model are
never reused. It is one of the default analyzers, and the default policy names it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field

from bastion.analyzers.base import AnalyzerConfig, AudioAnalyzer, RuntimeContext
from bastion.errors import MediaError
from bastion.media.types import AudioWindow
from bastion.models import whisper_files
from bastion.models.whisper import SAMPLE_RATE, Transcript, WhisperTranscriber
from bastion.models.whisper_config import WhisperConfig, WhisperModelName
from bastion.results import AnalyzerOutput, TextLine, TranscriptSegment, TranscriptWord

ENGINE = "whisper"
"""The ``engine`` of the text lines this analyzer produces."""

TRANSCRIPT_KEY = "transcript"
"""Key of the transcript (a list of :class:`TranscriptSegment`) in an output's ``extra``."""

MODEL_VERSIONS: dict[WhisperModelName, str] = {
    "base": whisper_files.BASE_DIR_NAME,
    "tiny.en": f"whisper-tiny.en-{whisper_files.TINY_EN_FILES[0].sha256[:12]}",
}
"""Each Whisper model's name with the first hex digits of its ``model.bin``'s sha256."""


class SpeechConfig(AnalyzerConfig, WhisperConfig):
    """The speech analyzer: the transcriber's settings (:class:`WhisperConfig`) and the
    analyzer's own."""

    type: Literal["speech"] = "speech"
    max_batch_size: int = Field(
        1,
        ge=1,
        le=64,
        description="Audio windows per model call; Whisper transcribes them one at a time, "
        "so more only makes windows wait for each other.",
    )


class SpeechAnalyzer(AudioAnalyzer[SpeechConfig, AudioWindow]):
    """Transcribes speech in audio windows into text lines and a timed transcript."""

    kind = "speech"
    config_model = SpeechConfig
    input: ClassVar[str] = "16 kHz mono audio window (30 s), silence cut out by the VAD"
    emits = ("text", "transcript")
    description = (
        "Speech to text (Whisper, offline): text lines for the lists and text analyzers, "
        "and a transcript with times"
    )

    def __init__(self, config: SpeechConfig, context: RuntimeContext) -> None:
        super().__init__(config, context)
        self._transcriber: WhisperTranscriber | None = None
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return "+".join(f"whisper-{name}" for name in self._models())

    @property
    def version(self) -> str:
        return "+".join(MODEL_VERSIONS[name] for name in self._models())

    def _models(self) -> tuple[WhisperModelName, ...]:
        if self.config.model == "base" and self.config.fast_english:
            return ("base", "tiny.en")
        return (self.config.model,)

    def categories(self) -> list[str]:
        return []

    @property
    def transcriber(self) -> WhisperTranscriber:
        """The transcriber, made on first use (its models load in :meth:`load`)."""
        with self._lock:
            if self._transcriber is None:
                self._transcriber = WhisperTranscriber(self.config, self.context.cache_dir)
            return self._transcriber

    def load(self) -> None:
        """Load the model the configuration transcribes with (``tiny.en`` when it forces
        English and ``fast_english`` is on, else its ``model``); a window whose language
        calls for the other one loads it on first use."""
        model, _, _ = self.transcriber.plan()
        self.transcriber.load([model])

    @property
    def provider(self) -> str | None:
        devices = {d for name in self._models() if (d := self.transcriber.device(name)) is not None}
        return ",".join(sorted(devices)) or None

    def preprocess(self, window: AudioWindow) -> AudioWindow:
        if window.sample_rate != SAMPLE_RATE:
            raise MediaError(
                f"audio windows must be sampled at {SAMPLE_RATE} Hz, not {window.sample_rate}"
            )
        return window

    def analyze(self, batch: Sequence[AudioWindow]) -> list[AnalyzerOutput]:
        out = []
        for window in batch:
            transcript = self.transcriber.transcribe(
                window.samples, language=window.language, allowed_languages=window.languages
            )
            out.append(self._output(window, transcript))
        return out

    def _output(self, window: AudioWindow, transcript: Transcript) -> AnalyzerOutput:
        lines: list[TextLine] = []
        segments: list[TranscriptSegment] = []
        at = window.start_s
        for seg in transcript.segments:
            if not seg.text:
                continue
            confidence = round(min(100.0, max(0.0, math.exp(seg.avg_logprob) * 100)), 2)
            lines.append(
                TextLine(
                    text=seg.text,
                    confidence=confidence,
                    language=transcript.language,
                    engine=ENGINE,
                )
            )
            segments.append(
                TranscriptSegment(
                    start_s=_seconds(at + seg.start),
                    end_s=_seconds(at + seg.end),
                    text=seg.text,
                    language=transcript.language,
                    confidence=confidence,
                    analyzer=self.name,
                    words=[
                        TranscriptWord(
                            start_s=_seconds(at + w.start),
                            end_s=_seconds(at + w.end),
                            text=w.text,
                            probability=round(min(1.0, max(0.0, w.probability)), 4),
                        )
                        for w in seg.words
                    ],
                )
            )
        return AnalyzerOutput(text=lines, extra={TRANSCRIPT_KEY: segments})


def _seconds(value: float) -> float:
    return round(value, 3)
