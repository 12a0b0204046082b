"""Media kept for jobs: a content-addressed folder (``ab/cd/<sha256>``), written atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> tuple[str, Path]:
        """Store bytes under their sha256 (a no-op when already there)."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return digest, target

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def purge_older_than(self, seconds: float, keep: set[str] | None = None) -> int:
        """Delete files not modified for ``seconds`` (retention); returns how many."""
        cutoff = time.time() - seconds
        removed = 0
        for f in self.root.glob("*/*/*"):
            if f.is_file() and f.stat().st_mtime < cutoff and f.name not in (keep or set()):
                f.unlink(missing_ok=True)
                removed += 1
        return removed
