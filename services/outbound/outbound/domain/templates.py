"""Email templates and snippets rendered with contact and conversation tokens (no IO).

Rendering uses jinja2's `SandboxedEnvironment` (no attribute access to internals, no imports,
no file system: templates are written by users) with HTML auto-escaping for bodies, so a
contact's name can never inject markup. A token that does not exist is either a clear error
(`on_missing="error"`, the default, listing the token) or renders empty (`"empty"`).

Tokens (`{{ contact.first_name }}`, …):
  contact.name, contact.first_name, contact.email
  conversation.id, conversation.subject, conversation.reply_address
  inbox.name, inbox.address
  sender.name, sender.email   (the From identity)
"""

from __future__ import annotations

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, UndefinedError, nodes
from jinja2.sandbox import SandboxedEnvironment

from outbound.domain.body import sanitise_html
from outbound.domain.errors import InvalidEmail
from outbound.domain.headers import Mailbox, checked_subject

ON_MISSING = ("error", "empty")
MAX_TEMPLATE_CHARS = 200_000
MAX_OUTPUT_CHARS = 1_000_000


class TemplateRenderError(ValueError):
    def __init__(self, message: str, missing: list[str] | None = None):
        super().__init__(message)
        self.missing = missing or []


def _environment(on_missing: str, autoescape: bool) -> SandboxedEnvironment:
    undefined = StrictUndefined if on_missing == "error" else ChainableUndefined
    return SandboxedEnvironment(undefined=undefined, autoescape=autoescape, keep_trailing_newline=True)


def check_syntax(source: str | None, field: str) -> None:
    """Raise TemplateRenderError for a template that cannot be parsed (at save time)."""
    if source is None:
        return
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateRenderError(f"{field}: longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        _environment("error", False).parse(source)
    except TemplateError as exc:
        raise TemplateRenderError(f"{field}: {exc}") from exc


def _tokens_used(source: str) -> list[str]:
    """Dotted names a template reads (`contact.first_name`), for clear error messages."""
    tree = _environment("error", False).parse(source)
    found = []
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name):
            found.append(f"{node.node.name}.{node.attr}")
    for node in tree.find_all(nodes.Name):
        if node.ctx == "load":
            found.append(node.name)
    return found


def _has(context: dict, dotted: str) -> bool:
    value = context
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def render(source: str | None, context: dict, *, on_missing: str = "error", html: bool = False,
           field: str = "template") -> str | None:
    if source is None:
        return None
    if on_missing not in ON_MISSING:
        raise TemplateRenderError(f"on_missing must be one of {', '.join(ON_MISSING)}")
    try:
        template = _environment(on_missing, html).from_string(source)
    except TemplateError as exc:
        raise TemplateRenderError(f"{field}: {exc}") from exc
    try:
        output = template.render(**context)
    except UndefinedError as exc:
        missing = sorted({t for t in _tokens_used(source) if not _has(context, t) and "." in t
                          or t not in context and "." not in t})
        missing = [m for m in missing if m.split(".")[0] not in ("loop", "range")
                   and not any(other.startswith(m + ".") for other in missing)]
        raise TemplateRenderError(f"{field}: missing token(s) {', '.join(missing) or exc}", missing) from exc
    except TemplateError as exc:  # incl. SecurityError from the sandbox
        raise TemplateRenderError(f"{field}: {exc}") from exc
    if len(output) > MAX_OUTPUT_CHARS:
        raise TemplateRenderError(f"{field}: the rendered text is longer than {MAX_OUTPUT_CHARS} characters")
    return output


def render_fields(item, context: dict, on_missing: str, names: tuple[str, ...]) -> dict:
    """`item`'s fields (a template's or snippet's subject/html/text) rendered in the order given;
    `html` auto-escaped."""
    return {name: render(getattr(item, name), context, on_missing=on_missing, html=name == "html", field=name)
            for name in names}


def render_saved(item, context: dict, on_missing: str, *, with_subject: bool) -> dict:
    """A saved template or snippet rendered for the composer: HTML sanitised, subject header-safe."""
    try:
        result = render_fields(item, context, on_missing, ("html", "text", "subject") if with_subject
                               else ("html", "text"))
    except TemplateRenderError as exc:
        raise InvalidEmail(str(exc), "template") from exc
    if result.get("html") is not None:
        result["html"] = sanitise_html(result["html"])
    if result.get("subject") is not None:
        checked_subject(result["subject"])
    return result


def check_saved(values: dict) -> None:
    """A template or snippet about to be saved parses, and its subject is header-safe."""
    for name in ("subject", "html", "text"):
        try:
            check_syntax(values.get(name), name)
        except TemplateRenderError as exc:
            raise InvalidEmail(str(exc), name) from exc
    if values.get("subject") is not None:
        checked_subject(values["subject"])


def render_tokens(contact: dict | None, *, reply_context: dict | None = None,
                  inbox_identities: dict | None = None) -> dict:
    """The tokens of a render request: from a conversation's reply context (its contact, subject,
    reply address, inbox and the address it came in on), or from an inbox; `contact` overrides
    the conversation's contact."""
    conversation = inbox = sender = None
    if reply_context is not None:
        conversation = {"id": reply_context["conversation"]["id"],
                        "subject": reply_context["conversation"].get("subject"),
                        "reply_address": reply_context.get("reply_address")}
        contact = contact or reply_context["conversation"].get("contact")
        inbox = {"name": reply_context["inbox"].get("name"), "address": reply_context.get("channel_address")}
        sender = next((i for i in reply_context["inbox"].get("identities") or []
                       if i["email"] == reply_context.get("channel_address")), None)
    elif inbox_identities is not None:
        inbox = {"name": inbox_identities.get("name"), "address": inbox_identities.get("primary_address")}
    return token_context(contact=contact, conversation=conversation, inbox=inbox, sender=sender)


def sending_tokens(*, contact: dict | None, conversation: dict, inbox_name: str | None, sender: Mailbox) -> dict:
    """The tokens of a template used in a send request, from the email's own sender."""
    return token_context(contact=contact, conversation=conversation,
                         inbox={"name": inbox_name, "address": sender.email}, sender=sender.as_dict())


def token_context(*, contact: dict | None = None, conversation: dict | None = None, inbox: dict | None = None,
                  sender: dict | None = None) -> dict:
    """The tokens a template may use. Values that are unknown are left out (so that
    `on_missing` decides), never filled with a made-up value."""
    context: dict = {}
    if contact and (contact.get("email") or contact.get("name")):
        name = (contact.get("name") or "").strip()
        entry = {"email": contact.get("email")}
        if name:
            entry["name"] = name
            entry["first_name"] = name.split()[0]
        context["contact"] = {k: v for k, v in entry.items() if v is not None}
    if conversation:
        context["conversation"] = {k: v for k, v in conversation.items() if v is not None}
    if inbox:
        context["inbox"] = {k: v for k, v in inbox.items() if v is not None}
    if sender:
        context["sender"] = {k: v for k, v in sender.items() if v is not None}
    return context
