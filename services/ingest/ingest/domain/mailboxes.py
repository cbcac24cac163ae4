"""Rules for IMAP mailboxes added through the API (plain Python, no database): what a complete
mailbox must hold, the CA bundle check, and which recipient of a fetched message carries its reply
token."""

from __future__ import annotations

import ipaddress
import re
import ssl
from email.parser import BytesHeaderParser
from email.utils import getaddresses

from ingest.domain.recipients import split_recipient
from ingest.imap_poller import is_refused_folder_name
from mailroom_shared.addresses import try_normalise_email

TLS_MODES = ("implicit", "starttls", "none")
AUTH_METHODS = ("password", "xoauth2")
MAX_CA_BUNDLE_BYTES = 256 * 1024
# what IMAP and DNS accept in a host: a name or an IP address (brackets only around IPv6)
HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                  r"[A-Za-z0-9])?)*\.?$|^\[?[0-9A-Fa-f:.]+\]?$")
# control characters (CR, LF, NUL...) would break or inject IMAP commands
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# headers that name the address mail was delivered for, most specific first
DELIVERY_HEADERS = ("Delivered-To", "X-Original-To", "To", "Cc")
HEADER_BYTES = 64 * 1024


class MailboxInvalid(ValueError):
    """The mailbox cannot be used as given; the message says why (a 400 answer)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_text(values: dict, prefix: str = "") -> None:
    """MailboxInvalid for a string no database stores: a NUL character or a lone surrogate
    (JSON can carry both) in any field, nested ones included."""
    for name, value in values.items():
        if isinstance(value, dict):
            check_text(value, f"{prefix}{name}.")
        elif isinstance(value, str):
            if "\x00" in value:
                raise MailboxInvalid(f"{prefix}{name}", "must not contain NUL characters")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise MailboxInvalid(f"{prefix}{name}", "is not valid Unicode text") from None


def check_complete(mailbox: dict, *, allow_plaintext: bool) -> None:
    """MailboxInvalid unless `mailbox` (every field, secrets as given or as stored: a truthy
    placeholder for a stored one) is one the poller can use."""
    if mailbox["tls"] not in TLS_MODES:
        raise MailboxInvalid("tls", f"must be one of {', '.join(TLS_MODES)}")
    if mailbox["tls"] == "none" and not allow_plaintext:
        raise MailboxInvalid("tls", "\"none\" sends the password in clear text and is refused "
                                    "(INGEST_IMAP_ALLOW_PLAINTEXT is off)")
    if mailbox["tls"] == "none" and mailbox.get("ca_bundle"):
        raise MailboxInvalid("ca_bundle", "a CA bundle needs tls \"implicit\" or \"starttls\"")
    check_text(mailbox)
    if not HOST.match(mailbox["host"]) or not _plausible_host(mailbox["host"]):
        raise MailboxInvalid("host", "must be a host name or an IP address")
    for name in ("host", "username", "folder"):
        if CONTROL.search(mailbox[name]):
            raise MailboxInvalid(name, "must not contain control characters")
    if is_refused_folder_name(mailbox["folder"]):
        raise MailboxInvalid("folder", "holds junk or deleted mail and is never polled")
    if mailbox["auth"] not in AUTH_METHODS:
        raise MailboxInvalid("auth", f"must be one of {', '.join(AUTH_METHODS)}")
    if mailbox["auth"] == "password":
        if not mailbox.get("password"):
            raise MailboxInvalid("password", "is required with auth \"password\"")
        if isinstance(mailbox["password"], str) and CONTROL.search(mailbox["password"]):
            raise MailboxInvalid("password", "must not contain control characters")
    else:
        oauth = mailbox.get("oauth") or {}
        for name in ("token_url", "client_id", "client_secret", "refresh_token"):
            if not oauth.get(name):
                raise MailboxInvalid(f"oauth.{name}", "is required with auth \"xoauth2\"")
    if mailbox.get("ca_bundle"):
        check_ca_bundle(mailbox["ca_bundle"])


def _plausible_host(host: str) -> bool:
    """A bracketed or all-numeric host must be an IP address; a name at most 253 characters."""
    if host.startswith("[") or host.endswith("]") or ":" in host:
        if host.startswith("[") != host.endswith("]"):
            return False
        candidate = host.strip("[]")
    elif host.replace(".", "").isdigit():
        candidate = host
    else:
        return len(host) <= 253
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def check_ca_bundle(pem: str) -> None:
    """MailboxInvalid unless `pem` is at most MAX_CA_BUNDLE_BYTES of PEM certificates."""
    if len(pem.encode("utf-8", "replace")) > MAX_CA_BUNDLE_BYTES:
        raise MailboxInvalid("ca_bundle", f"is larger than {MAX_CA_BUNDLE_BYTES} bytes")
    if not pem.isascii():
        raise MailboxInvalid("ca_bundle", "must be ASCII PEM text")
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise MailboxInvalid("ca_bundle", "must hold PEM certificates (-----BEGIN CERTIFICATE-----)")
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError, TypeError) as exc:
        raise MailboxInvalid("ca_bundle", f"is not a valid PEM certificate bundle ({exc})") from None


def delivery_recipient(raw: bytes, channel: str) -> str:
    """The address to file a fetched message under: the first Delivered-To / X-Original-To / To / Cc
    address that is `channel` with a reply token (`support+TOKEN@…`), so IMAP mail keeps its token;
    `channel` itself otherwise. Only the mailbox's own channel: a header naming another of our
    addresses never moves mail there."""
    channels = {try_normalise_email(channel) or channel.lower()}
    head = raw[:HEADER_BYTES]
    end = head.find(b"\r\n\r\n")
    if end < 0:
        end = head.find(b"\n\n")
    try:
        headers = BytesHeaderParser().parsebytes(head[:end] if end >= 0 else head)
    except Exception:  # hostile headers: the channel, as before
        return channel
    for name in DELIVERY_HEADERS:
        try:
            values = [str(value) for value in headers.get_all(name) or []]
            addresses = getaddresses(values)
        except Exception:  # noqa: S112 - a header we cannot read names no token; try the next one
            continue
        for _display, address in addresses:
            resolved = split_recipient(address, channels)
            if resolved is not None and resolved[1]:
                return address
    return channel
