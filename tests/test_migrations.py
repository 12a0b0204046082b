"""Alembic migrations build exactly the tables the models describe (every table)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bastion.store.db import make_engine, migrate
from bastion.store.tables import Base
from tests.support.databases import pg_available, pg_schema, unavailable


def _diffs(url: str) -> list[object]:
    # the migration environment imports every model module: load them the same way
    import bastion.accounts.tables
    import bastion.aws.tables
    import bastion.dedup.tables
    import bastion.delivery.tables
    import bastion.jobs.embedded
    import bastion.jobs.tables
    import bastion.live.tables
    import bastion.registry.tables
    import bastion.review.tables
    import bastion.rules.tables
    import bastion.samples.tables
    import bastion.search.tables
    import bastion.stats.tables
    import bastion.training.tables

    engine = make_engine(url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            # the full-text index differs by database (FTS5 tables, a tsvector column and
            # its indexes) and is made by the migration alone: not compared
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, *_: name not in bastion.search.tables.UNMODELLED,
                },
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_sqlite_schema_matches_the_models(tmp_path: Path) -> None:
    assert _diffs(f"sqlite:///{tmp_path / 'm.db'}") == []


def test_postgres_schema_matches_the_models() -> None:
    if not pg_available():
        unavailable("PostgreSQL")
    with pg_schema() as url:
        assert _diffs(url) == []
