"""Alembic environment: uses the connection Bastion passes in, or the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

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
import bastion.training.tables  # noqa: F401
from bastion.store.tables import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            render_as_batch=conn.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run()
