"""Configuration read from the environment, the same way by a service and by its alembic env.py.

Secrets (database passwords, AMQP credentials) come from the environment only and are never
logged: use `redact_url` before printing a URL.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url

DEFAULT_AMQP_URI = "amqp://guest:guest@localhost:5672/"

SERVICE_NAMES = ("ingest", "contacts", "conversations", "outbound", "notifier")
"""Every mailroom service, in pipeline order: the CLI, the tests and the deploy generation use
this one tuple."""


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; the message names the variable."""


def var_dir() -> Path:
    path = Path(os.environ.get("MAILROOM_VAR_DIR", "var")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def amqp_uri() -> str:
    return os.environ.get("AMQP_URI", DEFAULT_AMQP_URI)


def database_url(service: str) -> str:
    """`<SERVICE>_DATABASE_URL`, else the embedded default: an SQLite file under var/."""
    configured = os.environ.get(f"{service.upper()}_DATABASE_URL")
    if configured:
        return configured
    return f"sqlite:///{var_dir() / f'{service}.db'}"


def env_str(name: str, default: str | None = None) -> str | None:
    """The variable's value, or `default` when it is unset or empty."""
    value = os.environ.get(name)
    return default if value in (None, "") else value


def env_path(name: str, default: Path | None = None) -> Path | None:
    value = env_str(name)
    return Path(value) if value is not None else default


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    lowered = value.strip().lower()
    if lowered not in _TRUE | _FALSE:
        raise ConfigError(f"{name} must be true or false, not {value!r}")
    return lowered in _TRUE


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {number}")
    return number


def env_float(name: str, default: float, minimum: float | None = None) -> float:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {number}")
    return number


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    value = (env_str(name) or default).strip().lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def env_list(name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    value = os.environ.get(name)
    if value is None:
        return default
    return tuple(item.strip() for item in value.split(",") if item.strip())


def redact_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (e.g. amqp://): redact by hand
        if "@" in url and "://" in url:
            scheme, rest = url.split("://", 1)
            creds, host = rest.rsplit("@", 1)
            user = creds.split(":", 1)[0]
            return f"{scheme}://{user}:***@{host}"
        return url


def nameko_config(amqp_uri: str, web_address: str, level: str = "INFO") -> dict:
    """The nameko config of one service process (`nameko run --config`)."""
    return {
        "AMQP_URI": amqp_uri,
        "WEB_SERVER_ADDRESS": web_address,
        # concurrent workers = prefetch per queue; under load, the events that group commit can
        # put in one transaction
        "max_workers": env_int("NAMEKO_MAX_WORKERS", 10),
        "LOGGING": logging_config(level),
    }


LOG_FORMATS = ("plain", "json")


def logging_config(level: str = "INFO") -> dict:
    """`MAILROOM_LOG_FORMAT`: `plain` (default: `make run`, a terminal) or `json` (deployments: one
    JSON object per line with the service and the event handled). Both redact secrets
    (mailroom_shared.observability)."""
    log_format = env_choice("MAILROOM_LOG_FORMAT", LOG_FORMATS, "plain")
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"plain": {"()": "mailroom_shared.observability.PlainFormatter",
                                     "fmt": "%(asctime)s %(name)s %(levelname)s %(message)s"},
                           "json": {"()": "mailroom_shared.observability.JsonFormatter"}},
            "handlers": {"console": {"class": "logging.StreamHandler", "formatter": log_format}},
            "root": {"level": level, "handlers": ["console"]}}


# --- configuration files (inboxes, mailboxes, relays) --------------------------------------------

def load_yaml_file(variable: str, path: Path, schema) -> object:
    """The YAML file `path` (named by the environment variable `variable`), validated by the
    marshmallow `schema`; every problem is a ConfigError naming the variable and the file."""
    import yaml
    from marshmallow import ValidationError

    try:
        return schema.load(yaml.safe_load(path.read_text()) or schema_empty(schema))
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{variable}: {path} is not valid YAML: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"{variable}: {path}: {exc.messages}") from exc


def schema_empty(schema) -> object:
    """What an empty file means for `schema`: no entries."""
    return [] if getattr(schema, "many", False) else {}


def env_secret(name: str, where: str) -> str:
    """A secret a configuration file refers to by the name of its environment variable (files
    never hold secrets); `where` says which entry asked for it."""
    value = env_str(name)
    if value is None:
        raise ConfigError(f"{where} names {name}, which is not set")
    return value


def secrets_by_reference(file_kind: str):
    """A marshmallow `pre_load` hook for an entry of a configuration file: a `password` key is
    refused with a message that says where the password goes instead (`password_env`)."""
    from marshmallow import ValidationError, pre_load

    @pre_load
    def no_password(self, data, **kwargs):
        if isinstance(data, dict) and "password" in data:
            raise ValidationError(f"a {file_kind} file never holds a password: put it in an environment variable "
                                  "and name that variable in password_env", "password")
        return data

    return no_password
