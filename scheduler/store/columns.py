"""The parameters of a batched (``unnest``) statement: one array per column."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def columns(rows: Sequence[object], *names: str) -> list[list[Any]]:
    """For each of ``names``, that attribute of every row, in order: the arrays a statement
    such as ``... FROM unnest($1::uuid[], $2::text[]) AS t(id, name)`` takes."""
    return [[getattr(row, name) for row in rows] for name in names]
