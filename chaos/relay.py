"""The SMTP relay of a chaos run: `python chaos/relay.py --port P --record FILE`, a process of its
own so that restarting it is what restarting a real relay is (every socket closed by the kernel,
sessions in flight cut). It answers 250 to every message, after appending one JSON line to FILE
(Message-ID, envelope recipients, size, CLOCK_MONOTONIC time: system-wide on Linux, comparable
with the harness's clock) and flushing it, then waiting `--delay-ms` (a remote relay's latency:
the window in which a sender that dies, or a relay that dies, leaves a message taken but not
acknowledged). A message recorded is a message the relay took, whether or not its 250 reached
the sender.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from email import policy
from email.parser import BytesParser

from aiosmtpd.smtp import SMTP


class Recorder:
    def __init__(self, path: str, delay_s: float = 0.0):
        self.file = open(path, "a", buffering=1)  # noqa: SIM115 - open for the process's life
        self.delay_s = delay_s  # between taking the message and answering (a remote relay's latency)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        raw = envelope.original_content or envelope.content or b""
        headers = BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=True)
        line = json.dumps({"message_id": (headers.get("Message-ID") or "").strip().strip("<>").lower(),
                           "rcpt_tos": [r.lower() for r in envelope.rcpt_tos], "size": len(raw),
                           "at": time.monotonic(), "pid": os.getpid()})
        self.file.write(line + "\n")
        self.file.flush()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return "250 2.0.0 Ok: queued"


async def serve(port: int, record: str, delay_s: float) -> None:
    recorder = Recorder(record, delay_s)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(recorder, hostname="relay.chaos.test", enable_SMTPUTF8=True),
                                      "127.0.0.1", port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.record, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
