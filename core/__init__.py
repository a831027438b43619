"""The leaf core: settings, secrets, ids, the clock, backoff, quotas, logs, the Postgres
boundary, the named SQL statements and the ops listener. It imports nothing else of kjs
(import-linter enforces it)."""

__version__ = "0.1.0"
