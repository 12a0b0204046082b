"""Tesseract through its C++ API (``tesserocr``): read one text-line image.

Each language entry (``kor``, ``tha``, ``eng+ind``) gets a small pool of initialised
``PyTessBaseAPI`` objects, made on first use and reused: loading a pack costs tens of
milliseconds, about as much as reading a line, which the command-line tool paid on
every call (a line read through ``tesseract`` took ~60 ms, through a kept API ~15 ms).
Recognition releases the interpreter, so reads in worker threads run side by side; one
API object is only ever used by one thread at a time.

The language packs are Debian's (``tesseract-ocr-kor``, ...): the folder comes from
``TESSDATA_PREFIX`` or from the ``tesseract`` command's own listing. The packs and the
command are optional: :meth:`Tesseract.available` and :meth:`Tesseract.languages` say
what is there, and nothing fails until a read is asked for.
"""

from __future__ import annotations

import itertools
import os
import queue
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bastion.errors import BastionError

_PROBE_TIMEOUT_S = 10.0
_POOL_SIZE = max(2, os.cpu_count() or 1)


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


def _tesserocr() -> Any:
    try:
        import tesserocr
    except ImportError:  # pragma: no cover - a dependency; reported as "not available"
        return None
    return tesserocr


def _listed_dir(binary: str) -> Path | None:
    """The tessdata folder the ``tesseract`` command lists its packs from."""
    path = shutil.which(binary)
    if path is None:
        return None
    try:
        listing = subprocess.run(
            [path, "--list-langs"], capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = (listing.stdout + listing.stderr).decode("utf-8", "replace")
    m = re.search(r'languages in "([^"]+)"', text)
    return Path(m.group(1)) if m else None


class Tesseract:
    """Reads text lines with pooled Tesseract API objects; thread-safe.

    ``binary`` is the ``tesseract`` command whose language packs are used (when
    ``TESSDATA_PREFIX`` does not name the folder); ``timeout_s`` bounds one read.
    """

    def __init__(self, binary: str = "tesseract", timeout_s: float = 10.0) -> None:
        self.binary = binary
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._probed = False
        self._module: Any = None
        self._tessdata: Path | None = None
        self._languages: frozenset[str] = frozenset()
        self._version: str | None = None
        self._pools: dict[str, queue.SimpleQueue[Any]] = {}

    def _probe(self) -> None:
        with self._lock:
            if self._probed:
                return
            self._probed = True
            module = _tesserocr()
            if module is None:
                return
            env = os.environ.get("TESSDATA_PREFIX")
            tessdata = Path(env) if env else _listed_dir(self.binary)
            if tessdata is None or not tessdata.is_dir():
                return
            self._module, self._tessdata = module, tessdata
            self._languages = frozenset(
                p.name.removesuffix(".traineddata") for p in tessdata.glob("*.traineddata")
            )
            m = re.search(r"tesseract\s+v?([\w.\-]+)", str(module.tesseract_version()))
            self._version = m.group(1) if m else None

    def available(self) -> bool:
        """Whether Tesseract and a folder of language packs were found."""
        self._probe()
        return self._module is not None

    def languages(self) -> frozenset[str]:
        """Installed language packs (e.g. ``kor``, ``tha``); empty without Tesseract."""
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

    def _take(self, lang: str, psm: int) -> tuple[Any, queue.SimpleQueue[Any]]:
        with self._lock:
            pool = self._pools.setdefault(f"{lang}:{psm}", queue.SimpleQueue())
        try:
            return pool.get_nowait(), pool
        except queue.Empty:
            pass
        module = self._module
        try:
            api = module.PyTessBaseAPI(path=f"{self._tessdata}/", lang=lang, psm=psm)
        except RuntimeError as exc:
            raise TesseractError(f"tesseract could not load {lang!r}: {exc}") from exc
        return api, pool

    def read_line(self, image: np.ndarray, lang: str, psm: int = 7) -> TesseractLine:
        """Read a single text line (``psm`` 7) from a grey or BGR uint8 image."""
        self._probe()
        if self._module is None:
            raise TesseractError("tesseract (tesserocr and its language packs) not found")
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        grey = np.ascontiguousarray(grey, dtype=np.uint8)
        h, w = grey.shape[:2]
        api, pool = self._take(lang, psm)
        try:
            api.SetImageBytes(grey.tobytes(), w, h, 1, w)
            if not api.Recognize(timeout=round(self.timeout_s * 1000)):
                raise TesseractError(f"tesseract timed out after {self.timeout_s:g}s")
            tsv = api.GetTSVText(0)
        finally:
            api.Clear()
            if pool.qsize() < _POOL_SIZE:
                pool.put(api)
            else:
                api.End()
        words = parse_tsv(tsv)
        return TesseractLine(
            text=join_words(words, space_ratio(lang)),
            confidence=mean_confidence(words),
            language=lang,
            words=tuple(words),
        )


def parse_tsv(tsv: str) -> list[TesseractWord]:
    """Word rows (level 5) with text and a real confidence, in reading order."""
    words: list[TesseractWord] = []
    for row in tsv.splitlines():  # the command's header row, if any, is not level 5
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
