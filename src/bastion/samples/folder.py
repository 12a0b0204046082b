"""The folder layout of labelled samples, read by ``bastion samples import`` and written
by ``bastion samples export``.

Every media file has its labels in a JSON file beside it with the same stem:
``photo.jpg`` and ``photo.json`` (sub-folders are walked too). The JSON is either an
object::

    {"labels": ["Firearms"], "decision": "block", "taken_at": "2026-11-30T12:00:00Z"}

- ``labels`` (required): taxonomy label names (L1 or L2), the right labels of the
  media; an empty list is a sample none of the labels applies to.
- ``decision`` (optional): ``allow`` or ``block``, or null.
- ``taken_at`` (optional): when the labels were given (ISO 8601; a time without an
  offset is UTC); default: the time of the import.
- Any other key is ignored (an export adds ``sample_id``, ``source``, ``taken_by`` and
  ``corrected`` for people to read).

or a plain list of label names (``["Firearms"]``). Which file is the media is decided
from its bytes, never from its name; hidden files (``.name``) are left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from bastion.errors import InputError
from bastion.parsing.json_doc import parse_json
from bastion.policy import taxonomy
from bastion.samples.tables import DECISIONS
from bastion.store.types import to_utc

LABELS_SUFFIX: Final = ".json"
MAX_LABELS = 50
"""Most labels one sample may have."""
FORMAT_SUFFIXES: Final = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "GIF": ".gif",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "AVIF": ".avif",
}


class InvalidLabelsFile(InputError):
    """A labels file that parses but does not say what this layout says."""

    code = "invalid_labels_file"
    status = 422


class UnknownSampleLabel(InputError):
    code = "unknown_label"
    status = 422


class LabelsFileTooLarge(InputError):
    code = "labels_file_too_large"
    status = 413


@dataclass(frozen=True, slots=True)
class SampleLabels:
    """What a labels file says."""

    labels: list[str]
    decision: str | None = None
    taken_at: datetime | None = None


def parse_labels(data: bytes, *, max_bytes: int) -> SampleLabels:
    """A labels file's content: ``invalid_json`` (and the other bounds of
    :func:`bastion.parsing.json_doc.parse_json`), ``labels_file_too_large``,
    ``invalid_labels_file`` or ``unknown_label`` when it is not one."""
    if len(data) > max_bytes:
        raise LabelsFileTooLarge(
            f"the labels file is {len(data)} bytes; at most {max_bytes} are read",
            details={"max_bytes": max_bytes},
        )
    doc = parse_json(data, max_depth=4, max_items=1000)
    decision: Any = None
    taken: Any = None
    if isinstance(doc, list):
        labels: Any = doc
    elif isinstance(doc, dict):
        if "labels" not in doc:
            raise InvalidLabelsFile('the labels file has no "labels" list')
        labels, decision, taken = doc["labels"], doc.get("decision"), doc.get("taken_at")
    else:
        raise InvalidLabelsFile('a labels file is an object with "labels", or a list of labels')
    if not isinstance(labels, list) or not all(isinstance(n, str) for n in labels):
        raise InvalidLabelsFile('"labels" must be a list of taxonomy label names')
    if len(labels) > MAX_LABELS:
        raise InvalidLabelsFile(f"a sample has at most {MAX_LABELS} labels")
    unknown = sorted({n for n in labels if n not in taxonomy.CATEGORIES})
    if unknown:
        raise UnknownSampleLabel(
            f"not taxonomy labels: {[n[:100] for n in unknown[:10]]}",
            details={"unknown": [n[:100] for n in unknown[:10]]},
        )
    if decision is not None and decision not in DECISIONS:
        raise InvalidLabelsFile(f'"decision" must be one of {list(DECISIONS)} or null')
    return SampleLabels(list(dict.fromkeys(labels)), decision, _time(taken))


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidLabelsFile('"taken_at" must be an ISO 8601 time')
    try:
        return to_utc(datetime.fromisoformat(value))
    except ValueError as exc:
        raise InvalidLabelsFile(f'"taken_at" is not an ISO 8601 time: {value!r}') from exc


def labels_json(labels: list[str], decision: str | None, taken_at: datetime, **extra: Any) -> bytes:
    """A labels file for an export: what :func:`parse_labels` reads, and ``extra``."""
    doc: dict[str, Any] = {
        "labels": labels,
        "decision": decision,
        "taken_at": to_utc(taken_at).isoformat().replace("+00:00", "Z"),
    }
    doc.update(extra)
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def media_files(root: Path) -> list[Path]:
    """The files of ``root`` (recursively) that are not labels files, sorted; hidden
    files and folders are left out."""
    out = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() == LABELS_SUFFIX or path.is_dir():
            continue
        out.append(path)
    return sorted(out)


def labels_files(root: Path) -> list[Path]:
    """The labels files of ``root`` (recursively), sorted; hidden ones left out."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() == LABELS_SUFFIX
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and not p.is_dir()
    )


def labels_path(media: Path) -> Path:
    """Where the labels of ``media`` are: the same stem, ``.json``."""
    return media.with_suffix(LABELS_SUFFIX)
