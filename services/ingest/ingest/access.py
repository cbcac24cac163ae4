"""Who may use ingest's HTTP routes (docs/access.md).

Ingest keeps no inbox access settings. A stored message (status, raw bytes, attachments) is read
with a download token that conversations signs for that message after checking the inbox (its
URLs carry it as `?access=`), or by a user who may view every inbox (account_access,
super_admin). Raw mail is posted by super admins or callers with the `intake` role (providers'
inbound webhooks).
"""

from __future__ import annotations

from mailroom_shared import auth
from mailroom_shared.http import Forbidden, NotFound, Unauthorized

INTAKE_ROLE = "intake"  # may POST raw mail, besides super admins


def require_post_access(principal: auth.Principal) -> None:
    if not (principal.super_admin or INTAKE_ROLE in principal.roles):
        raise Forbidden(f"posting raw mail needs the super_admin or {INTAKE_ROLE} role")


def require_read_access(request, intake_id: str) -> None:
    """A download token for this message, or the bearer token of a user who sees every inbox.
    Anyone else gets 404, as if the message did not exist."""
    token = request.args.get("access")
    if token:
        auth.verify_blob_access(token, intake_id)
        return
    if auth.bearer_token(request) is None:
        raise Unauthorized("sign in, or use the link from the message (GET /api/messages/{id})")
    if not auth.authenticate(request).sees_every_inbox:
        raise NotFound(f"no message {intake_id}: open it through /api/messages/{{id}} for a download link")


def require_operator_view(principal: auth.Principal) -> None:
    """Quarantined mail (its reasons, not its content): users who see every inbox."""
    if not principal.sees_every_inbox:
        raise Forbidden("the quarantine is for operators: it needs the account_access or super_admin role")


def require_operator_act(principal: auth.Principal) -> None:
    if not principal.super_admin:
        raise Forbidden("re-running quarantined mail needs the super_admin role")
