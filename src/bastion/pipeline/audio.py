"""Audio moderation: windows of an audio file or of a video's sound go the one way in.

:func:`moderate_audio` decodes the first audio stream of an audio file or a video into
windows of ``window_s`` seconds (:func:`~bastion.media.audio.iter_audio_windows`, in a
thread of its own, one window ahead of the analysis: memory holds a few windows whatever
the length) and moderates each through
:meth:`Moderation.moderate_audio_window
<bastion.pipeline.moderation.Moderation.moderate_audio_window>`, like an image: the
policy's audio analyzers (``speech``) transcribe it, its text analyzers (``toxicity``)
and lists (``Blocked Word``, ``Blocked Domain``) read what was said, the policy decides.

The window results become an :class:`AudioResult`: the transcript with times, every
label with the time range of the transcript segment it is about (the window's range
when it is about no one segment), segments of consecutive flagged windows, the
strictest decision. A window an analyzer failed on is never allowed (review), as an
image is not.

A policy without an analyzer of audio cannot moderate audio: :class:`NoAudioAnalyzer`
(422 ``no_audio_analyzer``) says so rather than allowing what nobody listened to.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bastion.analyzers.base import ContentKind
from bastion.errors import PolicyError
from bastion.media.audio import AudioInfo, AudioLimits, AudioSource, iter_audio_windows, probe_audio
from bastion.media.digest import source_sha256
from bastion.media.types import AudioWindow
from bastion.pipeline.engine import Engine
from bastion.pipeline.merge import distinct_errors
from bastion.pipeline.moderation import Moderation
from bastion.policy.decide import strictest, strongest_reasons
from bastion.policy.lists import CompiledLists
from bastion.policy.model import Lists, Policy
from bastion.results import Decision, Label, ModerationResult, Reason, TranscriptSegment
from bastion.text.urls import extract_urls

__all__ = [
    "AudioLabel",
    "AudioMedia",
    "AudioResult",
    "AudioSegment",
    "AudioTimings",
    "AudioWindowResult",
    "NoAudioAnalyzer",
    "has_audio_analyzer",
    "moderate_audio",
]

_MAX_PHRASE_WORDS = 12
_Span = tuple[float, float, str | None]
"""When something was said (start and end, seconds into the media) and the segment's text."""


class NoAudioAnalyzer(PolicyError):
    """The policy names no analyzer of audio, so audio under it would go unheard."""

    code = "no_audio_analyzer"
    status = 422


class AudioLabel(BaseModel):
    """A label found in the audio, and when: the words of a blocked word or phrase, the
    transcript segment of a spoken URL or of a toxic sentence; the window's time range
    when the label is about no one segment."""

    model_config = ConfigDict(extra="forbid")

    name: str
    parent: str | None
    confidence: float
    analyzer: str
    source: str | None = Field(None, description="What the label is about, as in an image's.")
    start_s: float = Field(description="When it starts being said, seconds into the media.")
    end_s: float = Field(description="When it stops being said, seconds into the media.")
    text: str | None = Field(None, description="The transcript segment, when it is about one.")


class AudioWindowResult(BaseModel):
    """One analysed window, compact."""

    model_config = ConfigDict(extra="forbid")

    start_s: float
    end_s: float
    decision: Decision
    reasons: list[Reason] = Field(default_factory=list)
    language: str | None = Field(None, description="The language heard in the window.")
    cached: bool = Field(False, description="The same samples had been analysed before.")


class AudioSegment(BaseModel):
    """Consecutive flagged windows (decision other than allow)."""

    model_config = ConfigDict(extra="forbid")

    start_s: float = Field(description="Start of the first flagged window.")
    end_s: float = Field(description="End of the last flagged window.")
    decision: Decision
    labels: list[str] = Field(description="Labels that made the windows flagged.")
    max_confidence: float
    windows: int


class AudioMedia(BaseModel):
    """What the input declares and what decoding found."""

    model_config = ConfigDict(extra="forbid")

    format: str = Field(description="What the leading bytes say, e.g. 'MP3 audio'.")
    container: str
    codec: str | None
    sample_rate: int | None = Field(description="Declared rate of the audio stream, Hz.")
    channels: int | None
    duration_s: float = Field(description="Length of the audio decoded, in seconds.")
    declared_duration_s: float | None = Field(
        None, description="The duration the container declares; None when it declares none."
    )
    bytes: int
    windows: int = Field(description="Windows analysed.")
    window_s: float = Field(description="Length of each window, in seconds.")
    warnings: list[str] = Field(default_factory=list)


