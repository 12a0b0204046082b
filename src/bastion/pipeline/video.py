"""Video moderation: sampled frames go through the image path, results are merged over time.

Every sampled frame becomes a one-frame :class:`DecodedImage` (its ``sha256`` is that
of the frame's RGB pixels and shape) and goes the one way into moderation
(:class:`~bastion.pipeline.moderation.Moderation`), exactly like an uploaded image:
preprocessing in the engine's worker pool, model calls through each analyzer's batcher
(so frames in flight are batched together), a result cache of their own (identical
frames are analysed once; frames never evict image results) and the policy. Decoding
runs in a thread of its own while up to ``concurrency`` frames are being moderated; a
bounded queue between the two keeps memory flat whatever the length of the video.

With ``reuse`` on, a sampled frame that did not change from the last analysed frame
(:mod:`bastion.pipeline.frame_reuse`, judged in the decoding thread) is not moderated
again: its :class:`FrameResult` carries that frame's analysis with its own index and
time, and says which frame it copies (``reused_from``). Reused frames count in the
segments and label summaries like analysed ones, so a still blocked scene is one
segment spanning it; they have no embedding of their own.

The per-frame decisions are then merged: the video's decision is the strictest
frame decision, flagged frames (decision other than allow) close together in time
form violation segments, and every label is summarised with where it was seen.
Times are those of the content clock of :mod:`bastion.media.video` (timestamp resets
and jumps bridged, the declared duration ignored), and a video of which part could
not be analysed (damaged, truncated, cut short by max_frames) is never allowed: an
allow becomes review, with a ``video_incomplete`` error saying what was missed.

When the policy names an analyzer of audio (``speech``) and the video has sound, the
sound is moderated alongside the frames (:func:`bastion.pipeline.audio.moderate_audio`)
and its :class:`~bastion.pipeline.audio.AudioResult` is the result's ``audio``; the
video's decision is then the strictest of its frames' and its sound's. Sound that could
not be decoded leaves ``audio`` empty, adds an error with the media error's code and
turns an allow into review.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from bastion.errors import BastionError
from bastion.media.digest import frame_sha256, source_sha256
from bastion.media.types import DecodedImage, Frame
from bastion.media.video import (
    FrameSampler,
    TimestampDiscontinuity,
    VideoLimits,
    VideoSampling,
    VideoSource,
    sample_frames,
)
from bastion.media.video_config import FrameReuse
from bastion.pipeline.audio import AudioResult, has_audio_analyzer, moderate_audio
from bastion.pipeline.frame_reuse import UnchangedFrames
from bastion.pipeline.merge import distinct_errors
from bastion.pipeline.moderation import Moderation, VideoFrameImage
from bastion.policy.decide import by_severity, strictest, strongest_reasons
from bastion.policy.model import Lists, Policy
from bastion.results import (
    Decision,
    ModerationResult,
    Reason,
    Unserialised,
    UrlOrigin,
)

__all__ = [
    "FrameLabel",
    "FrameResult",
    "FrameTag",
    "LabelSummary",
    "Segment",
    "VideoMedia",
    "VideoResult",
    "VideoTimings",
    "moderate_video",
]

_THUMBNAIL_SIDE = 320


class FrameLabel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parent: str | None
    confidence: float
    analyzer: str


class FrameTag(BaseModel):
    """A descriptive tag of one frame (what it shows, not a moderation label)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    confidence: float


