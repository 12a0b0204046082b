"""Turning a stored result into the answer for a near-duplicate image.

The findings (decision, reasons, labels, tags, text, codes, URLs, faces) are the
stored image's; what describes the request's own image is replaced: the media facts,
the hashes, and boxes scaled to its size (near duplicates are mostly resized copies).
Text lines and codes keep their order, so the URL origins, which point at them by
position, are kept as stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from bastion.media.types import DecodedImage
from bastion.results import Box, MediaInfo, ModerationResult, NearDuplicate

M = TypeVar("M", bound=BaseModel)


def _scaled(items: Sequence[M], sx: float, sy: float) -> list[M]:
    out: list[M] = []
    for item in items:
        box: Box | None = getattr(item, "box", None)
        if box is None or (sx == 1 and sy == 1):
            out.append(item)
            continue
        moved = Box(
            x=round(box.x * sx, 2),
            y=round(box.y * sy, 2),
            width=round(box.width * sx, 2),
            height=round(box.height * sy, 2),
        )
        out.append(item.model_copy(update={"box": moved}))
    return out


def media_info(decoded: DecodedImage, frames_analyzed: int) -> MediaInfo:
    return MediaInfo(
        format=decoded.format,
        mode=decoded.mode,
        width=decoded.width,
        height=decoded.height,
        bytes=decoded.byte_size,
        frames=decoded.total_frames,
        frames_analyzed=frames_analyzed,
        warnings=list(decoded.warnings),
    )


def as_near_duplicate(
    stored: ModerationResult,
    decoded: DecodedImage,
    *,
    of_sha256: str,
    distance: int,
    hashes: dict[str, Any],
) -> ModerationResult:
    """``stored`` (the result of image ``of_sha256``) as the answer for ``decoded``.

    ``hashes`` are the request image's perceptual hashes; they replace the stored
    ones when the stored result carries perceptual hashes.
    """
    sx = decoded.width / stored.media.width if stored.media.width else 1.0
    sy = decoded.height / stored.media.height if stored.media.height else 1.0
    own: dict[str, Any] = {"sha256": decoded.sha256}
    if any(k != "sha256" for k in stored.hashes):
        own.update(hashes)
    return stored.model_copy(
        update={
            "labels": _scaled(stored.labels, sx, sy),
            "tags": _scaled(stored.tags, sx, sy),
            "text": _scaled(stored.text, sx, sy),
            "codes": _scaled(stored.codes, sx, sy),
            "faces": _scaled(stored.faces, sx, sy),
            "hashes": own,
            "media": media_info(decoded, stored.media.frames_analyzed),
            "cached": True,
            "near_duplicate_of": NearDuplicate(sha256=of_sha256, distance=distance),
        }
    )
