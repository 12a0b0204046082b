"""Offline speech recognition: Whisper (CTranslate2) through faster-whisper.

:class:`WhisperTranscriber` turns 16 kHz mono float32 samples into a
:class:`Transcript`: the language, segments with their times and text, and each word
with its times and probability. The language is

- forced: the caller says which (``language``);
- restricted: Whisper detects it, and the most probable of ``allowed_languages`` is
  taken (Whisper base hears some German as Yiddish, for instance);
- detected: whatever Whisper hears.

Whisper base (multilingual) transcribes; Whisper tiny.en, about three times faster,
takes over when the language is forced or restricted to English alone (``fast_english``).
Models come from the installed packages (:mod:`bastion.models.whisper_files`), are
checked by sha256, load once per transcriber and are reused; nothing is downloaded.
:meth:`WhisperTranscriber.transcribe` blocks for the whole transcription: call it from
a worker thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from bastion.errors import AnalyzerUnavailable, InputError, MediaError
from bastion.models import whisper_files
from bastion.models.whisper_config import WhisperConfig, WhisperModelName

log = logging.getLogger(__name__)

SAMPLE_RATE: Final = 16_000
"""The sample rate Whisper listens at; :meth:`WhisperTranscriber.transcribe` takes no other."""

_UNSPACED_LANGUAGES: Final = frozenset({"zh", "yue", "ja", "th", "lo", "my", "km", "bo"})


class UnsupportedLanguage(InputError):
    """A language the chosen Whisper model cannot transcribe, or a contradictory choice."""

    code = "unsupported_language"


@dataclass(frozen=True, slots=True)
class Word:
    """One word heard, with its times (seconds from the start of the audio)."""

    start: float
    end: float
    text: str
    probability: float


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of speech Whisper decoded as one piece of text.

    ``avg_logprob`` is the mean log-probability of its tokens (closer to 0: surer);
    ``no_speech_prob`` how likely Whisper thought the stretch holds no speech.
    ``words`` is empty unless word timestamps were asked for.
    """

    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    words: tuple[Word, ...]


@dataclass(frozen=True, slots=True)
class Transcript:
    """What was said in a stretch of audio.

    ``language`` is an ISO 639-1 code (``None`` when no speech was heard and the language
    was not forced) and ``language_probability`` how sure detection was of it (1 when
    forced). ``speech_duration`` is the audio the VAD kept; ``compute_s`` the seconds
    the transcription took.
    """

    model: WhisperModelName
    language: str | None
    language_probability: float
    duration: float
    speech_duration: float
    segments: tuple[Segment, ...]
    compute_s: float

    @property
    def text(self) -> str:
        """The segments' text, joined as the language writes it."""
        joiner = "" if self.language in _UNSPACED_LANGUAGES else " "
        return joiner.join(s.text for s in self.segments)

    @property
    def real_time_factor(self) -> float:
        """Seconds of compute per second of audio."""
        return self.compute_s / self.duration if self.duration > 0 else 0.0


@dataclass(frozen=True, slots=True)
class _Plan:
    """Which model decodes and how the language is chosen for one request."""

    model: WhisperModelName
    forced: str | None
    allowed: tuple[str, ...] | None


