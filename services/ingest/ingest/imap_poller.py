"""IMAP poller for connected mailboxes: fetch new mail from one folder (INBOX) exactly once.

Plain Python (no nameko): the service's timer calls `poll_mailbox` per connected mailbox and turns
the returned `PollResult` into events (`mailbox_unreachable` when `reachable` is False).

Guarantees:
- Nothing skipped, nothing fetched twice across restarts: the cursor is (UIDVALIDITY, last UID)
  from a caller-supplied `CursorStore`. It advances past a message only after the caller's
  `accept` callback returned (i.e. the raw message is durably stored). A crash mid-batch
  refetches the unconfirmed rest; the caller de-duplicates by Message-ID.
- A UIDVALIDITY change means the server renumbered the folder: restart from UID 0 and report it.
- Mail is read with BODY.PEEK[] from a read-only (EXAMINE) folder unless `mark_seen` or
  `delete_after_fetch` is set, so a user's unread state is untouched by default.
- Junk/Spam/Trash are never read: refused by name when the config is built, and by RFC 6154
  SPECIAL-USE flags (\\Junk, \\Trash) as the server reports them.
- Oversized mail (RFC822.SIZE above the bound) is never downloaded: the caller is told via
  `reject_oversized(uid, size)` so it can quarantine it with a reason; the cursor moves on and the
  message stays on the server (even with `delete_after_fetch`) for an operator to handle.
- Network, TLS and server failures never raise: they come back as a `PollResult` with an error.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

log = logging.getLogger(__name__)

# Last path component of folder names that hold unwanted mail (compared case-insensitively).
REFUSED_FOLDER_NAMES = frozenset(
    {
        "junk", "junk e-mail", "junk email", "junk mail", "spam", "bulk", "bulk mail",
        "trash", "bin", "deleted", "deleted items", "deleted messages",
    }
)
# RFC 6154 SPECIAL-USE attributes (and Gmail's legacy XLIST \Spam) of folders we never read.
REFUSED_SPECIAL_USE_FLAGS = frozenset({b"\\junk", b"\\trash", b"\\spam"})


class ErrorKind:
    """Why a poll did not complete; `PollResult.error_kind`."""

    UNREACHABLE = "unreachable"  # connection refused/reset/timed out, or dropped mid-poll
    TLS_FAILED = "tls_failed"  # handshake or certificate verification failed
    AUTH_FAILED = "auth_failed"  # server answered but refused the credentials
    FOLDER_REFUSED = "folder_refused"  # server flags the folder \Junk or \Trash
    PROTOCOL = "protocol"  # server said NO/BAD (e.g. folder missing, STARTTLS unsupported)
    ACCEPT_FAILED = "accept_failed"  # the caller's accept/reject_oversized callback raised
    CURSOR_FAILED = "cursor_failed"  # the cursor store raised


class FolderRefusedError(ValueError):
    """The configured folder holds junk or deleted mail and must never be polled."""


def is_refused_folder_name(folder: str) -> bool:
    # The hierarchy separator is server-specific ("/" or "."), so check the last part for both.
    last_part = folder.replace(".", "/").rstrip("/").rsplit("/", 1)[-1]
    return folder.strip().lower() in REFUSED_FOLDER_NAMES or last_part.strip().lower() in REFUSED_FOLDER_NAMES


@dataclass
class MailboxConfig:
    id: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)  # secrets never reach logs or reprs
    ssl: bool = True  # IMAPS (implicit TLS, usually port 993)
    starttls: bool = False  # plain connection upgraded with STARTTLS (usually port 143); needs ssl=False
    ca_file: str | None = None  # extra CA bundle for self-hosted servers; system CAs otherwise
    ca_data: str | None = None  # the same as PEM text (mailboxes added through the API)
    # XOAUTH2 (Gmail, Microsoft 365): log in with this access token instead of the password
    oauth2_token: str | None = field(default=None, repr=False)
    folder: str = "INBOX"
    mark_seen: bool = False
    delete_after_fetch: bool = False
    batch_size: int = 50
    max_message_bytes: int = 25 * 1024 * 1024
    # bodies fetched per FETCH: up to this many messages and bytes (a larger message comes alone)
    fetch_chunk_messages: int = 25
    fetch_chunk_bytes: int = 4 * 1024 * 1024
    timeout: float = 30  # seconds, for the connect and for each read
    # the team's own mailbox: mail fetched from it counts as authenticated for forward attribution
    team_mailbox: bool = True

    def __post_init__(self) -> None:
        if is_refused_folder_name(self.folder):
            raise FolderRefusedError(f"mailbox {self.id}: folder {self.folder!r} holds junk or deleted mail")
        if self.ssl and self.starttls:
            raise ValueError(f"mailbox {self.id}: choose ssl (IMAPS) or starttls, not both")
        if (self.batch_size < 1 or self.max_message_bytes < 1 or self.timeout <= 0 or self.fetch_chunk_messages < 1
                or self.fetch_chunk_bytes < 1):
            raise ValueError(f"mailbox {self.id}: batch_size, max_message_bytes, timeout and the fetch chunk "
                             "bounds must be positive")


@dataclass
class MailboxCursor:
    uidvalidity: int | None  # None: never polled
    last_uid: int = 0  # highest UID handled (accepted or reported oversized)


class CursorStore(Protocol):
    def load(self, mailbox_id: str) -> MailboxCursor: ...

    def save(self, mailbox_id: str, cursor: MailboxCursor) -> None: ...


@dataclass
class PollResult:
    mailbox_id: str
    fetched: int = 0  # messages handed to accept()
    oversized: int = 0  # messages reported to reject_oversized() and skipped
    reachable: bool = True  # False → the caller publishes `mailbox_unreachable`
    error: str | None = None
    error_kind: str | None = None  # an ErrorKind value
    uidvalidity_reset: bool = False  # the server renumbered the folder; restarted from UID 0
    has_more: bool = False  # the batch bound was hit (or the poll stopped early): poll again soon
    uidvalidity: int | None = None
    last_uid: int = 0  # the cursor as saved at the end of this poll

    @property
    def ok(self) -> bool:
        return self.error is None


class PollMetrics:
    """Process-wide counters by mailbox id; exported by whatever metrics endpoint the service has."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, Counter[str]] = {}

    def increment(self, name: str, mailbox_id: str, amount: int = 1) -> None:
        with self._lock:
            self._counters.setdefault(name, Counter())[mailbox_id] += amount

    def value(self, name: str, mailbox_id: str) -> int:
        with self._lock:
            return self._counters.get(name, Counter())[mailbox_id]

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {name: dict(counter) for name, counter in self._counters.items()}


