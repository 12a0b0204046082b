"""Settings of the offline speech transcriber (Whisper over CTranslate2).

Kept apart from the transcriber so that reading settings never imports the speech
engine. These fields become the settings of the audio analyzer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

WhisperModelName = Literal["base", "tiny.en"]
"""``base``: Whisper base, multilingual. ``tiny.en``: Whisper tiny, English only."""

WhisperDevice = Literal["cpu", "cuda", "auto"]
WhisperComputeType = Literal["auto", "int8", "int8_float32", "int8_float16", "float16", "float32"]

_LANGUAGE_PATTERN = r"^[a-z]{2,3}$"


class VadConfig(BaseModel):
    """How voice activity detection (Silero VAD) cuts speech out of the audio."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        description="Transcribe only the stretches the VAD hears speech in: silence and "
        "noise give no segments (and no hallucinated text), and less audio is decoded.",
    )
    threshold: float = Field(
        0.5, gt=0, lt=1, description="Speech probability above which a frame counts as speech."
    )
    min_speech_duration_ms: int = Field(
        0, ge=0, le=10_000, description="Speech stretches shorter than this are dropped."
    )
    max_speech_duration_s: float | None = Field(
        None, gt=0, description="Split speech stretches longer than this; none: never split."
    )
    min_silence_duration_ms: int = Field(
        2000, ge=0, le=60_000, description="Silence this long ends a speech stretch."
    )
    speech_pad_ms: int = Field(
        400, ge=0, le=5_000, description="Audio kept on each side of a speech stretch."
    )


class WhisperConfig(BaseModel):
    """Which Whisper model transcribes speech, where it runs and how it decodes."""

    model_config = ConfigDict(extra="forbid")

    model: WhisperModelName = Field(
        "base",
        description="The model for speech in any language: 'base' (multilingual) or "
        "'tiny.en' (English only: every request is transcribed as English).",
    )
    fast_english: bool = Field(
        True,
        description="Use 'tiny.en' (about three times faster than 'base') when the language "
        "is forced to English or restricted to English alone.",
    )
    device: WhisperDevice = Field(
        "cpu",
        description="Where the model runs: 'cpu', 'cuda' (falls back to the CPU when no GPU "
        "can be used) or 'auto' (a GPU when there is one).",
    )
    compute_type: WhisperComputeType = Field(
        "auto",
        description="Precision of the weights while running: 'auto' is int8 on the CPU and "
        "float16 on a GPU.",
    )
    cpu_threads: int = Field(
        0, ge=0, le=256, description="Threads per transcription on the CPU; 0 = all cores."
    )
    beam_size: int = Field(
        5, ge=1, le=16, description="Beam width of the decoder; 1 is greedy (fastest)."
    )
    vad: VadConfig = Field(
        default_factory=VadConfig, description="Voice activity detection before decoding."
    )
    language: str | None = Field(
        None,
        pattern=_LANGUAGE_PATTERN,
        description="Force this language (an ISO 639-1 code such as 'en' or 'de') unless a "
        "request says otherwise; none: detect it.",
    )
    allowed_languages: list[str] | None = Field(
        None,
        min_length=1,
        description="When detecting, pick the most probable of these languages (ISO 639-1 "
        "codes), which avoids rare mislabels such as German heard as Yiddish; none: any.",
    )

    @model_validator(mode="after")
    def _check_languages(self) -> WhisperConfig:
        for code in self.allowed_languages or ():
            if not _is_language_code(code):
                raise ValueError(f"allowed_languages: {code!r} is not a language code")
        return self


def _is_language_code(code: str) -> bool:
    return 2 <= len(code) <= 3 and code.isascii() and code.isalpha() and code.islower()