class AudioTimings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decode_ms: float = Field(description="Time spent decoding and resampling the audio.")
    total_ms: float = Field(description="Wall time of the whole moderation.")
    realtime_factor: float | None = Field(
        description="Seconds of audio covered per second of wall time."
    )


class AudioResult(BaseModel):
    """The whole answer for one audio file, or for the sound of a video."""

    model_config = ConfigDict(extra="forbid")

    decision: Decision = Field(description="The strictest decision of any window.")
    reasons: list[Reason] = Field(description="Each rule that fired, at its highest confidence.")
    segments: list[AudioSegment]
    labels: list[AudioLabel] = Field(description="Every label found, in order of time.")
    transcript: list[TranscriptSegment] = Field(description="What was said, in order of time.")
    language: str | None = Field(
        None, description="The language heard longest; None when no speech was heard."
    )
    windows: list[AudioWindowResult]
    media: AudioMedia
    hashes: dict[str, str]
    policy: str
    policy_version: str
    versions: dict[str, str]
    undetectable: list[str] = Field(default_factory=list)
    errors: list[dict[str, str]] = Field(default_factory=list)
    timings: AudioTimings


def has_audio_analyzer(engine: Engine, policy: Policy) -> bool:
    """Whether ``policy`` names a configured analyzer of audio windows."""
    return any(
        engine.analyzers[n].consumes is ContentKind.AUDIO_WINDOW
        for n in policy.analyzers
        if n in engine.analyzers
    )


class _Windows:
    """The decoder: windows pulled one at a time in the decoding thread, timed."""

    def __init__(
        self,
        source: AudioSource,
        limits: AudioLimits,
        window_s: float,
        language: str | None,
        languages: tuple[str, ...] | None = None,
    ) -> None:
        self.warnings: list[str] = []
        self.seconds = 0.0
        self.decoded_s = 0.0
        self._language = language
        self._languages = languages
        self._windows: Iterator[AudioWindow] = iter_audio_windows(
            source, limits, window_s, warnings=self.warnings
        )

    def next(self) -> AudioWindow | None:
        started = time.perf_counter()
        try:
            window = next(self._windows, None)
        finally:
            self.seconds += time.perf_counter() - started
        if window is None:
            return None
        self.decoded_s = window.end_s
        if self._language is not None or self._languages is not None:
            window = dataclasses.replace(window, language=self._language, languages=self._languages)
        return window

    def close(self) -> None:
        close = getattr(self._windows, "close", None)
        if close is not None:
            close()


class _Progress:
    """Reports the end of the furthest analysed window as a fraction of the declared
    duration, never going back."""

    def __init__(self, callback: Callable[[float], None] | None, duration_s: float | None):
        self._callback = callback
        self._duration = duration_s
        self._last = 0.0

    def window_done(self, end_s: float) -> None:
        if self._callback is None or not self._duration:
            return
        fraction = min(0.999, end_s / self._duration)
        if fraction > self._last:
            self._last = fraction
            self._callback(fraction)

    def finished(self) -> None:
        if self._callback is not None:
            self._callback(1.0)


