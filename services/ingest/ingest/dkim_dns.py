"""DNS look-ups of DKIM public keys (TXT records at `<selector>._domainkey.<domain>`) for ingest's
own DKIM verification (INGEST_VERIFY_DKIM), through dnspython and the resolver configured with
INGEST_DNS_RESOLVER (nameservers as `ip`, `ip:port` or `[ipv6]:port`; the system's
/etc/resolv.conf when unset). Used in the parser workers, whose deadline bounds the wait.

`txt_lookup(...)` returns a function with the signature dkimpy expects of its `dnsfunc`.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from ingest.domain.authentication import TxtLookup

if TYPE_CHECKING:
    import dns.resolver


def parse_nameserver(value: str) -> tuple[str, int]:
    """(address, port) of `ip`, `ip:port`, `[ipv6]` or `[ipv6]:port`; ValueError otherwise."""
    value = value.strip()
    host, port = value, 53
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{value!r}: expected [address]:port")
            port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
        port = int(port_text)
    ipaddress.ip_address(host)  # a nameserver is an address, never a name to resolve first
    if not 0 < port < 65536:
        raise ValueError(f"{value!r}: port out of range")
    return host, port


def txt_lookup(nameservers: tuple[str, ...] = ()) -> TxtLookup:
    """dkimpy's dnsfunc over dnspython: the first TXT record of the name, None when there is none;
    dkim.DnsTimeoutError when no answer came in time or no resolver is configured."""
    # imported here, not with the module: every parser worker imports this module at its start
    # (a replaced worker too), and only INGEST_VERIFY_DKIM looks keys up (~0.1 s of imports)
    import dkim
    import dns.exception
    import dns.nameserver
    import dns.rdatatype
    import dns.resolver

    resolver: dns.resolver.Resolver | None = None

    def make() -> dns.resolver.Resolver:
        if not nameservers:
            return dns.resolver.Resolver(configure=True)  # /etc/resolv.conf
        made = dns.resolver.Resolver(configure=False)
        made.nameservers = [dns.nameserver.Do53Nameserver(host, port)
                            for host, port in map(parse_nameserver, nameservers)]
        return made

    def lookup(name: bytes, timeout: float = 5.0) -> bytes | None:
        nonlocal resolver
        try:
            if resolver is None:
                resolver = make()
            answer = resolver.resolve(name.decode("ascii"), dns.rdatatype.TXT, raise_on_no_answer=False,
                                      lifetime=timeout, search=False)
        except (dns.resolver.NXDOMAIN, UnicodeDecodeError):
            return None
        except dns.exception.DNSException as exc:  # timeout, no resolver configured, SERVFAIL, ...
            raise dkim.DnsTimeoutError(f"{type(exc).__name__}: {exc}") from None
        for rrset in answer.response.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                for record in rrset:
                    return b"".join(record.strings)
        return None

    return lookup