class WhisperTranscriber:
    """Whisper models loaded once and reused; one :meth:`transcribe` per stretch of audio.

    ``cache_dir`` is the runtime cache (``RuntimeConfig.cache_dir``), where Whisper base
    is joined from its packages. Models load on first use or on :meth:`load`.
    Thread-safe: concurrent calls share the loaded models.
    """

    def __init__(self, config: WhisperConfig, cache_dir: Path) -> None:
        self.config = config
        self.cache_dir = cache_dir
        self._models: dict[WhisperModelName, Any] = {}
        self._devices: dict[WhisperModelName, str] = {}
        self._lock = threading.Lock()

    # -- loading --------------------------------------------------------------------

    def models_in_use(self) -> tuple[WhisperModelName, ...]:
        """The models this configuration may use."""
        if self.config.model == "base" and self.config.fast_english:
            return ("base", "tiny.en")
        return (self.config.model,)

    def load(self, models: Sequence[WhisperModelName] | None = None) -> None:
        """Load ``models`` (by default every model in use) now rather than on first use."""
        for name in models or self.models_in_use():
            self._model(name)

    def device(self, name: WhisperModelName) -> str | None:
        """Where a loaded model runs ('cpu' or 'cuda'); ``None`` before it loads."""
        return self._devices.get(name)

    def _model(self, name: WhisperModelName) -> Any:
        with self._lock:
            model = self._models.get(name)
            if model is None:
                model, device = self._load(name)
                self._models[name] = model
                self._devices[name] = device
            return model

    def _load(self, name: WhisperModelName) -> tuple[Any, str]:
        folder = (
            whisper_files.base_model_dir(self.cache_dir)
            if name == "base"
            else whisper_files.tiny_en_model_dir()
        )
        try:
            import ctranslate2
            from faster_whisper import WhisperModel
        except ImportError as exc:  # pragma: no cover - a dependency of Bastion
            raise AnalyzerUnavailable(f"faster-whisper is not installed: {exc}") from exc
        threads = self.config.cpu_threads or (os.cpu_count() or 1)
        device = self.config.device
        if device != "cpu":
            gpus = ctranslate2.get_cuda_device_count()
            if gpus > 0:
                compute = self._compute_type("cuda")
                try:
                    model = WhisperModel(
                        str(folder),
                        device="cuda",
                        compute_type=compute,
                        cpu_threads=threads,
                        local_files_only=True,
                    )
                    return model, "cuda"
                except (RuntimeError, ValueError) as exc:
                    log.warning("whisper %s cannot run on the GPU (%s); using the CPU", name, exc)
            elif device == "cuda":
                log.warning("whisper %s: no CUDA device can be used; using the CPU", name)
        try:
            model = WhisperModel(
                str(folder),
                device="cpu",
                compute_type=self._compute_type("cpu"),
                cpu_threads=threads,
                local_files_only=True,
            )
        except (RuntimeError, ValueError) as exc:
            raise AnalyzerUnavailable(f"whisper {name} failed to load: {exc}") from exc
        return model, "cpu"

    def _compute_type(self, device: str) -> str:
        wanted = self.config.compute_type
        if device == "cpu" and (wanted == "auto" or "float16" in wanted):
            return "int8"  # the CPU has no float16 kernels
        if wanted == "auto":
            return "float16"
        return wanted

    # -- transcribing -----------------------------------------------------------------

    def plan(
        self, language: str | None = None, allowed_languages: Sequence[str] | None = None
    ) -> tuple[WhisperModelName, str | None, tuple[str, ...] | None]:
        """Which model transcribes, which language is forced and which are allowed, for a
        request's ``language`` / ``allowed_languages`` (the configuration's when both are
        ``None``). Raises :class:`UnsupportedLanguage`."""
        p = self._plan(language, allowed_languages)
        return p.model, p.forced, p.allowed

    def _plan(self, language: str | None, allowed_languages: Sequence[str] | None) -> _Plan:
        if language is None and allowed_languages is None:
            language, allowed_languages = self.config.language, self.config.allowed_languages
        allowed = tuple(dict.fromkeys(allowed_languages)) if allowed_languages is not None else None
        supported = _supported_languages()
        for code in (language, *(allowed or ())):
            if code is not None and code not in supported:
                raise UnsupportedLanguage(f"{code!r} is not a language Whisper transcribes")
        if allowed is not None and not allowed:
            raise UnsupportedLanguage("allowed_languages is empty")
        if language is not None and allowed is not None and language not in allowed:
            raise UnsupportedLanguage(
                f"the language {language!r} is not one of the allowed {list(allowed)}"
            )
        if language is None and allowed is not None and len(allowed) == 1:
            language, allowed = allowed[0], None
        if language is not None:
            allowed = None
        if self.config.model == "tiny.en":
            if language not in (None, "en") or (allowed is not None and "en" not in allowed):
                raise UnsupportedLanguage("the configured model 'tiny.en' transcribes English only")
            return _Plan("tiny.en", "en", None)
        if language == "en" and self.config.fast_english:
            return _Plan("tiny.en", "en", None)
        return _Plan("base", language, allowed)

    def transcribe(
        self,
        samples: npt.NDArray[np.floating[Any]],
        *,
        language: str | None = None,
        allowed_languages: Sequence[str] | None = None,
        word_timestamps: bool = True,
        vad_filter: bool | None = None,
    ) -> Transcript:
        """Transcribe ``samples`` (mono, 16 kHz, float in [-1, 1]).

        ``language`` forces the language; ``allowed_languages`` restricts detection to
        those; neither: the configuration's choice, else detection. ``vad_filter``
        defaults to the configuration's. Blocks until done: run it in a thread.
        Raises :class:`UnsupportedLanguage` for a language the model cannot transcribe
        and :class:`~bastion.errors.MediaError` for samples that are not mono audio.
        """
        audio = _check_samples(samples)
        plan = self._plan(language, allowed_languages)
        vad = self.config.vad.enabled if vad_filter is None else vad_filter
        duration = len(audio) / SAMPLE_RATE
        started = time.perf_counter()
        if len(audio) == 0:
            return Transcript(
                plan.model, plan.forced, 1.0 if plan.forced else 0.0, 0.0, 0.0, (), 0.0
            )
        model = self._model(plan.model)
        segments, info = self._run(model, audio, plan.forced, word_timestamps, vad)
        chosen, probability = info.language, float(info.language_probability)
        if plan.allowed is not None and info.all_language_probs:
            probs = dict(info.all_language_probs)
            best = max(plan.allowed, key=lambda code: probs.get(code, 0.0))
            if best != chosen:
                log.debug("whisper heard %r; the most probable allowed is %r", chosen, best)
                segments, info = self._run(model, audio, best, word_timestamps, vad)
                chosen = best
            probability = float(probs.get(best, 0.0))
        decoded = tuple(_segment(s) for s in segments)  # decoding happens here
        speech = float(info.duration_after_vad)
        if plan.forced is None and (speech <= 0 or not decoded):
            chosen, probability = None, 0.0
        return Transcript(
            model=plan.model,
            language=chosen,
            language_probability=probability if plan.forced is None else 1.0,
            duration=duration,
            speech_duration=speech,
            segments=decoded,
            compute_s=time.perf_counter() - started,
        )

    def _run(
        self,
        model: Any,
        audio: npt.NDArray[np.float32],
        language: str | None,
        words: bool,
        vad: bool,
    ) -> tuple[Any, Any]:
        v = self.config.vad
        vad_parameters = {
            "threshold": v.threshold,
            "min_speech_duration_ms": v.min_speech_duration_ms,
            "max_speech_duration_s": v.max_speech_duration_s or float("inf"),
            "min_silence_duration_ms": v.min_silence_duration_ms,
            "speech_pad_ms": v.speech_pad_ms,
        }
        segments, info = model.transcribe(
            audio,
            language=language,
            beam_size=self.config.beam_size,
            word_timestamps=words,
            vad_filter=vad,
            vad_parameters=vad_parameters if vad else None,
        )
        return segments, info


def _supported_languages() -> frozenset[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


def _check_samples(samples: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    if not isinstance(samples, np.ndarray) or samples.ndim != 1:
        raise MediaError("audio samples must be a one-dimensional (mono) array")
    if not np.issubdtype(samples.dtype, np.floating):
        raise MediaError(f"audio samples must be floats in [-1, 1], not {samples.dtype}")
    audio = np.ascontiguousarray(samples, dtype=np.float32)
    if not np.isfinite(audio).all():
        raise MediaError("audio samples must be finite numbers")
    return audio


def _segment(s: Any) -> Segment:
    words = tuple(
        Word(float(w.start), float(w.end), str(w.word).strip(), float(w.probability))
        for w in (s.words or ())
    )
    return Segment(
        start=float(s.start),
        end=float(s.end),
        text=str(s.text).strip(),
        avg_logprob=float(s.avg_logprob),
        no_speech_prob=float(s.no_speech_prob),
        words=words,
    )