class FrameResult(BaseModel):
    """One sampled frame, compact: analysed, or carrying the analysis of an unchanged
    earlier frame (``reused_from``)."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(description="Frame number in the stream (time × frame rate).")
    timestamp_ms: int
    decision: Decision
    reasons: list[Reason] = Field(default_factory=list)
    labels: list[FrameLabel] = Field(default_factory=list)
    tags: list[FrameTag] = Field(
        default_factory=list, description="Descriptive tags of the frame (e.g. ImageNet classes)."
    )
    text: list[str] = Field(default_factory=list, description="OCR lines.")
    codes: list[str] = Field(default_factory=list, description="QR/barcode payloads.")
    urls: list[str] = Field(default_factory=list)
    url_origins: list[UrlOrigin] = Field(
        default_factory=list,
        description="Where each URL was found, as in an image result: `index` is the "
        "position in this frame's `codes` or `text`.",
    )
    thumbnail: str | None = Field(None, description="JPEG of a flagged frame, when requested.")
    cached: bool = Field(False, description="The same pixels had been analysed before.")
    reused_from: int | None = Field(
        None,
        description="Index of the analysed frame whose analysis this frame carries: it "
        "looked unchanged from that frame, so the models were not run on it again "
        "(video reuse settings). None: the frame was analysed.",
    )


class Segment(BaseModel):
    """Flagged frames close together in time."""

    model_config = ConfigDict(extra="forbid")

    start_ms: int = Field(description="Time of the first flagged frame.")
    end_ms: int = Field(
        description="Time of the last flagged frame; the content may last until the next "
        "analysed frame."
    )
    decision: Decision
    labels: list[str] = Field(description="Labels that made the frames flagged.")
    max_confidence: float
    frames: int


class LabelSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parent: str | None
    max_confidence: float
    first_seen_ms: int
    last_seen_ms: int
    frames: int


class VideoMedia(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str
    container: str
    codec: str | None
    width: int
    height: int
    rotation: int = Field(0, description="Degrees the frames were turned to be upright.")
    fps: float | None
    duration_ms: int | None = Field(
        description="Length of the content, measured from the timestamps of its frames "
        "(discontinuities bridged), whatever the header declares."
    )
    declared_duration_ms: int | None = Field(
        None, description="The duration the header declares; None when it declares none."
    )
    has_audio: bool
    bytes: int
    frames_decoded: int
    frames_sampled: int
    frames_analyzed: int = Field(
        description="Sampled frames run through the analyzers (or found in the result cache)."
    )
    frames_reused: int = Field(
        0,
        description="Sampled frames that reused the analysis of an unchanged earlier frame "
        "instead (`reused_from`).",
    )
    seeks: int = Field(description="Skips past groups of pictures left undecoded.")
    discontinuity_count: int = Field(
        0, description="Points where the timestamps went backwards or jumped far ahead."
    )
    discontinuities: list[TimestampDiscontinuity] = Field(
        default_factory=list, description="The first of those points."
    )
    warnings: list[str] = Field(default_factory=list)


class VideoTimings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decode_ms: float = Field(description="Time spent decoding and converting frames.")
    compare_ms: float = Field(
        0.0,
        description="Time spent in the decoding thread comparing frames with the last "
        "analysed one, to reuse its analysis.",
    )
    total_ms: float = Field(description="Wall time of the whole moderation.")
    frames_per_s: float = Field(description="Frames analysed per second of wall time.")
    realtime_factor: float | None = Field(
        description="Seconds of video covered per second of wall time."
    )


class VideoResult(BaseModel):
    """The whole answer for one video."""

    model_config = ConfigDict(extra="forbid")

    decision: Decision = Field(
        description="The strictest decision of any analysed frame and of the sound (`audio`)."
    )
    reasons: list[Reason] = Field(description="Each rule that fired, at its highest confidence.")
    segments: list[Segment]
    labels: list[LabelSummary]
    tags: list[str] = Field(description="Descriptive tags seen, strongest first.")
    frames: list[FrameResult]
    stopped_early: bool = Field(
        description="Frames after a blocked one were left out (early_stop_on_block)."
    )
    complete: bool = Field(
        True,
        description="All of the video was sampled, from start to end of its content. False "
        "when frames were left out by early_stop_on_block, or when part of the video could "
        "not be analysed (damaged or truncated data, undecodable packets, max_frames "
        "reached): then `errors` has a `video_incomplete` entry saying why, and an allow "
        "becomes review.",
    )
    media: VideoMedia
    sampling: VideoSampling
    hashes: dict[str, str]
    policy: str
    policy_version: str
    versions: dict[str, str]
    undetectable: list[str] = Field(default_factory=list)
    errors: list[dict[str, str]] = Field(default_factory=list)
    timings: VideoTimings
    audio: AudioResult | None = Field(
        None,
        description="The moderation of the video's sound: its transcript, labels with times "
        "and decision. None when the policy names no analyzer of audio (`speech`), when "
        "the video has no sound, or when the sound could not be decoded (see `errors`).",
    )
    _frame_embeddings: Unserialised = PrivateAttr(default_factory=Unserialised)
    """Image embeddings of the analysed frames (frame index → analyzer → vector), kept
    for search indexing, never serialised; empty for a result read back."""

    def keep_frame_embeddings(self, embeddings: dict[int, dict[str, np.ndarray]]) -> None:
        """Keep the frames' embeddings (frame index → analyzer → vector), for search."""
        self._frame_embeddings = Unserialised(
            {i: dict(made) for i, made in embeddings.items() if made}
        )

    def frame_embeddings(self, analyzer: str | None = None) -> dict[int, np.ndarray]:
        """Each analysed frame's embedding (by :attr:`FrameResult.index`) made by
        ``analyzer`` (None: the first analyzer that made one for that frame)."""
        out: dict[int, np.ndarray] = {}
        for index, made in self._frame_embeddings.items():
            vector = next(iter(made.values()), None) if analyzer is None else made.get(analyzer)
            if vector is not None:
                out[index] = vector
        return out


