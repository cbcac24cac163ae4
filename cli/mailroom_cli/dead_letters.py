"""`mailroom dead-letters list | show | replay | purge`: the operator's view of messages that failed
every retry (see mailroom_shared.messaging.dead_letters and docs/operations.md)."""

from __future__ import annotations

import argparse
import json
import sys


def add_commands(commands) -> None:
    parser = commands.add_parser(
        "dead-letters", help="list, show, replay or purge messages that failed every retry",
        description="Messages land in <queue>.dlq after the retries (1 s, 5 s, 30 s, 2 min, 10 min) or at once "
                    "when they can never succeed. Replay sends them back to their queue once the cause is fixed; "
                    "consumers are idempotent, so a replayed event takes effect once.")
    parser.add_argument("--amqp-uri", help="broker (default: AMQP_URI)")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="dead letters per queue (only queues that have some, unless --all)")
    listing.add_argument("--all", action="store_true", help="every subscription queue, also empty ones")
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="the dead letters of one queue: why, how often, when, the envelope")
    show.add_argument("--queue", required=True, help="queue name, its .dlq, or e.g. contacts.handle_message_received")
    show.add_argument("--limit", type=int, default=20)
    show.add_argument("--json", action="store_true")
    replay = actions.add_parser("replay", help="send dead letters back to their queue")
    replay.add_argument("--queue", required=True)
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="message_id", help="only the event with this CloudEvents id")
    which.add_argument("--limit", type=int, help="only the oldest N")
    which.add_argument("--all", action="store_true")
    purge = actions.add_parser("purge", help="drop dead letters for good")
    purge.add_argument("--queue", required=True)
    scope = purge.add_mutually_exclusive_group(required=True)
    scope.add_argument("--id", dest="message_id", help="only the event with this CloudEvents id")
    scope.add_argument("--all", action="store_true")
    purge.add_argument("--yes", action="store_true", help="do not ask")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mailroom_shared import config
    from mailroom_shared.messaging.dead_letters import DeadLetters, UnknownQueue

    dead_letters = DeadLetters(args.amqp_uri or config.amqp_uri())
    try:
        if args.action == "list":
            counts = dead_letters.counts()
            shown = {queue: n for queue, n in counts.items() if n or args.all}
            if args.json:
                print(json.dumps(shown, indent=2))
            elif not shown:
                print("no dead letters")
            else:
                width = max(len(queue) for queue in shown)
                for queue, n in shown.items():
                    print(f"{queue:<{width}}  {n}")
            return 0
        if args.action == "show":
            letters = dead_letters.browse(args.queue, limit=args.limit)
            if args.json:
                print(json.dumps([{**letter.summary(), "envelope": letter.envelope()} for letter in letters], indent=2))
                return 0
            if not letters:
                print("no dead letters")
            for letter in letters:
                print(f"#{letter.position} id={letter.message_id} type={letter.event_type} "
                      f"attempts={letter.attempts} replayed={letter.replayed}\n"
                      f"  first failed {letter.first_failed_at}, last {letter.last_failed_at}\n"
                      f"  error: {letter.error}")
                envelope = letter.envelope()
                body = json.dumps(envelope, indent=2) if envelope is not None else repr(letter.body[:500])
                print("  " + body.replace("\n", "\n  ")[:4000])
            return 0
        if args.action == "replay":
            moved = dead_letters.replay(args.queue, message_id=args.message_id, limit=args.limit)
            print(f"replayed {moved} message(s) to their queue")
            return 0 if moved or not args.message_id else 1
        if args.action == "purge":
            if not args.yes and sys.stdin.isatty():
                what = f"event {args.message_id}" if args.message_id else "every dead letter"
                if input(f"drop {what} of {args.queue} for good? [y/N] ").strip().lower() != "y":
                    print("nothing dropped")
                    return 1
            print(f"dropped {dead_letters.purge(args.queue, message_id=args.message_id)} message(s)")
            return 0
    except UnknownQueue as exc:
        print(f"mailroom dead-letters: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(args.action)


if __name__ == "__main__":  # pragma: no cover - `mailroom dead-letters` is the entry point
    top = argparse.ArgumentParser(prog="mailroom")
    add_commands(top.add_subparsers(dest="command", required=True))
    parsed = top.parse_args()
    sys.exit(parsed.func(parsed))
