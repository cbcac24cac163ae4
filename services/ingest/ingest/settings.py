"""The ingest service's settings: one frozen object read from the environment (see the README's
table) through the mailroom_shared.config helpers, loaded once per process — by the kit's
SettingsProvider in the service, by `main()` in the SMTP listener, by `mailroom explain`.

`INGEST_MAILBOXES_FILE` names a YAML list of IMAP mailboxes (schemas.MailboxSchema):

    - id: team
      host: imap.example.com
      port: 993
      username: team@example.com
      password_env: TEAM_IMAP_PASSWORD   # the NAME of the variable holding the password
      channel_address: support@example.com
      # optional: ssl (true), starttls, mark_seen, delete_after_fetch (false),
      # team_mailbox (true: the team's own mailbox, so a member's forward fetched from it counts
      # as authenticated)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from ingest.blobstore import S3Location, normalise_prefix
from ingest.dkim_dns import parse_nameserver
from ingest.domain.authentication import AuthenticationPolicy
from ingest.domain.model import ParseLimits
from ingest.imap_poller import MailboxConfig
from ingest.schemas import MailboxSchema
from mailroom_shared import config
from mailroom_shared.addresses import try_normalise_email

MAILBOXES_FILE = "INGEST_MAILBOXES_FILE"
SPAM_SCORE_HEADERS = "INGEST_SPAM_SCORE_HEADERS"
BLOB_STORES = ("directory", "s3")


@dataclass(frozen=True)
class Settings:
    """The defaults are the environment's defaults, except where `load()` says otherwise."""

    max_message_bytes: int = 25 * 1024 * 1024  # INGEST_MAX_MESSAGE_BYTES
    internal_domains: frozenset[str] = frozenset()  # INGEST_INTERNAL_DOMAINS: forwarders trusted
    # INGEST_TRUSTED_AUTHSERV_IDS, INGEST_VERIFY_DKIM, INGEST_DNS_TIMEOUT_SECONDS: when a trusted
    # forwarder is authenticated (domain.authentication)
    authentication: AuthenticationPolicy = field(default_factory=AuthenticationPolicy)
    dns_resolver: tuple[str, ...] = ()  # INGEST_DNS_RESOLVER: nameservers for DKIM keys; system's if empty
    own_message_id_domain: str | None = None  # MAILROOM_MESSAGE_ID_DOMAIN (load: mailroom.local)
    spam_score_headers: dict[str, float] = field(default_factory=dict)  # header → threshold
    # INGEST_MAX_MIME_DEPTH/_PARTS, _PARSE_SECONDS, _HEADER_BYTES, _HEADER_PARAMS, _MESSAGE_PARAMS
    limits: ParseLimits = field(default_factory=ParseLimits)
    html_preview_bytes: int = 100_000
    blob_dir: Path = Path("var/blobs")  # INGEST_BLOB_DIR, else <MAILROOM_VAR_DIR>/blobs
    blob_s3: S3Location | None = None  # INGEST_BLOB_STORE=s3 and INGEST_S3_*: the bucket instead of blob_dir
    smtp_host: str = "127.0.0.1"  # INGEST_SMTP_HOST: where the SMTP listener listens
    smtp_port: int = 2525  # INGEST_SMTP_PORT
    smtp_hostname: str = "mailroom.local"  # INGEST_SMTP_HOSTNAME: the name it greets with
    smtp_max_connections_per_ip: int = 20  # INGEST_SMTP_MAX_CONNECTIONS_PER_IP (0: no limit): 421
    smtp_max_messages_per_minute_per_ip: int = 120  # INGEST_SMTP_MAX_MESSAGES_PER_MINUTE_PER_IP (0: none): 421
    smtp_max_recipients: int = 100  # INGEST_SMTP_MAX_RECIPIENTS: RCPT per message, 452 past it
    smtp_limits_exempt: tuple[str, ...] = ()  # INGEST_SMTP_LIMITS_EXEMPT (load: loopback): IPs/networks
    smtp_tls_cert: Path | None = None  # INGEST_SMTP_TLS_CERT / _KEY: STARTTLS offered when both are set
    smtp_tls_key: Path | None = None
    smtp_require_tls: bool = False  # INGEST_SMTP_REQUIRE_TLS: no MAIL before STARTTLS (530)
    intake_poll_seconds: float | None = None  # INGEST_INTAKE_POLL_SECONDS; None: 1 s on PostgreSQL, else 0.1 s
    intake_batch: int = 16  # INGEST_INTAKE_BATCH: stored messages processed per transaction
    imap_poll_seconds: float = 30.0  # INGEST_IMAP_POLL_SECONDS
    parse_workers: int = 2  # INGEST_PARSE_WORKERS: parser processes (analysis never runs on the event loop)
    parse_memory_mb: int = 1024  # INGEST_PARSE_MEMORY_MB: address-space limit of each parser process
    max_attempts: int = 3  # INGEST_MAX_ATTEMPTS: a message failing this often is quarantined
    mailboxes: tuple[tuple[MailboxConfig, str], ...] = ()  # (mailbox, channel address) pairs
    # mailboxes added through the API (mailbox_api.py, docs/mailboxes.md)
    mailbox_secret_key: str | None = field(default=None, repr=False)  # INGEST_MAILBOX_SECRET_KEY (Fernet)
    imap_allow_plaintext: bool = False  # INGEST_IMAP_ALLOW_PLAINTEXT: tls "none", http/private token URLs
    imap_lease_seconds: float = 120.0  # INGEST_IMAP_LEASE_SECONDS: one replica polls a mailbox this long

    @property
    def blob_location(self) -> Path | S3Location:
        """Where raw messages and attachments are (blobstore.open_blob_store)."""
        return self.blob_s3 or self.blob_dir


