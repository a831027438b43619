from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from pydantic import ValidationError

from schemas.export import expected_files
from schemas.v1.commands import COMMAND, CancelCommand, CreateCommand
from schemas.v1.ids import execution_id_for, job_id_for_key, job_id_for_record
from topics.partitioner import partition_for

JOB = {
    "user_id": "acme",
    "name": "n",
    "schedule": {"type": "interval", "every_seconds": 30},
    "target": {"type": "http", "url": "http://example.com/hook"},
}


def test_exported_json_schemas_are_current() -> None:
    stale = [
        p.name for p, text in expected_files().items() if not p.exists() or p.read_text() != text
    ]
    assert not stale, f"run `python -m schemas.export`: stale {stale}"


def test_create_and_cancel_parse() -> None:
    create = COMMAND.validate_json(json.dumps({"type": "create", "job": JOB}))
    assert isinstance(create, CreateCommand) and create.user_id == "acme"
    cancel = COMMAND.validate_python({"type": "cancel", "user_id": "acme", "job_id": str(uuid4())})
    assert isinstance(cancel, CancelCommand)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"target": {"type": "ftp", "url": "x"}}, "target"),
        ({"surprise": 1}, "surprise"),
        ({"priority": "urgent"}, "priority"),
        ({"schedule": {"type": "cron", "expression": "nope"}}, "expression"),
    ],
)
def test_bad_jobs_name_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        COMMAND.validate_python({"type": "create", "job": {**JOB, **change}})
    assert any(field in ".".join(map(str, e["loc"])) for e in err.value.errors())


def test_ids_are_deterministic() -> None:
    assert job_id_for_key("a", "k") == job_id_for_key("a", "k") != job_id_for_key("b", "k")
    assert job_id_for_record("t", 0, 5) != job_id_for_record("t", 0, 6)
    job = uuid4()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert execution_id_for(job, at, 1) == execution_id_for(job, at, 1)
    assert execution_id_for(job, at, 1) != execution_id_for(job, at, 2)


# Vectors from Apache Kafka's UtilsTest.testMurmur2 (Java's signed 32-bit results).
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "java"), JAVA_MURMUR2.items())
def test_partitioner_matches_java_murmur2(key: bytes, java: int) -> None:
    # Java's DefaultPartitioner: toPositive(murmur2(key)) % numPartitions.
    for partitions in (1, 3, 6, 64):
        assert partition_for(key, partitions) == (java & 0x7FFFFFFF) % partitions
