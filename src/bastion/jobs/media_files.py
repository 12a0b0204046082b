"""Media kept for jobs: a content-addressed folder (``ab/cd/<sha256>``), written atomically.

Incoming media is streamed into a temporary file under ``.incoming/`` (same file
system) while it is hashed and counted, then renamed to its content address, so
memory does not depend on the size of an upload and a half-written file is never
visible under a digest. Storing content that is already there only refreshes the
file's modification time: that time is when the media was last wanted, which is
what retention (:mod:`bastion.jobs.retention`) measures age by.

Removal is safe against a concurrent upload of the same content: the file is first
renamed away, then its time and the caller's ``in_use`` check are looked at again,
and it is put back when either says it is still wanted. An upload that refreshes
the file before the rename makes it fresh; one that comes after finds no file and
writes a new one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from bastion.errors import MediaTooLarge

HEAD_BYTES = 8192
_HEX = frozenset("0123456789abcdef")


def _is_digest(name: str) -> bool:
    return len(name) == 64 and set(name) <= _HEX


@dataclass(frozen=True, slots=True)
class StoredMedia:
    """Media in the store: its digest, size, leading bytes (for sniffing) and file."""

    sha256: str
    size: int
    head: bytes
    path: Path


class MediaWriter:
    """One incoming file, written to a temporary file while hashed and counted.

    :meth:`write` raises :class:`MediaTooLarge` as soon as more than ``max_bytes``
    arrive; :meth:`commit` moves the file to its content address; :meth:`discard`
    (also on leaving the ``with`` block without a commit) removes it. Use it from one
    thread at a time.
    """

    def __init__(self, store: MediaStore, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.size = 0
        self.head = b""
        self._hash = hashlib.sha256()
        store.incoming.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=store.incoming, prefix="upload-")
        self.tmp = Path(name)
        self._fh = os.fdopen(fd, "wb")
        self._finished = False

    @property
    def finished(self) -> bool:
        """Committed or discarded."""
        return self._finished

    def write(self, chunk: bytes) -> None:
        if self._finished:
            raise ValueError("the media was already committed or discarded")
        if self.size + len(chunk) > self.max_bytes:
            raise MediaTooLarge(
                f"the media is over the limit of {self.max_bytes} bytes",
                details={"max_bytes": self.max_bytes},
            )
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]
        self._hash.update(chunk)
        self._fh.write(chunk)
        self.size += len(chunk)

    def commit(self) -> StoredMedia:
        """Make the file durable and move it to its content address."""
        if self._finished:
            raise ValueError("the media was already committed or discarded")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._finished = True
        digest = self._hash.hexdigest()
        target = self.store.path(digest)
        try:
            if self.store.refresh(digest):
                self.tmp.unlink(missing_ok=True)  # the same content is already stored
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.tmp, target)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        return StoredMedia(digest, self.size, self.head, target)

    def discard(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self._finished = True
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> MediaWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._finished:
            self.discard()


class MediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / ".incoming"

    def path(self, sha256: str) -> Path:
        if not _is_digest(sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def writer(self, max_bytes: int) -> MediaWriter:
        """A temporary file to stream media into (see :class:`MediaWriter`)."""
        return MediaWriter(self, max_bytes)

    def store(self, data: bytes) -> StoredMedia:
        """Store bytes under their sha256 (only refreshing the time when already there)."""
        with self.writer(max(1, len(data))) as w:
            w.write(data)
            return w.commit()

    def put(self, data: bytes) -> tuple[str, Path]:
        stored = self.store(data)
        return stored.sha256, stored.path

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def refresh(self, sha256: str) -> bool:
        """Mark stored media as wanted now; False when it is not in the store."""
        try:
            os.utime(self.path(sha256))
        except FileNotFoundError:
            return False
        return True

    def stored(self) -> Iterator[tuple[str, float]]:
        """Every stored digest with the file's modification time."""
        for first in sorted(self.root.glob("[0-9a-f][0-9a-f]")):
            for f in first.glob("[0-9a-f][0-9a-f]/*"):
                if not _is_digest(f.name):
                    continue
                try:
                    yield f.name, f.stat().st_mtime
                except FileNotFoundError:
                    continue

    def remove(self, sha256: str, *, older_than_s: float, in_use: Callable[[str], bool]) -> bool:
        """Delete stored media not wanted for ``older_than_s`` seconds unless ``in_use``.

        Returns True when the file was deleted (see the module notes on concurrency).
        """
        target = self.path(sha256)
        self.incoming.mkdir(parents=True, exist_ok=True)
        grave = self.incoming / f"expired-{sha256}-{uuid.uuid4().hex}"
        try:
            os.replace(target, grave)
        except FileNotFoundError:
            return False
        try:
            fresh = grave.stat().st_mtime >= time.time() - older_than_s
            keep = fresh or in_use(sha256)
        except BaseException:
            self._restore(grave, target)
            raise
        if keep or target.exists():  # wanted, or stored again meanwhile
            self._restore(grave, target)
            return False
        grave.unlink(missing_ok=True)
        return True

    @staticmethod
    def _restore(grave: Path, target: Path) -> None:
        if target.exists():  # stored again meanwhile: that copy is as good and newer
            grave.unlink(missing_ok=True)
        else:
            os.replace(grave, target)

    def remove_stale_incoming(self, older_than_s: float) -> int:
        """Delete temporary files left by uploads that died; returns how many."""
        cutoff = time.time() - older_than_s
        removed = 0
        if not self.incoming.is_dir():
            return 0
        for f in self.incoming.iterdir():
            try:
                if f.is_file() and f.stat().st_mtime < cutoff:
                    f.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
