"""Pagination cursors: opaque to clients, exact for the keyset, and refused when forged."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest

from api.cursor import FIRST_PAGE, Cursor, InvalidCursor, decode_cursor, encode_cursor


def test_round_trip_keeps_microseconds_and_the_id() -> None:
    cursor = Cursor(datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC), uuid4())
    assert decode_cursor(encode_cursor(cursor)) == cursor


def test_an_offset_time_decodes_to_the_same_instant() -> None:
    berlin = timezone(timedelta(hours=1))
    cursor = Cursor(datetime(2025, 3, 1, 13, 0, tzinfo=berlin), uuid4())
    decoded = decode_cursor(encode_cursor(cursor))
    assert decoded.created_at == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert decoded.created_at.utcoffset() == timedelta(0)


def test_encoding_is_url_safe_without_padding() -> None:
    text = encode_cursor(Cursor(datetime(2025, 1, 1, tzinfo=UTC), UUID(int=0xFFFF)))
    assert "=" not in text and "+" not in text and "/" not in text


def _b64(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not base64 at all!",
        "äöü",
        _b64([1, 2]),
        _b64({"t": "2025-01-01T00:00:00+00:00"}),
        _b64({"t": "yesterday", "id": str(uuid4())}),
        _b64({"t": "2025-01-01T00:00:00+00:00", "id": "not-a-uuid"}),
        _b64({"t": "2025-01-01T00:00:00", "id": str(uuid4())}),  # naive time
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_forged_cursor_is_refused(text: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(text)


def test_the_first_page_cursor_sorts_after_any_real_row() -> None:
    assert FIRST_PAGE.created_at > datetime(9000, 1, 1, tzinfo=UTC)
    assert FIRST_PAGE.row_id.int == (1 << 128) - 1
