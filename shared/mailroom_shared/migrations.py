"""alembic glue: each service's migrations/env.py is two lines that call `run_env`, and the same
database URL logic serves the service, `make migrate` and the tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData

from mailroom_shared import config as mailroom_config
from mailroom_shared.db import make_engine


def alembic_config(service: str, migrations_dir: Path, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", (url or mailroom_config.database_url(service)).replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(hour).2d%%(minute).2d_%%(slug)s")
    cfg.attributes["service"] = service
    return cfg


def upgrade(service: str, migrations_dir: Path, url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, migrations_dir, url), revision)


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's migrations/env.py (online mode only: we always have a database)."""
    url = context.config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=url.startswith("sqlite"), compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


__all__ = ["alembic_config", "upgrade", "run_env"]
