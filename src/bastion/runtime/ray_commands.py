"""``bastion models serve``: the configured analyzers' models as Ray Serve deployments.

With ``--ray-address`` (or ``runtime.ray.address``) the analyzers that run on Ray are
deployed onto that cluster, where they stay after the command ends, and their state is
printed; processes with ``runtime.backend: ray`` and the same address then use them.
Without an address a local Ray is started for development (loopback, free ports) and
the command keeps it, and the deployments, until it is interrupted. ``--status`` only
shows the deployments and their replicas. Ray comes with the ``ray`` extra
(``pip install 'bastion[ray]'``); nothing here imports it before the command runs.
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from bastion.analyzers.base import AnalyzerConfig
from bastion.config import Settings, load_settings
from bastion.samples.commands import ConfigOpt, DataDirOpt, JsonOpt

if TYPE_CHECKING:
    from bastion.runtime.ray_serve import DeploymentState

err = Console(stderr=True)

AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Ray cluster (host:port of its GCS, or ray://...); default: runtime.ray.address, "
        "else a local Ray for development.",
        envvar="BASTION_RAY_ADDRESS",
    ),
]
StatusOpt = Annotated[
    bool, typer.Option("--status", help="Show the deployments and their replicas; deploy none.")
]
AnalyzerOpt = Annotated[
    list[str] | None,
    typer.Option("--analyzer", "-a", help="Only this analyzer (repeat for several)."),
]


def _settings(config: ConfigOpt, data_dir: DataDirOpt, address: str | None) -> Settings:
    try:
        settings = load_settings(config, data_dir=data_dir, preload=False)
    except Exception as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    ray_config = settings.runtime.ray
    if address is not None:
        ray_config = ray_config.model_copy(update={"address": address})
    runtime = settings.runtime.model_copy(update={"backend": "ray", "ray": ray_config})
    return settings.model_copy(update={"runtime": runtime})


def _print(states: list[DeploymentState], as_json: bool) -> None:
    if as_json:
        print(json.dumps([asdict(s) for s in states], indent=2))
        return
    table = Table("analyzer", "application", "status", "replicas", "message")
    for s in states:
        replicas = ", ".join(f"{k}: {v}" for k, v in sorted(s.replicas.items())) or "-"
        table.add_row(s.analyzer, s.app, s.status, replicas, s.message[:200])
    Console().print(table)


def serve_models(
    ray_address: AddressOpt = None,
    status: StatusOpt = False,
    analyzer: AnalyzerOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Deploy the configured analyzers' models onto Ray Serve (one application each) and
    show their replicas; with --status, only show them."""
    settings = _settings(config, data_dir, ray_address)
    ray_config = settings.runtime.ray
    if status and ray_config.address is None:
        err.print("[red]--status needs --ray-address (or runtime.ray.address)[/red]")
        raise typer.Exit(2)
    configs: dict[str, AnalyzerConfig] = {
        (c.name or c.type): c for c in settings.analyzers if c.enabled
    }
    names = [n for n in configs if ray_config.serves(n)]
    if analyzer:
        unknown = sorted(set(analyzer) - set(configs))
        if unknown:
            err.print(f"[red]not configured:[/red] {', '.join(unknown)}")
            raise typer.Exit(2)
        names = [n for n in names if n in analyzer]
    try:
        from bastion.runtime.ray_serve import RayModels
    except ImportError as exc:
        err.print(f"[red]Ray is not installed:[/red] pip install 'bastion[ray]' ({exc})")
        raise typer.Exit(2) from exc
    models = RayModels(settings.runtime)
    try:
        if status:
            _print(models.states(), as_json)
            return
        for name in names:
            err.print(f"deploying {name} ...")
            models.deploy(name, configs[name])
        _print(models.states(names), as_json)
        if ray_config.address is None:
            err.print("local Ray for development: serving until interrupted (Ctrl-C)")
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
    except typer.Exit:
        raise
    except Exception as exc:
        err.print(f"[red]Ray Serve error:[/red] {type(exc).__name__}: {exc}")
        raise typer.Exit(2) from exc
    finally:
        models.close()