def load(*, mailboxes: bool = True) -> Settings:
    """The settings from the environment; config.ConfigError names the variable of a bad value.
    `mailboxes=False` leaves the mailboxes file unread: the SMTP listener and `mailroom explain`
    poll no mailbox (and the file and its passwords are only given to the ingest service)."""
    max_message_bytes = config.env_int("INGEST_MAX_MESSAGE_BYTES", 25 * 1024 * 1024, minimum=1)
    max_parse_seconds = config.env_float("INGEST_MAX_PARSE_SECONDS", 10.0, minimum=0.1)
    tls_cert, tls_key = config.env_path("INGEST_SMTP_TLS_CERT"), config.env_path("INGEST_SMTP_TLS_KEY")
    if (tls_cert is None) != (tls_key is None):
        raise config.ConfigError("INGEST_SMTP_TLS_CERT and INGEST_SMTP_TLS_KEY are set together (the certificate "
                                 "chain and its private key) or not at all")
    require_tls = config.env_bool("INGEST_SMTP_REQUIRE_TLS", False)
    if require_tls and tls_cert is None:
        raise config.ConfigError("INGEST_SMTP_REQUIRE_TLS needs INGEST_SMTP_TLS_CERT and INGEST_SMTP_TLS_KEY")
    return Settings(
        max_message_bytes=max_message_bytes,
        internal_domains=frozenset(d.lower() for d in config.env_list("INGEST_INTERNAL_DOMAINS")),
        authentication=_authentication(max_parse_seconds),
        dns_resolver=_dns_resolver(),
        own_message_id_domain=_first("MAILROOM_MESSAGE_ID_DOMAIN", "mailroom.local"),
        spam_score_headers=_spam_score_headers(),
        limits=ParseLimits(max_depth=config.env_int("INGEST_MAX_MIME_DEPTH", 20),
                           max_parts=config.env_int("INGEST_MAX_MIME_PARTS", 500),
                           max_seconds=max_parse_seconds,
                           max_header_bytes=config.env_int("INGEST_MAX_HEADER_BYTES", 1024 * 1024, minimum=1024),
                           max_header_params=config.env_int("INGEST_MAX_HEADER_PARAMS", 1000, minimum=10),
                           max_message_params=config.env_int("INGEST_MAX_MESSAGE_PARAMS", 5000, minimum=10)),
        blob_dir=config.env_path("INGEST_BLOB_DIR") or config.var_dir() / "blobs",
        blob_s3=_s3_location() if config.env_choice("INGEST_BLOB_STORE", BLOB_STORES, "directory") == "s3" else None,
        smtp_host=_first("INGEST_SMTP_HOST", "127.0.0.1"),
        smtp_port=config.env_int("INGEST_SMTP_PORT", 2525),
        smtp_hostname=_first("INGEST_SMTP_HOSTNAME", "mailroom.local"),
        smtp_max_connections_per_ip=config.env_int("INGEST_SMTP_MAX_CONNECTIONS_PER_IP", 20, minimum=0),
        smtp_max_messages_per_minute_per_ip=config.env_int("INGEST_SMTP_MAX_MESSAGES_PER_MINUTE_PER_IP", 120,
                                                           minimum=0),
        smtp_max_recipients=config.env_int("INGEST_SMTP_MAX_RECIPIENTS", 100, minimum=1),
        smtp_limits_exempt=_networks("INGEST_SMTP_LIMITS_EXEMPT", ("127.0.0.0/8", "::1")),
        smtp_tls_cert=tls_cert, smtp_tls_key=tls_key, smtp_require_tls=require_tls,
        intake_poll_seconds=config.env_float("INGEST_INTAKE_POLL_SECONDS", None),  # unset: by database
        intake_batch=max(1, config.env_int("INGEST_INTAKE_BATCH", 16)),
        imap_poll_seconds=config.env_float("INGEST_IMAP_POLL_SECONDS", 30.0),
        parse_workers=config.env_int("INGEST_PARSE_WORKERS", 2, minimum=1),
        parse_memory_mb=config.env_int("INGEST_PARSE_MEMORY_MB", 1024, minimum=0),
        max_attempts=config.env_int("INGEST_MAX_ATTEMPTS", 3, minimum=1),
        mailboxes=_mailboxes(max_message_bytes) if mailboxes else (),
        mailbox_secret_key=config.env_str("INGEST_MAILBOX_SECRET_KEY") or None,
        imap_allow_plaintext=config.env_bool("INGEST_IMAP_ALLOW_PLAINTEXT", False),
        imap_lease_seconds=config.env_float("INGEST_IMAP_LEASE_SECONDS", 120.0, minimum=1.0),
    )


