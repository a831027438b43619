"""Every SQL statement is named in schemas/sql/queries.sql, used by the code, and valid against
the migrated schema; none is written inline in the Python packages."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import asyncpg
import pytest

from core.queries import QUERIES

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["packages"]
USE = re.compile(r"""QUERIES\[\s*["']([^"']+)["']\s*\]""")
# What an inline statement looks like in a string literal.
INLINE = re.compile(r"SELECT |INSERT INTO|UPDATE kjs|DELETE FROM")
# Statements PREPARE does not take (it takes SELECT, INSERT, UPDATE, DELETE, MERGE, VALUES).
DDL = re.compile(r"^\s*(CREATE|ALTER|DROP)\b", re.IGNORECASE)


def sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_every_named_query_is_used_and_every_use_is_named() -> None:
    used = {name for path in sources() for name in USE.findall(path.read_text())}
    assert set(QUERIES) - used == set(), "named in queries.sql, used nowhere"
    assert used - set(QUERIES) == set(), "used by the code, named nowhere"


async def test_every_named_query_prepares_against_the_migrated_schema(database_url: str) -> None:
    """A typo in a table, a column or a type fails here, not at the first fire."""
    conn = await asyncpg.connect(database_url)
    failures = {}
    try:
        for name, sql in QUERIES.items():
            try:
                if DDL.match(sql):
                    async with conn.transaction():
                        await conn.execute(sql)
                        raise _RollBack
                await conn.execute(f"PREPARE kjs_{name} AS {sql}")
                await conn.execute(f"DEALLOCATE kjs_{name}")
            except _RollBack:
                pass
            except asyncpg.PostgresError as exc:
                failures[name] = f"{type(exc).__name__}: {exc}"
    finally:
        await conn.close()
    assert failures == {}


class _RollBack(Exception):
    pass


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes (prose, which may name a statement)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def inline_statements(path: Path, root: Path = ROOT) -> list[str]:
    """The string literals of a source file, docstrings aside, that look like SQL."""
    tree = ast.parse(path.read_text(), str(path))
    prose = _docstrings(tree)
    return [
        f"{path.relative_to(root)}:{node.lineno}: {node.value.strip()[:60]!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in prose
        and INLINE.search(node.value)
    ]


def test_no_statement_is_written_inline_in_the_python_packages() -> None:
    found = [hit for path in sources() for hit in inline_statements(path)]
    assert found == []


def test_the_inline_check_sees_an_inline_statement(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Prose may say SELECT epoch FROM kjs_shards."""\n'
        'SQL = "UPDATE kjs_jobs SET name = $1"\n'
        'def f(x):\n    return f"DELETE FROM {x}"\n'
    )
    hits = [h.split(": ", 1)[1] for h in inline_statements(sample, tmp_path)]
    assert hits == ["'UPDATE kjs_jobs SET name = $1'", "'DELETE FROM'"]