@dataclass(slots=True)
class _Item:
    frame: Frame
    decoded: DecodedImage


@dataclass(slots=True)
class _Done:
    index: int
    timestamp_ms: int
    result: ModerationResult
    thumbnail: str | None
    reused_from: int | None = None


@dataclass(slots=True)
class _Reused:
    index: int
    timestamp_ms: int
    reused_from: int


def frame_image(frame: Frame, codec: str | None, sha256: str | None = None) -> DecodedImage:
    """A decoded video (or live) frame as moderation takes it, cached apart from images.
    ``sha256``: the frame's :func:`frame_sha256`, when the caller computed it already
    (hashing a frame takes milliseconds: a caller on an event loop hands it in)."""
    rgb = frame.rgb
    return VideoFrameImage(
        frames=(frame,),
        format=f"video frame ({codec or 'unknown codec'})",
        mode="RGB",
        width=frame.width,
        height=frame.height,
        sha256=sha256 if sha256 is not None else frame_sha256(rgb),
        byte_size=int(rgb.nbytes),
    )


def _next_item(sampler: FrameSampler, unchanged: UnchangedFrames | None) -> _Item | _Reused | None:
    """The next sampled frame: to analyse, or reusing an earlier one's analysis."""
    frame = next(sampler, None)
    if frame is None:
        return None
    reused = unchanged.check(frame) if unchanged is not None else None
    if reused is not None:
        return _Reused(frame.index, frame.timestamp_ms or 0, reused)
    return _Item(frame, frame_image(frame, sampler.info.codec))


