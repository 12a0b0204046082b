"""Thumbnails of flagged video frames, one folder per job (``<root>/<job id>/<name>.jpg``).

Names are those :func:`bastion.pipeline.video.moderate_video` gives (32 hex digits of
the JPEG's sha256), and both the job id and the name are checked against their exact
shape before any path is built, so a request cannot reach outside the folder.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

_JOB_ID = re.compile(r"job_[0-9a-f]{32}")
_NAME = re.compile(r"[0-9a-f]{32}\.jpg")


class ThumbnailStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, job_id: str) -> Path:
        if not _JOB_ID.fullmatch(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / job_id

    def path(self, job_id: str, name: str) -> Path | None:
        """The file of one thumbnail, or None when the name cannot be one."""
        if not _NAME.fullmatch(name):
            return None
        return self.folder(job_id) / name

    @staticmethod
    def url(job_id: str, file: str) -> str:
        """Where the API serves a thumbnail written for ``job_id``."""
        return f"/v1/jobs/{job_id}/thumbnails/{Path(file).name}"

    def folders(self) -> Iterator[tuple[str, Path]]:
        """(job id, folder) of every job with thumbnails."""
        if not self.root.is_dir():
            return
        for d in sorted(self.root.iterdir()):
            if d.is_dir() and _JOB_ID.fullmatch(d.name):
                yield d.name, d

    def remove(self, job_id: str) -> bool:
        folder = self.folder(job_id)
        if not folder.is_dir():
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True
