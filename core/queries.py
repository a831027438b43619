"""Every SQL statement kjs runs, by name, from ``schemas/sql/queries.sql``.

The file holds one statement a name, the way procrastinate keeps its queries::

    -- name: claim_shard
    -- Bump the shard's epoch; the new owner fences out the old one.
    INSERT INTO kjs_shards ... RETURNING epoch;

A name line, at least one comment line saying what the statement does, then the statement,
ended by ``;`` at the end of a line (comments and blank lines may follow, up to the next
name). The file is read once, when this module is imported, into ``QUERIES``, an immutable
mapping (``QUERIES["claim_shard"]``); a duplicate name, a malformed name, a statement without
its description or its ``;``, or two statements under one name fail the import, so a broken
file stops a process at start-up and not at its first fire.

A part that several statements share is written once, as a ``-- fragment: <name>`` block of
the same shape, and included by the statements below it as ``{{name}}`` (replaced when the
file is loaded, so every statement in ``QUERIES`` is complete SQL). A fragment is not a
statement of its own: it is not in ``QUERIES``, and one that no statement includes, or an
include of no fragment above, fails the import too.

The file is read as package data of ``schemas`` (``importlib.resources``), the way the
migrations are: no Python of ``schemas`` is imported, so ``core`` stays the leaf.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

NAME_LINE = re.compile(r"^--\s*(?P<kind>name|fragment):\s*(?P<name>.*?)\s*$")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
INCLUDE = re.compile(r"\{\{\s*(?P<name>[^}]*?)\s*\}\}")


class QueryFileError(ValueError):
    """``queries.sql`` is malformed; the message names the line."""


def parse(text: str, source: str = "queries.sql") -> dict[str, str]:
    """The statements of a query file by name (without their final ``;``, fragments filled in).

    Between a statement's ``;`` and the next name line only comments and blank lines may
    stand (section headings); anything else is a second statement under one name.
    """
    queries: dict[str, str] = {}
    fragments: dict[str, str] = {}
    included: set[str] = set()
    kind: str | None = None
    name: str | None = None
    described = ended = False
    body: list[str] = []
    start = 0

    def fill(match: re.Match[str]) -> str:
        if match["name"] not in fragments:
            raise QueryFileError(
                f"{source}:{start}: {name}: includes {match[0]}, which no fragment above defines"
            )
        included.add(match["name"])
        return fragments[match["name"]]

    def close() -> None:
        if name is None:
            return
        if not described:
            raise QueryFileError(f"{source}:{start}: {name}: no comment says what it does")
        if not ended:
            raise QueryFileError(f"{source}:{start}: {name}: the statement must end with ';'")
        sql = INCLUDE.sub(fill, "\n".join(body).strip()[:-1].rstrip())
        (queries if kind == "name" else fragments)[name] = sql

    for number, line in enumerate(text.splitlines(), start=1):
        comment = line.lstrip().startswith("--")
        match = NAME_LINE.match(line)
        if match is not None:
            close()
            kind, name = match["kind"], match["name"]
            described, ended, body, start = False, False, [], number
            if not NAME.match(name):
                raise QueryFileError(f"{source}:{number}: malformed {kind} {name!r}")
            if name in queries or name in fragments:
                raise QueryFileError(f"{source}:{number}: {name!r} is named twice")
        elif comment or not line.strip():
            if name is not None and not body and comment:
                described = described or bool(line.lstrip()[2:].strip())
            elif body and not ended:
                body.append(line)
        elif name is None:
            raise QueryFileError(f"{source}:{number}: a statement before the first name")
        elif ended:
            raise QueryFileError(f"{source}:{number}: {name}: more than one statement")
        else:
            body.append(line)
            ended = line.rstrip().endswith(";")
    close()
    unused = sorted(set(fragments) - included)
    if unused:
        raise QueryFileError(f"{source}: fragment(s) included nowhere: {', '.join(unused)}")
    return queries


def _load() -> Mapping[str, str]:
    text = (resources.files("schemas") / "sql" / "queries.sql").read_text()
    return MappingProxyType(parse(text))


QUERIES: Mapping[str, str] = _load()
