from __future__ import annotations

import pytest

from core.settings import KafkaSettings, UnknownSettingError, check_environment, known_env_names


def test_unknown_kjs_variable_is_refused() -> None:
    with pytest.raises(UnknownSettingError, match="KJS_KAFKA_BOOTSTRAPS"):
        check_environment({"KJS_KAFKA_BOOTSTRAPS": "x:1", "PATH": "/bin"})


def test_known_variables_pass() -> None:
    check_environment({name: "1" for name in known_env_names()} | {"HOME": "/root"})


def test_values_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KJS_COMMAND_PARTITIONS", "0")
    with pytest.raises(ValueError, match="command_partitions"):
        KafkaSettings()
