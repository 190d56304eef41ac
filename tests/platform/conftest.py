"""The real-server fixtures (:mod:`servers`): a `crowdloop serve` process per test module, on SQLite
and on PostgreSQL."""

from servers import database_url, server

__all__ = ["database_url", "server"]
