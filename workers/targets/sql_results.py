"""What a SQL attempt records: rows affected and a bounded JSON excerpt of returned rows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any


def rows_affected(status: str | None) -> int | None:
    """The count in a command status (``INSERT 0 5``, ``UPDATE 3``, ``SELECT 2``); None for a
    command that reports none (``CREATE TABLE``)."""
    if not status:
        return None
    parts = status.split()
    if len(parts) >= 2 and parts[-1].isdigit():
        return int(parts[-1])
    return None


def _encode(value: Any) -> str:
    # Timestamps, decimals, UUIDs and the like as their text form: an excerpt is for reading.
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


class ResultExcerpt:
    """Rows as JSON objects, kept while their encoded size fits ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._encoded: list[str] = []
        self._size = 0
        self.row_count = 0
        self.full = limit <= 0

    def add_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.row_count += 1
            if self.full:
                continue
            text = _encode(dict(row))
            size = len(text.encode()) + 1
            if self._size + size > self._limit:
                self.full = True
                continue
            self._encoded.append(text)
            self._size += size

    def skip(self, count: int) -> None:
        """Rows counted on the server without being fetched."""
        self.row_count += count

    def render(self, status: str | None, affected: int | None) -> str:
        head = _encode({"status": status, "rows_affected": affected})[:-1]
        kept = len(self._encoded)
        truncated = _encode(kept < self.row_count)
        return f'{head},"rows":[{",".join(self._encoded)}],"rows_truncated":{truncated}}}'
