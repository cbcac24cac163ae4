"""How every AMQP connection of mailroom is opened: nameko's consumers and dispatchers (its
`AMQP_SSL` config, set by mailroom-service), the outbox relay, the topology declaration, the
retry republisher, the dead-letter tools and the CLI's broker check all take their TLS options
from here, so one setting secures them all.

TLS is on when `AMQP_URI` is `amqps://…` (RabbitMQ's TLS listener, 5671 unless the URL says
otherwise). The broker's certificate is always verified, its name checked against the URL's host,
TLS 1.2 at least: against the system's CAs, or `MAILROOM_AMQP_CA_FILE` (a PEM bundle, e.g. the
`ca.crt` of cert-manager's Secret). `MAILROOM_AMQP_CERT_FILE` and `MAILROOM_AMQP_KEY_FILE` add a
client certificate (for RabbitMQ's `fail_if_no_peer_cert`, or its EXTERNAL mechanism). These
variables without an amqps:// URL are a mistake, refused rather than silently sent in the clear.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import urlsplit

from kombu import Connection

from mailroom_shared import config

CA_FILE = "MAILROOM_AMQP_CA_FILE"
CERT_FILE = "MAILROOM_AMQP_CERT_FILE"
KEY_FILE = "MAILROOM_AMQP_KEY_FILE"
TLS_SCHEMES = ("amqps", "pyamqps")


def amqp_ssl(amqp_uri: str) -> dict | None:
    """The `ssl` options of a kombu Connection (and nameko's AMQP_SSL) for `amqp_uri`: None for a
    plain amqp:// URL. config.ConfigError names the variable of a bad setting."""
    ca_file, cert_file, key_file = (config.env_path(CA_FILE), config.env_path(CERT_FILE),
                                    config.env_path(KEY_FILE))
    parts = urlsplit(amqp_uri.split(";", 1)[0])  # failover lists: the hosts share one certificate setup
    if parts.scheme not in TLS_SCHEMES:
        given = [name for name, value in ((CA_FILE, ca_file), (CERT_FILE, cert_file), (KEY_FILE, key_file)) if value]
        if given:
            raise config.ConfigError(f"{', '.join(given)} set but AMQP_URI is not amqps://: the connection would "
                                     "not use TLS (use amqps://host:5671/vhost)")
        return None
    if (cert_file is None) != (key_file is None):
        raise config.ConfigError(f"{CERT_FILE} and {KEY_FILE} are set together (the client certificate and its "
                                 "private key) or not at all")
    for name, path in ((CA_FILE, ca_file), (CERT_FILE, cert_file), (KEY_FILE, key_file)):
        if path is not None and not Path(path).is_file():
            raise config.ConfigError(f"{name}: no file at {path}")
    if not parts.hostname:
        raise config.ConfigError("AMQP_URI: an amqps:// URL names the broker's host (its certificate is checked "
                                 "against it)")
    options: dict = {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": parts.hostname,
                     "tls_minimum_version": ssl.TLSVersion.TLSv1_2}
    if ca_file is not None:
        options["ca_certs"] = str(ca_file)
    if cert_file is not None:
        options["certfile"], options["keyfile"] = str(cert_file), str(key_file)
    return options


def amqp_connection(amqp_uri: str, ssl_options: dict | None = None, **kwargs) -> Connection:
    """A kombu Connection to `amqp_uri` with its TLS options (`ssl_options`, else amqp_ssl's)."""
    options = ssl_options if ssl_options is not None else amqp_ssl(amqp_uri)
    return Connection(amqp_uri, ssl=options or False, **kwargs)
