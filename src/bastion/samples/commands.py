"""``bastion samples``: import, export, list and collect a tenant's labelled samples.

These commands work on the database and the media store of the settings directly,
as ``bastion keys`` and ``bastion users`` do; ``import`` and ``collect`` load the
embedding model in this process (never in the API server's).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bastion.config import Settings, load_settings
from bastion.errors import BastionError
from bastion.store.types import to_utc

if TYPE_CHECKING:
    from bastion.process.components import Components
    from bastion.samples.service import SampleFilter

T = TypeVar("T")

samples_app = typer.Typer(
    help="A tenant's labelled samples: import and export folders, list, collect decisions.",
    no_args_is_help=True,
)
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file.", envvar="BASTION_CONFIG")
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data folder.", envvar="BASTION_DATA_DIR")
]
TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant id.")]
SourceOpt = Annotated[
    str | None, typer.Option(help="Only samples of one source: moderator, api or import.")
]
SinceOpt = Annotated[
    str | None, typer.Option(help="Only labelled at or after this time (ISO 8601, UTC if bare).")
]
UntilOpt = Annotated[
    str | None, typer.Option(help="Only labelled before this time (ISO 8601, UTC if bare).")
]
CategoryOpt = Annotated[
    str | None,
    typer.Option(help="Only samples with this taxonomy label (an L1 label covers its L2s)."),
]
CorrectedOpt = Annotated[
    bool,
    typer.Option(
        "--corrected-only",
        help="Only samples whose labels or decision people changed from the models'.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON output on stdout.")]


def _settings(config: Path | None, data_dir: Path | None) -> Settings:
    try:
        return load_settings(config, data_dir=data_dir, preload=False)
    except Exception as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _fail(exc: BastionError) -> typer.Exit:
    err.print(f"[red]{exc.code}:[/red] {exc.message}")
    return typer.Exit(2)


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return to_utc(datetime.fromisoformat(value))
    except ValueError as exc:
        err.print(f"{option}: not an ISO 8601 time: {value!r}")
        raise typer.Exit(2) from exc


def _filters(
    source: str | None, since: str | None, until: str | None, category: str | None, corrected: bool
) -> SampleFilter:
    from bastion.samples.service import SampleFilter

    chosen = SampleFilter(
        source, _time(since, "--since"), _time(until, "--until"), category, corrected
    )
    try:
        chosen.check()
    except BastionError as exc:
        raise _fail(exc) from exc
    return chosen


def _run(settings: Settings, work: Callable[[Components], Awaitable[T]]) -> T:
    """Build the process's parts without any role, run ``work`` on them, close them."""
    from bastion.process.components import Roles, build_components

    async def main() -> T:
        parts = await build_components(settings, Roles())
        try:
            return await work(parts)
        finally:
            await parts.aclose()

    try:
        return asyncio.run(main())
    except BastionError as exc:
        raise _fail(exc) from exc


def _progress(what: str) -> Progress:
    return Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not sys.stderr.isatty(),
    )


