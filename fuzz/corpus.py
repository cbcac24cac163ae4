"""Where the fuzzing inputs come from, and the structure-aware mutations applied to them.

Corpora (all found relative to the repository root, never the current directory):
- CPython's email fuzzing seeds, `../shared/corpora/email-seeds/` beside the repository (read-only,
  outside the repo; CI has it at the same place). `FUZZ_SEEDS_DIR` points elsewhere. May be missing:
  `seed_files()` is then empty and `SEEDS_MISSING` says why.
- The project's own `.eml` fixtures: every `*.eml` under `services/ingest/tests/` (globbed, so the
  folders may move).
- `fuzz/regressions/*.eml`: reproducers of the bugs fuzzing found.

Mutations are plain functions `(raw: bytes, rng: random.Random) -> bytes`, so the hypothesis tests,
atheris' custom mutator and the fallback loop share them, and a failure replays from (seed input,
mutation names, rng seed) alone.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
REGRESSIONS_DIR = REPO_ROOT / "fuzz" / "regressions"
FIXTURES_ROOT = REPO_ROOT / "services" / "ingest" / "tests"


def seeds_dir() -> Path:
    configured = os.environ.get("FUZZ_SEEDS_DIR")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "corpora" / "email-seeds"


def seeds_missing_reason() -> str | None:
    """None when the CPython seed corpus is there; else why not (for pytest.skip)."""
    directory = seeds_dir()
    if not directory.is_dir():
        return (f"CPython email seed corpus not found at {directory} (expected ../shared/corpora/email-seeds/ "
                "relative to the repository root; set FUZZ_SEEDS_DIR to use another copy)")
    if not seed_files():
        return f"CPython email seed corpus at {directory} holds no seed files"
    return None


def seed_files() -> list[Path]:
    directory = seeds_dir()
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir()
                  if path.is_file() and path.name not in ("LICENSE", "README", "README.md"))


def fixture_files() -> list[Path]:
    return sorted(FIXTURES_ROOT.rglob("*.eml")) if FIXTURES_ROOT.is_dir() else []


def regression_files() -> list[Path]:
    return sorted(REGRESSIONS_DIR.glob("*.eml")) if REGRESSIONS_DIR.is_dir() else []


def read_all(paths: list[Path]) -> list[bytes]:
    return [path.read_bytes() for path in paths]


def materialise(destination: Path, paths: list[Path]) -> int:
    """Copy inputs into a working corpus folder, content-addressed (no duplicates); returns how many
    were new."""
    destination.mkdir(parents=True, exist_ok=True)
    added = 0
    for path in paths:
        data = path.read_bytes()
        target = destination / f"seed-{hashlib.sha1(data).hexdigest()}"  # noqa: S324 - a name, not security
        if not target.exists():
            target.write_bytes(data)
            added += 1
    return added


# --------------------------------------------------------------------------------------------
# structure-aware mutations

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_HEADER_LINE = re.compile(rb"^[!-9;-~]+[ \t]*:.*(?:\r?\n[ \t].*)*", re.M)

# Labels that have broken parsers before: codecs that are not charsets, stateful encodings,
# RFC 2231 suffixes, garbage and huge labels.
ODD_CHARSETS = (
    "utf-7", "unicode-1-1-utf-7", "iso-2022-jp", "iso-2022-jp-2004", "hz", "utf-16", "utf-32-be",
    "unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined", "rot13", "base64",
    "zlib", "hex", "uu", "mbcs", "utf-8*en", "'utf-8'", "x-unknown", "utf-8\x00", "\x00", "",
    "cp1252", "koi8-r", "gb18030", "big5", "shift_jis", "ks_c_5601-1987", "tis-620", "utf8",
    "us-ascii\"", "=?utf-8?q?x?=", "../../etc/passwd", "a" * 300,
)

# Tokens worth splicing in anywhere: MIME syntax that changes how the rest is read.
TOKENS = (
    b"\r\n\r\n", b"\n\n", b"\r\n ", b"\r", b"\x00", b"--", b"--b\r\n", b"--b--\r\n", b";", b"\"", b"\\",
    b"=?utf-8?b?", b"=?utf-8?q?", b"?=", b"=?iso-2022-jp?b?GyRC?=", b"*0*=utf-8''%", b"*1=",
    b"Content-Type: multipart/mixed; boundary=b\r\n", b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/html; charset=utf-8\r\n", b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n", b"Content-Transfer-Encoding: x-uuencode\r\n",
    b"Content-Disposition: attachment; filename*=utf-8''%e2%80%ae.exe\r\n",
    b"From: ", b"From: \"a@b\" <c@d>\r\n", b"To: undisclosed-recipients:;\r\n", b"Message-ID: <>\r\n",
    b"Resent-From: x@y.example\r\n", b"Auto-Submitted: auto-replied\r\n", b"begin 644 x\r\n",
    b"---------- Forwarded message ---------\r\nFrom: A <a@b.example>\r\n",
    b"-----Original Message-----\r\nFrom: A [mailto:a@b.example]\r\n", b"<a@b>", b"@", b"(", b")",
    b"<script>", b"javascript:", b"<img src=x onerror=alert(1)>", b"&#x6A;", b"\xff\xfe", b"\xe2\x80\xae",
)

# Hostile HTML for the sanitiser: script, handlers, URL schemes hidden by entities, whitespace and
# case, SVG/MathML namespace confusion, comments and CDATA, unclosed tags.
HOSTILE_HTML = (
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//x.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<img src=x onerror=alert(1)>",
    "<img src=\"cid:logo\" onload='x()'>",
    "<body onload=alert(1)>",
    "<a href=\"javascript:alert(1)\">x</a>",
    "<a href=\"  JaVaScRiPt:alert(1)\">x</a>",
    "<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
    "<a href=\"&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)\">x</a>",
    "<a href=\"java\nscript:alert(1)\">x</a>",
    "<a href=\"vbscript:msgbox(1)\">x</a>",
    "<a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">x</a>",
    "<iframe src=\"javascript:alert(1)\"></iframe>",
    "<svg><script>alert(1)</script></svg>",
    "<svg onload=alert(1)>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<form action=\"javascript:alert(1)\"><button formaction=javascript:alert(1)>x</button></form>",
    "<div style=\"background:url(javascript:alert(1))\">x</div>",
    "<div style=\"width: expression(alert(1))\">x</div>",
    "<p style=\"color:red;behavior:url(x.htc)\">x</p>",
    "<!--<script>alert(1)</script>-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">",
    "<a href=\"cid:part1\" onclick=\"x()\">x</a>",
    "<object data=\"javascript:alert(1)\"></object><embed src=x>",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
    "<base href=\"javascript:alert(1)//\">",
    "<table background=\"javascript:alert(1)\"><tr><td>x",
    "<a href=\"http://ok.example/\" target=_self rel=opener>ok</a>",
    "<img src=\"http://tracker.example/p.gif\" width=1 height=1>",
    "<x onmouseover=alert(1)>hover",
    "<a href=javascript&colon;alert(1)>x</a>",
    "<a href=\"&#x6A;avascript:alert(1)\">x</a>",
    "<img src=`x`onerror=alert(1)>",
    "<p>plain <b>bold</b> &amp; text</p>",
    "<",
    "<a href='",
)


def _split_head(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block, separator, body); the separator is empty when there is no blank line."""
    match = _HEADER_END.search(raw)
    if match is None:
        return raw, b"", b""
    return raw[: match.start()], match.group(0), raw[match.end():]


