"""A thin wrapper around the ``tesseract`` command: read one text-line image.

The binary and its language packs are optional: :meth:`Tesseract.available` and
:meth:`Tesseract.languages` say what is there, and nothing fails until a read is asked
for. Images go in on stdin as PNG and TSV comes back on stdout, so no temporary files.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from bastion.errors import BastionError

_PROBE_TIMEOUT_S = 10.0


class TesseractError(BastionError):
    code = "tesseract_failed"
    status = 500


@dataclass(frozen=True, slots=True)
class TesseractWord:
    text: str
    confidence: float
    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class TesseractLine:
    """What Tesseract read in one image: the words joined into a line, confidence 0-100."""

    text: str
    confidence: float
    language: str
    words: tuple[TesseractWord, ...]


class Tesseract:
    """Runs the Tesseract binary; thread-safe (each read is its own process)."""

    def __init__(self, binary: str = "tesseract", timeout_s: float = 10.0) -> None:
        self.binary = binary
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._path: str | None = None
        self._probed = False
        self._languages: frozenset[str] = frozenset()
        self._version: str | None = None

    def _probe(self) -> None:
        with self._lock:
            if self._probed:
                return
            self._probed = True
            self._path = shutil.which(self.binary)
            if self._path is None:
                return
            probe_timeout = max(self.timeout_s, _PROBE_TIMEOUT_S)
            try:
                langs = subprocess.run(
                    [self._path, "--list-langs"],
                    capture_output=True,
                    timeout=probe_timeout,
                    check=False,
                )
                ver = subprocess.run(
                    [self._path, "--version"],
                    capture_output=True,
                    timeout=probe_timeout,
                    check=False,
                )
            except (OSError, subprocess.SubprocessError):
                self._path = None
                return
            listing = (langs.stdout + langs.stderr).decode("utf-8", "replace").splitlines()
            self._languages = frozenset(
                line.strip() for line in listing[1:] if line.strip() and " " not in line.strip()
            )
            m = re.search(r"tesseract\s+v?([\w.\-]+)", (ver.stdout + ver.stderr).decode())
            self._version = m.group(1) if m else None

    def available(self) -> bool:
        """Whether the binary was found and answers."""
        self._probe()
        return self._path is not None

    def languages(self) -> frozenset[str]:
        """Installed language packs (e.g. ``kor``, ``tha``); empty without the binary."""
        self._probe()
        return self._languages

    @property
    def version(self) -> str | None:
        self._probe()
        return self._version

    def missing(self, lang: str) -> list[str]:
        """The packs of a ``-l`` value such as ``eng+ind`` that are not installed."""
        have = self.languages()
        return [part for part in lang.split("+") if part not in have]

    def read_line(self, image: np.ndarray, lang: str, psm: int = 7) -> TesseractLine:
        """Read a single text line (``psm`` 7) from a BGR or grey uint8 image."""
        self._probe()
        if self._path is None:
            raise TesseractError(f"tesseract binary {self.binary!r} not found")
        ok, png = cv2.imencode(".png", image)
        if not ok:
            raise TesseractError("could not encode the image for tesseract")
        cmd = [self._path, "stdin", "stdout", "-l", lang, "--psm", str(psm), "tsv"]
        # One thread per process: reads run side by side, OpenMP inside each only adds overhead.
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        try:
            proc = subprocess.run(
                cmd,
                input=png.tobytes(),
                capture_output=True,
                timeout=self.timeout_s,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TesseractError(f"tesseract timed out after {self.timeout_s:g}s") from exc
        except OSError as exc:
            raise TesseractError(f"tesseract could not run: {exc}") from exc
        if proc.returncode != 0:
            msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise TesseractError(f"tesseract failed: {msg[-1] if msg else proc.returncode}")
        words = parse_tsv(proc.stdout.decode("utf-8", "replace"))
        return TesseractLine(
            text=join_words(words, space_ratio(lang)),
            confidence=mean_confidence(words),
            language=lang,
            words=tuple(words),
        )


def parse_tsv(tsv: str) -> list[TesseractWord]:
    """Word rows (level 5) with text and a real confidence, in reading order."""
    words: list[TesseractWord] = []
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) != 12 or cols[0] != "5":
            continue
        text = cols[11].strip()
        try:
            conf = float(cols[10])
            left, top, width, height = (int(c) for c in cols[6:10])
        except ValueError:
            continue
        if not text or conf < 0:
            continue
        words.append(TesseractWord(text, max(0.0, min(100.0, conf)), left, top, width, height))
    return words


# Packs for scripts written without spaces between words.
UNSPACED_PACKS = frozenset({"tha", "jpn", "chi_sim", "chi_tra", "lao", "khm", "mya"})


def space_ratio(lang: str) -> float:
    """Gap (as a share of line height) that counts as a space for the packs in ``lang``."""
    return 0.6 if all(p in UNSPACED_PACKS for p in lang.split("+")) else 0.3


def join_words(words: list[TesseractWord], space_ratio: float = 0.3) -> str:
    """Join words, with a space only where the gap looks like one.

    Tesseract splits Thai, CJK and often Hangul into several "words" with little or no
    gap between them; a space is put back only where the gap is wider than
    ``space_ratio`` of the line height (taken high, as combining marks have tiny boxes).
    """
    if not words:
        return ""
    height = max(1, int(np.percentile([w.height for w in words], 90)))
    out = [words[0].text]
    for prev, cur in itertools.pairwise(words):
        gap = cur.left - (prev.left + prev.width)
        out.append((" " if gap > space_ratio * height else "") + cur.text)
    return "".join(out)


def mean_confidence(words: list[TesseractWord]) -> float:
    """Mean word confidence, weighted by word length."""
    total = sum(len(w.text) for w in words)
    if total == 0:
        return 0.0
    return sum(w.confidence * len(w.text) for w in words) / total