def team_mailbox_channels(settings: Settings) -> frozenset[str]:
    """Channels whose IMAP mail comes only from the team's own mailboxes (a channel also fed by a
    mailbox with `team_mailbox: false` is not one: its IMAP mail cannot be told apart)."""
    channels: dict[str, bool] = {}
    for mailbox, channel in settings.mailboxes:
        key = try_normalise_email(channel) or channel.lower()
        channels[key] = channels.get(key, True) and mailbox.team_mailbox
    return frozenset(channel for channel, own in channels.items() if own)


def _s3_location() -> S3Location:
    """INGEST_S3_*: the bucket the S3 blob store uses (credentials: the AWS SDK's chain, never here)."""
    bucket = config.env_str("INGEST_S3_BUCKET")
    if not bucket:
        raise config.ConfigError("INGEST_BLOB_STORE=s3 needs INGEST_S3_BUCKET")
    encryption = config.env_choice("INGEST_S3_SSE", ("none", "aes256", "aws:kms"), "none")
    kms_key_id = config.env_str("INGEST_S3_SSE_KMS_KEY_ID")
    if kms_key_id and encryption != "aws:kms":
        raise config.ConfigError("INGEST_S3_SSE_KMS_KEY_ID goes with INGEST_S3_SSE=aws:kms")
    return S3Location(
        bucket=bucket, prefix=normalise_prefix(config.env_str("INGEST_S3_PREFIX")),
        endpoint_url=config.env_str("INGEST_S3_ENDPOINT_URL"), region=config.env_str("INGEST_S3_REGION"),
        addressing_style=config.env_choice("INGEST_S3_ADDRESSING_STYLE", ("auto", "path", "virtual"), "auto"),
        server_side_encryption={"none": None, "aes256": "AES256"}.get(encryption, encryption), kms_key_id=kms_key_id)


