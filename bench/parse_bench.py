"""Parse speed: ingest's `analyse()` (MIME parse + classification + forward detection, the code
path the service runs for every message) beside the stdlib `email` parser alone
(`BytesParser(policy=policy.default).parsebytes`) on the same corpus. In this process, with the
services not running (one core, quiet machine). MB = 10^6 bytes of raw message."""

from __future__ import annotations

import time
from email import policy
from email.parser import BytesParser

from corpus import INBOX_ADDRESS, MEMBER  # noqa: I001 - bench/ is on sys.path

from ingest.domain.analysis import AnalysisSettings, analyse, render_html

SETTINGS = AnalysisSettings(own_addresses=frozenset({INBOX_ADDRESS}), own_message_id_domain="mailroom.local")
TRUSTED = frozenset({MEMBER[1]})
CHUNK = 50


def _timed(function, raws: list[bytes]) -> float:
    started = time.perf_counter()
    for raw in raws:
        function(raw)
    return time.perf_counter() - started


def _ours(raw: bytes) -> None:
    analyse(raw, SETTINGS, trusted_senders=TRUSTED)


def _ours_with_html(raw: bytes) -> None:
    render_html(analyse(raw, SETTINGS, trusted_senders=TRUSTED).parsed, {}, 100_000)


def _stdlib(raw: bytes) -> None:
    BytesParser(policy=policy.default).parsebytes(raw)


def measure(corpus) -> dict:
    raws = [m.raw for m in corpus]
    total = sum(map(len, raws))
    for raw in raws[:30]:  # imports, regex compilation
        _ours_with_html(raw)
        _stdlib(raw)
    # Interleaved in chunks (the order flipped every chunk) rather than one whole pass each: the
    # speed of a shared VM drifts over tens of seconds, and back-to-back passes turned that drift
    # into a ratio anywhere from 0.42 to 0.67 between runs of the same code.
    functions = {"stdlib": _stdlib, "ours": _ours, "ours_with_html_sanitising": _ours_with_html}
    seconds = dict.fromkeys(functions, 0.0)
    for number, start in enumerate(range(0, len(raws), CHUNK)):
        chunk = raws[start:start + CHUNK]
        for name in (list(functions) if number % 2 == 0 else list(functions)[::-1]):
            seconds[name] += _timed(functions[name], chunk)

    def row(name: str) -> dict:
        return {"seconds": round(seconds[name], 2), "msgs_per_s": round(len(raws) / seconds[name], 1),
                "mb_per_s": round(total / seconds[name] / 1e6, 2)}

    return {"messages": len(raws), "mb": round(total / 1e6, 1), "stdlib": row("stdlib"), "ours": row("ours"),
            "ours_with_html_sanitising": row("ours_with_html_sanitising"),
            "ratio": round(seconds["stdlib"] / seconds["ours"], 3)}