metrics = PollMetrics()
UNREACHABLE_COUNTER = "imap_mailbox_unreachable_total"
AUTH_FAILED_COUNTER = "imap_auth_failed_total"
UIDVALIDITY_RESET_COUNTER = "imap_uidvalidity_reset_total"
FETCHED_COUNTER = "imap_messages_fetched_total"
OVERSIZED_COUNTER = "imap_messages_oversized_total"


class _StopPoll(Exception):
    """Internal: end the poll with the given error, keeping the cursor where it is."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def poll_mailbox(
    cfg: MailboxConfig,
    cursors: CursorStore,
    accept: Callable[[bytes], None],
    reject_oversized: Callable[[int, int], None] | None = None,
    client_factory: Callable[..., IMAPClient] = IMAPClient,
) -> PollResult:
    """Fetch up to `cfg.batch_size` new messages, oldest first, and hand each to `accept`.

    `accept(raw)` must return only once the message is durably stored; if it raises, the poll
    stops and the cursor stays on the last accepted message. `reject_oversized(uid, size)` is told
    about each message above `cfg.max_message_bytes` (the cursor then moves past it).
    """
    result = PollResult(mailbox_id=cfg.id)
    client = None
    try:
        client = _connect(cfg, client_factory)
        _check_folder_flags(client, cfg.folder)
        _poll_folder(client, cfg, cursors, accept, reject_oversized, result)
    except _StopPoll as stop:
        _fail(result, cfg, stop.kind, str(stop))
    except LoginError as exc:
        _fail(result, cfg, ErrorKind.AUTH_FAILED, f"authentication failed: {exc}")
    except ssl.SSLError as exc:  # before OSError: SSLError is one
        _fail(result, cfg, ErrorKind.TLS_FAILED, f"TLS failed: {exc}")
    except (OSError, IMAPClientAbortError) as exc:
        # OSError covers refused connections and socket timeouts; IMAPClientAbortError is the
        # server hanging up (or imaplib wrapping a socket error) mid-session.
        _fail(result, cfg, ErrorKind.UNREACHABLE, f"{type(exc).__name__}: {exc}")
    except IMAPClientError as exc:
        _fail(result, cfg, ErrorKind.PROTOCOL, f"IMAP error: {exc}")
    finally:
        if client is not None:
            _logout_quietly(client)
    return result


MAX_DRAIN_ROUNDS = 40  # polls of one mailbox per drain: 2,000 messages at the default batch of 50

_Mailbox = TypeVar("_Mailbox")


def drain_mailboxes(
    mailboxes: Sequence[_Mailbox],
    poll_one: Callable[[_Mailbox], PollResult],
    max_rounds: int = MAX_DRAIN_ROUNDS,
) -> list[PollResult]:
    """Poll every mailbox once, then again at once each one whose poll hit the batch bound
    (`has_more`), round robin, until none has more or each has been polled `max_rounds` times.

    A backlog drains at the rate mail can be stored instead of one batch per poll interval, and
    round robin keeps it fair: one mailbox's backlog delays another's new mail by one batch at
    most. A poll that failed is not repeated at once (a server in trouble is not hammered; its
    unconfirmed rest is fetched at the next interval). Returns every poll's result, in order.
    """
    results: list[PollResult] = []
    pending = list(mailboxes)
    for _round in range(max(1, max_rounds)):
        still_more = []
        for mailbox in pending:
            result = poll_one(mailbox)
            results.append(result)
            if result.ok and result.has_more:  # ok: the whole batch was handled, the cursor moved on
                still_more.append(mailbox)
        if not still_more:
            break
        pending = still_more
    return results


def _connect(cfg: MailboxConfig, client_factory: Callable[..., IMAPClient]) -> IMAPClient:
    context = (ssl.create_default_context(cafile=cfg.ca_file, cadata=cfg.ca_data)
               if (cfg.ssl or cfg.starttls) else None)
    client = client_factory(cfg.host, port=cfg.port, ssl=cfg.ssl, ssl_context=context, timeout=cfg.timeout)
    try:
        if cfg.starttls:
            client.starttls(context)  # raises CapabilityError (an IMAPClientError) if not offered
        if cfg.oauth2_token:
            client.oauth2_login(cfg.username, cfg.oauth2_token)  # LoginError when refused
        else:
            client.login(cfg.username, cfg.password)
    except BaseException:
        _logout_quietly(client)
        raise
    return client


def _check_folder_flags(client: IMAPClient, folder: str) -> None:
    refused = [flag for flag in _folder_flags(client, folder) if flag.lower() in REFUSED_SPECIAL_USE_FLAGS]
    if refused:
        names = ", ".join(sorted({flag.decode() for flag in refused}))
        raise _StopPoll(ErrorKind.FOLDER_REFUSED, f"folder {folder!r} is flagged {names} by the server")


def _folder_flags(client: IMAPClient, folder: str) -> tuple[bytes, ...]:
    """The folder's LIST attributes, with SPECIAL-USE ones asked for explicitly when supported."""
    if client.has_capability("SPECIAL-USE") and client.has_capability("LIST-EXTENDED"):
        # RFC 6154 lets servers omit special-use attributes from a plain LIST unless the client
        # asks with RETURN (SPECIAL-USE); IMAPClient has no public API for LIST return options.
        try:
            listing = _list_with_special_use(client, folder)
        except IMAPClientAbortError:
            raise
        except IMAPClientError:
            log.debug("extended LIST failed; falling back to plain LIST", exc_info=True)
        else:
            return tuple(flag for flags, _delim, _name in listing for flag in flags)
    return tuple(flag for flags, _delim, _name in client.list_folders(pattern=folder) for flag in flags)