def _first(name: str, default: str) -> str:
    """The first item of a comma-separated variable (as these variables were always read)."""
    return (config.env_list(name) or (default,))[0]


def _authentication(max_parse_seconds: float) -> AuthenticationPolicy:
    verify_dkim = config.env_bool("INGEST_VERIFY_DKIM", False)
    dns_timeout = config.env_float("INGEST_DNS_TIMEOUT_SECONDS", 5.0, minimum=0.1)
    if verify_dkim and dns_timeout >= max_parse_seconds:
        # the look-ups run in the parser worker: past its deadline the message would be quarantined
        raise config.ConfigError(f"INGEST_DNS_TIMEOUT_SECONDS ({dns_timeout}) must be below INGEST_MAX_PARSE_SECONDS "
                                 f"({max_parse_seconds}): DKIM keys are looked up within the analysis deadline")
    return AuthenticationPolicy(
        trusted_authserv_ids=frozenset(i.lower() for i in config.env_list("INGEST_TRUSTED_AUTHSERV_IDS")),
        verify_dkim=verify_dkim, dns_timeout=dns_timeout)


def _dns_resolver() -> tuple[str, ...]:
    servers = config.env_list("INGEST_DNS_RESOLVER")
    for server in servers:
        try:
            parse_nameserver(server)
        except ValueError:
            raise config.ConfigError(f"INGEST_DNS_RESOLVER: {server!r} is not a nameserver address "
                                     "(ip, ip:port or [ipv6]:port)") from None
    return servers


def _networks(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    values = config.env_list(name, default)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise config.ConfigError(f"{name}: {value!r} is not an IP address or network") from None
    return values


def _spam_score_headers() -> dict[str, float]:
    """`INGEST_SPAM_SCORE_HEADERS="X-Spam-Score=5,X-Rspamd-Score=6"`: a score at or above the
    threshold marks the message as spam (5.0 when a header names none)."""
    result = {}
    for item in config.env_list(SPAM_SCORE_HEADERS, ("X-Spam-Score=5.0",)):
        name, _, threshold = item.partition("=")
        try:
            result[name.strip()] = float(threshold or 5.0)
        except ValueError:
            raise config.ConfigError(f"{SPAM_SCORE_HEADERS}: the threshold of {name.strip()} must be a number, "
                                     f"not {threshold!r}") from None
    return result


def _mailboxes(max_message_bytes: int) -> tuple[tuple[MailboxConfig, str], ...]:
    """The IMAP mailboxes of INGEST_MAILBOXES_FILE. Their size limit is intake's: a larger one would
    fetch a message intake refuses on every poll, and the mailbox would be stuck at it."""
    path = config.env_path(MAILBOXES_FILE)
    if path is None:
        return ()
    entries = config.load_yaml_file(MAILBOXES_FILE, path, MailboxSchema(many=True))
    result = []
    for i, entry in enumerate(entries):
        password = config.env_secret(entry["password_env"], f"{MAILBOXES_FILE}: {path}: [{i}].password_env")
        try:
            mailbox = MailboxConfig(
                id=entry["id"], host=entry["host"], port=entry["port"], username=entry["username"],
                password=password, ssl=entry["ssl"], starttls=entry["starttls"], mark_seen=entry["mark_seen"],
                delete_after_fetch=entry["delete_after_fetch"], team_mailbox=entry["team_mailbox"],
                max_message_bytes=max_message_bytes)
        except ValueError as exc:  # e.g. both ssl and starttls
            raise config.ConfigError(f"{MAILBOXES_FILE}: {path}: {exc}") from exc
        result.append((mailbox, entry["channel_address"]))
    return tuple(result)