@samples_app.command("import")
def import_folder(
    folder: Annotated[Path, typer.Argument(help="A folder of images with a JSON beside each.")],
    tenant: TenantOpt,
    by: Annotated[
        str | None, typer.Option(help="Who labelled the folder (default: your user name).")
    ] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Import a folder of labelled images (`photo.jpg` + `photo.json`: {"labels": [...],
    "decision": "block"} or a list of labels) as the tenant's samples.

    Refused unless the tenant consents to keep media for training. Each image is taken
    whole or skipped with a reason (corrupt or hostile media, a labels file that does not
    parse or names unknown labels, bytes already imported). Exit 1 when any file was
    skipped, 2 when nothing could start.
    """
    from bastion.samples.embedding import Embedder
    from bastion.samples.importer import ImportReport, ItemOutcome, SampleImporter

    settings = _settings(config, data_dir)
    who = "cli:" + (by or getpass.getuser())[:100]
    progress = _progress("importing")
    task = progress.add_task("importing", total=None)

    def total(n: int) -> None:
        progress.update(task, total=n)

    def item(outcome: ItemOutcome) -> None:
        progress.advance(task)
        if not outcome.imported:
            progress.console.print(
                f"[yellow]skipped[/yellow] {outcome.file}: {outcome.code}: {outcome.message}",
                markup=True,
                highlight=False,
            )

    async def work(parts: Components) -> ImportReport:
        embedder = Embedder(parts.engine, settings.samples.embedding_analyzer)
        importer = SampleImporter(parts.samples, embedder, settings.samples)
        with progress:
            return await importer.import_folder(
                folder, tenant, taken_by=who, on_total=total, on_item=item
            )

    report = _run(settings, work)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    skipped = ", ".join(f"{code} {n}" for code, n in report.skipped.items()) or "none"
    err.print(f"imported {report.imported} into tenant {tenant}; skipped: {skipped}")
    if report.skipped:
        raise typer.Exit(1)


@samples_app.command("export")
def export_folder(
    folder: Annotated[Path, typer.Argument(help="A new or empty folder to write into.")],
    tenant: TenantOpt,
    source: SourceOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    category: CategoryOpt = None,
    corrected_only: CorrectedOpt = False,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write the tenant's image samples (of the filters) in the import layout:
    `<id>.jpg` and `<id>.json` beside it."""
    from bastion.samples.exporter import ExportOutcome, ExportReport
    from bastion.samples.exporter import export_folder as export

    settings = _settings(config, data_dir)
    chosen = _filters(source, since, until, category, corrected_only)
    progress = _progress("exporting")

    async def work(parts: Components) -> ExportReport:
        total = await asyncio.to_thread(parts.samples.count, tenant, chosen)
        task = progress.add_task("exporting", total=total)

        def item(outcome: ExportOutcome) -> None:
            progress.advance(task)

        with progress:
            return await asyncio.to_thread(
                export, parts.samples, folder, tenant, chosen, on_item=item
            )

    report = _run(settings, work)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    skipped = ", ".join(f"{code} {n}" for code, n in report.skipped.items()) or "none"
    err.print(f"exported {report.exported} samples of tenant {tenant}; skipped: {skipped}")


@samples_app.command("list")
def list_samples(
    tenant: TenantOpt,
    source: SourceOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    category: CategoryOpt = None,
    corrected_only: CorrectedOpt = False,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Most samples shown.")] = 50,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List the tenant's samples, newest first, with the filters of a librarian."""
    settings = _settings(config, data_dir)
    chosen = _filters(source, since, until, category, corrected_only)

    async def work(parts: Components) -> tuple[int, list[dict[str, Any]]]:
        page = await asyncio.to_thread(parts.samples.list_samples, tenant, chosen, limit=limit)
        total = await asyncio.to_thread(parts.samples.count, tenant, chosen)
        rows = [
            {
                "id": v.sample.id,
                "source": v.sample.source,
                "labels": list(v.sample.labels or []),
                "decision": v.sample.decision,
                "corrected": v.sample.corrected,
                "taken_by": v.sample.taken_by,
                "taken_at": to_utc(v.sample.taken_at).isoformat(),
                "media_sha256": v.sample.media_sha256,
                "media_kind": v.sample.media_kind,
                "origin": v.sample.origin,
                "embeddings": [f"{e.model}" for e in v.embeddings],
            }
            for v in page.samples
        ]
        return total, rows

    total, rows = _run(settings, work)
    if as_json:
        print(json.dumps({"total": total, "samples": rows}, indent=2, ensure_ascii=False))
        return
    t = Table("id", "source", "labels", "decision", "corrected", "taken at", "media", "embedding")
    for r in rows:
        t.add_row(
            r["id"],
            r["source"],
            ", ".join(r["labels"]) or "-",
            r["decision"] or "-",
            "yes" if r["corrected"] else "",
            r["taken_at"][:19],
            r["media_kind"] or "-",
            ", ".join(r["embeddings"]) or "-",
        )
    Console().print(t)
    err.print(f"{len(rows)} of {total} samples")


@samples_app.command("collect")
def collect(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's decisions.")] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Turn decisions that kept their media into samples now (workers do it every
    `samples.collect_every_s` seconds), with their embeddings."""
    from bastion.samples.collector import CollectReport, SampleCollector
    from bastion.samples.embedding import Embedder

    settings = _settings(config, data_dir)

    async def work(parts: Components) -> CollectReport:
        embedder = Embedder(parts.engine, settings.samples.embedding_analyzer)
        collector = SampleCollector(
            parts.samples, embedder, settings.samples, thumbnails=parts.live.thumbnails
        )
        return await collector.collect(tenant)

    report = _run(settings, work)
    err.print(
        f"samples: {report.created} made, {report.followed} moved on to a later decision, "
        f"{report.embedded} embedded"
    )
