from mailroom_shared.migrations import run_env
from outbound.models import Base

run_env(Base.metadata)
