"""The sha256 of a media source (bytes, or a file read in chunks), which names a whole
video or audio file in results and stored media."""

from __future__ import annotations

import hashlib
import os

CHUNK = 1024 * 1024
"""Bytes read from a file at a time."""


def source_sha256(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> str:
    """The sha256 of ``source``'s bytes; a path is read in chunks (blocking: callers on
    the event loop run it in a thread)."""
    digest = hashlib.sha256()
    if isinstance(source, bytes | bytearray | memoryview):
        digest.update(source)
        return digest.hexdigest()
    with open(source, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
