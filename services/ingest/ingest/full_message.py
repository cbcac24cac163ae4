""""View full message": the whole stored message as a sanitised HTML page
(`GET /api/ingest/messages/{intake_id}/view`), made from the raw bytes in a parser worker (a
25 MB message is parsed and sanitised off the event loop, under the analysis deadline), and
served through the same short-lived signed links as the raw message and its attachments.

A link whose token is forged, expired or for another message answers 403 (the link itself is
the credential: signing in again does not help; reload the conversation for a fresh one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ingest.blobstore import S3Location, open_blob_store
from ingest.domain import full_message
from ingest.domain.downloads import attachment_url, raw_url
from ingest.domain.model import Address, ParseLimits
from ingest.domain.parsing import parse_message
from ingest.domain.sanitize import sanitize_html
from mailroom_shared import auth
from mailroom_shared.http import Forbidden, HttpError, NotFound, Unauthorized


def view_url(intake_id: str) -> str:
    return f"/api/ingest/messages/{intake_id}/view"


@dataclass(frozen=True)
class FullMessageJob:
    """What a parser worker needs to make the page (no database, no settings of its own)."""

    blob_dir: str
    blob_key: str
    cid_urls: dict[str, str]  # Content-ID → signed attachment URL
    limits: ParseLimits
    allow_remote_images: bool
    links: full_message.PageLinks
    blob_s3: S3Location | None = None


def _address(value: Address | None) -> str | None:
    if value is None:
        return None
    if value.name and value.email:
        return f"{value.name} <{value.email}>"
    return value.email or value.name


def render_full_message(job: FullMessageJob) -> str:
    """The page (runs in a parser worker)."""
    raw = open_blob_store(job.blob_s3 or Path(job.blob_dir)).get(job.blob_key)
    parsed = parse_message(raw, job.limits)
    sanitised = sanitize_html(parsed.html, job.cid_urls, allow_remote_images=job.allow_remote_images) \
        if parsed.html else None
    content = full_message.PageContent(
        subject=parsed.subject, sender=_address(parsed.sender), to=[a for a in map(_address, parsed.to) if a],
        cc=[a for a in map(_address, parsed.cc) if a], date=parsed.date.isoformat() if parsed.date else None,
        html=sanitised.html if sanitised else None, text=parsed.text,
        remote_images_blocked=sanitised.remote_images_blocked if sanitised else 0,
        attachments=[{"filename": a.filename, "content_type": a.content_type, "size": a.size, "sha256": a.sha256}
                     for a in parsed.attachments if a.disposition != "inline" or not a.content_id],
        defects=list(parsed.defects))
    return full_message.render_page(content, job.links, remote_images=job.allow_remote_images)


def access_token(request, intake_id: str) -> str | None:
    """The link's token if it grants this message (403 otherwise), or — for a signed-in user who
    sees every inbox — a fresh one for the page's own links (images, attachments, .eml)."""
    token = request.args.get("access")
    if token:
        try:
            auth.verify_blob_access(token, intake_id)
        except Unauthorized as exc:
            raise Forbidden(exc.message) from exc
        return token
    if auth.bearer_token(request) is None:
        raise Unauthorized("open the message through /api/messages/{id}: its full_message_view_url is signed")
    principal = auth.authenticate(request)
    if not principal.sees_every_inbox:
        raise NotFound(f"no message {intake_id}: open it through /api/messages/{{id}} for a signed link")
    return auth.sign_blob_access(intake_id, principal.user_id)


def links(intake_id: str, token: str | None, attachments: list[dict]) -> full_message.PageLinks:
    page = view_url(intake_id)
    return full_message.PageLinks(
        raw=auth.with_access(raw_url(intake_id), token),
        with_images=auth.with_access(f"{page}?images=1", token),
        without_images=auth.with_access(page, token),
        attachment={a["sha256"]: auth.with_access(attachment_url(intake_id, a["sha256"]), token)
                    for a in attachments if a.get("sha256")})


def signed_cid_urls(cid_urls: dict[str, str], token: str | None) -> dict[str, str]:
    return {cid: auth.with_access(url, token) for cid, url in cid_urls.items()}


def page_source(session, intake_id: str) -> tuple[str, dict[str, str], list[dict]]:
    """The raw message's blob key, its attachments' URLs by Content-ID and its stored attachments."""
    from ingest.models import Intake  # the service's side: the parser workers import this module without SQLAlchemy

    row = session.get(Intake, intake_id)
    if row is None:
        raise NotFound(f"no message {intake_id}")
    stored = list(row.attachments or [])
    return row.blob_key, {a["content_id"]: a["url"] for a in stored if a.get("content_id") and a.get("url")}, stored


def render(analyser, settings, intake_id: str, blob_key: str, cid_urls: dict[str, str], attachments: list[dict],
           token: str | None, remote_images: bool) -> tuple[int, str]:
    """(status, page): 200 with the page, or 422 with a page saying why it cannot be shown."""
    job = FullMessageJob(str(settings.blob_dir), blob_key, signed_cid_urls(cid_urls, token), settings.limits,
                         remote_images, links(intake_id, token, attachments), blob_s3=settings.blob_s3)
    outcome = analyser.run(job)
    if outcome.ok:
        return 200, outcome.value
    if outcome.kind in ("timeout", "crashed") or outcome.error_type in ("MessageTooComplex", "MemoryError"):
        reason = f"it is too complex to show safely ({outcome.error_type or outcome.kind})"
    elif outcome.error_type == "BlobNotFound":
        raise NotFound(f"no stored message {intake_id}")
    else:
        raise HttpError(f"the page could not be made: {outcome.error_type}: {outcome.error}")
    return 422, full_message.unavailable_page(reason, links(intake_id, token, []).raw)
