"""docs/architecture.md cannot drift: its tables of folders, topics, tables, migrations and
commands are checked against the tree, the topic catalog, the schema, the migrations folder,
the command line and the import-linter layers."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from core.settings import KafkaSettings
from kjs.cli import HANDLERS
from schemas.v1.statuses import LANES
from topics.catalog import catalog

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text()
CODE = re.compile(r"`([^`]+)`")


def table_after(heading: str) -> list[list[str]]:
    """The rows (cells) of the first Markdown table after ``heading``, header excluded."""
    section = DOC[DOC.index(heading) :]
    rows: list[list[str]] = []
    for line in section.splitlines()[1:]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not set(cells[0]) <= set("-: "):
                rows.append(cells)
        elif rows:
            break
    return rows[1:]  # the header row


def first_codes(heading: str) -> list[str]:
    return [CODE.findall(row[0])[0] for row in table_after(heading)]


def test_the_parts_table_names_every_top_level_folder_in_layer_order() -> None:
    listed = [name.rstrip("/") for name in first_codes("## The parts")]
    folders = {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in {"docs", "kjs.egg-info"}
    }
    assert set(listed) == folders
    # The packages appear in the order of the layers import-linter enforces.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [layers] = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    flat = [name.strip() for layer in layers for name in layer.split("|")]
    assert [name for name in listed if name in flat] == flat


def test_the_topics_table_is_the_catalog() -> None:
    listed = set(first_codes("## Topics and who writes them"))
    names = {spec.name for spec in catalog(KafkaSettings()).all()}
    expanded = {n for name in listed for n in ([name.replace("<lane>", lane) for lane in LANES])}
    assert expanded == names


def test_the_tables_table_is_the_schema() -> None:
    listed = set(first_codes("## Tables and who writes them"))
    schema = (ROOT / "schemas" / "sql" / "schema.sql").read_text()
    created = set(re.findall(r"^CREATE TABLE (\w+)", schema, re.MULTILINE))
    assert listed == created | {"kjs_schema_migrations"}


def test_the_migrations_table_is_the_migrations_folder() -> None:
    listed = [CODE.findall(row[0])[0] for row in _migrations()]
    files = sorted(p.stem for p in (ROOT / "schemas" / "sql" / "migrations").glob("*.sql"))
    assert listed == files


def _migrations() -> list[list[str]]:
    start = DOC.index("| migration ")
    rows = []
    for line in DOC[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_the_processes_table_names_every_command() -> None:
    listed = {code.split()[1] for code in first_codes("## Processes")}
    assert listed == set(HANDLERS)
