"""Routing by content kind: which analyzers run in which stage, and on what.

:data:`STAGES` is the one place a content kind gets its inputs (adding a kind is adding
its source there). Stage one reads the media item itself: its image frames. Stage two
reads what stage one produced: ``text`` analyzers get every text line stage one's
analyzers read (OCR's), ``embedding`` analyzers every embedding they made (``labels``').
Each input keeps the frame it came from, and :func:`per_frame` gathers an analyzer's
outputs back into one output per analysed frame, the shape
:func:`~bastion.pipeline.merge.merge_outputs` takes.

An analyzer gets no input when no stage feeds its kind (``audio_window``: no media item
carries audio yet), or when its stage finds nothing for it (no text read, no embedding
made, or the analyzer that would make it failed or is not in the policy). Such an
analyzer is neither loaded nor called: it adds no output and no error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from bastion.analyzers.base import ContentKind
from bastion.media.types import EmbeddingInput, Frame, TextInput
from bastion.pipeline.merge import combine_outputs
from bastion.results import AnalyzerOutput


@dataclass(frozen=True, slots=True)
class Routed:
    """One input for an analyzer, and the position of its frame among the analysed frames."""

    slot: int
    item: object


@dataclass(frozen=True, slots=True)
class Produced:
    """What one analyzer of an earlier stage produced: one output per analysed frame."""

    analyzer: str
    model: str
    version: str
    outputs: Sequence[AnalyzerOutput]


@dataclass(frozen=True, slots=True)
class Available:
    """What a stage reads: the analysed frames, and the earlier stages' outputs."""

    frames: Sequence[Frame]
    produced: Sequence[Produced] = ()
    tenant: str | None = None
    """The tenant the item is moderated for; embeddings carry it to tenants' own models."""


Source = Callable[[Available], list[Routed]]


def _image_frames(available: Available) -> list[Routed]:
    return [Routed(slot, frame) for slot, frame in enumerate(available.frames)]


def _text_lines(available: Available) -> list[Routed]:
    return [
        Routed(
            slot,
            TextInput(
                text=line.text,
                language=line.language,
                analyzer=made.analyzer,
                frame_index=available.frames[slot].index,
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
                frame_index=available.frames[slot].index,
                tenant=available.tenant,
            ),
        )
        for made in available.produced
        for slot, out in enumerate(made.outputs)
        if out.embedding is not None
    ]


STAGES: tuple[Mapping[ContentKind, Source], ...] = (
    MappingProxyType({ContentKind.IMAGE_FRAME: _image_frames}),
    MappingProxyType({ContentKind.TEXT: _text_lines, ContentKind.EMBEDDING: _embeddings}),
)
"""Stage by stage, where each content kind's inputs come from."""


def per_frame(
    routed: Sequence[Routed], outputs: Sequence[AnalyzerOutput], frames: int
) -> list[AnalyzerOutput]:
    """An analyzer's outputs (one per routed input, in order) as one output per frame;
    a frame it got no input from gets an empty output."""
    grouped: list[list[AnalyzerOutput]] = [[] for _ in range(frames)]
    for r, out in zip(routed, outputs, strict=True):
        grouped[r.slot].append(out)
    return [combine_outputs(outs) if outs else AnalyzerOutput() for outs in grouped]
