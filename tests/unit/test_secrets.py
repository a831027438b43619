"""kjs.secrets: sealing credential-like target values with Fernet keys, and rotating them."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from kjs.secrets import PREFIX, SecretBox, SecretError

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
TARGET = {
    "type": "http",
    "url": "https://hooks.example/x",
    "headers": {"Authorization": "Bearer abc", "X-Api-Key": "k-1", "X-Trace": "t"},
    "body": {"n": 1},
}


def test_credential_like_values_are_sealed_and_open_again() -> None:
    box = SecretBox([OLD])
    sealed = box.seal_target(TARGET)
    assert sealed["headers"]["X-Trace"] == "t"
    for name in ("Authorization", "X-Api-Key"):
        assert sealed["headers"][name].startswith(PREFIX)
        assert "abc" not in sealed["headers"][name] and "k-1" not in sealed["headers"][name]
    assert box.seal_target(sealed) == sealed  # sealing twice changes nothing
    assert box.open_target(sealed) == TARGET


def test_script_env_secrets_are_sealed_too() -> None:
    box = SecretBox([OLD])
    sealed = box.seal_target({"type": "script", "env": {"DB_PASSWORD": "pw", "MODE": "x"}})
    assert sealed["env"]["DB_PASSWORD"].startswith(PREFIX)
    assert sealed["env"]["MODE"] == "x"


def test_rotation_new_key_first_still_opens_old_values() -> None:
    sealed = SecretBox([OLD]).seal_target(TARGET)
    rotated = SecretBox([NEW, OLD])
    assert rotated.open_target(sealed) == TARGET
    resealed = rotated.seal_target(TARGET)
    assert SecretBox([NEW]).open_target(resealed) == TARGET
    with pytest.raises(SecretError):
        SecretBox([NEW]).open_target(sealed)  # the old key was dropped too early


def test_without_keys_values_stay_as_given_and_sealed_ones_cannot_open() -> None:
    box = SecretBox()
    assert not box.enabled
    assert box.seal_target(TARGET) == TARGET
    with pytest.raises(SecretError, match="KJS_SECRET_KEYS"):
        box.open_target(SecretBox([OLD]).seal_target(TARGET))
