"""Measure Bastion on a labelled folder: every image through the one way into moderation.

The folder is in the layout of :mod:`bastion.samples.folder` (``photo.jpg`` with
``photo.json`` of labels beside it, sub-folders walked, hidden files left out), which
``bastion samples import`` reads and ``bastion samples export`` writes, so a folder
exported from Bastion can be measured as it is. Each labels file is parsed within
bounds and checked against the taxonomy before its image is read; the image is read
within the media limits and moderated through
:class:`~bastion.pipeline.moderation.Moderation` under the policy given, exactly as
``bastion scan`` moderates it (decoded from its bytes, with no tenant: the base models
and the policy, no tenant's own heads). A file that fails any step is kept with the
code of what went wrong (the import's codes: ``missing_labels``, ``missing_media``,
``not_a_file``, ``unreadable_file``; the labels file's: ``invalid_json``,
``invalid_labels_file``, ``unknown_label``, ``labels_file_too_large``; the image's:
``unsupported_media_type``, ``corrupt_media``, ``media_too_large``, ...) and never
stops the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bastion.errors import BastionError, InputError
from bastion.evaluation.config import EvalConfig
from bastion.evaluation.folder_eval import FailedFile, FolderReport, ScoredImage, build_report
from bastion.pipeline.moderation import Moderation
from bastion.policy.model import Policy
from bastion.samples.folder import labels_files, labels_path, media_files, parse_labels
from bastion.samples.importer import (
    MISSING_LABELS,
    MISSING_MEDIA,
    NOT_A_FILE,
    UNREADABLE,
    NotAFolder,
)

__all__ = ["EmptyFolder", "LabelledFolder", "Outcome", "evaluate_folder", "find_files"]

Outcome = ScoredImage | FailedFile


class EmptyFolder(InputError):
    """A folder with neither media files nor labels files: nothing to measure."""

    code = "empty_folder"
    status = 422


@dataclass(frozen=True)
class LabelledFolder:
    """The files of a labelled folder, found before any model is loaded."""

    root: Path
    media: list[Path]
    """Every file that is not a labels file, sorted (which are images, the bytes say)."""
    orphans: list[Path]
    """Labels files with no media file beside them."""

    @property
    def files(self) -> int:
        """Files to report on: the media files and the orphan labels files."""
        return len(self.media) + len(self.orphans)


def find_files(root: Path) -> LabelledFolder:
    """The files under ``root``; ``not_a_folder`` or ``empty_folder`` when there is
    nothing to measure (blocking: call it in a thread from async code)."""
    if not root.is_dir():
        raise NotAFolder(f"not a folder: {str(root)[:300]}")
    media = media_files(root)
    wanted = {labels_path(p) for p in media}
    orphans = [p for p in labels_files(root) if p not in wanted]
    if not media and not orphans:
        raise EmptyFolder(
            f"no media files and no labels files under {str(root)[:300]}: a labelled "
            "folder has photo.jpg with photo.json of labels beside it"
        )
    return LabelledFolder(root, media, orphans)


def _read(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes: one more than allowed tells "too large"."""
    with path.open("rb") as fh:
        return fh.read(max_bytes + 1)


async def _one(
    root: Path, path: Path, moderation: Moderation, policy: Policy, max_json_bytes: int
) -> Outcome:
    name = path.relative_to(root).as_posix()
    if path.is_symlink() or not path.is_file():
        return FailedFile(name, NOT_A_FILE, "not a regular file")
    beside = labels_path(path)
    if beside.is_symlink() or not beside.is_file():
        return FailedFile(name, MISSING_LABELS, f"no labels file {beside.name!r} beside the media")
    try:
        raw = await asyncio.to_thread(_read, beside, max_json_bytes)
        labels = parse_labels(raw, max_bytes=max_json_bytes)
        data = await asyncio.to_thread(_read, path, moderation.engine.settings.limits.max_bytes)
        result = await moderation.moderate_bytes(data, policy)
    except BastionError as exc:
        return FailedFile(name, exc.code, exc.message)
    except OSError as exc:
        return FailedFile(name, UNREADABLE, f"{type(exc).__name__}: {exc}")
    return ScoredImage.from_result(name, labels.labels, result)


async def evaluate_folder(
    folder: LabelledFolder | Path,
    moderation: Moderation,
    policy: Policy,
    *,
    config: EvalConfig | None = None,
    concurrency: int = 8,
    on_total: Callable[[int], None] | None = None,
    on_file: Callable[[Outcome], None] | None = None,
) -> FolderReport:
    """Moderate every labelled image of ``folder`` under ``policy`` (``concurrency``
    files in flight) and measure the decisions against the labels files.

    ``on_total`` hears how many files there are, ``on_file`` each file's outcome as it
    is known. Given a path, raises what :func:`find_files` raises; every other failure
    is a file's, kept in the report. Labels files are read within
    ``samples.max_json_bytes`` of the engine's settings, images within its ``limits``."""
    started = time.monotonic()
    if isinstance(folder, Path):
        folder = await asyncio.to_thread(find_files, folder)
    root, files, orphans = folder.root, folder.media, folder.orphans
    max_json_bytes = moderation.engine.settings.samples.max_json_bytes
    if on_total is not None:
        on_total(folder.files)
    outcomes: list[Outcome] = []

    def done(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if on_file is not None:
            on_file(outcome)

    for path in orphans:
        done(
            FailedFile(
                path.relative_to(root).as_posix(),
                MISSING_MEDIA,
                "a labels file with no media file of the same name beside it",
            )
        )
    queue: Iterator[Path] = iter(files)

    async def worker() -> None:
        for path in queue:  # one shared iterator: each file is taken by one worker
            done(await _one(root, path, moderation, policy, max_json_bytes))

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(files) or 1)))))
    return build_report(
        [o for o in outcomes if isinstance(o, ScoredImage)],
        [o for o in outcomes if isinstance(o, FailedFile)],
        folder=str(root),
        policy=policy,
        seconds=time.monotonic() - started,
        config=config,
    )