async def moderate_audio(
    moderation: Moderation,
    source: AudioSource,
    policy: Policy,
    lists: Lists | None = None,
    *,
    tenant: str | None = None,
    window_s: float = 30.0,
    language: str | None = None,
    languages: Sequence[str] | None = None,
    progress: Callable[[float], None] | None = None,
    limits: AudioLimits | None = None,
    concurrency: int = 2,
) -> AudioResult:
    """Moderate the sound of ``source`` (an audio file or a video, as a path or bytes)
    under ``policy`` and the tenant's extra ``lists``, window by window.

    ``tenant`` is whose audio it is (results are reused within one tenant only);
    ``language`` forces the spoken language (ISO 639-1), else it is detected (among
    ``languages`` when given: the most probable of them);
    ``progress`` is called on the event loop with the fraction 0–1 analysed so far;
    ``concurrency`` windows are analysed at once while the next is decoded.

    Raises :class:`NoAudioAnalyzer` when the policy has no analyzer of audio, and the
    media errors of :func:`~bastion.media.audio.probe_audio` and
    :func:`~bastion.media.audio.iter_audio_windows` for bad input.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    engine = moderation.engine
    if not has_audio_analyzer(engine, policy):
        raise NoAudioAnalyzer(
            f"the policy {policy.name!r} names no analyzer of audio (add 'speech' to its "
            "analyzers, and to the configured analyzers)",
            details={"policy": policy.name},
        )
    limits = limits or AudioLimits()
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    decoder = ThreadPoolExecutor(1, thread_name_prefix="audio-decode")
    windows: _Windows | None = None
    tasks: list[asyncio.Future[Any]] = []
    try:
        info = await loop.run_in_executor(decoder, probe_audio, source, limits)
        allowed = tuple(languages) if languages is not None else None
        windows = await loop.run_in_executor(
            decoder, _Windows, source, limits, window_s, language, allowed
        )
        hashing = asyncio.ensure_future(asyncio.to_thread(source_sha256, source))
        tasks.append(hashing)
        reporter = _Progress(progress, info.duration_s)
        queue: asyncio.Queue[AudioWindow | None] = asyncio.Queue(maxsize=concurrency)
        done: list[tuple[AudioWindow, ModerationResult]] = []
        active = windows

        async def produce() -> None:
            while (window := await loop.run_in_executor(decoder, active.next)) is not None:
                await queue.put(window)
            for _ in range(concurrency):
                await queue.put(None)

        async def work() -> None:
            while (window := await queue.get()) is not None:
                res = await moderation.moderate_audio_window(
                    window, policy, tenant=tenant, extra_lists=lists
                )
                done.append((window, res))
                reporter.window_done(window.end_s)

        tasks.append(asyncio.ensure_future(produce()))
        tasks.extend(asyncio.ensure_future(work()) for _ in range(concurrency))
        finished, _ = await asyncio.wait(tasks[1:], return_when=asyncio.FIRST_EXCEPTION)
        for task in finished:
            failure = task.exception()
            if failure is not None:
                raise failure
        sha256 = await hashing
        reporter.finished()
        compiled = engine.compiled_lists(policy.lists.merged(lists or Lists()))
        return _assemble(
            engine,
            done,
            policy,
            compiled,
            info=info,
            windows=windows,
            window_s=window_s,
            sha256=sha256,
            tenant=tenant,
            wall_s=time.perf_counter() - started,
        )
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if windows is not None:
            decoder.submit(windows.close)
        decoder.shutdown(wait=False)


def _words_saying(segment: TranscriptSegment, says: Callable[[str], bool]) -> _Span:
    """When in ``segment`` what ``says`` looks for was said: the shortest run of its words
    whose text (joined by spaces, or without: Whisper cuts ``example.com`` into
    ``example`` and ``.com``) it finds it in, else the whole segment."""
    words = segment.words
    for length in range(1, min(len(words), _MAX_PHRASE_WORDS) + 1):
        for first in range(len(words) - length + 1):
            run = [w.text for w in words[first : first + length]]
            if says(" ".join(run)) or (length > 1 and says("".join(run))):
                return words[first].start_s, words[first + length - 1].end_s, segment.text
    return segment.start_s, segment.end_s, segment.text


def _about(label: Label, transcript: list[TranscriptSegment], lists: CompiledLists) -> list[_Span]:
    """When, in one window's transcript, what ``label`` is about was said: the words of
    a blocked word or of a spoken URL, the segment of a toxic line; none when the label
    is about no segment."""
    source = label.source or ""
    says: Callable[[str], bool]
    if source.startswith("line:"):  # a text analyzer's label: line:<analyzer>:<n>
        analyzer, _, n = source[len("line:") :].rpartition(":")
        mine = [seg for seg in transcript if seg.analyzer == analyzer]
        about = [mine[int(n)]] if n.isdigit() and int(n) < len(mine) else []
        return [(seg.start_s, seg.end_s, seg.text) for seg in about]
    if label.name == "Blocked Word" and source.startswith("text:"):
        word = source[len("text:") :]

        def says(text: str) -> bool:
            return word in lists.blocked_words(text)

    elif label.name == "Blocked Domain" and source.startswith("url:"):
        url = source[len("url:") :]

        def says(text: str) -> bool:
            return url in extract_urls(text)

    else:
        return []
    return [_words_saying(seg, says) for seg in transcript if says(seg.text)]


def _labels(
    done: list[tuple[AudioWindow, ModerationResult]], lists: CompiledLists
) -> list[AudioLabel]:
    out: list[AudioLabel] = []
    for window, res in done:
        for label in res.labels:
            spans = _about(label, res.transcript, lists) or [(window.start_s, window.end_s, None)]
            out.extend(
                AudioLabel(
                    name=label.name,
                    parent=label.parent,
                    confidence=label.confidence,
                    analyzer=label.analyzer,
                    source=label.source,
                    start_s=round(start, 3),
                    end_s=round(end, 3),
                    text=text,
                )
                for start, end, text in spans
            )
    return sorted(out, key=lambda lab: (lab.start_s, -lab.confidence, lab.name))


def _segments(windows: list[AudioWindowResult]) -> list[AudioSegment]:
    out: list[AudioSegment] = []
    group: list[AudioWindowResult] = []

    def close() -> None:
        if not group:
            return
        conf: dict[str, float] = {}
        for w in group:
            for r in w.reasons:
                conf[r.label] = max(conf.get(r.label, 0.0), r.confidence)
        out.append(
            AudioSegment(
                start_s=group[0].start_s,
                end_s=group[-1].end_s,
                decision=strictest(w.decision for w in group),
                labels=sorted(conf, key=lambda name: -conf[name]),
                max_confidence=max(conf.values(), default=0.0),
                windows=len(group),
            )
        )
        group.clear()

    for w in windows:
        if w.decision == "allow" or (group and w.start_s > group[-1].end_s + 1e-6):
            close()
        if w.decision != "allow":
            group.append(w)
    close()
    return out


def _language(transcript: list[TranscriptSegment]) -> str | None:
    heard: dict[str, float] = {}
    for seg in transcript:
        if seg.language is not None:
            heard[seg.language] = heard.get(seg.language, 0.0) + max(seg.end_s - seg.start_s, 0.001)
    return max(heard, key=lambda code: heard[code]) if heard else None


def _assemble(
    engine: Engine,
    done: list[tuple[AudioWindow, ModerationResult]],
    policy: Policy,
    lists: CompiledLists,
    *,
    info: AudioInfo,
    windows: _Windows,
    window_s: float,
    sha256: str,
    tenant: str | None,
    wall_s: float,
) -> AudioResult:
    done.sort(key=lambda d: d[0].start_s)
    results = [res for _, res in done]
    transcript = [seg for res in results for seg in res.transcript]
    compact = [
        AudioWindowResult(
            start_s=round(window.start_s, 3),
            end_s=round(window.end_s, 3),
            decision=res.decision,
            reasons=res.reasons,
            language=_language(res.transcript),
            cached=res.cached,
        )
        for window, res in done
    ]
    names = [n for n in policy.analyzers if n in engine.analyzers]
    audio_names = engine.analyzers_for(names, ContentKind.AUDIO_WINDOW)
    not_installed = [
        {
            "analyzer": n,
            "code": "analyzer_not_installed",
            "message": f"policy names analyzer {n!r}, which is not configured",
        }
        for n in policy.analyzers
        if n not in engine.analyzers
    ]
    errors = distinct_errors([*not_installed, *(err for res in results for err in res.errors)])
    duration = windows.decoded_s
    return AudioResult(
        decision=strictest(res.decision for res in results),
        reasons=strongest_reasons(r for res in results for r in res.reasons),
        segments=_segments(compact),
        labels=_labels(done, lists),
        transcript=transcript,
        language=_language(transcript),
        windows=compact,
        media=AudioMedia(
            format=info.format,
            container=info.container,
            codec=info.codec,
            sample_rate=info.sample_rate,
            channels=info.channels,
            duration_s=round(duration, 3),
            declared_duration_s=(
                round(info.duration_s, 3) if info.duration_s is not None else None
            ),
            bytes=info.byte_size,
            windows=len(done),
            window_s=window_s,
            warnings=list(windows.warnings),
        ),
        hashes={"sha256": sha256},
        policy=policy.name,
        policy_version=policy.version,
        versions={n: engine.analyzers[n].version_for(tenant) for n in names},
        undetectable=engine.undetectable(policy, audio_names),
        errors=errors,
        timings=AudioTimings(
            decode_ms=round(windows.seconds * 1000, 2),
            total_ms=round(wall_s * 1000, 2),
            realtime_factor=round(duration / wall_s, 2) if wall_s > 0 else None,
        ),
    )
