"""The sha256 of a media source (bytes, or a file read in chunks), which names a whole
video or audio file in results and stored media, and of a decoded frame's pixels."""

from __future__ import annotations

import hashlib
import os

import numpy as np

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


def frame_sha256(rgb: np.ndarray) -> str:
    """The sha256 of a decoded frame's RGB pixels and size, which names a video or live
    frame's result in moderation's cache of frames and in its ``hashes.sha256``."""
    digest = hashlib.sha256(f"rgb24:{rgb.shape[1]}x{rgb.shape[0]}:".encode())
    digest.update(np.ascontiguousarray(rgb).data)
    return digest.hexdigest()
