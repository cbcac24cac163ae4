"""`mailroom explain`: what ingest concludes about one raw message, through exactly the code
path the service uses (ingest.domain.analysis). Needs neither broker nor database."""

from __future__ import annotations

import argparse
import json
import sys

from ingest import settings as ingest_settings
from ingest.dkim_dns import txt_lookup
from ingest.domain.analysis import AnalysisSettings, analyse
from ingest.domain.parsing import MessageTooComplex


def explain(args: argparse.Namespace) -> int:
    try:
        raw = sys.stdin.buffer.read() if args.path == "-" else open(args.path, "rb").read()  # noqa: SIM115
    except OSError as exc:
        print(f"mailroom explain: cannot read {args.path}: {exc.strerror}", file=sys.stderr)
        return 2
    settings = ingest_settings.load(mailboxes=False)
    # --trusted: the sender is a trusted forwarder (an inbox member); whether it is authenticated
    # is still decided from the message (INGEST_TRUSTED_AUTHSERV_IDS, INGEST_VERIFY_DKIM) unless
    # --authenticated asserts it
    try:
        analysis = analyse(raw, AnalysisSettings(
            internal_domains=settings.internal_domains, own_message_id_domain=settings.own_message_id_domain,
            authentication=settings.authentication, spam_score_headers=settings.spam_score_headers,
            limits=settings.limits,
        ), trust_sender=args.trusted, authenticated=getattr(args, "authenticated", False),
            dkim_lookup=txt_lookup(settings.dns_resolver) if settings.authentication.verify_dkim else None)
    except MessageTooComplex as exc:
        result = {"error": f"too complex to parse safely: {exc}", "quarantined": True}
        print(json.dumps(result) if args.json else f"Quarantined: {result['error']}")
        return 1
    document = analysis.explain()
    if args.json:
        print(json.dumps(document, ensure_ascii=False, indent=2))
    else:
        print(readable(document))
    return 0


def _who(address: dict | None) -> str:
    if not address or not (address.get("email") or address.get("name")):
        return "(nobody)"
    name, email = address.get("name"), address.get("email")
    return f"{name} <{email}>" if name and email else (email or f"{name} (no address)")


def _authentication(verdict: dict) -> str:
    if verdict["authenticated"]:
        by = verdict["by"] + (f" of {verdict['authserv_id']}" if verdict.get("authserv_id") else "")
        return f"yes, by {by}: {verdict.get('detail')}"
    return f"no: {verdict.get('reason')}"


def _last_deciding(steps: list[dict]) -> str:
    """The rule of the last step that chose a block (a "stop" step only says why we went no deeper)."""
    chosen = [step["rule"] for step in steps if not step["rule"].startswith("stop")]
    return chosen[-1] if chosen else steps[-1]["rule"]


def readable(doc: dict) -> str:
    lines = [f"Message-ID:   {doc['message_id']}", f"Subject:      {doc['subject']}",
             f"Sender:       {_who(doc['sender'])}"]
    forward = doc["forward"]
    if forward:
        lines.append(f"Forward:      yes, detected by {forward['detected_by']}")
        steps = doc.get("forward_steps") or []
        if steps:
            lines.append(f"  decided by rule:  {steps[-1]['rule'] if len(steps) == 1 else _last_deciding(steps)}")
            lines.append("  steps:")
            for number, step in enumerate(steps, 1):
                where = f" (line {step['line']}, {step['block']})" if "line" in step else ""
                sender = f" -> {_who(step['sender'])}" if step.get("sender") else ""
                lines.append(f"    {number}. {step['rule']}{where}{sender}")
                if step.get("detail"):
                    lines.append(f"       {step['detail']}")
        lines.append(f"  original sender:  {_who(forward['original_sender'])}")
        lines.append(f"  original subject: {forward['original_subject']}")
        lines.append(f"  original date:    {forward['original_date']}")
        lines.append(f"  forwarder trusted: {'yes' if doc['forwarder_trusted'] else 'no'}")
        lines.append(f"  authenticated:     {_authentication(forward['authentication'])}")
        lines.append(f"  attributed to the original sender: "
                     f"{'yes' if forward['trusted'] else 'no (original sender kept as metadata)'}")
    else:
        lines.append("Forward:      no")
    lines.append(f"Attributed to: {_who(doc['attributed_to'])}")
    flags = [name for name in ("auto_submitted", "bounce", "spam", "loop") if doc[name]]
    lines.append(f"Flags:        {', '.join(flags) or 'none'}")
    for reason in doc["reasons"]:
        lines.append(f"  - {reason}")
    if doc["attachments"]:
        lines.append("Attachments:")
        lines += [f"  - {a['filename']} ({a['content_type']}, {a['size']} bytes, {a['disposition']})"
                  for a in doc["attachments"]]
    if doc["defects"]:
        lines.append("Defects (parsed best-effort):")
        lines += [f"  - {d}" for d in doc["defects"]]
    return "\n".join(lines)
