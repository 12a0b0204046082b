"""First start: migrate the database, create the default tenant and an admin key."""

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


def bootstrap(settings: Settings) -> Bootstrap:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = make_engine(settings.resolved_database_url)
    migrate(db)
    repo = Repo(session_factory(db))
    repo.ensure_tenant(DEFAULT_TENANT, "Default tenant")
    new_key = None
    if settings.admin_api_key is not None:
        repo.install_fixed_key(settings.admin_api_key.get_secret_value())
    elif not repo.has_keys():
        new_key, _ = repo.create_key(DEFAULT_TENANT, "initial admin", ["admin"])
    return Bootstrap(db, repo, new_key)
