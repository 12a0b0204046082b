"""Small JPEGs of stream frames: the frames alerts are about and a stream's latest frame.

One folder per stream (``<root>/<stream pk>/<name>.jpg``). A name is the first 32 hex
digits of the JPEG's sha256, so saving the same frame twice writes one file. Files are
written to a temporary name and renamed, so a reader never sees half a JPEG. Both the
stream's key and the name are checked against their exact shape before a path is
built, so a request cannot reach outside the folder. :meth:`LiveThumbnails.purge`
deletes the files older than the retention period (a file saved again counts as new),
except those its ``keep`` callable names: the frames undecided review items show (see
:meth:`bastion.review.service.ReviewService.kept_thumbnails`). ``keep`` is asked before
the files are looked at; a frame referenced after that was saved moments before, so it
is not old enough to go.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np
from PIL import Image

from bastion.errors import NotFound

log = logging.getLogger(__name__)

MAX_SIDE = 480
"""Longest side of a thumbnail, in pixels."""
JPEG_QUALITY = 80
DEFAULT_RETENTION_S = 7 * 24 * 3600.0
_STREAM_PK = re.compile(r"str_[0-9a-f]{32}")
_NAME = re.compile(r"[0-9a-f]{32}(?:\.latest)?\.jpg")
LATEST_SUFFIX = ".latest.jpg"
"""Names of frames kept only as a stream's latest frame (never an alert's): the one
before may be deleted as soon as a newer one takes its place."""
_TMP_PREFIX = ".tmp-"

Kept = Callable[[], Collection[tuple[str, str]]]
"""The thumbnails a purge must leave, as ``(stream pk, name)`` pairs."""


def encode_thumbnail(rgb: np.ndarray, max_side: int = MAX_SIDE) -> bytes:
    """A JPEG of an RGB (or grey) frame whose longest side is at most ``max_side``."""
    if rgb.dtype != np.uint8 or rgb.ndim not in (2, 3) or (rgb.ndim == 3 and rgb.shape[2] != 3):
        raise ValueError(f"not an RGB frame: shape {rgb.shape}, dtype {rgb.dtype}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError("an empty frame has no thumbnail")
    image = Image.fromarray(np.ascontiguousarray(rgb))
    if image.mode != "RGB":  # an RGB frame is used as it is, not copied
        image = image.convert("RGB")
    # halved with a box filter as long as the result stays at least the final size,
    # then resampled: a fraction of the work of resampling the whole frame
    image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=1.0)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


class LiveThumbnails:
    def __init__(
        self,
        root: Path,
        *,
        retention_s: float = DEFAULT_RETENTION_S,
        max_side: int = MAX_SIDE,
        keep: Kept | None = None,
    ) -> None:
        self.root = root
        self.retention_s = retention_s
        self.max_side = max_side
        self.keep = keep
        """Thumbnails :meth:`purge` leaves however old (None: none)."""

    @classmethod
    def under(
        cls, data_dir: Path, *, retention_s: float = DEFAULT_RETENTION_S, keep: Kept | None = None
    ) -> LiveThumbnails:
        """The store every process of an installation uses: ``<data dir>/live-thumbnails``."""
        return cls(data_dir / "live-thumbnails", retention_s=retention_s, keep=keep)

    def folder(self, stream_pk: str) -> Path:
        if not _STREAM_PK.fullmatch(stream_pk):
            raise ValueError(f"not a stream key: {stream_pk!r}")
        return self.root / stream_pk

    def save(self, stream_pk: str, rgb: np.ndarray, *, latest_only: bool = False) -> str:
        """Store a thumbnail of ``rgb``; returns its name. ``latest_only``: a frame kept
        only as the stream's latest (named apart, see :data:`LATEST_SUFFIX`)."""
        folder = self.folder(stream_pk)
        data = encode_thumbnail(rgb, self.max_side)
        suffix = LATEST_SUFFIX if latest_only else ".jpg"
        name = hashlib.sha256(data).hexdigest()[:32] + suffix
        target = folder / name
        if target.is_file():
            with contextlib.suppress(OSError):
                os.utime(target)  # wanted again: the retention period starts over
                return name
        try:
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".jpg", dir=folder)
        except FileNotFoundError:  # a new stream, or a purge just removed the empty folder
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".jpg", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return name

    def path(self, stream_pk: str, name: str) -> Path:
        """The file of one thumbnail (it may not exist); 404 for what cannot be one."""
        if not _STREAM_PK.fullmatch(stream_pk) or not _NAME.fullmatch(name):
            raise NotFound(f"no thumbnail {name!r}", code="thumbnail_not_found")
        return self.root / stream_pk / name

    def purge(self, now: float | None = None) -> int:
        """Delete thumbnails older than the retention period, except those ``keep``
        names, and emptied folders."""
        if not self.root.is_dir():
            return 0
        kept = frozenset(self.keep()) if self.keep is not None else frozenset()
        cutoff = (time.time() if now is None else now) - self.retention_s
        removed = 0
        for folder in self.root.iterdir():
            if not folder.is_dir() or not _STREAM_PK.fullmatch(folder.name):
                continue
            for file in folder.iterdir():
                if not (_NAME.fullmatch(file.name) or file.name.startswith(_TMP_PREFIX)):
                    continue
                if (folder.name, file.name) in kept:
                    continue
                try:
                    if file.stat().st_mtime < cutoff:
                        file.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
        return removed

    async def run_forever(self, stop: asyncio.Event, every_s: float) -> None:
        """Purge every ``every_s`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                removed = await asyncio.to_thread(self.purge)
                if removed:
                    log.info("deleted %d live thumbnails past retention", removed)
            except Exception:  # a file, or asking ``keep`` (nothing is deleted then)
                log.exception("purging live thumbnails failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