def _list_with_special_use(client: IMAPClient, folder: str) -> list[tuple]:
    imap = client._imap  # imaplib.IMAP4 underneath IMAPClient
    typ, data = imap._simple_command(
        "LIST", client._normalise_folder(""), client._normalise_folder(folder), "RETURN (SPECIAL-USE)"
    )
    client._checkok("LIST", typ, data)
    typ, data = imap._untagged_response(typ, data, "LIST")
    return client._proc_folder_list(data)


def _poll_folder(
    client: IMAPClient,
    cfg: MailboxConfig,
    cursors: CursorStore,
    accept: Callable[[bytes], None],
    reject_oversized: Callable[[int, int], None] | None,
    result: PollResult,
) -> None:
    # EXAMINE (read-only) unless we must write flags: a second guard, beside BODY.PEEK[], that
    # polling never changes the user's \Seen state.
    writes_flags = cfg.mark_seen or cfg.delete_after_fetch
    selected = client.select_folder(cfg.folder, readonly=not writes_flags)
    uidvalidity = int(selected[b"UIDVALIDITY"])

    cursor = _call_store(lambda: cursors.load(cfg.id))
    if cursor.uidvalidity != uidvalidity:
        if cursor.uidvalidity is not None:
            # Old UIDs mean nothing now: refetch everything (the caller de-duplicates by Message-ID).
            log.warning(
                "mailbox %s: UIDVALIDITY of %r changed from %s to %s; refetching from UID 0",
                cfg.id, cfg.folder, cursor.uidvalidity, uidvalidity,
            )
            metrics.increment(UIDVALIDITY_RESET_COUNTER, cfg.id)
            result.uidvalidity_reset = True
        cursor = MailboxCursor(uidvalidity=uidvalidity, last_uid=0)
        _call_store(lambda: cursors.save(cfg.id, cursor))
    result.uidvalidity, result.last_uid = uidvalidity, cursor.last_uid

    # "N:*" always matches the highest UID even when it is below N, so filter again.
    candidates = client.search(["UID", f"{cursor.last_uid + 1}:*"])
    new_uids = sorted(uid for uid in candidates if uid > cursor.last_uid)
    batch = new_uids[: cfg.batch_size]
    result.has_more = len(new_uids) > len(batch)
    if not batch:
        return

    sizes = client.fetch(batch, ["RFC822.SIZE"])
    to_expunge: list[int] = []
    # The cursor is saved once per chunk (and before giving up on a failed accept), never past a
    # message not yet accepted: a crash mid-chunk refetches at most that chunk's accepted ones,
    # which the caller de-duplicates by Message-ID.
    handled = result.last_uid  # the highest UID handled so far (accepted or skipped)
    accepted: list[int] = []  # accepted since the cursor was last saved: their flags come after it

    def checkpoint() -> None:
        nonlocal accepted
        if handled > result.last_uid:
            _advance(cursors, cfg, result, handled)
        # Flags only after the cursor is saved: a crash in between leaves the message unread
        # on the server, never lost.
        if accepted and cfg.mark_seen:
            client.add_flags(accepted, [b"\\Seen"], silent=True)
        if accepted and cfg.delete_after_fetch:
            client.add_flags(accepted, [b"\\Deleted"], silent=True)
            to_expunge.extend(accepted)
        accepted = []

    try:
        for chunk in _chunks(batch, sizes, cfg):
            wanted = [uid for uid in chunk if uid in sizes
                      and int(sizes[uid].get(b"RFC822.SIZE", 0)) <= cfg.max_message_bytes]
            # Several bodies per FETCH (one round trip), memory bounded by the chunk's size.
            bodies = client.fetch(wanted, ["BODY.PEEK[]"]) if wanted else {}
            for uid in chunk:
                if uid not in sizes:  # expunged since the SEARCH: nothing to fetch, ever
                    log.info("mailbox %s: UID %s vanished before it was fetched", cfg.id, uid)
                    handled = uid
                    continue
                size = int(sizes[uid].get(b"RFC822.SIZE", 0))
                if size > cfg.max_message_bytes:
                    _report_oversized(cfg, reject_oversized, uid, size)
                    result.oversized += 1
                    handled = uid
                    continue
                fetched = bodies.get(uid)
                if fetched is None or b"BODY[]" not in fetched:
                    log.info("mailbox %s: UID %s vanished before it was fetched", cfg.id, uid)
                    handled = uid
                    continue
                raw = bytes(fetched[b"BODY[]"])
                if len(raw) > cfg.max_message_bytes:  # the server under-reported RFC822.SIZE
                    _report_oversized(cfg, reject_oversized, uid, len(raw))
                    result.oversized += 1
                    handled = uid
                    continue
                try:
                    accept(raw)
                except Exception as exc:
                    log.exception("mailbox %s: accept failed for UID %s; will refetch from there", cfg.id, uid)
                    checkpoint()  # what was accepted before it stays accepted
                    raise _StopPoll(ErrorKind.ACCEPT_FAILED, f"accept failed at UID {uid}: {exc}") from exc
                result.fetched += 1
                metrics.increment(FETCHED_COUNTER, cfg.id)
                handled = uid
                accepted.append(uid)
            checkpoint()
    except _StopPoll:
        result.has_more = True
        raise
    finally:
        if to_expunge:
            _expunge(client, cfg, to_expunge)


