"""``kjs dlq list`` and ``kjs dlq replay``: read dead letters, and replay one as a new run.

The reading and the replay command live in ``topics.dead_letters``, shared with the web
console; this is the command line's side: arguments in, JSON lines or one message out.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TextIO

from core.settings import KafkaSettings
from topics.catalog import Catalog
from topics.dead_letters import NotReplayable, read_letters, replay


async def list_letters(kafka: KafkaSettings, cat: Catalog, limit: int, out: TextIO) -> int:
    """One JSON object per dead letter: the newest ``limit`` of each partition, oldest first."""
    for letter in await read_letters(kafka, cat, limit):
        out.write(json.dumps(asdict(letter), default=str) + "\n")
    return 0


async def replay_letter(
    kafka: KafkaSettings, cat: Catalog, partition: int, offset: int, out: TextIO
) -> int:
    try:
        job_id = await replay(kafka, cat, partition, offset)
    except NotReplayable as exc:
        print(f"kjs: {exc}", file=sys.stderr)
        return 2
    out.write(f"replaying job {job_id}\n")
    return 0
