"""``bastion samples export``: a tenant's samples written in the import layout.

Every image sample of the filter becomes ``<sample id>.<format suffix>`` (its bytes as
stored) and ``<sample id>.json`` (its labels, decision and ``taken_at``, with its id,
source, who labelled it and whether it was corrected, for people to read), so
``bastion samples import`` of the folder, for this tenant or another, gives the same
samples. The folder must be new or empty. Samples without media, whose media is not
an image (a video), or whose bytes are gone are reported and left out.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.samples.errors import ExportFolderNotEmpty
from bastion.samples.folder import FORMAT_SUFFIXES, labels_json
from bastion.samples.service import SampleFilter, SampleService
from bastion.samples.tables import IMAGE

NO_MEDIA = "no_media"
NOT_AN_IMAGE = "not_an_image"
MEDIA_GONE = "media_gone"


@dataclass(frozen=True, slots=True)
class ExportOutcome:
    """One sample: written as ``file``, or left out with a code."""

    sample_id: str
    file: str | None = None
    code: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.file is not None:
            return {"sample_id": self.sample_id, "file": self.file}
        return {"sample_id": self.sample_id, "code": self.code, "message": self.message}


@dataclass
class ExportReport:
    tenant_id: str
    items: list[ExportOutcome] = field(default_factory=list)

    @property
    def exported(self) -> int:
        return sum(1 for i in self.items if i.file is not None)

    @property
    def skipped(self) -> dict[str, int]:
        return dict(sorted(Counter(str(i.code) for i in self.items if i.file is None).items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant_id,
            "exported": self.exported,
            "skipped": self.skipped,
            "items": [i.to_dict() for i in self.items],
        }


def export_folder(
    samples: SampleService,
    root: Path,
    tenant_id: str,
    filters: SampleFilter | None = None,
    *,
    on_item: Callable[[ExportOutcome], None] | None = None,
) -> ExportReport:
    """Write the tenant's samples of ``filters`` into ``root`` (new or empty)."""
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ExportFolderNotEmpty(f"export into a new or empty folder, not {str(root)[:300]}")
    (filters or SampleFilter()).check()
    root.mkdir(parents=True, exist_ok=True)
    report = ExportReport(tenant_id)
    for view in samples.iterate(tenant_id, filters):
        outcome = _one(samples, root, view.sample)
        report.items.append(outcome)
        if on_item is not None:
            on_item(outcome)
    return report


def _one(samples: SampleService, root: Path, sample: Any) -> ExportOutcome:
    if sample.media_sha256 is None:
        return ExportOutcome(sample.id, code=NO_MEDIA, message="the sample has no media")
    if sample.media_kind != IMAGE:
        return ExportOutcome(
            sample.id, code=NOT_AN_IMAGE, message=f"the media is {sample.media_kind or 'unknown'}"
        )
    source = samples.media.path(sample.media_sha256)
    name = sample.id + FORMAT_SUFFIXES.get(str(sample.media_format), ".img")
    try:
        _write(root / name, lambda tmp: shutil.copyfile(source, tmp))
    except FileNotFoundError:
        return ExportOutcome(sample.id, code=MEDIA_GONE, message="the media file is gone")
    doc = labels_json(
        list(sample.labels or []),
        sample.decision,
        sample.taken_at,
        sample_id=sample.id,
        source=sample.source,
        taken_by=sample.taken_by,
        corrected=sample.corrected,
    )
    _write(root / (sample.id + ".json"), lambda tmp: Path(tmp).write_bytes(doc))
    return ExportOutcome(sample.id, file=name)


def _write(target: Path, fill: Callable[[str], object]) -> None:
    """Write ``target`` through a temporary file beside it, so it is whole or absent."""
    fd, tmp = tempfile.mkstemp(prefix=".export-", dir=target.parent)
    os.close(fd)
    try:
        fill(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
