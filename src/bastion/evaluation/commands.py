"""``bastion eval DIR``: measure what Bastion decides today on a folder of labelled images.

Users point it at their own content in the labelled-samples layout (``photo.jpg`` with
``photo.json`` of labels beside it; an empty list is an image none of the labels
applies to) and see, per category and for the decision as a whole, how often the base
models and the policy get it right, before any model of their own is trained. The
models load in this process, only those the policy names, as ``bastion scan`` does; a
progress bar runs while the images are moderated, tables are printed at the end and
``--json`` writes the whole report (every image and every file that failed).

Exit status: 0 when the folder was measured (files that failed are reported, not
fatal), 2 for bad input (no folder, an empty folder, an unknown policy, a folder in
which no image could be scored).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from bastion.config import Settings, load_settings
from bastion.errors import BastionError, InputError

if TYPE_CHECKING:
    from bastion.evaluation.folder_eval import FolderReport, Measure
    from bastion.evaluation.runner import LabelledFolder, Outcome
    from bastion.policy.model import Policy
    from bastion.process.components import Core

__all__ = ["NoImageScored", "eval_command", "report_tables"]

err = Console(stderr=True)
MAX_FAILURES_SHOWN = 20


class NoImageScored(InputError):
    """Every file of the folder failed: there is nothing to measure."""

    code = "no_image_scored"
    status = 422


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config, preload=False)
    except Exception as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _policy(core: Core, ref: str | None) -> Policy:
    """A policy file when ``ref`` names one, else a policy of the book by name."""
    from bastion.policy.loader import parse_policy

    path = Path(ref) if ref else None
    if path is not None and path.is_file():
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the policy file: {exc}", code="unreadable_file") from exc
        return parse_policy(text, source=str(path))
    policy, _ = core.policies.resolve(None, ref)
    return policy


async def _measure(
    folder: LabelledFolder, settings: Settings, policy_ref: str | None, concurrency: int
) -> FolderReport:
    from bastion.evaluation.runner import evaluate_folder
    from bastion.process.components import build_core

    core = await build_core(settings)  # models load below, only the policy's
    try:
        policy = _policy(core, policy_ref)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not (sys.stderr.isatty() or folder.files > 20),
        )
        with progress:
            task = progress.add_task("evaluating", total=folder.files)
            configured = [n for n in policy.analyzers if n in core.engine.analyzers]
            failed = await asyncio.to_thread(core.engine.load_all, configured)
            for name, error in failed.items():  # its images are reviewed, never allowed
                err.print(f"[yellow]analyzer {name} did not load:[/yellow] {error}")

            def advance(_: Outcome) -> None:
                progress.advance(task)

            return await evaluate_folder(
                folder, core.moderation, policy, concurrency=concurrency, on_file=advance
            )
    finally:
        await core.aclose()


def _defined(m: Measure, what: str) -> bool:
    """Whether ``what`` has a value: something decided positive (precision), a positive
    image (recall), either (F1)."""
    c = m.confusion
    denominator = {"precision": c.tp + c.fp, "recall": c.tp + c.fn}.get(what, c.tp + c.fp + c.fn)
    return denominator > 0


def _interval(m: Measure, what: str) -> str:
    """``0.82 [0.71–0.90]``; ``–`` where the value is undefined."""
    if not _defined(m, what):
        return "–"
    value = getattr(m, what)
    if value.resamples == 0:
        return f"{value.estimate:.2f}"
    return f"{value.estimate:.2f} [{value.low:.2f}–{value.high:.2f}]"


def report_tables(report: FolderReport) -> list[Table | Text]:
    """The report for people: the decisions with their scores, the categories, the
    files not scored (``–``: undefined, e.g. precision where nothing was decided)."""
    d = report.decision
    decision = Table(
        title=f"Decisions under policy {report.policy} ({report.images} images: "
        f"{d.labelled} labelled, {d.clean} clean)"
    )
    for col in ("labels file", "allow", "review", "block", "should be"):
        decision.add_column(col)
    for group, should in (("labelled", "review or block"), ("clean", "allow")):
        row = d.counts[group]
        decision.add_row(group, *(str(row[k]) for k in ("allow", "review", "block")), should)
    f = d.flagged
    scored = Text(
        f"Labelled images reviewed or blocked: precision {_interval(f, 'precision')}, "
        f"recall {_interval(f, 'recall')}, F1 {_interval(f, 'f1')} "
        f"({round(f.f1.confidence * 100)}% bootstrap intervals over {report.images} images)"
    )
    categories = Table(title="Per category (an L1 category covers its L2 labels)")
    columns = (
        "category",
        "support",
        "policy rule",
        "precision",
        "recall",
        "F1",
        "tp/fp/fn/tn",
        "labelled F1",
    )
    for col in columns:
        categories.add_column(col, overflow="fold")
    for c in report.categories:
        m, cm = c.decided, c.decided.confusion
        categories.add_row(
            ("  " if c.level == 2 else "") + c.category,
            str(c.support),
            "yes" if c.covered else "[yellow]none[/yellow]",
            _interval(m, "precision"),
            _interval(m, "recall"),
            _interval(m, "f1"),
            f"{cm.tp}/{cm.fp}/{cm.fn}/{cm.tn}",
            _interval(c.labelled, "f1"),
        )
    categories.caption = (
        "precision, recall, F1: a rule of the policy acted on a label of the category; "
        "labelled F1: the result has a label of it at any confidence"
    )
    tables: list[Table | Text] = [decision, scored, categories]
    if report.failures:
        failed = Table(
            title=f"Files not scored: {report.failed} ("
            + ", ".join(f"{k} {v}" for k, v in report.failures_by_code.items())
            + ")"
        )
        for col in ("file", "code", "message"):
            failed.add_column(col, overflow="fold")
        for item in report.failures[:MAX_FAILURES_SHOWN]:
            failed.add_row(item.file, f"[red]{item.code}[/red]", item.message)
        if report.failed > MAX_FAILURES_SHOWN:
            failed.caption = f"and {report.failed - MAX_FAILURES_SHOWN} more (see --json)"
        tables.append(failed)
    return tables


def eval_command(
    folder: Annotated[
        Path,
        typer.Argument(
            help='A labelled folder: photo.jpg with photo.json beside it ({"labels": '
            '["Firearms"]} or a list of labels; [] for an image none applies to).'
        ),
    ],
    policy: Annotated[
        str | None, typer.Option(help="Policy name or YAML file (default: the default policy).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the whole report as JSON to this file.")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Files in flight.")] = 8,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML config file.", envvar="BASTION_CONFIG"),
    ] = None,
) -> None:
    """Measure what Bastion decides today (the base models and a policy) on a folder of
    labelled images: per category and per decision, precision, recall and F1 with 95%
    bootstrap intervals."""
    from bastion.evaluation.runner import find_files

    logging.basicConfig(level=logging.WARNING)
    settings = _settings(config)
    try:
        files = find_files(folder)
        report = asyncio.run(_measure(files, settings, policy, concurrency))
    except BastionError as exc:
        err.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    out = Console()
    for table in report_tables(report):
        out.print(table)
    if json_out is not None:
        try:
            json_out.write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
        except OSError as exc:
            err.print(f"[red]cannot write {json_out}:[/red] {exc}")
            raise typer.Exit(2) from exc
        err.print(f"report written to {json_out}")
    if report.images == 0:
        nothing = NoImageScored("no image of the folder could be scored: every file failed")
        err.print(f"[red]{nothing.code}:[/red] {nothing.message}")
        raise typer.Exit(2)