def _chunks(batch: list[int], sizes: dict, cfg: MailboxConfig) -> list[list[int]]:
    """`batch` in order, cut so that each chunk's bodies (by RFC822.SIZE) stay within
    `fetch_chunk_bytes` and `fetch_chunk_messages`; a message larger than that comes alone."""
    chunks: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for uid in batch:
        size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0)) if uid in sizes else 0
        if current and (len(current) >= cfg.fetch_chunk_messages or current_bytes + size > cfg.fetch_chunk_bytes):
            chunks.append(current)
            current, current_bytes = [], 0
        current.append(uid)
        current_bytes += size if size <= cfg.max_message_bytes else 0
    if current:
        chunks.append(current)
    return chunks


def _advance(cursors: CursorStore, cfg: MailboxConfig, result: PollResult, uid: int) -> None:
    cursor = MailboxCursor(uidvalidity=result.uidvalidity, last_uid=uid)
    _call_store(lambda: cursors.save(cfg.id, cursor))
    result.last_uid = uid


def _report_oversized(
    cfg: MailboxConfig, reject_oversized: Callable[[int, int], None] | None, uid: int, size: int
) -> None:
    log.warning(
        "mailbox %s: UID %s is %s bytes, over the %s byte limit; not fetched",
        cfg.id, uid, size, cfg.max_message_bytes,
    )
    metrics.increment(OVERSIZED_COUNTER, cfg.id)
    if reject_oversized is None:
        return
    try:
        reject_oversized(uid, size)
    except Exception as exc:
        log.exception("mailbox %s: reject_oversized failed for UID %s", cfg.id, uid)
        raise _StopPoll(ErrorKind.ACCEPT_FAILED, f"reject_oversized failed at UID {uid}: {exc}") from exc


