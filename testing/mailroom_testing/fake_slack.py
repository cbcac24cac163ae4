"""A local stand-in for Slack's Web API (what SLACK_API_URL points at in the tests and the bench):
chat.postMessage, chat.postEphemeral, users.info, conversations.history and
conversations.replies, with message metadata, recording every call. It can answer 429 with a
Retry-After (`rate_limit`) and hold a chat.postMessage after storing it (`hang_posts`: the
notifier is killed meanwhile). Also signs Events API callbacks as Slack does (v0)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


class FakeSlack:
    def __init__(self, token: str = "xoxb-test-token", users: dict[str, str | None] | None = None):  # noqa: S107
        self.token = token
        self.users = dict(users or {})  # Slack user id -> email (None: no email)
        self.calls: list[tuple[str, dict]] = []
        self.messages: dict[str, list[dict]] = {}  # channel -> messages
        self.ephemerals: list[dict] = []
        self.rate_limit: dict[str, list[float]] = {}  # method -> Retry-After seconds of the next answers
        self.hang_posts = 0  # the next N chat.postMessage are stored, then answered after `hang_seconds`
        self.hang_seconds = 30.0
        self.lock = threading.Lock()
        self._ts = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status: int, document: dict, headers: dict | None = None):
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def _params(self) -> dict:
                parts = urlsplit(self.path)
                params = dict(parse_qsl(parts.query))
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if raw:
                    if "json" in (self.headers.get("Content-Type") or ""):
                        params.update(json.loads(raw))
                    else:
                        params.update(dict(parse_qsl(raw.decode())))
                return params

            def do_GET(self):  # noqa: N802 - http.server's name
                self._handle()

            def do_POST(self):  # noqa: N802
                self._handle()

            def _handle(self):
                method = urlsplit(self.path).path.rsplit("/", 1)[-1]
                params = self._params()
                with fake.lock:
                    fake.calls.append((method, params))
                    limited = fake.rate_limit.get(method)
                    retry_after = limited.pop(0) if limited else None
                if retry_after is not None:
                    return self._answer(429, {"ok": False, "error": "ratelimited"},
                                        {"Retry-After": str(int(retry_after))})
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._answer(200, {"ok": False, "error": "invalid_auth"})
                answer, hang = fake.answer(method, params)
                if hang:
                    time.sleep(fake.hang_seconds)
                self._answer(200, answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def answer(self, method: str, params: dict) -> tuple[dict, bool]:
        with self.lock:
            if method == "chat.postMessage":
                channel = params.get("channel")
                metadata = params.get("metadata")
                if isinstance(metadata, str):
                    metadata = json.loads(metadata)
                message = {"ts": self._next_ts(), "text": params.get("text"), "thread_ts": params.get("thread_ts"),
                           "metadata": metadata, "bot_id": "B1"}
                self.messages.setdefault(channel, []).append(message)
                hang = self.hang_posts > 0
                self.hang_posts -= 1 if hang else 0
                return {"ok": True, "channel": channel, "ts": message["ts"], "message": message}, hang
            if method == "chat.postEphemeral":
                self.ephemerals.append({k: params.get(k) for k in ("channel", "user", "text", "thread_ts")})
                return {"ok": True, "message_ts": self._next_ts()}, False
            if method == "users.info":
                user = params.get("user")
                if user not in self.users:
                    return {"ok": False, "error": "user_not_found"}, False
                email = self.users[user]
                return {"ok": True, "user": {"id": user, "profile": {"email": email} if email else {}}}, False
            if method in ("conversations.history", "conversations.replies"):
                channel = self.messages.get(params.get("channel"), [])
                if method == "conversations.replies":
                    found = [m for m in channel if m["ts"] == params.get("ts") or m["thread_ts"] == params.get("ts")]
                else:
                    oldest = float(params.get("oldest") or 0)
                    found = [m for m in channel if not m["thread_ts"] and float(m["ts"]) > oldest]
                return {"ok": True, "messages": [dict(m) for m in found], "has_more": False}, False
            return {"ok": False, "error": "unknown_method"}, False

    # --- what the tests read ---------------------------------------------------------------------

    def posts(self, channel: str) -> list[dict]:
        with self.lock:
            return [dict(m) for m in self.messages.get(channel, [])]

    def calls_of(self, method: str) -> list[dict]:
        with self.lock:
            return [params for name, params in self.calls if name == method]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def signed_event(signing_secret: str, payload: dict | str, timestamp: int | None = None) -> tuple[bytes, dict]:
    """The body and headers of an Events API request as Slack signs it (v0)."""
    body = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(signing_secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Slack-Request-Timestamp": str(timestamp),
                  "X-Slack-Signature": f"v0={digest}"}
