"""Which URLs a webhook may name and which addresses it may reach (no SSRF): the host is
resolved, every address checked, and the request made to a checked address."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit


class TargetRefused(ValueError):
    """The URL or the address it resolves to is not allowed."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path + query, what goes on the request line


def parse_url(url: str, *, allow_http: bool) -> Target:
    """The parts of a webhook URL; TargetRefused for anything but an absolute https URL (http
    too when allowed) without credentials."""
    if not isinstance(url, str) or len(url) > 2000:
        raise TargetRefused("the URL must be a string of at most 2000 characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from None
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed:
        raise TargetRefused("the URL must use https" if not allow_http else "the URL must use http or https")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    if parts.username or parts.password:
        raise TargetRefused("the URL must not carry credentials")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path)


def address_refusal(address: str) -> str | None:
    """Why an IP address is not a public unicast address (None when it is)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attribute, what in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                            ("is_multicast", "multicast"), ("is_unspecified", "unspecified"),
                            ("is_reserved", "reserved"), ("is_private", "private")):
        if getattr(ip, attribute):
            return what
    if not ip.is_global:
        return "not global"
    return None


def check_addresses(host: str, addresses: list[str], *, allow_private: bool) -> str:
    """The address to connect to, out of what `host` resolved to: every one must be allowed (a
    name resolving to one public and one private address is refused)."""
    if not addresses:
        raise TargetRefused(f"{host} does not resolve")
    if not allow_private:
        for address in addresses:
            why = address_refusal(address)
            if why:
                raise TargetRefused(f"{host} resolves to a {why} address ({address})")
    return addresses[0]
