"""API keys are random, stored hashed, scoped and revocable."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import InputError
from bastion.store import keys
from bastion.store.db import make_engine, migrate, session_factory
from bastion.store.repo import Repo
from bastion.store.tables import ApiKey


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    engine = make_engine(f"sqlite:///{tmp_path / 'b.db'}")
    migrate(engine)
    r = Repo(session_factory(engine))
    r.ensure_tenant("default")
    return r


def test_key_round_trip_and_only_hash_stored(repo: Repo) -> None:
    full, row = repo.create_key("default", "ci", ["moderate"])
    assert full.startswith("bst_") and len(full) > 40
    with repo.sessions() as s:
        stored = s.get(ApiKey, row.id)
        assert stored is not None and full not in stored.key_hash
    p = repo.authenticate(full)
    assert p is not None and p.tenant_id == "default" and p.has("moderate") and not p.has("admin")
    assert repo.authenticate(full[:-1] + ("A" if full[-1] != "A" else "B")) is None
    assert repo.authenticate("nonsense") is None


def test_revoked_key_stops_working(repo: Repo) -> None:
    full, row = repo.create_key("default", "x", ["read"])
    repo.revoke_key(row.id)
    assert repo.authenticate(full) is None


def test_fixed_admin_key(repo: Repo) -> None:
    repo.install_fixed_key("my-very-long-admin-secret")
    p = repo.authenticate("my-very-long-admin-secret")
    assert p is not None and p.has("admin") and p.has("moderate")
    with pytest.raises(ValueError):
        keys.from_fixed("short")


def test_bad_scopes_are_refused(repo: Repo) -> None:
    with pytest.raises(InputError):
        repo.create_key("default", "x", ["root"])


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    migrate(engine)
