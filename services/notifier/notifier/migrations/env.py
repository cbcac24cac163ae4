from mailroom_shared.migrations import run_env
from notifier.models import Base

run_env(Base.metadata)
