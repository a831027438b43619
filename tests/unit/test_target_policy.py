"""The operator's target policy: every rule, with the field path the API reports."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, TypeAdapter

from core.settings import TargetSettings
from schemas.v1.target_policy import (
    allowed_executable,
    check_target,
    describe,
    resolve_executable,
)
from schemas.v1.targets import Target

TARGET: TypeAdapter[Any] = TypeAdapter(Target)
RESERVED = frozenset({"jobs.commands", "jobs.results", "jobs.dlq"})
# A file system as the resolver sees it: what each command would run.
FILES = {"sh": "/usr/bin/sh", "/bin/sh": "/usr/bin/sh", "/usr/bin/sh": "/usr/bin/sh"}


def fake_resolve(command: str) -> str | None:
    return FILES.get(command)


def check(target: dict[str, Any], **policy: Any) -> list[tuple[str, str]]:
    return check_target(
        TARGET.validate_python(target), TargetSettings(**policy), RESERVED, resolve=fake_resolve
    )


def fields(violations: list[tuple[str, str]]) -> list[str]:
    return [path for path, _ in violations]


SCRIPT = {"type": "script", "command": ["/bin/sh", "-c", "true"]}
SCRIPTS_ON = {"script_enabled": True, "script_allowlist": ["sh"]}


def test_a_script_is_refused_while_scripts_are_off() -> None:
    assert check(SCRIPT, script_allowlist=["sh"]) == [
        ("target.type", "script targets are not enabled")
    ]


def test_an_allowlisted_script_passes_under_any_name_of_the_same_file() -> None:
    for command in ("sh", "/bin/sh", "/usr/bin/sh"):
        assert check({**SCRIPT, "command": [command]}, **SCRIPTS_ON) == []


@pytest.mark.parametrize("command", ["bash", "/usr/bin/python3", "./sh", "sh\0x"])
def test_a_command_off_the_allowlist_is_refused(command: str) -> None:
    violations = check({**SCRIPT, "command": [command]}, **SCRIPTS_ON)
    assert fields(violations)[:1] == ["target.command"]
    assert "allowlist" in violations[0][1]


def test_an_empty_allowlist_allows_nothing() -> None:
    assert fields(check(SCRIPT, script_enabled=True)) == ["target.command"]


def test_script_cwd_and_env_are_checked() -> None:
    target = {**SCRIPT, "cwd": "relative/dir", "env": {"A=B": "x", "OK": "fine"}}
    assert fields(check(target, **SCRIPTS_ON)) == ["target.cwd", "target.env.A=B"]


def test_a_timeout_above_the_operator_maximum_is_refused() -> None:
    http = {"type": "http", "url": "https://example.com/x", "timeout_s": 120}
    assert check(http, max_timeout_s=120) == []
    violations = check(http, max_timeout_s=60)
    assert violations == [("target.timeout_s", "120 s is above the operator maximum of 60 s")]


def test_an_unknown_sql_connection_is_refused_and_a_named_one_passes() -> None:
    sql = {"type": "sql", "connection": "reporting", "statement": "SELECT 1"}
    connections = {"sql_connections": {"reporting": SecretStr("postgresql://x/y")}}
    assert check(sql, **connections) == []
    violations = check({**sql, "connection": "billing"}, **connections)
    assert fields(violations) == ["target.connection"]
    assert "'billing'" in violations[0][1] and "reporting" in violations[0][1]
    assert "none are configured" in check(sql)[0][1]


def test_kafka_targets_may_not_write_to_kjs_topics_unless_allowlisted() -> None:
    kafka = {"type": "kafka", "topic": "jobs.commands"}
    assert fields(check(kafka)) == ["target.topic"]
    assert check({**kafka, "topic": "orders"}) == []
    allow = {"kafka_topic_allowlist": ["jobs.commands"]}
    assert check(kafka, **allow) == []
    assert fields(check({**kafka, "topic": "orders"}, **allow)) == ["target.topic"]


def test_http_header_values_may_not_split_the_request() -> None:
    http = {"type": "http", "url": "https://example.com/x", "headers": {"X-A": "1\r\nX-B: 2"}}
    assert fields(check(http)) == ["target.headers.X-A"]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://127.0.0.1:8080/x", "loopback"),
        ("http://[::1]/x", "loopback"),
        ("http://10.1.2.3/x", "private"),
        ("http://[::ffff:192.168.0.1]/x", "private"),
    ],
)
def test_a_literal_address_the_guard_forbids_is_refused_at_submission(
    url: str, reason: str
) -> None:
    violations = check({"type": "http", "url": url})
    assert fields(violations) == ["target.url"]
    assert reason in violations[0][1] and "KJS_HTTP_ALLOWLIST" in violations[0][1]


def test_an_allowlisted_literal_address_and_a_host_name_pass_at_submission() -> None:
    assert (
        check({"type": "http", "url": "http://127.0.0.1:8080/x"}, http_allowlist=["127.0.0.1"])
        == []
    )
    assert check({"type": "http", "url": "http://10.1.2.3/x"}, http_allowlist=["10.1.0.0/16"]) == []
    # A name is resolved by the worker at run time, where the guard checks every address.
    assert check({"type": "http", "url": "http://localhost:8080/x"}) == []


def test_describe_joins_every_violation() -> None:
    assert describe([("a", "x"), ("b", "y")]) == "a: x; b: y"


# --- resolving executables on the real file system --------------------------------------


def executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_resolving_follows_directory_links_but_keeps_the_name(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    busybox = executable(real / "busybox")
    (real / "sh").symlink_to(busybox)
    (real / "rm").symlink_to(busybox)
    (tmp_path / "bin").symlink_to(real)
    resolved = resolve_executable(str(tmp_path / "bin" / "sh"))
    assert resolved == os.path.join(os.path.realpath(real), "sh")
    # A multi-call binary picks its applet from its name: allowing sh must not allow rm.
    policy = TargetSettings(script_enabled=True, script_allowlist=[str(real / "sh")])
    assert allowed_executable(str(tmp_path / "bin" / "sh"), policy) == resolved
    assert allowed_executable(str(real / "rm"), policy) is None


def test_resolving_refuses_what_cannot_run(tmp_path: Path) -> None:
    plain = tmp_path / "data.txt"
    plain.write_text("not a program")
    assert resolve_executable(str(plain)) is None
    assert resolve_executable(str(tmp_path / "missing")) is None
    assert resolve_executable("relative/tool") is None
    assert resolve_executable("") is None


def test_bare_names_are_looked_up_in_the_fixed_path_only(tmp_path: Path) -> None:
    tool = executable(tmp_path / "kjs-test-tool")
    assert resolve_executable(tool.name) is None
    assert resolve_executable(tool.name, search_path=str(tmp_path)) == str(tool)
