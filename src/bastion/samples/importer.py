"""``bastion samples import``: a folder of labelled images becomes a tenant's samples.

The folder is in the layout of :mod:`bastion.samples.folder` (``photo.jpg`` with
``photo.json`` beside it). Nothing starts unless the tenant consents to keep media for
training (``training_consent_required``). Each image is taken or left whole: its
labels file is parsed within bounds and its labels checked against the taxonomy, its
bytes are sniffed and decoded within the media limits exactly as any image Bastion
moderates (:func:`bastion.media.image.decode_image`: the same error codes), its
embedding is computed, and only then are the bytes stored in the job media store and
the sample written with its embedding in one transaction. An item that fails any step
is reported with the code of what went wrong and leaves nothing behind in the database
(bytes stored for a sample whose row then could not be written are unreferenced, and
retention removes them). Bytes the tenant already has a sample of are skipped
(``duplicate``), so importing a folder again adds only what is new.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bastion.errors import BastionError, InputError
from bastion.samples.config import SamplesConfig
from bastion.samples.embedding import Embedder
from bastion.samples.folder import labels_files, labels_path, media_files, parse_labels
from bastion.samples.service import NewEmbedding, NewSample, SampleService
from bastion.samples.tables import IMAGE, IMPORT

MISSING_LABELS = "missing_labels"
MISSING_MEDIA = "missing_media"
DUPLICATE = "duplicate"
NOT_A_FILE = "not_a_file"
UNREADABLE = "unreadable_file"


class NotAFolder(InputError):
    code = "not_a_folder"
    status = 422


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """One file of the folder: imported as ``sample_id``, or skipped with a code."""

    file: str
    """The path inside the folder."""
    sample_id: str | None = None
    code: str | None = None
    message: str | None = None

    @property
    def imported(self) -> bool:
        return self.sample_id is not None

    def to_dict(self) -> dict[str, Any]:
        if self.imported:
            return {"file": self.file, "sample_id": self.sample_id}
        return {"file": self.file, "code": self.code, "message": self.message}


@dataclass
class ImportReport:
    """What an import did: every file's outcome, in the folder's order."""

    tenant_id: str
    items: list[ItemOutcome] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return sum(1 for i in self.items if i.imported)

    @property
    def skipped(self) -> dict[str, int]:
        """How many files were skipped, by code."""
        return dict(sorted(Counter(str(i.code) for i in self.items if not i.imported).items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant_id,
            "imported": self.imported,
            "skipped": self.skipped,
            "items": [i.to_dict() for i in self.items],
        }


class SampleImporter:
    """Imports labelled folders into ``samples`` with the embeddings of ``embedder``."""

    def __init__(
        self,
        samples: SampleService,
        embedder: Embedder,
        config: SamplesConfig,
    ) -> None:
        self.samples = samples
        self.embedder = embedder
        self.config = config

    async def import_folder(
        self,
        root: Path,
        tenant_id: str,
        *,
        taken_by: str,
        on_total: Callable[[int], None] | None = None,
        on_item: Callable[[ItemOutcome], None] | None = None,
    ) -> ImportReport:
        """Import every labelled image under ``root`` for ``tenant_id``; ``taken_by``
        says who labelled them (``cli:<name>``). ``on_total`` hears how many files
        there are, ``on_item`` each file's outcome as it is known."""
        if not await asyncio.to_thread(root.is_dir):
            raise NotAFolder(f"not a folder: {str(root)[:300]}")
        await asyncio.to_thread(self.samples.check_consent, tenant_id)
        await self.embedder.load()
        files, orphans = await asyncio.to_thread(_walk, root)
        first = await asyncio.to_thread(_first_of, files, self.embedder.limits.max_bytes)
        if on_total is not None:
            on_total(len(files) + len(orphans))
        outcomes: dict[Path, ItemOutcome] = {}

        def done(path: Path, outcome: ItemOutcome) -> None:
            outcomes[path] = outcome
            if on_item is not None:
                on_item(outcome)

        for path in orphans:
            done(
                path,
                ItemOutcome(
                    _name(root, path),
                    code=MISSING_MEDIA,
                    message="a labels file with no media file of the same name beside it",
                ),
            )
        taken_at = datetime.now(UTC)
        claimed: set[str] = set()
        gate = asyncio.Semaphore(self.config.import_concurrency)

        async def one(path: Path) -> None:
            async with gate:
                outcome = await self._one(root, path, tenant_id, taken_by, taken_at, first, claimed)
                done(path, outcome)

        await asyncio.gather(*(one(p) for p in files))
        report = ImportReport(tenant_id)
        report.items = [outcomes[p] for p in sorted(outcomes)]
        return report

    async def _one(
        self,
        root: Path,
        path: Path,
        tenant_id: str,
        taken_by: str,
        taken_at: datetime,
        first: dict[str, Path],
        claimed: set[str],
    ) -> ItemOutcome:
        name = _name(root, path)
        try:
            return await self._take(root, path, tenant_id, taken_by, taken_at, first, claimed)
        except BastionError as exc:
            if exc.code == "embedding_unavailable":
                raise  # the model, not the item: nothing else would import either
            return ItemOutcome(name, code=exc.code, message=exc.message)
        except OSError as exc:
            return ItemOutcome(name, code=UNREADABLE, message=f"{type(exc).__name__}: {exc}")

    async def _take(
        self,
        root: Path,
        path: Path,
        tenant_id: str,
        taken_by: str,
        taken_at: datetime,
        first: dict[str, Path],
        claimed: set[str],
    ) -> ItemOutcome:
        name = _name(root, path)
        if path.is_symlink() or not path.is_file():
            return ItemOutcome(name, code=NOT_A_FILE, message="not a regular file")
        beside = labels_path(path)
        if beside.is_symlink() or not beside.is_file():
            return ItemOutcome(
                name,
                code=MISSING_LABELS,
                message=f"no labels file {beside.name!r} beside the media",
            )
        raw = await asyncio.to_thread(_read, beside, self.config.max_json_bytes)
        labels = parse_labels(raw, max_bytes=self.config.max_json_bytes)
        data = await asyncio.to_thread(_read, path, self.embedder.limits.max_bytes)
        decoded = await self.embedder.decode(data)
        sha = decoded.sha256
        earlier = first.get(sha, path)
        if earlier != path or sha in claimed:
            return ItemOutcome(
                name,
                code=DUPLICATE,
                message=f"the same bytes as {_name(root, earlier)!r} earlier in this folder",
            )
        claimed.add(sha)
        known = await asyncio.to_thread(self.samples.with_media, tenant_id, sha)
        if known is not None:
            return ItemOutcome(
                name, code=DUPLICATE, message=f"the tenant already has these bytes ({known})"
            )
        vector = await self.embedder.embed(decoded)
        media = self.samples.media
        await asyncio.to_thread(media.store, data)
        new = NewSample(
            tenant_id=tenant_id,
            labels=labels.labels,
            decision=labels.decision,
            source=IMPORT,
            taken_by=taken_by,
            taken_at=labels.taken_at or taken_at,
            media_sha256=sha,
            media_kind=IMAGE,
            media_format=decoded.format,
            origin=name[:512],
            embeddings=[NewEmbedding(self.embedder.model, self.embedder.analyzer.name, vector)],
        )
        sample = await asyncio.to_thread(self.samples.add, new)
        if not await asyncio.to_thread(media.refresh, sha):  # removed meanwhile: again
            await asyncio.to_thread(media.store, data)
        return ItemOutcome(name, sample_id=sample.id)


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """The media files under ``root``, and the labels files with no media beside."""
    files = media_files(root)
    wanted = {labels_path(p) for p in files}
    return files, [p for p in labels_files(root) if p not in wanted]


def _first_of(files: list[Path], max_bytes: int) -> dict[str, Path]:
    """The first file (in the folder's order) of each content: later files with the
    same bytes are duplicates, whichever is processed first."""
    first: dict[str, Path] = {}
    for path in files:
        try:
            if path.is_symlink() or not path.is_file():
                continue
            digest = hashlib.sha256(_read(path, max_bytes)).hexdigest()
        except OSError:
            continue
        first.setdefault(digest, path)
    return first


def _read(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes: one more than allowed tells "too large"."""
    with path.open("rb") as fh:
        return fh.read(max_bytes + 1)


def _name(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()
