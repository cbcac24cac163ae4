"""A deterministic corpus of realistic, distinct emails for the benchmarks.

Same seed, same bytes. The mix (fractions of N):
  * ~55 % new customer messages: text/plain, or multipart/alternative with an HTML part, some
    UTF-8 / ISO-8859-1 with RFC 2047 encoded names and subjects, some quoted-printable;
  * ~20 % replies to an earlier message of the corpus (In-Reply-To + References, "Re:", the
    parent quoted), sent by the parent's sender, at least `REPLY_GAP` positions later;
  * ~10 % forwards: Gmail-style inline blocks, Outlook "-----Original Message-----" blocks and
    message/rfc822 attachments, mostly by a member of the inbox (trusted: attributed to the
    original sender), some by strangers;
  * ~15 % (overlapping the above) with attachments: PDF-like and PNG-like binary parts (base64),
    a CSV, an inline image referenced by cid: from the HTML.
Sizes run from 2 KB to 200 KB (log-uniform-ish: most mail is small, a tail is large); the size
is reached with body paragraphs or, for the large ones, attachment bytes.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import hashlib
import random
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

INBOX_ADDRESS = "support@mailroom.test"
TRUSTED_AUTHSERV_ID = "mx.mailroom.bench"  # INGEST_TRUSTED_AUTHSERV_IDS of the bench stack
MEMBER = ("Agent Smith", "agent@mailroom.test")
MIN_SIZE, MAX_SIZE = 2 * 1024, 200 * 1024
REPLY_GAP = 40  # a reply comes at least this many messages after its parent

FIRST = ["Ada", "Bo", "Chen", "Dana", "Émile", "Fatima", "Gustav", "Hiro", "Ingrid", "José", "Kofi", "Lena",
         "Mateo", "Nadia", "Olav", "Priya", "Quentin", "Rosa", "Søren", "Tomasz", "Uma", "Viktor", "Wei", "Ximena",
         "Yusuf", "Zoë", "Björn", "Chloé", "Dmitri", "Łukasz"]
LAST = ["Lovelace", "Nguyen", "Okafor", "Müller", "Rossi", "Tanaka", "García", "Kowalski", "Andersen", "Silva",
        "Dubois", "O'Brien", "Schmidt", "Haddad", "Novák", "Yilmaz", "Fernández", "Ivanova", "Larsen", "Costa"]
DOMAINS = ["customer.example", "acme.example", "globex.example", "initech.example", "umbrella.example",
           "bücher.example", "mail.example", "contoso.example"]
TOPICS = ["order", "invoice", "delivery", "refund", "account", "password reset", "subscription", "warranty",
          "shipping address", "discount code", "login problem", "missing item", "damaged parcel", "export"]
WORDS = ["the", "a", "to", "of", "and", "in", "is", "it", "you", "that", "for", "on", "was", "with", "as", "have",
         "be", "at", "not", "this", "are", "we", "our", "your", "order", "invoice", "delivery", "week", "parcel",
         "please", "thanks", "could", "would", "should", "help", "support", "team", "received", "item", "account",
         "number", "reference", "payment", "card", "bank", "transfer", "refund", "return", "label", "box", "arrived",
         "broken", "yesterday", "today", "tomorrow", "monday", "friday", "morning", "afternoon", "customer",
         "service", "manager", "update", "status", "tracking", "courier", "warehouse", "stock", "price", "total",
         "amount", "tax", "receipt"]
ACCENTED = ["café", "naïve", "über", "straße", "déjà", "señor", "façade", "smörgåsbord", "Grüße", "crème", "brûlée"]


@dataclass(frozen=True)
class CorpusMessage:
    index: int
    message_id: str  # without angle brackets, lower case
    sender: str  # envelope sender
    raw: bytes
    kind: str  # new | reply | forward-inline | forward-outlook | forward-attached | forward-stranger
    attachments: int


def _sentence(rng: random.Random, accents: bool) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
    if accents and rng.random() < 0.3:
        words[rng.randrange(len(words))] = rng.choice(ACCENTED)
    return " ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!"])


class _Text:
    """Paragraphs drawn from a pool of generated sentences (generating every word is slow)."""

    def __init__(self, rng: random.Random, pool: int = 3000):
        self.rng = rng
        self.plain = [_sentence(rng, False) for _ in range(pool)]
        self.accented = [_sentence(rng, True) for _ in range(pool // 3)]

    def paragraphs(self, approx_chars: int, accents: bool) -> str:
        rng = self.rng
        out, size = [], 0
        while size < approx_chars:
            count = rng.randint(2, 6)
            sentences = rng.choices(self.plain, k=count)
            if accents:
                sentences[0] = rng.choice(self.accented)
            paragraph = " ".join(sentences)
            out.append(paragraph)
            size += len(paragraph) + 2
        return "\n\n".join(out)


def _target_size(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.60:
        return rng.randint(MIN_SIZE, 10 * 1024)
    if roll < 0.85:
        return rng.randint(10 * 1024, 50 * 1024)
    return rng.randint(50 * 1024, MAX_SIZE)


def _binary(rng: random.Random, size: int, header: bytes) -> bytes:
    # incompressible-looking, cheap to make: sha256 chain (random.randbytes is fine too)
    return header + rng.randbytes(max(0, size - len(header)))


def _html_of(text: str, cid: str | None) -> str:
    paragraphs = "".join(f"<p>{p}</p>\n" for p in text.split("\n\n"))
    image = f'<p><img src="cid:{cid}" alt="logo"></p>' if cid else ""
    tracker = '<img src="https://tracker.example/open.gif" width="1" height="1">'
    return (f"<html><head><meta charset=\"utf-8\"><style>p {{ margin: 0 }}</style></head><body>"
            f"<div dir=\"ltr\">{paragraphs}{image}<br><b>Kind regards</b></div>{tracker}"
            f"<script>alert(1)</script></body></html>")


class _Builder:
    def __init__(self, seed: int, run_tag: str):
        self.rng = random.Random(seed)
        self.text = _Text(self.rng)
        self.run_tag = run_tag
        pool = max(50, 400)
        self.people = [self._person(i) for i in range(pool)]
        self.sent: list[tuple[str, str, str, tuple[str, str], str]] = []  # (id, subject, refs, sender, text)
        self.start = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)

    def _person(self, i: int) -> tuple[str, str]:
        rng = self.rng
        first, last = rng.choice(FIRST), rng.choice(LAST)
        local = f"{first}.{last}".lower().replace("'", "")
        local = local.encode("ascii", "ignore").decode() or "customer"
        return f"{first} {last}", f"{local}{i}@{rng.choice(DOMAINS).encode('idna').decode()}"

    def build(self, index: int) -> CorpusMessage:
        rng = self.rng
        size = _target_size(rng)
        roll = rng.random()
        can_reply = len(self.sent) > REPLY_GAP
        if roll < 0.20 and can_reply:
            kind = "reply"
        elif roll < 0.25:
            kind = "forward-inline"
        elif roll < 0.27:
            kind = "forward-outlook"
        elif roll < 0.29:
            kind = "forward-attached"
        elif roll < 0.30:
            kind = "forward-stranger"
        else:
            kind = "new"
        plan = {
            "index": index, "kind": kind, "size": size, "accents": rng.random() < 0.3,
            "with_attachments": rng.random() < 0.15 or size > 60 * 1024,
            "html": rng.random() < 0.45, "inline_image": rng.random() < 0.3, "qp": rng.random() < 0.5,
            "latin1": rng.random() < 0.3, "attachment_kind": rng.random(),
            "parent": self.sent[rng.randrange(0, len(self.sent) - REPLY_GAP)] if kind == "reply" else None,
            "original": rng.choice(self.people), "sender": rng.choice(self.people), "stranger": self._stranger(),
            "topic": rng.choice(TOPICS), "number": rng.randint(1000, 99999),
            "domain": rng.choice(DOMAINS).encode("idna").decode(),
            "mailer": rng.choice(["Apple Mail (2.3774)", "Microsoft Outlook 16.0", "Thunderbird 128.4", "Gmail",
                                  "K-9 Mail"]),
        }
        # Compose, then adjust the body budget until the size is within [MIN_SIZE, MAX_SIZE].
        html_factor = 2.2 if plan["html"] else 1.0
        budget = max(400, int((size - 900) / html_factor))
        for _ in range(4):
            raw, record, attachments = self._compose(plan, budget)
            if MIN_SIZE <= len(raw) <= MAX_SIZE:
                break
            goal = min(max(len(raw), MIN_SIZE + 300), MAX_SIZE - 2000)
            budget = max(200, int(budget * goal / len(raw)) + (300 if len(raw) < MIN_SIZE else 0))
            plan["size"] = int(plan["size"] * goal / len(raw))
        self.sent.append(record)
        return CorpusMessage(index=index, message_id=record[0].lower(), sender=record[3][1], raw=raw, kind=kind,
                             attachments=attachments)

    def _compose(self, plan: dict, budget: int) -> tuple[bytes, tuple, int]:
        rng = self.rng
        index, kind, accents = plan["index"], plan["kind"], plan["accents"]
        with_attachments = plan["with_attachments"]
        message_id = f"bench-{self.run_tag}-{index:06d}.{hashlib.sha256(f'{index}'.encode()).hexdigest()[:8]}" \
                     f"@{plan['domain']}"
        message = EmailMessage()
        date = self.start + dt.timedelta(seconds=index * 37)
        message["Date"] = format_datetime(date)
        message["Message-ID"] = f"<{message_id}>"
        message["To"] = formataddr(("Support", INBOX_ADDRESS))
        message["MIME-Version"] = "1.0"
        message["X-Mailer"] = plan["mailer"]
        message["Received"] = (f"from mx{index % 9 + 1}.{plan['domain']} ([192.0.2.{index % 250 + 1}]) "
                               f"by mx.mailroom.test with ESMTPS; {format_datetime(date)}")
        refs: str | None = None
        original, topic = plan["original"], plan["topic"]
        inner_text = ""

        if kind == "reply":
            parent_id, parent_subject, parent_refs, parent_sender, parent_text = plan["parent"]
            sender = parent_sender
            subject = parent_subject if parent_subject.lower().startswith("re:") else f"Re: {parent_subject}"
            refs = f"{parent_refs} <{parent_id}>".strip()
            message["In-Reply-To"] = f"<{parent_id}>"
            message["References"] = refs
            own = self.text.paragraphs(min(budget, 1500), accents)
            quoted = "\n".join("> " + line for line in parent_text[:4000].splitlines())
            text = f"{own}\n\nOn {format_datetime(date)} {parent_sender[0]} wrote:\n{quoted}"
            if len(text) < budget:
                text += "\n\n" + self.text.paragraphs(budget - len(text), accents)
        elif kind.startswith("forward"):
            sender = plan["stranger"] if kind == "forward-stranger" else MEMBER
            if sender is MEMBER:  # a member's forward, authenticated by the team's MX: attributed
                message["Authentication-Results"] = (f"{TRUSTED_AUTHSERV_ID}; dmarc=pass "
                                                     f"header.from={MEMBER[1].rpartition('@')[2]}")
            subject = f"Fwd: {topic.capitalize()} #{plan['number']}"
            inner_text = self.text.paragraphs(max(300, budget - 400), accents)
            if kind == "forward-outlook":
                subject = "FW: " + subject[5:]
                text = (f"Can you take this one?\n\n-----Original Message-----\nFrom: {original[0]} "
                        f"<{original[1]}>\nSent: {format_datetime(date)}\nTo: {MEMBER[1]}\n"
                        f"Subject: {topic}\n\n{inner_text}")
            elif kind == "forward-attached":
                text = "Forwarding the customer's message below (attached).\n\n" + \
                    self.text.paragraphs(200, accents)
            else:
                text = (f"FYI, see below.\n\n---------- Forwarded message ---------\nFrom: {original[0]} "
                        f"<{original[1]}>\nDate: {format_datetime(date)}\nSubject: {topic}\n"
                        f"To: <{MEMBER[1]}>\n\n{inner_text}")
        else:
            sender = plan["sender"]
            subject = f"{topic.capitalize()} question #{plan['number']}"
            if accents:
                subject = f"{subject} – {ACCENTED[plan['number'] % len(ACCENTED)]}"
            text = self.text.paragraphs(budget if not with_attachments else min(budget, 4000), accents)

        message["From"] = formataddr(sender)
        message["Subject"] = subject
        charset = "utf-8"
        if accents and kind == "new" and plan["latin1"]:
            try:
                text.encode("iso-8859-1")
                subject.encode("iso-8859-1")
                charset = "iso-8859-1"
            except UnicodeEncodeError:
                pass
        cid = f"logo{index}@mailroom.bench" if (with_attachments and plan["inline_image"]) else None
        if accents and plan["qp"]:
            message.set_content(text, charset=charset, cte="quoted-printable")
        else:
            message.set_content(text, charset=charset)
        if plan["html"] or cid:
            message.add_alternative(_html_of(text[:20000], cid), subtype="html")
        attachments = 0
        if kind == "forward-attached":
            inner = EmailMessage()
            inner["From"] = formataddr(original)
            inner["To"] = MEMBER[1]
            inner["Subject"] = topic
            inner["Date"] = format_datetime(date - dt.timedelta(hours=3))
            inner["Message-ID"] = f"<orig-{index}@{original[1].rpartition('@')[2]}>"
            inner.set_content(inner_text)
            message.add_attachment(inner)
            attachments += 1
        if cid:
            html_part = message.get_body(("html",))
            if html_part is not None:
                html_part.add_related(_binary(rng, 2000, b"\x89PNG\r\n\x1a\n"), "image", "png", cid=f"<{cid}>")
                attachments += 1
        if with_attachments:
            current = len(text.encode()) * (2.2 if (plan["html"] or cid) else 1.0) + len(inner_text) + 1500
            remaining = max(1000, int((plan["size"] - current) * 0.74))  # base64 grows by 4/3 (+ line ends)
            choice = plan["attachment_kind"]
            if choice < 0.5:
                message.add_attachment(_binary(rng, remaining, b"%PDF-1.7\n"), "application", "pdf",
                                       filename=f"invoice-{index}.pdf")
            elif choice < 0.8:
                message.add_attachment(_binary(rng, remaining, b"\x89PNG\r\n\x1a\n"), "image", "png",
                                       filename=f"photo {index}.png")
            else:
                rows = "\n".join(f"{i},{WORDS[i % len(WORDS)]},{i % 997}.{i % 100:02d}"
                                 for i in range(max(1, remaining // 16)))
                message.add_attachment(rows, subtype="csv", filename=f"export-{index}.csv")
            attachments += 1
        raw = message.as_bytes(policy=email.policy.SMTP)
        return raw, (message_id, subject, refs or "", sender, text), attachments

    def _stranger(self) -> tuple[str, str]:
        return "Mallory Stranger", f"mallory{self.rng.randint(1, 50)}@elsewhere.example"


def generate(n: int, seed: int = 6, run_tag: str = "r") -> list[CorpusMessage]:
    builder = _Builder(seed, run_tag)
    return [builder.build(i) for i in range(n)]


def describe(corpus: list[CorpusMessage]) -> dict:
    sizes = sorted(len(m.raw) for m in corpus)
    kinds: dict[str, int] = {}
    for m in corpus:
        kinds[m.kind] = kinds.get(m.kind, 0) + 1
    return {
        "messages": len(corpus), "bytes": sum(sizes), "min_bytes": sizes[0], "max_bytes": sizes[-1],
        "median_bytes": sizes[len(sizes) // 2], "with_attachments": sum(1 for m in corpus if m.attachments),
        "kinds": dict(sorted(kinds.items())),
    }


if __name__ == "__main__":  # python bench/corpus.py 200 → a summary
    import json
    import sys
    import time

    started = time.perf_counter()
    corpus = generate(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
    print(json.dumps({**describe(corpus), "seconds": round(time.perf_counter() - started, 2)}, indent=1))