def _expunge(client: IMAPClient, cfg: MailboxConfig, uids: list[int]) -> None:
    try:
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)  # only ours, not other \Deleted mail
        else:
            client.expunge()
    except (IMAPClientError, OSError):
        # Already stored and past the cursor: they are expunged on a later successful poll or
        # by the server; nothing is lost or refetched.
        log.warning("mailbox %s: expunge of %d fetched messages failed", cfg.id, len(uids), exc_info=True)


def _call_store(operation: Callable):
    try:
        return operation()
    except Exception as exc:
        log.exception("cursor store failed")
        raise _StopPoll(ErrorKind.CURSOR_FAILED, f"cursor store failed: {exc}") from exc


def _fail(result: PollResult, cfg: MailboxConfig, kind: str, message: str) -> None:
    for secret in (cfg.password, cfg.oauth2_token):  # servers sometimes echo what they got
        if secret:
            message = message.replace(secret, "***")
    result.error, result.error_kind = message, kind
    if kind in (ErrorKind.UNREACHABLE, ErrorKind.TLS_FAILED):
        result.reachable = False
        metrics.increment(UNREACHABLE_COUNTER, cfg.id)
        log.warning("mailbox %s (%s:%s) unreachable: %s", cfg.id, cfg.host, cfg.port, message)
    elif kind == ErrorKind.AUTH_FAILED:
        metrics.increment(AUTH_FAILED_COUNTER, cfg.id)
        log.warning("mailbox %s (%s:%s): %s", cfg.id, cfg.host, cfg.port, message)
    else:
        log.warning("mailbox %s: poll stopped (%s): %s", cfg.id, kind, message)


def _logout_quietly(client: IMAPClient) -> None:
    try:
        client.logout()
    except (IMAPClientError, OSError):
        try:
            client.shutdown()
        except (IMAPClientError, OSError):
            log.debug("connection already gone", exc_info=True)
