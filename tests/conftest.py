"""Shared fixtures: one engine with the real models per test session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bastion.config import Settings
from bastion.pipeline.engine import Engine

ADMIN_KEY = "test-admin-key-0123456789abcdef"


def make_settings(data_dir: Path, **kw: object) -> Settings:
    return Settings(data_dir=data_dir, admin_api_key=ADMIN_KEY, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bastion")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(data_root: Path) -> AsyncIterator[Engine]:
    eng = Engine(make_settings(data_root / "engine"))
    errors = eng.load_all()
    assert not errors, errors
    yield eng
    await eng.close()
