"""``bastion train``: train a tenant's head for a category, here or by a worker.

By default the run is done in this process (which is never the API's), with a
progress bar, and the result is printed: the head against the baseline (what Bastion
decides today) on the held-out samples, the F1 difference with its interval, and the
version registered as the ``challenger``. ``--queue`` only queues the run for a worker
(``bastion worker``, or ``bastion up`` with its worker) and prints its id. Either way
the run is a training run like one asked for through ``POST /v1/training/runs``: it is
listed, its progress and report are read the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import socket
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from bastion.config import Settings, load_settings
from bastion.errors import BastionError
from bastion.store.types import to_utc

if TYPE_CHECKING:
    from bastion.process.components import Components
    from bastion.training.tables import TrainingRun

err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file.", envvar="BASTION_CONFIG")
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data folder.", envvar="BASTION_DATA_DIR")
]


def _settings(config: Path | None, data_dir: Path | None) -> Settings:
    try:
        return load_settings(config, data_dir=data_dir, preload=False)
    except Exception as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return to_utc(datetime.fromisoformat(value))
    except ValueError as exc:
        err.print(f"{option}: not an ISO 8601 time: {value!r}")
        raise typer.Exit(2) from exc


def _overrides(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, each value read as JSON when it is JSON, else as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            err.print(f"--set: write KEY=VALUE, not {pair!r}")
            raise typer.Exit(2)
        try:
            out[key.strip()] = json.loads(text)
        except ValueError:
            out[key.strip()] = text
    return out


def _num(value: Any, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{float(value):+.3f}" if signed else f"{float(value):.3f}"


def _interval(interval: dict[str, Any], signed: bool = False) -> str:
    if not interval:
        return "-"
    low, high = _num(interval.get("low"), signed), _num(interval.get("high"), signed)
    return f"{_num(interval.get('estimate'), signed)} [{low}, {high}]"


def _result_table(run: TrainingRun) -> Table:
    """The head against the baseline on the held-out samples: precision, recall, F1 with
    its interval, and the F1 difference with its interval."""
    report = run.report or {}
    ev = report.get("evaluation", {})
    head, base = ev.get("head", {}), ev.get("baseline", {})
    level = float(report.get("config", {}).get("confidence", 0.95))
    held = ev.get("held_out", {})
    t = Table(
        title=f"{run.category}: the head against {ev.get('baseline_name', 'the baseline')}",
        caption=f"{held.get('positive', 0)} positive and {held.get('negative', 0)} negative "
        f"held-out samples; intervals at {level:.0%}",
    )
    for column in ("", "precision", "recall", "F1 [interval]"):
        t.add_column(column, justify="left" if not column else "right")
    t.add_row(
        "head",
        _num(head.get("precision")),
        _num(head.get("recall")),
        _interval(ev.get("head_f1", {})),
    )
    t.add_row(
        "baseline",
        _num(base.get("precision")),
        _num(base.get("recall")),
        _interval(ev.get("baseline_f1", {})),
    )
    t.add_row("head − baseline", "", "", _interval(ev.get("f1_difference", {}), signed=True))
    return t


def _summary(run: TrainingRun) -> list[str]:
    report = run.report or {}
    better = (report.get("evaluation") or {}).get("head_better", False)
    coverage = float((report.get("baseline") or {}).get("coverage", 0.0))
    lines = [
        "the head is better: the whole interval of the F1 difference is above zero"
        if better
        else "the head is not shown to be better (the F1 difference's interval reaches zero)",
        f"the baseline was known for {coverage:.0%} of the held-out samples",
    ]
    if run.model_name is not None:
        lines.append(f"registered {run.model_name} version {run.model_version} as the challenger")
    return lines


def _out(run: TrainingRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "tenant": run.tenant_id,
        "category": run.category,
        "status": run.status,
        "error": None
        if run.error_code is None
        else {"code": run.error_code, "message": run.error_message},
        "model": run.model_name,
        "version": run.model_version,
        "metrics": run.metrics,
        "baseline_coverage": run.baseline_coverage,
    }


def train(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id.")],
    category: Annotated[
        str, typer.Option("--category", help="The taxonomy label (L1 or L2) the head decides.")
    ],
    source: Annotated[
        str | None, typer.Option(help="Only samples of one source: moderator, api or import.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only samples labelled at or after this time (ISO 8601, UTC if bare)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Only samples labelled before this time (ISO 8601, UTC if bare)."),
    ] = None,
    corrected_only: Annotated[
        bool,
        typer.Option(
            "--corrected-only",
            help="Only samples whose labels or decision people changed from the models'.",
        ),
    ] = False,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="A training setting for this run, KEY=VALUE (e.g. cv_folds=3); repeatable.",
        ),
    ] = None,
    queue: Annotated[
        bool, typer.Option("--queue", help="Only queue the run for a worker; print its id.")
    ] = False,
    by: Annotated[
        str | None, typer.Option(help="Who asks for the run (default: your user name).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output on stdout.")] = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Train the tenant's head for a category on its labelled samples and register it as
    the challenger (it runs in shadow until promoted).

    Exit 0 when the run succeeded (or was queued), 1 when it failed, 2 when it was refused
    (unknown category, too few samples, another run on its way, ...).
    """
    from bastion.process.components import Roles, build_components
    from bastion.training.runs import RunFilters, check_request, kept_embedding_model

    settings = _settings(config, data_dir)
    filters = RunFilters(source, _time(since, "--since"), _time(until, "--until"), corrected_only)
    changes = _overrides(overrides or [])
    try:  # refuse what is wrong on its face before loading anything
        check_request(settings.training, category, filters, changes)
    except BastionError as exc:
        err.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    who = "cli:" + (by or getpass.getuser())[:100]
    token = f"{socket.gethostname()[:60]}:{os.getpid()}:cli:{uuid.uuid4().hex[:12]}"

    async def main() -> TrainingRun:
        parts = await build_components(settings, Roles())
        try:
            model = await asyncio.to_thread(
                kept_embedding_model, parts.engine, settings.samples.embedding_analyzer
            )
            run = await asyncio.to_thread(
                lambda: parts.training_runs.create(
                    tenant,
                    category,
                    embedding_model=model,
                    requested_by=who,
                    filters=filters,
                    overrides=changes,
                    claimed_by=None if queue else token,
                )
            )
            if queue:
                return run
            return await _run_here(parts, run, token)
        finally:
            await parts.aclose()

    try:
        run = asyncio.run(main())
    except BastionError as exc:
        err.print(f"[red]{exc.code}:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    if as_json:
        print(json.dumps(_out(run), indent=2, ensure_ascii=False))
    if queue:
        if not as_json:
            print(run.id)
        err.print(f"training run {run.id} queued for a worker")
        return
    if run.status != "succeeded":
        err.print(f"[red]{run.error_code}:[/red] {run.error_message}")
        raise typer.Exit(1)
    if not as_json:
        Console().print(_result_table(run))
        for line in _summary(run):
            print(line)


async def _run_here(parts: Components, run: TrainingRun, token: str) -> TrainingRun:
    """Do ``run`` (created claimed by ``token``) in this process, with a progress bar and
    a heartbeat, so no worker takes it meanwhile."""
    from bastion.training.work import WorkParts, run_training

    runs = parts.training_runs
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not sys.stderr.isatty(),
    )
    task = progress.add_task("queued", total=1.0)

    def listener(stage: str, fraction: float) -> None:
        progress.update(task, description=stage, completed=fraction)

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(settings_heartbeat)
            await asyncio.to_thread(runs.heartbeat, run.id, token)

    settings_heartbeat = parts.settings.training.heartbeat_s
    beating = asyncio.create_task(heartbeat())
    try:
        with progress:
            return await run_training(WorkParts.of(parts), run, token, listener=listener)
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
