"""The delivery state of an email we sent, as outbound reports it (no IO).

The state lives in the message's `flags` (`flags.delivery` = {state, reason, …}) and is shown
through the existing `flags.reasons` as `delivery:<state>[: reason]`, so a failed delivery is
visible on its conversation without a schema change. Events of one email may arrive in any
order: a later state is never replaced by an earlier one.
"""

from __future__ import annotations

RANK = {"queued": 0, "deferred": 1, "sent": 2, "failed": 3, "bounced": 4}
REPEATABLE = ("deferred", "queued")  # a new attempt or a redelivery updates the details
MAX_LABEL_CHARS = 1000


def with_state(flags: dict | None, state: str, details: dict) -> dict:
    """`flags` with `state` (and its details) recorded."""
    flags = dict(flags or {})
    reason = details.get("reason")
    label = f"delivery:{state}" + (f": {reason}" if reason else "")
    if state == "sent" and details.get("smtp_queue_id"):
        label += f" (queue id {details['smtp_queue_id']})"
    flags["reasons"] = [r for r in flags.get("reasons") or [] if not str(r).startswith("delivery:")] \
        + [label[:MAX_LABEL_CHARS]]
    flags["delivery"] = {"state": state, **{k: v for k, v in details.items() if v is not None}}
    return flags


def advanced(flags: dict | None, state: str, details: dict) -> dict | None:
    """`flags` with `state` recorded, or None when it does not apply: the recorded state is
    later, or the same and not one that repeats."""
    current = RANK.get((flags or {}).get("delivery", {}).get("state", "queued"), 0)
    if RANK[state] < current or (RANK[state] == current and state not in REPEATABLE):
        return None
    return with_state(flags, state, details)


def with_bounced_recipients(flags: dict | None, recipients: list[dict]) -> dict | None:
    """`flags` with the recipients a DSN returned the email for added (each once), or None when
    they are all listed already. The delivery state is left alone: others may have got it."""
    flags = dict(flags or {})
    listed = list(flags.get("bounced_recipients") or [])
    known = {str(r.get("email") or "").lower() for r in listed}
    new = []
    for recipient in recipients:
        email = str(recipient.get("email") or "")
        if email and email.lower() not in known:
            known.add(email.lower())
            new.append({k: recipient.get(k) for k in ("email", "status", "reason", "suppressed")})
    if not new:
        return None
    flags["bounced_recipients"] = listed + new
    flags["reasons"] = list(flags.get("reasons") or []) + [
        f"bounced:{r['email']}: {r.get('reason') or r.get('status') or 'returned'}"[:MAX_LABEL_CHARS] for r in new]
    return flags
