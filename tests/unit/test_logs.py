from __future__ import annotations

import json
import logging

from core.logs import JsonFormatter


def test_json_lines_carry_the_execution_context() -> None:
    record = logging.LogRecord(
        "workers.execution", logging.INFO, __file__, 1, "ran %s", ("x",), None
    )
    record.job_id = "j-1"
    record.execution_id = "e-1"
    record.shard = 3
    record.lane = "critical"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "ran x" and line["level"] == "info"
    assert (line["job_id"], line["execution_id"], line["shard"], line["lane"]) == (
        "j-1",
        "e-1",
        "3",
        "critical",
    )


def test_fields_that_do_not_apply_are_left_out() -> None:
    record = logging.LogRecord("kjs", logging.WARNING, __file__, 1, "plain", (), None)
    assert set(json.loads(JsonFormatter().format(record))) == {"ts", "level", "logger", "msg"}
