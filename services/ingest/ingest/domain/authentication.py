"""Is a forwarder authenticated? A `From` header alone proves nothing: anyone can write a
member's address in it. A trusted forwarder's forward is attributed to its original sender only
when one of these says the `From` domain is genuine (DESIGN.md, Security rules):

(a) `Authentication-Results` (RFC 8601) added by a trusted authserv-id (INGEST_TRUSTED_AUTHSERV_IDS,
    the organisation's own MX) saying `dmarc=pass` for the From domain, or `dkim=pass` for a
    signing domain aligned with it. Each hop adds its header on top, so the genuine header of our
    MX is the topmost one with its id: headers of any other id are ignored wherever they are
    (whatever they claim), and every header below the first one of a trusted id is ignored too
    (a sender can forge those before the mail reaches our MX). This relies on the MX adding its
    header to every message that reaches ingest (RFC 8601 §5: and removing forged ones with its
    id), i.e. ingest's SMTP listener being reachable only through it.
(b) a DKIM signature ingest verifies itself (dkimpy), aligned with the From domain, signing the
    From header and the whole body (`l=` signatures are refused: text could be appended below).
(c) mail fetched over IMAP from a mailbox configured as the team's own (`team_mailbox: true`).

Alignment is DMARC's relaxed alignment without a public-suffix list: the same domain, or one a
subdomain of the other (`acme.com` and `mail.acme.com` align; two siblings such as `eu.acme.com`
and `us.acme.com` do not, since telling that they share the organisational domain `acme.com`
needs the public-suffix list). A domain of a single label (a top-level domain) never aligns.

Plain Python: DNS look-ups for DKIM keys are a function the caller passes in (`TxtLookup`).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import authres

# dkimpy's dnsfunc: (name as bytes, e.g. b"sel._domainkey.acme.test.", timeout=seconds) -> TXT or None;
# raises dkim.DnsTimeoutError when the resolver cannot answer
TxtLookup = Callable[..., bytes | None]

BY_AUTHENTICATION_RESULTS = "authentication-results"
BY_DKIM = "dkim"
BY_TEAM_MAILBOX = "imap"
BY_ASSERTION = "asserted"  # `mailroom explain --authenticated`, tests

MAX_AUTHENTICATION_RESULTS = 100  # headers looked at, from the top
MAX_AUTHENTICATION_RESULTS_CHARS = 16_384  # a longer one is not parsed (and fails if its id is trusted)
MAX_DKIM_SIGNATURES = 5  # aligned signatures verified (each one a DNS look-up)

# the authserv-id of an Authentication-Results value the library cannot parse: the first token,
# after any comments (RFC 8601: authserv-id is a value, optionally followed by a version)
_AUTHSERV_ID = re.compile(r"\s*(?:\([^()]*\)\s*)*([^\s;()]+)")


@dataclass(frozen=True)
class Authentication:
    """Which rule decided, and why: `by`, `authserv_id` and `detail` when authenticated, `reason`
    when not."""

    authenticated: bool
    by: str | None = None
    authserv_id: str | None = None
    detail: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict:
        result: dict = {"authenticated": self.authenticated}
        for key in ("by", "authserv_id", "detail", "reason"):
            value = getattr(self, key)
            if value is not None:
                result[key] = value
        return result


def normalise_domain(value: str | bytes | None) -> str | None:
    """Lower case, no trailing dot, IDNA A-labels when it converts (DKIM's d= is ASCII)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    domain = value.strip().strip(".").lower()
    if not domain:
        return None
    try:
        return domain.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return domain


def aligned(domain: str | bytes | None, from_domain: str | None) -> bool:
    """Relaxed alignment without a public-suffix list (see the module's docstring)."""
    a, b = normalise_domain(domain), normalise_domain(from_domain)
    if not a or not b:
        return False
    if a == b:
        return "." in a
    shorter, longer = sorted((a, b), key=len)
    return "." in shorter and longer.endswith("." + shorter)


def from_domain_of(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    return normalise_domain(email.rpartition("@")[2])


# --- (a) Authentication-Results ------------------------------------------------------------------

def authentication_results(values: Iterable[str], trusted_ids: frozenset[str],
                           from_domain: str) -> Authentication | None:
    """The verdict of the topmost Authentication-Results from a trusted authserv-id; None when no
    header has a trusted id. `values` in message order (topmost first)."""
    trusted = {normalise_domain(i) for i in trusted_ids}
    for index, value in enumerate(values):
        if index >= MAX_AUTHENTICATION_RESULTS:
            break
        header, authserv_id = _parse(value)
        if normalise_domain(authserv_id) not in trusted:
            continue  # another hop's (or a sender's) header: it says nothing we can believe
        if header is None:
            return Authentication(False, authserv_id=authserv_id,
                                  reason=f"the Authentication-Results of {authserv_id} cannot be parsed")
        return _verdict(header, authserv_id, from_domain)
    return None


def _parse(value: str) -> tuple[authres.AuthenticationResultsHeader | None, str | None]:
    value = " ".join(value.split())  # unfolded, one line
    header = None
    if len(value) <= MAX_AUTHENTICATION_RESULTS_CHARS:
        with contextlib.suppress(Exception):  # authres raises its own SyntaxError and others on malformed values
            header = authres.AuthenticationResultsHeader.parse_value(value)
    if header is not None:
        return header, header.authserv_id
    match = _AUTHSERV_ID.match(value)
    return None, (match.group(1) if match else None)


def _values(result, ptype: str, name: str) -> list[str]:
    return [str(p.value) for p in result.properties
            if (p.type or "").lower() == ptype and (p.name or "").lower() == name and p.value]


def _describe(result) -> str:
    words = [f"{result.method}={result.result}"]
    words += [f"{p.type}.{p.name}={p.value}" for p in result.properties
              if (p.type, p.name) in {("header", "from"), ("header", "d"), ("header", "i")}]
    return " ".join(words)


def _verdict(header: authres.AuthenticationResultsHeader, authserv_id: str, from_domain: str) -> Authentication:
    passed = [r for r in header.results if (r.result or "").lower() == "pass"]
    for result in passed:  # DMARC's own verdict first: it is the one that is about the From domain
        if (result.method or "").lower() == "dmarc":
            domains = {normalise_domain(v) for v in _values(result, "header", "from")}
            if domains == {from_domain}:
                return Authentication(True, BY_AUTHENTICATION_RESULTS, authserv_id, _describe(result))
    for result in passed:
        if (result.method or "").lower() == "dkim":
            signers = _values(result, "header", "d") or [v.rpartition("@")[2] for v in _values(result, "header", "i")]
            if len(signers) == 1 and aligned(signers[0], from_domain):
                return Authentication(True, BY_AUTHENTICATION_RESULTS, authserv_id, _describe(result))
    summary = "; ".join(_describe(r) for r in header.results) or "no results"
    return Authentication(False, authserv_id=authserv_id,
                          reason=f"Authentication-Results of {authserv_id} has neither dmarc=pass for {from_domain} "
                                 f"nor an aligned dkim=pass ({summary[:500]})")


# --- (b) DKIM verified by ingest -------------------------------------------------------------------

def verify_dkim(raw: bytes, from_domain: str, lookup: TxtLookup, timeout: float = 5.0) -> Authentication:
    """The first DKIM signature aligned with `from_domain` that verifies (its key looked up
    through `lookup`); signatures of other domains are not looked up at all. `timeout` is for
    all the look-ups together, so the analysis stays within its deadline."""
    # imported on the first verification (INGEST_VERIFY_DKIM), not by every parser worker's start
    import dkim
    from dkim.util import InvalidTagValueList, parse_tag_value

    deadline = time.monotonic() + timeout
    try:
        verifier = dkim.DKIM(raw, minkey=1024, timeout=timeout)
    except Exception as exc:  # dkimpy cannot split the message
        return Authentication(False, reason=f"DKIM: the message cannot be read ({type(exc).__name__})")
    signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    if not signatures:
        return Authentication(False, reason="DKIM: no DKIM-Signature")
    problems: list[str] = []
    verified = 0
    dns_failures: list[str] = []

    def recording(name: bytes, timeout: float = 5.0) -> bytes | None:
        try:
            return lookup(name, timeout=timeout)
        except dkim.DnsTimeoutError as exc:  # dkimpy logs it and answers False: keep the reason
            dns_failures.append(str(exc))
            raise

    for index, value in enumerate(signatures):
        try:
            tags = parse_tag_value(value)
        except InvalidTagValueList:
            problems.append("unreadable DKIM-Signature")
            continue
        domain = normalise_domain(tags.get(b"d"))
        if not aligned(domain, from_domain):
            problems.append(f"d={domain} not aligned with {from_domain}")
            continue
        signed = [h.strip().lower() for h in tags.get(b"h", b"").split(b":")]
        if b"from" not in signed:
            problems.append(f"d={domain} does not sign From")
            continue
        if b"l" in tags:
            problems.append(f"d={domain} signs only part of the body (l=)")
            continue
        if verified >= MAX_DKIM_SIGNATURES:
            problems.append("too many signatures")
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            problems.append("DNS look-ups took too long")
            break
        verified += 1
        verifier.timeout = remaining
        failures_before = len(dns_failures)
        try:
            ok = verifier.verify(idx=index, dnsfunc=recording)
        except dkim.DnsTimeoutError as exc:
            problems.append(f"d={domain}: DNS look-up failed ({exc})")
            continue
        except dkim.DKIMException as exc:
            problems.append(f"d={domain}: {exc}"[:200])
            continue
        if ok:
            selector = (tags.get(b"s") or b"").decode("ascii", "replace")
            return Authentication(True, BY_DKIM, detail=f"dkim=pass header.d={domain} header.s={selector} "
                                                       "(verified by ingest)")
        if len(dns_failures) > failures_before:
            problems.append(f"d={domain}: DNS look-up failed ({dns_failures[-1]})")
        else:
            problems.append(f"d={domain}: signature does not verify (or no usable key in DNS)")
    return Authentication(False, reason="DKIM: " + "; ".join(problems[:10]))


# --- the decision ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuthenticationPolicy:
    trusted_authserv_ids: frozenset[str] = frozenset()  # INGEST_TRUSTED_AUTHSERV_IDS
    verify_dkim: bool = False  # INGEST_VERIFY_DKIM
    dns_timeout: float = 5.0  # INGEST_DNS_TIMEOUT_SECONDS: per DKIM key look-up


def authenticate(raw: bytes, from_values: list[str], sender_email: str | None,
                 authentication_results_values: list[str], policy: AuthenticationPolicy, *,
                 team_mailbox: bool = False, lookup: TxtLookup | None = None,
                 asserted: bool = False) -> Authentication:
    """Whether the message's From is authenticated, by the first rule that says so (asserted,
    team mailbox, Authentication-Results, DKIM); else why not."""
    if asserted:
        return Authentication(True, BY_ASSERTION,
                              detail="asserted by the caller (e.g. mailroom explain --authenticated)")
    domain = from_domain_of(sender_email)
    if domain is None:
        return Authentication(False, reason="the From header has no address")
    if len(from_values) != 1:
        return Authentication(False, reason=f"the message has {len(from_values)} From headers")
    if team_mailbox:
        return Authentication(True, BY_TEAM_MAILBOX,
                              detail="fetched over IMAP from a mailbox configured as the team's own")
    reasons = []
    authserv_id = None
    if policy.trusted_authserv_ids:
        verdict = authentication_results(authentication_results_values, policy.trusted_authserv_ids, domain)
        if verdict is not None and verdict.authenticated:
            return verdict
        authserv_id = verdict.authserv_id if verdict is not None else None
        reasons.append(verdict.reason if verdict is not None
                       else "no Authentication-Results from a trusted authserv-id")
    else:
        reasons.append("no trusted authserv-id configured (INGEST_TRUSTED_AUTHSERV_IDS)")
    if policy.verify_dkim and lookup is not None:
        verdict = verify_dkim(raw, domain, lookup, policy.dns_timeout)
        if verdict.authenticated:
            return verdict
        reasons.append(verdict.reason)
    return Authentication(False, authserv_id=authserv_id, reason="; ".join(r for r in reasons if r))
