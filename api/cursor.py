"""Opaque keyset cursors for paginated listings.

A cursor names the last row a page ended on, as (created_at, id). Keyset pagination stays
correct and cheap while rows are being inserted, which OFFSET is not. The encoding is base64url
JSON so that clients treat it as opaque and the server can change its contents later.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    row_id: UUID


# Sorts after every real row, so the first page uses the same query as every later one.
FIRST_PAGE = Cursor(datetime.max.replace(tzinfo=UTC), UUID(int=(1 << 128) - 1))


def encode_cursor(cursor: Cursor) -> str:
    payload = {"t": cursor.created_at.astimezone(UTC).isoformat(), "id": str(cursor.row_id)}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(text: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        payload = json.loads(raw)
        created_at = datetime.fromisoformat(payload["t"])
        row_id = UUID(payload["id"])
        if created_at.tzinfo is None:
            raise ValueError("a naive time")
        # The cursors this API writes are UTC. Another offset at the ends of the calendar
        # (0001-01-01T00:00+14:00) has no UTC time, and would fail in the query instead.
        created_at = created_at.astimezone(UTC)
    except (binascii.Error, ValueError, TypeError, KeyError, OverflowError) as exc:
        raise InvalidCursor("not a cursor returned by this API") from exc
    return Cursor(created_at, row_id)
