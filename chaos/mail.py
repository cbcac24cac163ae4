"""The mail of a chaos run and the SMTP clients that send it.

The messages are bench/corpus.py's (distinct senders from a pool of 400 people, ~20 % replies to
earlier messages with In-Reply-To/References so threading is exercised, forwards, attachments,
2–200 KB), plus a few exact re-sends of earlier messages (same bytes, same Message-ID) that must
be de-duplicated. The clients are a child process (they should not share the harness's GIL) of
`clients` threads, paced open loop at `rate` messages/s, each retrying a message until it gets a
definite answer: a 4xx, a refused connection or a dropped session (the listener or the database
being restarted) is retried, with a fresh connection, until `give_up_s`; 250 is accepted, 5xx is
rejected. Every attempt's outcome is counted.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import random
import smtplib
import threading
import time
from collections import Counter
from dataclasses import dataclass

from corpus import INBOX_ADDRESS, CorpusMessage, generate  # noqa: I001 - bench/ is on sys.path


@dataclass(frozen=True)
class Outgoing:
    position: int  # order of sending
    message_id: str  # lower case, without angle brackets
    sender: str  # envelope sender
    raw: bytes
    kind: str  # the corpus kind, or "resend" for a duplicate of an earlier position
    resend_of: int | None = None


def build(n: int, seed: int, duplicates: int | None = None) -> list[Outgoing]:
    """`n` distinct messages and `duplicates` (default 1 %, at least 3) re-sends of earlier ones,
    each placed 5–60 positions after its original."""
    corpus: list[CorpusMessage] = generate(n, seed=seed, run_tag=f"chaos{seed}")
    rng = random.Random(seed * 7919 + 1)
    count = max(3, n // 100) if duplicates is None else duplicates
    count = min(count, max(0, n - 1))
    originals = sorted(rng.sample(range(n - 1), count)) if count else []
    order: list[tuple[CorpusMessage, int | None]] = [(m, None) for m in corpus]
    # insert from the back so earlier insert positions stay valid
    for original in sorted(originals, reverse=True):
        at = min(len(order), original + 1 + rng.randint(5, 60))
        order.insert(at, (corpus[original], original))
    return [Outgoing(i, m.message_id, m.sender, m.raw, "resend" if dup is not None else m.kind, dup)
            for i, (m, dup) in enumerate(order)]


# --- the clients (child process) ------------------------------------------------------------------


def _clients_main(port: int, payload: list[tuple[int, str, str, bytes]], clients: int, rate: float | None,
                  start_at: float, give_up_s: float, out) -> None:
    results: dict[int, tuple] = {}  # position -> (outcome, first try, answered at, attempts, reply)
    outcomes: Counter = Counter()
    samples: list[str] = []
    lock = threading.Lock()
    cursor = {"next": 0}

    def note(kind: str, detail: str) -> str:
        with lock:
            outcomes[kind] += 1
            if len(samples) < 60:
                samples.append(detail[:300])
        return detail[:300]

    def client() -> None:
        smtp = None
        while True:
            with lock:
                index = cursor["next"]
                cursor["next"] += 1
            if index >= len(payload):
                break
            position, message_id, sender, raw = payload[index]
            if rate:
                delay = start_at + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            began = time.monotonic()
            attempts, last = 0, ""
            while True:
                attempts += 1
                try:
                    if smtp is None:
                        smtp = smtplib.SMTP("127.0.0.1", port, timeout=60)
                    smtp.sendmail(sender, [INBOX_ADDRESS], raw)
                    with lock:
                        outcomes["250"] += 1
                        results[position] = ("accepted", began, time.monotonic(), attempts, "250")
                    break
                except smtplib.SMTPRecipientsRefused as exc:
                    code = next(iter(exc.recipients.values()))[0]
                    last = note(str(code), f"{message_id}: RCPT {exc.recipients}")
                    permanent = code >= 500
                except smtplib.SMTPResponseException as exc:
                    last = note(str(exc.smtp_code), f"{message_id}: {exc.smtp_code} {exc.smtp_error!r}")
                    permanent = exc.smtp_code >= 500
                except (smtplib.SMTPException, OSError) as exc:
                    last = note(type(exc).__name__, f"{message_id}: {exc!r}")
                    permanent = False
                if smtp is not None:  # a fresh session for the retry
                    with contextlib.suppress(smtplib.SMTPException, OSError):
                        smtp.close()
                    smtp = None
                if permanent or time.monotonic() - began > give_up_s:
                    with lock:
                        results[position] = ("rejected" if permanent else "gave_up", began, time.monotonic(),
                                             attempts, last)
                    break
                time.sleep(0.3)
        if smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()

    threads = [threading.Thread(target=client, name=f"smtp-client-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.send({"results": results, "outcomes": dict(outcomes), "samples": samples})
    out.close()


class Sender:
    """Starts the clients in a child process; `result()` waits for them."""

    def __init__(self, port: int, messages: list[Outgoing], clients: int, rate: float | None,
                 give_up_s: float = 300.0):
        self.messages = messages
        context = multiprocessing.get_context("fork")
        self._receiver, sender = context.Pipe(duplex=False)
        payload = [(m.position, m.message_id, m.sender, m.raw) for m in messages]
        self.start_at = time.monotonic() + 0.2
        self.process = context.Process(target=_clients_main, name="chaos-smtp-clients",
                                       args=(port, payload, clients, rate, self.start_at, give_up_s, sender),
                                       daemon=True)
        self.process.start()
        sender.close()
        self._result: dict | None = None

    def done(self) -> bool:
        return self._result is not None or self._receiver.poll(0)

    def result(self, timeout: float = 3600) -> dict:
        if self._result is None:
            if not self._receiver.poll(timeout):
                raise TimeoutError("the SMTP clients did not finish")
            self._result = self._receiver.recv()
            self.process.join(10)
        return self._result

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
