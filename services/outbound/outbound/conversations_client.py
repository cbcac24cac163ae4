"""outbound's client of the conversations service, which owns inboxes and conversations and decides
who may do what with them: an inbox's From identities, the context of a reply or forward (the
conversation, the message replied to, the thread) and whether a caller may view an inbox's or a
conversation's emails — over RPC, as a nameko dependency.

Whether the caller may send from an inbox (only its members act; account-wide admins only view)
is decided by conversations: the caller's principal goes along with the RPC, and "not found" or
"forbidden" comes back (conversations' reply-context RPC). A conversations service that does not
answer in time (OUTBOUND_RPC_TIMEOUT_SECONDS), is not running or fails is a 503: try again.
"""

from __future__ import annotations

import logging

import eventlet
from nameko.exceptions import RemoteError, UnknownService
from nameko.rpc import RpcProxy

from mailroom_shared.auth import Principal
from mailroom_shared.http import Forbidden, HttpError, NotFound, ServiceUnavailable
from mailroom_shared.kit import SettingsProvider

log = logging.getLogger(__name__)


class Conversations:
    """What one worker asks conversations."""

    def __init__(self, proxy, timeout_seconds: float):
        self._proxy = proxy
        self._timeout = timeout_seconds

    def inbox(self, inbox_id: str, principal: Principal | None = None, *, view: bool = False) -> dict:
        """The inbox's name, primary address and From identities: 404 when the caller may not see
        the inbox, 403 when it may view but not send from it — unless only `view` is needed."""
        inbox = self._call("get_inbox_identities", inbox_id, _as_dict(principal))
        if inbox is not None and "forbidden" in inbox and view:  # a viewer: asked again as a service
            inbox = self._call("get_inbox_identities", inbox_id, None)
        if inbox is None:
            raise NotFound(f"no inbox {inbox_id}")
        if "forbidden" in inbox:
            raise Forbidden(inbox["forbidden"])
        return inbox

    def reply_context(self, conversation_id: str, message_id: str | None, include_thread: bool = False,
                      principal: Principal | None = None, *, view: bool = False) -> dict:
        """The conversation, its inbox, the message replied to (and the thread, for a forward):
        404 when the caller may not see the conversation, 403 when it may view but not act — unless
        only `view` is needed (rendering a template with the conversation's tokens)."""
        context = self._call("get_reply_context", conversation_id, message_id, include_thread, _as_dict(principal))
        if context is not None and "forbidden" in context and view:  # a viewer: asked again as a service
            context = self._call("get_reply_context", conversation_id, message_id, include_thread, None)
        if context is None:
            raise NotFound(f"no conversation {conversation_id}")
        if "forbidden" in context:
            raise Forbidden(context["forbidden"])
        if message_id and context.get("message") is None:
            raise NotFound(f"no message {message_id} in conversation {conversation_id}")
        return context

    def chat_connector(self, channel_id: str | None) -> dict | None:
        """Where replies to a chat channel go: its webhook URL and sealed secret (docs/channels.md)."""
        return self._call("get_chat_connector", channel_id) if channel_id else None

    def require_view(self, token: str | None, *, inbox_id: str | None = None,
                     conversation_id: str | None = None) -> None:
        """Reads follow the inbox's visibility, decided by conversations (404 when not visible)."""
        answer = self._proxy.check_access(token, "view", conversation_id=conversation_id, inbox_id=inbox_id)
        if not answer.get("allowed"):
            error = HttpError(answer.get("message") or "not allowed")
            error.status, error.code = answer.get("status", 404), answer.get("code", "not_found")
            raise error

    def inbox_rights(self, principal: Principal) -> InboxRights:
        """What `principal` may do in each inbox, asked once per inbox (domain/scopes.InboxRights)."""
        return InboxRights(self, principal)

    def rights_in(self, inbox_ids: list[str], principal: Principal) -> dict[str, tuple[bool, bool]]:
        """(may view, may act) in each inbox, asked in parallel: conversations' inbox-identities
        RPC with the caller answers None (not visible), {"forbidden": …} (view only) or the inbox."""
        args = [(inbox_id, _as_dict(principal)) for inbox_id in inbox_ids]
        answers = self._calls("get_inbox_identities", args)
        return {inbox_id: (answer is not None, answer is not None and "forbidden" not in answer)
                for inbox_id, answer in zip(inbox_ids, answers, strict=True)}

    def _call(self, method: str, *args):
        return self._calls(method, [args])[0]

    def _calls(self, method: str, calls: list[tuple]) -> list:
        try:
            with eventlet.Timeout(self._timeout):
                pending = [getattr(self._proxy, method).call_async(*args) for args in calls]
                return [reply.result() for reply in pending]
        except eventlet.Timeout as exc:
            raise ServiceUnavailable("the conversations service did not answer in time; try again") from exc
        except UnknownService as exc:
            raise ServiceUnavailable("the conversations service is not running; try again") from exc
        except RemoteError as exc:
            log.error("conversations.%s failed: %s", method, exc)
            raise ServiceUnavailable(f"the conversations service failed: {exc.exc_type}") from exc


class InboxRights:
    """The caller's rights in inboxes for one request, each inbox asked at most once;
    `prefetch` asks for several at once (a list of templates)."""

    def __init__(self, conversations: Conversations, principal: Principal):
        self._conversations = conversations
        self._principal = principal
        self._known: dict[str, tuple[bool, bool]] = {}

    def prefetch(self, inbox_ids) -> None:
        missing = sorted(set(inbox_ids) - set(self._known))
        if missing:
            self._known.update(self._conversations.rights_in(missing, self._principal))

    def may_view(self, inbox_id: str) -> bool:
        self.prefetch([inbox_id])
        return self._known[inbox_id][0]

    def may_act(self, inbox_id: str) -> bool:
        self.prefetch([inbox_id])
        return self._known[inbox_id][1]


def _as_dict(principal: Principal | None) -> dict | None:
    return principal.as_dict() if principal is not None else None


class ConversationsClient(RpcProxy):
    """The dependency: a `Conversations` per worker, with the service's RPC timeout."""

    def __init__(self):
        super().__init__("conversations")

    def get_dependency(self, worker_ctx) -> Conversations:
        settings = SettingsProvider.of(self.container)
        return Conversations(super().get_dependency(worker_ctx), settings.rpc_timeout_seconds)