def _write_thumbnail(rgb: np.ndarray, directory: Path) -> str:
    img = Image.fromarray(rgb)
    img.thumbnail((_THUMBNAIL_SIDE, _THUMBNAIL_SIDE), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    data = buf.getvalue()
    path = directory / f"{hashlib.sha256(data).hexdigest()[:32]}.jpg"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    return str(path)


def _frame_result(done: _Done) -> FrameResult:
    res = done.result
    return FrameResult(
        index=done.index,
        timestamp_ms=done.timestamp_ms,
        decision=res.decision,
        reasons=res.reasons,
        labels=[
            FrameLabel(
                name=lab.name,
                parent=lab.parent,
                confidence=lab.confidence,
                analyzer=lab.analyzer,
            )
            for lab in res.labels
        ],
        tags=[FrameTag(name=tag.name, confidence=tag.confidence) for tag in res.tags],
        text=[line.text for line in res.text],
        codes=[code.text for code in res.codes],
        urls=res.urls,
        url_origins=res.url_origins,
        thumbnail=done.thumbnail,
        cached=res.cached and done.reused_from is None,
        reused_from=done.reused_from,
    )


def default_segment_gap_ms(frames: list[FrameResult]) -> int:
    """Twice the usual spacing of analysed frames, at least two seconds."""
    stamps = [f.timestamp_ms for f in frames]
    gaps = [b - a for a, b in itertools.pairwise(stamps) if b > a]
    usual = statistics.median(gaps) if gaps else 0
    return max(2000, round(2 * usual))


def _segments(frames: list[FrameResult], max_gap_ms: int) -> list[Segment]:
    out: list[Segment] = []
    group: list[FrameResult] = []

    def close() -> None:
        if not group:
            return
        conf: dict[str, float] = {}
        for fr in group:
            for r in fr.reasons:
                conf[r.label] = max(conf.get(r.label, 0.0), r.confidence)
        out.append(
            Segment(
                start_ms=group[0].timestamp_ms,
                end_ms=group[-1].timestamp_ms,
                decision=strictest(fr.decision for fr in group),
                labels=sorted(conf, key=lambda name: -conf[name]),
                max_confidence=max(conf.values(), default=0.0),
                frames=len(group),
            )
        )
        group.clear()

    for fr in frames:
        if fr.decision == "allow":
            continue
        if group and fr.timestamp_ms - group[-1].timestamp_ms > max_gap_ms:
            close()
        group.append(fr)
    close()
    return out


def _label_summary(frames: list[FrameResult]) -> list[LabelSummary]:
    seen: dict[str, LabelSummary] = {}
    for fr in frames:
        strongest: dict[str, FrameLabel] = {}
        for lab in fr.labels:
            if lab.name not in strongest or lab.confidence > strongest[lab.name].confidence:
                strongest[lab.name] = lab
        for name, lab in strongest.items():
            best = lab.confidence
            found = seen.get(name)
            if found is None:
                seen[name] = LabelSummary(
                    name=name,
                    parent=lab.parent,
                    max_confidence=best,
                    first_seen_ms=fr.timestamp_ms,
                    last_seen_ms=fr.timestamp_ms,
                    frames=1,
                )
                continue
            found.max_confidence = max(found.max_confidence, best)
            found.first_seen_ms = min(found.first_seen_ms, fr.timestamp_ms)
            found.last_seen_ms = max(found.last_seen_ms, fr.timestamp_ms)
            found.frames += 1
    return sorted(seen.values(), key=lambda s: (-s.max_confidence, s.name))


def _tags(results: Iterable[ModerationResult], min_confidence: float) -> list[str]:
    best: dict[str, float] = {}
    for res in results:
        for tag in res.tags:
            if tag.confidence >= min_confidence:
                best[tag.name] = max(best.get(tag.name, 0.0), tag.confidence)
    return sorted(best, key=lambda name: -best[name])


class _Progress:
    """Reports the furthest analysed time as a fraction of the duration, never going back."""

    def __init__(self, callback: Callable[[float], None] | None, duration_s: float | None):
        self._callback = callback
        self._duration_ms = duration_s * 1000 if duration_s else None
        self._last = 0.0

    def frame_done(self, timestamp_ms: int) -> None:
        if self._callback is None or not self._duration_ms:
            return
        fraction = min(0.999, timestamp_ms / self._duration_ms)
        if fraction > self._last:
            self._last = fraction
            self._callback(fraction)

    def finished(self) -> None:
        if self._callback is not None:
            self._callback(1.0)


class _Parts:
    """Progress of parts done side by side (frames, sound): the least advanced one's."""

    def __init__(self, callback: Callable[[float], None] | None, *parts: str) -> None:
        self._callback = callback
        self._done = dict.fromkeys(parts, 0.0)
        self._last = 0.0

    def part(self, name: str) -> Callable[[float], None] | None:
        """The progress callback of one part; None when nobody listens."""
        if self._callback is None:
            return None

        def report(fraction: float) -> None:
            self._done[name] = fraction
            self._report(min(self._done.values()))

        return report

    def finished(self) -> None:
        self._report(1.0)

    def _report(self, fraction: float) -> None:
        if self._callback is not None and fraction > self._last:
            self._last = fraction
            self._callback(fraction)


async def _sound(
    moderation: Moderation,
    source: VideoSource,
    policy: Policy,
    extra_lists: Lists | None,
    tenant: str | None,
    progress: Callable[[float], None] | None,
    language: str | None,
    languages: Sequence[str] | None,
) -> AudioResult | dict[str, str]:
    """The video's sound moderated, or the error that stopped it."""
    try:
        return await moderate_audio(
            moderation,
            source,
            policy,
            extra_lists,
            tenant=tenant,
            progress=progress,
            language=language,
            languages=languages,
        )
    except BastionError as exc:
        return {"part": "audio", "code": exc.code, "message": f"audio: {exc.message}"}


async def moderate_video(
    moderation: Moderation,
    source: VideoSource,
    policy: Policy,
    sampling: VideoSampling | None = None,
    *,
    tenant: str | None = None,
    extra_lists: Lists | None = None,
    early_stop_on_block: bool = False,
    progress: Callable[[float], None] | None = None,
    thumbnails_dir: str | os.PathLike[str] | None = None,
    limits: VideoLimits | None = None,
    concurrency: int = 8,
    segment_gap_ms: int | None = None,
    tag_min_confidence: float = 25.0,
    language: str | None = None,
    languages: Sequence[str] | None = None,
    reuse: FrameReuse | None = None,
) -> VideoResult:
    """Moderate a video (file path or bytes) frame by frame under ``policy``.

    ``tenant`` is whose video it is: frame results are reused only within one tenant
    (see :mod:`bastion.pipeline.moderation`). ``sampling`` picks the frames (default:
    one per second). With ``early_stop_on_block`` no new frame is started once one is
    blocked (frames already in flight finish). ``progress`` is called on the event loop with the
    fraction 0–1 of the video analysed so far. With ``thumbnails_dir``, a small JPEG
    of each flagged frame is written there under a content-addressed name.
    ``segment_gap_ms`` is the largest gap between flagged frames of one segment
    (default: twice the usual spacing of analysed frames, at least 2 s).
    With ``reuse`` (enabled), a sampled frame unchanged from the last analysed one
    reuses its analysis (see :mod:`bastion.pipeline.frame_reuse`); None or disabled:
    every sampled frame is analysed.

    When ``policy`` names an analyzer of audio and the video has sound, the sound is
    moderated too and the result carries it in ``audio``; ``language`` forces its spoken
    language (ISO 639-1), else it is detected (among ``languages`` when given).

    Raises the media errors of :func:`bastion.media.video.probe` for bad input.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    sampling = sampling or VideoSampling()
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    decoder = ThreadPoolExecutor(1, thread_name_prefix="video-decode")
    sampler: FrameSampler | None = None
    tasks: list[asyncio.Future[Any]] = []
    sound: asyncio.Future[AudioResult | dict[str, str]] | None = None
    try:
        sampler = await loop.run_in_executor(decoder, sample_frames, source, sampling, limits)
        hashing = asyncio.ensure_future(asyncio.to_thread(source_sha256, source))
        tasks.append(hashing)
        thumbs = Path(thumbnails_dir) if thumbnails_dir is not None else None
        hear = sampler.info.has_audio and has_audio_analyzer(moderation.engine, policy)
        parts = _Parts(progress, "frames", "audio") if hear else _Parts(progress, "frames")
        if hear:
            sound = asyncio.ensure_future(
                _sound(
                    moderation,
                    source,
                    policy,
                    extra_lists,
                    tenant,
                    parts.part("audio"),
                    language,
                    languages,
                )
            )
        reporter = _Progress(parts.part("frames"), sampler.duration_s)
        queue: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=concurrency)
        stop = asyncio.Event()
        done: list[_Done] = []
        reused: list[_Reused] = []
        skipped = 0
        active = sampler
        unchanged = UnchangedFrames(reuse) if reuse is not None and reuse.enabled else None

        async def produce() -> None:
            while not stop.is_set():
                item = await loop.run_in_executor(decoder, _next_item, active, unchanged)
                if item is None:
                    break
                if isinstance(item, _Reused):
                    reused.append(item)
                    reporter.frame_done(item.timestamp_ms)
                    continue
                await queue.put(item)
            for _ in range(concurrency):
                await queue.put(None)

        async def work() -> None:
            nonlocal skipped
            while (item := await queue.get()) is not None:
                if stop.is_set():
                    skipped += 1
                    continue
                res = await moderation.moderate_decoded(
                    item.decoded, policy, tenant=tenant, extra_lists=extra_lists
                )
                thumb = None
                if thumbs is not None and res.decision != "allow":
                    thumb = await asyncio.to_thread(_write_thumbnail, item.frame.rgb, thumbs)
                stamp = item.frame.timestamp_ms or 0
                done.append(_Done(item.frame.index, stamp, res, thumb))
                reporter.frame_done(stamp)
                if early_stop_on_block and res.decision == "block":
                    stop.set()

        tasks.append(asyncio.ensure_future(produce()))
        tasks.extend(asyncio.ensure_future(work()) for _ in range(concurrency))
        finished, _ = await asyncio.wait(tasks[1:], return_when=asyncio.FIRST_EXCEPTION)
        for task in finished:
            failure = task.exception()
            if failure is not None:
                raise failure
        sha256 = await hashing
        reporter.finished()
        heard = await sound if sound is not None else None
        parts.finished()
        result = _assemble(
            sampler,
            done,
            reused,
            policy,
            sampling,
            stopped_early=stop.is_set() and (skipped > 0 or not sampler.complete),
            sha256=sha256,
            segment_gap_ms=segment_gap_ms,
            tag_min_confidence=tag_min_confidence,
            wall_s=time.perf_counter() - started,
            compare_s=unchanged.seconds if unchanged is not None else 0.0,
        )
        result = _with_sound(result, heard) if heard is not None else result
        return result
    finally:
        if sound is not None:
            tasks.append(sound)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if sampler is not None:
            decoder.submit(sampler.close)
        decoder.shutdown(wait=False)


def _with_sound(result: VideoResult, heard: AudioResult | dict[str, str]) -> VideoResult:
    """``result`` with its sound's moderation: the strictest decision of both, the
    reasons and errors of both; sound that could not be decoded is never allowed."""
    if isinstance(heard, dict):
        decision = "review" if result.decision == "allow" else result.decision
        return result.model_copy(update={"decision": decision, "errors": [*result.errors, heard]})
    reasons = by_severity([*result.reasons, *heard.reasons])
    errors = [*result.errors, *(e for e in heard.errors if e not in result.errors)]
    return result.model_copy(
        update={
            "decision": strictest([result.decision, heard.decision]),
            "reasons": reasons,
            "errors": errors,
            "audio": heard,
            "undetectable": sorted(set(result.undetectable) & set(heard.undetectable)),
        }
    )


def _with_reused(done: list[_Done], reused: list[_Reused]) -> list[_Done]:
    """The analysed frames and the reused ones, each carrying the analysis it copies, in
    time order. A reused frame whose analysed frame was left out (early stop) is left out
    too."""
    analysed = {d.index: d for d in done}
    out = list(done)
    for r in reused:
        source = analysed.get(r.reused_from)
        if source is not None:
            out.append(
                _Done(r.index, r.timestamp_ms, source.result, source.thumbnail, source.index)
            )
    out.sort(key=lambda d: (d.timestamp_ms, d.index))
    return out


def _assemble(
    sampler: FrameSampler,
    done: list[_Done],
    reused: list[_Reused],
    policy: Policy,
    sampling: VideoSampling,
    *,
    stopped_early: bool,
    sha256: str,
    segment_gap_ms: int | None,
    tag_min_confidence: float,
    wall_s: float,
    compare_s: float = 0.0,
) -> VideoResult:
    done.sort(key=lambda d: (d.timestamp_ms, d.index))
    every = _with_reused(done, reused)
    frames = [_frame_result(d) for d in every]
    results = [d.result for d in done]
    analysed = len(done)
    info = sampler.info
    gap = segment_gap_ms if segment_gap_ms is not None else default_segment_gap_ms(frames)
    duration_ms = round(sampler.duration_s * 1000)
    declared = info.duration_s
    unanalyzed = list(sampler.unanalyzed)
    whole = sampler.complete and not stopped_early and not unanalyzed
    covered_ms: int | None = duration_ms if whole else None
    if covered_ms is None and frames:
        covered_ms = frames[-1].timestamp_ms
    decision = strictest(f.decision for f in frames)
    errors = distinct_errors(err for res in results for err in res.errors)
    if unanalyzed:
        errors.append({"code": "video_incomplete", "message": "; ".join(unanalyzed)})
        if decision == "allow":
            decision = "review"  # fail safe: content that was not looked at is not allowed
    first = results[0] if results else None
    result = VideoResult(
        decision=decision,
        reasons=strongest_reasons(r for f in frames for r in f.reasons),
        segments=_segments(frames, gap),
        labels=_label_summary(frames),
        tags=_tags(results, tag_min_confidence),
        frames=frames,
        stopped_early=stopped_early,
        complete=whole,
        media=VideoMedia(
            format=info.format,
            container=info.container,
            codec=info.codec,
            width=info.width,
            height=info.height,
            rotation=sampler.rotation,
            fps=round(info.fps, 3) if info.fps else None,
            duration_ms=duration_ms,
            declared_duration_ms=round(declared * 1000) if declared is not None else None,
            has_audio=info.has_audio,
            bytes=info.byte_size,
            frames_decoded=sampler.frames_decoded,
            frames_sampled=sampler.frames_sampled,
            frames_analyzed=analysed,
            frames_reused=len(frames) - analysed,
            seeks=sampler.seeks,
            discontinuity_count=sampler.discontinuity_count,
            discontinuities=list(sampler.discontinuities),
            warnings=list(sampler.warnings),
        ),
        sampling=sampling,
        hashes={"sha256": sha256},
        policy=policy.name,
        policy_version=policy.version,
        versions=first.versions if first else {},
        undetectable=first.undetectable if first else [],
        errors=errors,
        timings=VideoTimings(
            decode_ms=round(sampler.decode_seconds * 1000, 2),
            compare_ms=round(compare_s * 1000, 2),
            total_ms=round(wall_s * 1000, 2),
            frames_per_s=round(analysed / wall_s, 2) if wall_s > 0 else 0.0,
            realtime_factor=(
                round(covered_ms / 1000 / wall_s, 2)
                if covered_ms is not None and wall_s > 0 and math.isfinite(wall_s)
                else None
            ),
        ),
    )
    result.keep_frame_embeddings({d.index: d.result.embeddings for d in done})
    return result
