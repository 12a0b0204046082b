"""Merge analyzer outputs across analyzers and frames into one result.

Every analyzer's outputs come one per analysed frame, in frame order; an analyzer that
read several inputs of a frame (text lines, say) has them combined first
(:func:`combine_outputs`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bastion.media.types import Frame
from bastion.results import AnalyzerOutput, Code, Face, Label, Tag, TextLine


@dataclass
class Merged:
    labels: list[Label] = field(default_factory=list)
    tags: list[Tag] = field(default_factory=list)
    text: list[TextLine] = field(default_factory=list)
    codes: list[Code] = field(default_factory=list)
    faces: list[Face] = field(default_factory=list)
    hashes: dict[str, Any] = field(default_factory=dict)
    face_count: int = 0


def _best_by(items: list[Label] | list[Tag], key: Any) -> list[Any]:
    """Keep the highest-confidence item per key; boxed items are all kept."""
    best: dict[Any, Any] = {}
    boxed: list[Any] = []
    for it in items:
        if it.box is not None:
            boxed.append(it)
            continue
        k = key(it)
        if k not in best or it.confidence > best[k].confidence:
            best[k] = it
    return sorted([*best.values(), *boxed], key=lambda i: -i.confidence)


def combine_outputs(outputs: Sequence[AnalyzerOutput]) -> AnalyzerOutput:
    """One analyzer's outputs for several inputs of the same frame (e.g. one per text line)
    as one output of that frame: lists concatenated in order, the first value of each hash,
    the first embedding, ``extra`` merged (later values win)."""
    if len(outputs) == 1:
        return outputs[0]
    one = AnalyzerOutput()
    for out in outputs:
        one.labels.extend(out.labels)
        one.tags.extend(out.tags)
        one.text.extend(out.text)
        one.codes.extend(out.codes)
        one.faces.extend(out.faces)
        for k, v in out.hashes.items():
            one.hashes.setdefault(k, v)
        if one.embedding is None:
            one.embedding = out.embedding
        one.extra.update(out.extra)
    return one


def merge_outputs(
    per_analyzer: Mapping[str, Sequence[AnalyzerOutput]],
    frames: Sequence[Frame],
    *,
    animated: bool,
) -> Merged:
    m = Merged()
    labels: list[Label] = []
    tags: list[Tag] = []
    per_frame_faces: list[int] = []
    for outs in per_analyzer.values():
        for frame, out in zip(frames, outs, strict=False):
            idx = frame.index if animated else None
            upd = {"frame": idx}
            labels.extend(lab.model_copy(update=upd) for lab in out.labels)
            tags.extend(t.model_copy(update=upd) for t in out.tags)
            m.text.extend(t.model_copy(update=upd) for t in out.text)
            m.codes.extend(c.model_copy(update=upd) for c in out.codes)
            m.faces.extend(f.model_copy(update=upd) for f in out.faces)
            if out.faces:
                per_frame_faces.append(len(out.faces))
            if not m.hashes or frame.index == frames[0].index:
                for k, v in out.hashes.items():
                    m.hashes.setdefault(k, v)
    m.labels = _best_by(labels, lambda lab: (lab.name, lab.analyzer, lab.model, lab.source))
    m.tags = _best_by(tags, lambda t: (t.name, t.analyzer))
    m.face_count = max(per_frame_faces, default=0)
    return m


def distinct_errors(errors: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """``errors`` without repeats (the same fields and values), first seen first: the
    errors of several results summed up, e.g. an analyzer failing on every frame."""
    seen: dict[tuple[str, ...], dict[str, str]] = {}
    for err in errors:
        key = tuple(f"{k}={v}" for k, v in sorted(err.items()))
        seen.setdefault(key, err)
    return list(seen.values())