def _newline(raw: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in raw[:4096] else b"\n"


def flip_bytes(raw: bytes, rng: random.Random) -> bytes:
    if not raw:
        return bytes([rng.randrange(256)])
    data = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(len(data))
        if rng.random() < 0.5:
            data[position] ^= 1 << rng.randrange(8)
        else:
            data[position] = rng.choice(b"\x00\r\n\t ;:=\"<>@()\\-?*%\x80\xff")
    return bytes(data)


def splice_token(raw: bytes, rng: random.Random) -> bytes:
    position = rng.randint(0, len(raw))
    return raw[:position] + rng.choice(TOKENS) + raw[position:]


def delete_chunk(raw: bytes, rng: random.Random) -> bytes:
    if len(raw) < 2:
        return raw
    start = rng.randrange(len(raw))
    return raw[:start] + raw[start + rng.randint(1, max(1, len(raw) // 4)):]


def repeat_chunk(raw: bytes, rng: random.Random) -> bytes:
    if not raw:
        return raw
    start = rng.randrange(len(raw))
    chunk = raw[start:start + rng.randint(1, 64)]
    return raw[:start] + chunk * rng.randint(2, 200) + raw[start:]


def truncate(raw: bytes, rng: random.Random) -> bytes:
    return raw[: rng.randint(0, len(raw))] if raw else raw


def duplicate_header(raw: bytes, rng: random.Random) -> bytes:
    head, separator, body = _split_head(raw)
    lines = _HEADER_LINE.findall(head)
    if not lines:
        return raw
    line = rng.choice(lines)
    copies = rng.choice((2, 3, 10, 100, 1000))
    newline = _newline(raw)
    return head + (newline + line) * copies + (separator or newline * 2) + body


def giant_parameters(raw: bytes, rng: random.Random, *, max_count: int = 20_000) -> bytes:
    """A Content-Type or Content-Disposition with a huge parameter list (the bpo-42909 family).

    `max_count` caps the list: above about 35,000 empty parameters the stdlib parser alone passes
    the 10 s deadline (a known bug kept in fuzz/regressions/), so routine runs stay below it."""
    count = min(max_count, int(10 ** rng.uniform(0, 4.7)))
    shape = rng.choice((b";", b"; a=b", b"; x=\"", b";;=", b"; filename*%d*=utf-8''%%41", b"; =", b";\r\n "))
    params = b"".join(shape % index for index in range(count)) if b"%d" in shape else shape * count
    header = rng.choice((b"Content-Type: text/plain", b"Content-Type: multipart/mixed; boundary=b",
                         b"Content-Disposition: attachment", b"Content-Type: text/html; charset=utf-8"))
    head, separator, body = _split_head(raw)
    newline = _newline(raw)
    return head + newline + header + params + (separator or newline * 2) + body


def deep_nesting(raw: bytes, rng: random.Random) -> bytes:
    """Wrap the message in many multipart or message/rfc822 levels (some unterminated)."""
    depth = rng.choice((2, 5, 19, 21, 40, 100, 300))
    newline = _newline(raw)
    data = raw
    for level in range(depth):
        if rng.random() < 0.5:
            boundary = b"b%d" % level
            closing = b"--" + boundary + b"--" + newline if rng.random() < 0.8 else b""
            data = (b"Content-Type: multipart/mixed; boundary=" + boundary + newline + newline
                    + b"--" + boundary + newline + data + newline + closing)
        else:
            data = b"Content-Type: message/rfc822" + newline + newline + data
    return b"From: a@b.example" + newline + b"MIME-Version: 1.0" + newline + data


def odd_charset(raw: bytes, rng: random.Random) -> bytes:
    label = rng.choice(ODD_CHARSETS).encode("utf-8", "surrogateescape")
    if b"charset=" in raw.lower() and rng.random() < 0.6:
        return re.sub(rb"(?i)charset=\"?[^\s;\"]*\"?", lambda _: b"charset=\"" + label + b"\"", raw, count=1)
    head, separator, body = _split_head(raw)
    newline = _newline(raw)
    encoded = rng.choice((b"=?" + label + b"?B?" + b"//79/Q==" + b"?=", b"=?" + label + b"?Q?=1B=24B=FF_x?=",
                          b"=?" + label + b"?b?" + bytes(rng.randrange(256) for _ in range(12)) + b"?="))
    header = rng.choice((b"Subject: ", b"From: ", b"To: ")) + encoded + b" <x@y.example>"
    ctype = b"Content-Type: text/plain; charset=\"" + label + b"\""
    return head + newline + header + newline + ctype + (separator or newline * 2) + body


def hostile_html(raw: bytes, rng: random.Random) -> bytes:
    """Replace the body by a text/html part full of what the sanitiser must remove."""
    head, _, _ = _split_head(raw)
    newline = _newline(raw)
    pieces = rng.sample(HOSTILE_HTML, rng.randint(1, 6))
    html = "".join(pieces).encode("utf-8")
    head = re.sub(rb"(?im)^content-(type|transfer-encoding):.*(?:\r?\n[ \t].*)*\r?\n?", b"", head)
    return (head + newline + b"MIME-Version: 1.0" + newline + b"Content-Type: text/html; charset=utf-8"
            + newline + newline + html)


def splice_messages(raw: bytes, rng: random.Random, *, others: list[bytes] | None = None) -> bytes:
    if not others:
        return raw
    other = rng.choice(others)
    cut_a, cut_b = rng.randint(0, len(raw)), rng.randint(0, len(other))
    return raw[:cut_a] + other[cut_b:]


MUTATORS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "flip_bytes": flip_bytes,
    "splice_token": splice_token,
    "delete_chunk": delete_chunk,
    "repeat_chunk": repeat_chunk,
    "truncate": truncate,
    "duplicate_header": duplicate_header,
    "giant_parameters": giant_parameters,
    "deep_nesting": deep_nesting,
    "odd_charset": odd_charset,
    "hostile_html": hostile_html,
}


def mutate(raw: bytes, rng: random.Random, *, names: list[str] | None = None, max_size: int | None = None,
           others: list[bytes] | None = None, max_params: int = 20_000) -> bytes:
    """Apply the named mutations (or 1-4 random ones) in order; `max_params` caps giant_parameters."""
    if names is None:
        names = [rng.choice([*MUTATORS, "splice_messages"]) for _ in range(rng.randint(1, 4))]
    for name in names:
        if name == "splice_messages":
            raw = splice_messages(raw, rng, others=others)
        elif name == "giant_parameters":
            raw = giant_parameters(raw, rng, max_count=max_params)
        else:
            raw = MUTATORS[name](raw, rng)
        if max_size is not None and len(raw) > max_size:
            raw = raw[:max_size]
    return raw
