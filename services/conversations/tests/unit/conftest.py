"""Unit tests of the conversations service: no servers. Use cases run against a real database
session: an SQLite file holding the service's tables."""

import pytest

from conversations.models import Base
from mailroom_shared.db import Database


@pytest.fixture
def database(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'conversations.db'}")
    Base.metadata.create_all(database.engine)
    yield database
    database.dispose()
