"""``bastion models``: list a tenant's heads, promote, roll back, set challengers, and
read the audit log.

These commands work on the registry, the samples and the database of the settings
directly, as ``bastion samples`` does; every moderating process follows an alias moved
here within ``registry.refresh_s``. A category is given as its taxonomy label
(``"Knives and Blades"``) or its slug (``knives-and-blades``). A refused promotion
prints its figures and reasons and exits 1; other errors exit 2.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from bastion.config import Settings, load_settings
from bastion.errors import BastionError
from bastion.samples.commands import ConfigOpt, DataDirOpt, JsonOpt, TenantOpt
from bastion.store.types import to_utc

if TYPE_CHECKING:
    from bastion.registry.promotion import Outcome, Promotions
    from bastion.registry.tables import ModelEvent

T = TypeVar("T")

models_app = typer.Typer(
    help="A tenant's heads: list versions, promote, roll back, challengers, audit log.",
    no_args_is_help=True,
)
err = Console(stderr=True)

CategoryArg = Annotated[
    str, typer.Argument(help="The category: its taxonomy label or its slug (knives-and-blades).")
]
VersionOpt = Annotated[int | None, typer.Option(min=1, help="The version.")]
ReasonOpt = Annotated[str | None, typer.Option(help="Why, for the audit log (at most 500).")]
ByOpt = Annotated[str | None, typer.Option(help="Who acts (default: your user name).")]


def _settings(config: Any, data_dir: Any) -> Settings:
    try:
        return load_settings(config, data_dir=data_dir, preload=False)
    except Exception as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _by(by: str | None) -> str:
    return "cli:" + (by or getpass.getuser())[:100]


def _run(settings: Settings, work: Callable[[Promotions], T]) -> T:
    """Build the process's parts without any role, run ``work`` (blocking) on its
    promotions service in a thread, close them. A refused promotion exits 1 with its
    figures, any other error 2."""
    from bastion.process.components import Roles, build_components
    from bastion.registry.promotion import PromotionRefused

    async def main() -> T:
        parts = await build_components(settings, Roles())
        try:
            return await asyncio.to_thread(work, parts.promotions)
        finally:
            await parts.aclose()

    try:
        return asyncio.run(main())
    except PromotionRefused as exc:
        err.print(f"[red]{exc.code}:[/red] {exc.message}", highlight=False)
        for reason in exc.details.get("reasons", []):
            err.print(f"  {reason['code']}: {reason['message']}", highlight=False)
        raise typer.Exit(1) from exc
    except BastionError as exc:
        err.print(f"[red]{exc.code}:[/red] {exc.message}", highlight=False)
        raise typer.Exit(2) from exc


def _category(text: str) -> str:
    from bastion.registry.promotion import resolve_category

    try:
        return resolve_category(text)
    except BastionError as exc:
        err.print(f"[red]{exc.code}:[/red] {exc.message}", highlight=False)
        raise typer.Exit(2) from exc


def _event(e: ModelEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "category": e.category,
        "model": e.model_name,
        "action": e.action,
        "outcome": e.outcome,
        "from_version": e.from_version,
        "to_version": e.to_version,
        "forced": e.forced,
        "reason": e.reason,
        "checks": e.checks,
        "by": e.actor,
        "at": to_utc(e.created_at).isoformat(),
    }


def _report(done: Outcome, as_json: bool, said: str) -> None:
    if as_json:
        checks = done.checks.model_dump(mode="json") if done.checks is not None else None
        print(json.dumps({"event": _event(done.event), "checks": checks}, indent=2))
    err.print(said, highlight=False)
    if done.checks is not None:
        err.print(f"  {done.checks.summary()}", highlight=False)
        for reason in done.checks.reasons:
            err.print(f"  overridden: {reason.code}: {reason.message}", highlight=False)


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "none"


@models_app.command("list")
def list_heads(
    tenant: TenantOpt,
    category: Annotated[str | None, typer.Option(help="Only this category.")] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The tenant's heads, every version with its aliases and held-out figures."""
    settings = _settings(config, data_dir)
    chosen = _category(category) if category is not None else None

    def work(promotions: Promotions) -> list[dict[str, Any]]:
        heads = [promotions.versions(tenant, chosen)] if chosen else promotions.heads(tenant)
        return [
            {
                "category": h.category,
                "model": h.name,
                "version": v.version,
                "aliases": list(v.aliases),
                "created_at": to_utc(v.created_at).isoformat(),
                "threshold": v.threshold,
                "metrics": dict(v.metrics),
            }
            for h in heads
            for v in h.versions
        ]

    rows = _run(settings, work)
    if as_json:
        print(json.dumps({"versions": rows}, indent=2, ensure_ascii=False))
        return
    t = Table("category", "version", "aliases", "created", "held-out F1", "baseline F1", "recall")
    for r in rows:
        m = r["metrics"]
        t.add_row(
            r["category"],
            f"v{r['version']}",
            ", ".join(r["aliases"]) or "-",
            r["created_at"][:19],
            _metric(m, "held_out_f1"),
            _metric(m, "baseline_f1"),
            _metric(m, "held_out_recall"),
        )
    Console().print(t)
    err.print(f"{len(rows)} versions of tenant {tenant}'s heads")


