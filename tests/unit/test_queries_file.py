"""The named-SQL file's format: what core.queries accepts, and what fails the load."""

from __future__ import annotations

import pytest

from core.queries import QUERIES, QueryFileError, parse

GOOD = """-- A header comment.

-- name: one
-- What it does.
SELECT 1;

-- ----- a section heading -----

-- name: two_lines
-- What it does,
-- on two lines.
UPDATE kjs_jobs
   -- a comment inside the statement is kept
   SET name = $2 WHERE job_id = $1;
"""


def test_a_well_formed_file_gives_each_statement_by_name() -> None:
    assert parse(GOOD) == {
        "one": "SELECT 1",
        "two_lines": "UPDATE kjs_jobs\n   -- a comment inside the statement is kept\n"
        "   SET name = $2 WHERE job_id = $1",
    }


def test_a_fragment_is_filled_into_the_statements_below_it_and_is_not_one() -> None:
    text = """-- fragment: live
-- Jobs not cancelled.
SELECT * FROM kjs_jobs WHERE status <> 'cancelled';

-- name: by_id
-- One of them.
SELECT * FROM ({{live}}) j WHERE j.job_id = $1;

-- name: by_user
-- A tenant's.
SELECT * FROM ({{ live }}) j WHERE j.user_id = $1;
"""
    live = "SELECT * FROM kjs_jobs WHERE status <> 'cancelled'"
    assert parse(text) == {
        "by_id": f"SELECT * FROM ({live}) j WHERE j.job_id = $1",
        "by_user": f"SELECT * FROM ({live}) j WHERE j.user_id = $1",
    }


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("-- name: a\n-- x\nSELECT ({{b}});\n", "which no fragment above defines"),
        (
            "-- name: a\n-- x\nSELECT ({{b}});\n-- fragment: b\n-- y\nSELECT 1;\n",
            "which no fragment above defines",
        ),
        ("-- fragment: b\n-- y\nSELECT 1;\n", "included nowhere: b"),
        ("-- fragment: a\n-- x\nSELECT 1;\n-- name: a\n-- y\nSELECT ({{a}});\n", "twice"),
        ("-- name: a\n-- x\nSELECT 1;\n-- name: a\n-- y\nSELECT 2;\n", "named twice"),
        ("-- name: Bad-Name\n-- x\nSELECT 1;\n", "malformed name"),
        ("-- name: \n-- x\nSELECT 1;\n", "malformed name"),
        ("-- name: a\nSELECT 1;\n", "no comment says what it does"),
        ("-- name: a\n-- x\nSELECT 1\n", "must end with ';'"),
        ("-- name: a\n-- x\n", "must end with ';'"),
        ("-- name: a\n-- x\nSELECT 1;\nSELECT 2;\n", "more than one statement"),
        ("SELECT 1;\n-- name: a\n-- x\nSELECT 1;\n", "before the first name"),
    ],
)
def test_a_malformed_file_fails_the_load(text: str, complaint: str) -> None:
    with pytest.raises(QueryFileError, match=complaint):
        parse(text)


def test_the_mapping_is_read_only() -> None:
    with pytest.raises(TypeError):
        QUERIES["claim_shard"] = "DELETE FROM kjs_shards"  # type: ignore[index]
