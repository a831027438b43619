"""Export the contract's JSON Schemas into ``schemas/json/`` for non-Python producers.

Run ``python -m schemas.export``; a test fails when the committed files are stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from schemas.v1.commands import Command
from schemas.v1.events import DueEvent, ResultBatch, ResultEvent
from schemas.v1.jobs import JobSpec
from schemas.v1.state_events import StateEvent

JSON_DIR = Path(__file__).parent / "json"

EXPORTS: dict[str, Any] = {
    "v1.command": Command,
    "v1.job": JobSpec,
    "v1.due-event": DueEvent,
    "v1.result-event": ResultEvent,
    "v1.result-batch": ResultBatch,
    "v1.state-event": StateEvent,
}


def render(name: str, model: Any) -> str:
    if isinstance(model, type) and issubclass(model, BaseModel):
        schema = model.model_json_schema()
    else:
        schema = TypeAdapter(model).json_schema()
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"kjs:{name}",
        **schema,
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def expected_files() -> dict[Path, str]:
    return {
        JSON_DIR / f"{name}.schema.json": render(name, model) for name, model in EXPORTS.items()
    }


def main() -> None:
    JSON_DIR.mkdir(exist_ok=True)
    for path, text in expected_files().items():
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
