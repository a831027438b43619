"""Log setup for every kjs process: text for people, or one JSON object per line.

JSON lines carry ``job_id``, ``execution_id``, ``shard`` and ``lane`` when the code logging
them passes them in ``extra=`` (for example ``log.info("fired", extra={"job_id": ...})``).
Secrets never reach a log line: targets are not logged, and settings holding secrets are
``SecretStr``.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

from core.settings import ObservabilitySettings

CONTEXT_FIELDS = ("job_id", "execution_id", "shard", "lane", "user_id")
# Libraries whose INFO logs are at WARNING unless the level is debug.
QUIET = ("faust", "aiokafka", "mode", "kafka", "aiohttp.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = str(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line)


def logging_config(settings: ObservabilitySettings, level: str | None = None) -> dict[str, Any]:
    """A ``dictConfig`` (also handed to faust's worker, which would otherwise install its own)."""
    chosen = level or settings.log_level
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if settings.log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"kjs": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "kjs"}},
        "root": {"handlers": ["stderr"], "level": chosen.upper()},
        # The libraries' INFO lines (every rebalance, every connection) drown kjs's own: they
        # show only at debug.
        "loggers": {name: {"level": "DEBUG" if chosen == "debug" else "WARNING"} for name in QUIET},
    }


def configure(settings: ObservabilitySettings, level: str | None = None) -> None:
    logging.config.dictConfig(logging_config(settings, level))
