from ingest.models import Base
from mailroom_shared.migrations import run_env

run_env(Base.metadata)
