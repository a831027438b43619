"""A mistake a user can make on the command line is one line on stderr and an exit status,
never a traceback (the CLI runs as a subprocess, as a user's shell runs it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from core.settings import UnknownSettingError, check_environment


def kjs(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KJS_")}
    return subprocess.run(
        [sys.executable, "-m", "kjs.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unknown_setting_names_the_closest_known_one() -> None:
    done = kjs("keys", "list", KJS_API_PORTT="1")
    assert done.returncode == 2
    assert done.stderr == "kjs: unknown setting KJS_API_PORTT (did you mean KJS_API_PORT?)\n"
    assert done.stdout == ""


def test_an_invalid_setting_names_the_variable() -> None:
    done = kjs("topics", "create", KJS_COMMAND_PARTITIONS="0")
    assert done.returncode == 2
    assert done.stderr.startswith("kjs: invalid setting KJS_COMMAND_PARTITIONS: ")
    assert done.stderr.count("\n") == 1


def test_the_client_settings_do_not_break_server_commands() -> None:
    # `kjs dev` prints `export KJS_API_KEY=...`; every other command must still run.
    check_environment({"KJS_API_KEY": "kjs_x", "KJS_API_URL": "http://127.0.0.1:8080"})
    done = kjs("infra", "status", KJS_API_KEY="kjs_x", KJS_API_URL="http://127.0.0.1:1")
    assert "unknown setting" not in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_service_is_one_line_and_exit_1() -> None:
    dsn = f"postgresql://kjs@127.0.0.1:{closed_port()}/kjs"
    done = kjs("keys", "list", KJS_DATABASE_URL=dsn)
    assert done.returncode == 1
    assert done.stderr.startswith("kjs: cannot connect: ")
    assert done.stderr.count("\n") == 1


def test_a_far_off_name_gets_no_guess() -> None:
    with pytest.raises(UnknownSettingError) as caught:
        check_environment({"KJS_ZZZZZZZZZZZZZZ": "1"})
    assert str(caught.value) == "unknown setting KJS_ZZZZZZZZZZZZZZ"


@pytest.mark.parametrize("command", [("scheduler",), ("worker", "--lane", "normal")])
def test_an_unknown_events_value_stops_the_process_at_start_up(command: tuple[str, ...]) -> None:
    # KJS_EVENTS is per installation: a typo must not silently leave events off (or on).
    done = kjs(*command, KJS_EVENTS="yes")
    assert done.returncode == 2
    assert done.stderr == "kjs: invalid setting KJS_EVENTS: Input should be 'on' or 'off'\n"
