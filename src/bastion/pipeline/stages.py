"""Routing by content kind: which analyzers run in which stage, and on what.

:data:`STAGES` is the one place a content kind gets its inputs (adding a kind is adding
its source there). Stage one reads the media item itself: its image frames and its audio
windows. Stage two reads what stage one produced: ``text`` analyzers get every text line
stage one's analyzers read (OCR's lines, the speech analyzer's transcript segments),
``embedding`` analyzers every embedding they made (``labels'``). Each input keeps the
slot it came from (the item's frames first, then its audio windows), and
:func:`per_frame` gathers an analyzer's outputs back into one output per slot, the shape
:func:`~bastion.pipeline.merge.merge_outputs` takes.

An analyzer gets no input when its stage finds nothing for it (no audio in an image, no
frame in an audio window, no text read, no embedding made, or the analyzer that would
make it failed or is not in the policy). Such an analyzer is neither loaded nor called:
it adds no output and no error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from bastion.analyzers.base import ContentKind
from bastion.media.types import AudioWindow, EmbeddingInput, Frame, TextInput
from bastion.pipeline.merge import combine_outputs
from bastion.results import AnalyzerOutput


@dataclass(frozen=True, slots=True)
class Routed:
    """One input for an analyzer, and its slot: the position of the frame or audio window
    it comes from among the item's analysed frames, then its audio windows."""

    slot: int
    item: object


@dataclass(frozen=True, slots=True)
class Produced:
    """What one analyzer of an earlier stage produced: one output per slot."""

    analyzer: str
    model: str
    version: str
    outputs: Sequence[AnalyzerOutput]


@dataclass(frozen=True, slots=True)
class Available:
    """What a stage reads: the item's analysed frames and audio windows, and the earlier
    stages' outputs (one per slot: the frames first, then the audio windows)."""

    frames: Sequence[Frame]
    produced: Sequence[Produced] = ()
    tenant: str | None = None
    """The tenant the item is moderated for; embeddings carry it to tenants' own models."""
    audio: Sequence[AudioWindow] = ()
    """The item's audio windows (an audio file's or a video's sound)."""

    @property
    def slots(self) -> int:
        """How many frames and audio windows the item has."""
        return len(self.frames) + len(self.audio)

    def index_of(self, slot: int) -> int:
        """The frame's :attr:`~bastion.media.types.Frame.index` of a frame's slot; the
        window's position among the audio windows of an audio window's slot."""
        if slot < len(self.frames):
            return self.frames[slot].index
        return slot - len(self.frames)


Source = Callable[[Available], list[Routed]]


def _image_frames(available: Available) -> list[Routed]:
    return [Routed(slot, frame) for slot, frame in enumerate(available.frames)]


def _audio_windows(available: Available) -> list[Routed]:
    first = len(available.frames)
    return [Routed(first + n, window) for n, window in enumerate(available.audio)]


def _text_lines(available: Available) -> list[Routed]:
    return [
        Routed(
            slot,
            TextInput(
                text=line.text,
                language=line.language,
                analyzer=made.analyzer,
                frame_index=available.index_of(slot),
                line_index=n,
            ),
        )
        for made in available.produced
        for slot, out in enumerate(made.outputs)
        for n, line in enumerate(out.text)
    ]


def _embeddings(available: Available) -> list[Routed]:
    return [
        Routed(
            slot,
            EmbeddingInput(
                vector=out.embedding,
                analyzer=made.analyzer,
                model=made.model,
                version=made.version,
                frame_index=available.index_of(slot),
                tenant=available.tenant,
            ),
        )
        for made in available.produced
        for slot, out in enumerate(made.outputs)
        if out.embedding is not None
    ]


STAGES: tuple[Mapping[ContentKind, Source], ...] = (
    MappingProxyType(
        {ContentKind.IMAGE_FRAME: _image_frames, ContentKind.AUDIO_WINDOW: _audio_windows}
    ),
    MappingProxyType({ContentKind.TEXT: _text_lines, ContentKind.EMBEDDING: _embeddings}),
)
"""Stage by stage, where each content kind's inputs come from."""


def per_frame(
    routed: Sequence[Routed], outputs: Sequence[AnalyzerOutput], frames: int
) -> list[AnalyzerOutput]:
    """An analyzer's outputs (one per routed input, in order) as one output per slot
    (``frames`` slots: frames and audio windows); a slot it got no input from gets an
    empty output."""
    grouped: list[list[AnalyzerOutput]] = [[] for _ in range(frames)]
    for r, out in zip(routed, outputs, strict=True):
        grouped[r.slot].append(out)
    return [combine_outputs(outs) if outs else AnalyzerOutput() for outs in grouped]