def _metric(metrics: dict[str, float], name: str) -> str:
    return f"{metrics[name]:.3f}" if name in metrics else "-"


@models_app.command("promote")
def promote(
    category: CategoryArg,
    tenant: TenantOpt,
    version: VersionOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote despite the checks (needs --reason).")
    ] = False,
    reason: ReasonOpt = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Make a version (by default the challenger) the champion, if it beats the champion
    (or, with none, the baseline) on its frozen held-out samples."""
    settings = _settings(config, data_dir)
    chosen = _category(category)
    done = _run(
        settings,
        lambda p: p.promote(tenant, chosen, version, force=force, reason=reason, by=_by(by)),
    )
    e = done.event
    forced = " (forced)" if e.forced else ""
    said = f"{e.model_name}: v{e.to_version} is the champion{forced}, was {_v(e.from_version)}"
    _report(done, as_json, said)


@models_app.command("rollback")
def rollback(
    category: CategoryArg,
    tenant: TenantOpt,
    reason: Annotated[str, typer.Option(help="Why, for the audit log (at most 500).")],
    version: VersionOpt = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Move the champion back to the version it was promoted over, or to --version."""
    settings = _settings(config, data_dir)
    chosen = _category(category)
    done = _run(settings, lambda p: p.rollback(tenant, chosen, version, reason=reason, by=_by(by)))
    e = done.event
    _report(
        done,
        as_json,
        f"{e.model_name}: rolled back to v{e.to_version}, was {_v(e.from_version)}",
    )


@models_app.command("challenger")
def challenger(
    category: CategoryArg,
    tenant: TenantOpt,
    version: VersionOpt = None,
    clear: Annotated[bool, typer.Option("--clear", help="Stop scoring the challenger.")] = False,
    reason: ReasonOpt = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Score --version in shadow beside the champion, or --clear the challenger."""
    if (version is None) == (not clear):
        err.print("give either --version or --clear")
        raise typer.Exit(2)
    settings = _settings(config, data_dir)
    chosen = _category(category)
    if clear:
        done = _run(
            settings, lambda p: p.clear_challenger(tenant, chosen, by=_by(by), reason=reason)
        )
        said = f"{done.event.model_name}: no challenger (was {_v(done.event.from_version)})"
    else:
        assert version is not None
        done = _run(
            settings,
            lambda p: p.set_challenger(tenant, chosen, version, by=_by(by), reason=reason),
        )
        said = f"{done.event.model_name}: v{version} is the challenger"
    _report(done, as_json, said)


@models_app.command("events")
def events(
    tenant: TenantOpt,
    category: Annotated[str | None, typer.Option(help="Only this category.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Most events shown.")] = 50,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The audit log of the tenant's heads, newest first."""
    settings = _settings(config, data_dir)
    chosen = _category(category) if category is not None else None
    page = _run(settings, lambda p: p.events(tenant, chosen, limit=limit))
    rows = [_event(e) for e in page.events]
    if as_json:
        print(json.dumps({"events": rows}, indent=2, ensure_ascii=False))
        return
    t = Table("at", "category", "action", "outcome", "from", "to", "forced", "by", "reason")
    for r in rows:
        t.add_row(
            r["at"][:19],
            r["category"],
            r["action"],
            r["outcome"],
            _v(r["from_version"]),
            _v(r["to_version"]),
            "yes" if r["forced"] else "",
            r["by"],
            r["reason"] or "",
        )
    Console().print(t)
    err.print(f"{len(rows)} events")
