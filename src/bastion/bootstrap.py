"""Opening the database: migrate it, make sure the default tenant exists and, on the very
first start of the API, create an admin key."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine as DbEngine

from bastion.config import Settings
from bastion.store.db import make_engine, migrate, session_factory
from bastion.store.repo import DEFAULT_TENANT, Repo


@dataclass
class Bootstrap:
    db: DbEngine
    repo: Repo
    new_admin_key: str | None
    """Set only on the very first start when no key was configured: print it once."""


def bootstrap(settings: Settings, *, create_admin_key: bool = True) -> Bootstrap:
    """Migrate and prepare the database. ``create_admin_key``: install the configured admin
    key, or create one when no key exists yet (only the process that prints it should)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = make_engine(settings.resolved_database_url)
    migrate(db)
    repo = Repo(session_factory(db))
    repo.ensure_tenant(DEFAULT_TENANT, "Default tenant")
    new_key = None
    if create_admin_key and settings.admin_api_key is not None:
        repo.install_fixed_key(settings.admin_api_key.get_secret_value())
    elif create_admin_key and not repo.has_keys():
        new_key, _ = repo.create_key(DEFAULT_TENANT, "initial admin", ["admin"])
    return Bootstrap(db, repo, new_key)
