"""Bearer tokens for tests: every stack the `stack_factory` fixture starts shares TEST_SECRET, and
its requests carry ADMIN's token unless a test passes its own `Authorization` header."""

from __future__ import annotations

from mailroom_shared.auth import ACCOUNT_ACCESS, SUPER_ADMIN, mint_token

TEST_SECRET = "mailroom-test-secret-0123456789abcdef0123456789"  # noqa: S105 - test-only
TEST_ENV = {"MAILROOM_JWT_SECRET": TEST_SECRET}
# the default caller of test stacks: may manage inboxes and see everything (acts in `everyone` inboxes)
ADMIN = {"user_id": "test-admin", "email": "admin@mailroom.test", "roles": (SUPER_ADMIN,)}


def token(user_id: str, *, email: str | None = None, teams=(), roles=(), seconds: int = 3600, **kwargs) -> str:
    return mint_token(user_id, email=email, teams=tuple(teams), roles=tuple(roles), secret=TEST_SECRET,
                      seconds=seconds, **kwargs)


def auth(user_id: str, **kwargs) -> dict:
    """`headers=` for Stack.request: `stack.get(path, headers=auth("agent-1", teams=["t1"]))`."""
    return {"Authorization": f"Bearer {token(user_id, **kwargs)}"}


def admin_headers() -> dict:
    return auth(ADMIN["user_id"], email=ADMIN["email"], roles=ADMIN["roles"])


NO_AUTH = {"Authorization": ""}  # overrides the stack's default header: an anonymous request

__all__ = ["ACCOUNT_ACCESS", "ADMIN", "NO_AUTH", "SUPER_ADMIN", "TEST_ENV", "TEST_SECRET", "admin_headers", "auth",
           "token"]
