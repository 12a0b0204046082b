"""``bastion aws-keys``: issue, list and revoke a tenant's access keys for the
Rekognition-compatible endpoint.

These commands work on the database of the settings directly, as ``bastion keys`` does;
secrets are derived with the same master secret as the server's (``aws.secret_seed``,
or the data dir's seed file), so run them with the server's settings and data dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from bastion.aws.credentials import AwsKeys
from bastion.config import load_settings
from bastion.errors import BastionError

aws_keys_app = typer.Typer(
    help="Access keys of the Rekognition-compatible endpoint (works on the database directly).",
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


def _keys(config: Path | None, data_dir: Path | None) -> AwsKeys:
    from bastion.bootstrap import bootstrap
    from bastion.store.db import session_factory

    try:
        settings = load_settings(config, data_dir=data_dir, preload=False)
    except Exception as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    boot = bootstrap(settings, create_admin_key=False)
    return AwsKeys.from_settings(settings, session_factory(boot.db))


def _fail(exc: BastionError) -> typer.Exit:
    err.print(f"[red]{exc.code}:[/red] {exc.message}")
    return typer.Exit(2)


@aws_keys_app.command("create")
def create(
    tenant: TenantOpt = "default",
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    scope: Annotated[
        list[str] | None, typer.Option(help="moderate, read, admin (repeat); moderate by default.")
    ] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Issue an access key and print its id and secret (the secret is shown once)."""
    try:
        info, secret = _keys(config, data_dir).create(tenant, name, scope or ["moderate"])
    except BastionError as exc:
        raise _fail(exc) from exc
    print(f"aws_access_key_id = {info.id}")
    print(f"aws_secret_access_key = {secret}")


@aws_keys_app.command("list")
def list_keys(
    tenant: TenantOpt = "default", data_dir: DataDirOpt = None, config: ConfigOpt = None
) -> None:
    """List the tenant's access keys (never their secrets)."""
    t = Table(
        Column("access key id", no_wrap=True), "name", "scopes", "created", "last used", "revoked"
    )
    for k in _keys(config, data_dir).list(tenant):
        t.add_row(
            k.id,
            k.name,
            ",".join(k.scopes),
            str(k.created_at)[:19],
            str(k.last_used_at)[:19] if k.last_used_at else "",
            str(k.revoked_at)[:19] if k.revoked_at else "",
        )
    Console().print(t)


@aws_keys_app.command("revoke")
def revoke(
    key_id: str,
    tenant: TenantOpt = "default",
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Revoke the tenant's access key ``KEY_ID`` (servers stop accepting it within seconds)."""
    try:
        _keys(config, data_dir).revoke(tenant, key_id)
    except BastionError as exc:
        raise _fail(exc) from exc
    err.print(f"revoked {key_id}")
