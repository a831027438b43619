"""What a SQL attempt records: the count from the status, rows bounded by bytes."""

from __future__ import annotations

import json
from datetime import date

import pytest

from workers.targets.sql_results import ResultExcerpt, rows_affected


@pytest.mark.parametrize(
    ("status", "count"),
    [
        ("INSERT 0 5", 5),
        ("UPDATE 3", 3),
        ("DELETE 0", 0),
        ("SELECT 12", 12),
        ("MERGE 2", 2),
        ("CREATE TABLE", None),
        ("", None),
        (None, None),
    ],
)
def test_rows_affected_comes_from_the_command_status(status: str | None, count: int | None) -> None:
    assert rows_affected(status) == count


def test_rows_are_kept_while_they_fit_and_counted_after() -> None:
    excerpt = ResultExcerpt(limit=40)
    excerpt.add_rows([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}])
    excerpt.skip(10)
    body = json.loads(excerpt.render(None, excerpt.row_count))
    assert excerpt.full
    assert body == {
        "status": None,
        "rows_affected": 13,
        "rows": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "rows_truncated": True,
    }


def test_a_result_that_fits_is_not_marked_truncated() -> None:
    excerpt = ResultExcerpt(limit=1000)
    excerpt.add_rows([{"at": date(2026, 1, 2), "v": "é"}])
    body = json.loads(excerpt.render("SELECT 1", 1))
    assert body["rows"] == [{"at": "2026-01-02", "v": "é"}]
    assert body["rows_truncated"] is False and not excerpt.full


def test_a_zero_limit_keeps_no_rows() -> None:
    excerpt = ResultExcerpt(limit=0)
    excerpt.add_rows([{"id": 1}])
    assert json.loads(excerpt.render(None, 1))["rows"] == []
