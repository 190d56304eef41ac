"""Settings: the only place crowdloop reads the environment.

Every setting is a ``CROWDLOOP_``-prefixed environment variable (or a ``.env``
file entry); front-ends build one :class:`Settings` and pass it down.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """crowdloop's log records to stderr, with time and level, from ``level`` up (``CROWDLOOP_LOG_LEVEL``).

    Without a handler they went through Python's last resort: warnings and worse only, with no
    time, whatever the setting said. Calling it again only changes the level.
    """
    logger = logging.getLogger("crowdloop")
    if not any(getattr(handler, "crowdloop", False) for handler in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.crowdloop = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging in crowdloop's format at ``CROWDLOOP_LOG_LEVEL``, the same with one process
    or N (it was ``warning`` with one and ``info`` with N, each in uvicorn's own format); its access
    log goes nowhere (:class:`crowdloop.api.access_log.AccessLog` writes ours). Existing loggers
    (crowdloop's) are kept."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"format": LOG_FORMAT}, "access": {"format": LOG_FORMAT}},
        "handlers": {
            "default": {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": level, "propagate": False},
        },
    }


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` as networks; a bad entry is a ``ValueError`` that names it."""
    networks = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not a network such as 10.0.0.0/8 or 127.0.0.1") from None
    return tuple(networks)


class Settings(BaseSettings):
    """crowdloop's configuration, read from ``CROWDLOOP_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="CROWDLOOP_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///crowdloop.db",
        description="SQLAlchemy URL: a SQLite file by default, PostgreSQL in production.",
    )
    data_dir: Path = Field(default=Path("crowdloop-data"), description="Where artifacts and exports are kept.")
    admin_token: SecretStr | None = Field(
        default=None, description="Token of the first admin, created at start when set."
    )
    default_method: str = Field(default="default", description="Aggregation method used when none is named.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # 8, not more: every request's work holds the GIL, and with 32 threads 100 concurrent workers
    # made one process spend 3x the CPU per answer cycle (26.8 cycles/s against 83.1 with 8 and
    # 95.3 with 4, PostgreSQL, benchmarks/platform_load.py); 8 leaves room for long trainings.
    threads: int = Field(default=8, ge=1, le=256, description="Worker threads (and database connections) per process.")
    max_upload_mb: float = Field(default=100.0, gt=0, description="Largest accepted item upload.")
    max_memory_mb: float | None = Field(
        default=None,
        gt=0,
        description="Largest estimated peak memory of a truth-inference fit (crowdloop aggregate, and the "
        "server's aggregations); "
        "unset: 80% of the memory available when it starts; inf: no limit.",
    )
    max_trainings: int = Field(
        default=2, ge=1, le=64, description="Models one process trains at once; a training past that is refused (503)."
    )
    auto_migrate: bool = Field(default=True, description="Upgrade the database schema at start.")
    api_docs: bool = Field(
        default=False,
        description="Serve Swagger UI at /docs and ReDoc at /redoc. Off unless set: their pages load scripts "
        "from a CDN onto the origin where the web UI keeps its token (/openapi.json is always served).",
    )
    webhook_dispatcher: bool = Field(default=True, description="Deliver webhooks from this process.")
    webhook_allowed_networks: str = Field(
        default="",
        description="Comma-separated networks (CIDR) webhooks may call besides public addresses, e.g. 10.0.0.0/8.",
    )
    api_url: str = Field(default="http://127.0.0.1:8000", description="Server the CLI and SDK talk to.")
    api_token: SecretStr | None = Field(default=None, description="Token the CLI uses against api_url.")
    metrics_token: SecretStr | None = Field(
        default=None, description="A token that may scrape /metrics and nothing else (admins' tokens may too)."
    )
    metrics_dir: Path | None = Field(
        default=None, description="Where `serve --workers N` processes share request metrics (made when unset)."
    )
    metrics_max_projects: int = Field(
        default=100, ge=1, le=10_000, description="Projects with their own `project` label on /metrics (rest: other)."
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: object) -> object:
        """``debug`` as ``DEBUG``: Python's logging names its levels in capitals, operators not always."""
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("default_method")
    @classmethod
    def _method_exists(cls, value: str) -> str:
        """An unknown method was taken at start and broke every project created without one
        (``UnknownMethodError`` for requesters, who never chose it). ``default`` is checked for
        nothing: the check imports the aggregators, which most commands never need."""
        value = value.strip()
        if value != "default":
            from crowdloop.errors import UnknownMethodError
            from crowdloop.quality import get_aggregator

            try:
                get_aggregator(value)
            except UnknownMethodError as error:
                raise ValueError(error.detail) from None
        return value

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        parse_networks(value)  # a bad entry fails at start, naming itself
        return value

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_upload_text(self) -> str:
        """:attr:`max_upload_mb` as a message says it: ``100 MB``, ``0.05 MB`` (floored, it said ``0 MB``)."""
        return f"{self.max_upload_mb:g} MB"

    @property
    def webhook_networks(self) -> tuple[Network, ...]:
        """:attr:`webhook_allowed_networks`, parsed."""
        return parse_networks(self.webhook_allowed_networks)
