"""Every service's migrations build exactly its models on PostgreSQL, and go down and up again."""

import importlib

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from mailroom_shared.db import normalise_url
from mailroom_shared.migrations import alembic_config, upgrade
from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST, NOTIFIER, OUTBOUND

pytestmark = pytest.mark.integration

SPECS = [spec for spec in (INGEST, CONTACTS, CONVERSATIONS, OUTBOUND, NOTIFIER) if spec.migrations.exists()]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_migrations_match_the_models_and_round_trip(spec, make_database):
    metadata = importlib.import_module(f"{spec.name}.models").Base.metadata
    url = make_database(spec.name)
    upgrade(spec.name, spec.migrations, url)
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
        command.downgrade(alembic_config(spec.name, spec.migrations, url), "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(spec.name, spec.migrations, url)
        assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
