"""core.secrets: sealing credential-like target values with Fernet keys, and rotating them."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from core.secrets import (
    PREFIX,
    REDACTED,
    SecretBox,
    SecretError,
    fill_placeholders,
    redact_target,
    scrub,
    secret_values,
)
from schemas.v1.targets import HttpTarget

USER = "tenant-a"
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
TARGET = {
    "type": "http",
    "url": "https://hooks.example/x",
    "headers": {"Authorization": "Bearer abc", "X-Api-Key": "k-1", "X-Trace": "t"},
    "body": {"n": 1},
}


def test_credential_like_values_are_sealed_and_open_again() -> None:
    box = SecretBox([OLD])
    sealed = box.seal_target(TARGET, USER)
    assert sealed["headers"]["X-Trace"] == "t"
    for name in ("Authorization", "X-Api-Key"):
        assert sealed["headers"][name].startswith(PREFIX)
        assert "abc" not in sealed["headers"][name] and "k-1" not in sealed["headers"][name]
    assert box.seal_target(sealed, USER) == sealed  # sealing twice changes nothing
    assert box.open_target(sealed, USER) == TARGET


def test_script_env_secrets_are_sealed_too() -> None:
    box = SecretBox([OLD])
    sealed = box.seal_target({"type": "script", "env": {"DB_PASSWORD": "pw", "MODE": "x"}}, USER)
    assert sealed["env"]["DB_PASSWORD"].startswith(PREFIX)
    assert sealed["env"]["MODE"] == "x"


def test_rotation_new_key_first_still_opens_old_values() -> None:
    sealed = SecretBox([OLD]).seal_target(TARGET, USER)
    rotated = SecretBox([NEW, OLD])
    assert rotated.open_target(sealed, USER) == TARGET
    resealed = rotated.seal_target(TARGET, USER)
    assert SecretBox([NEW]).open_target(resealed, USER) == TARGET
    with pytest.raises(SecretError):
        SecretBox([NEW]).open_target(sealed, USER)  # the old key was dropped too early


def test_without_keys_values_stay_as_given_and_sealed_ones_cannot_open() -> None:
    box = SecretBox()
    assert not box.enabled
    assert box.seal_target(TARGET, USER) == TARGET
    with pytest.raises(SecretError, match="KJS_SECRET_KEYS"):
        box.open_target(SecretBox([OLD]).seal_target(TARGET, USER), USER)


BODY_TARGET = {
    "type": "http",
    "url": "https://hooks.example/x",
    "headers": {"X-Signature": "sig={{secrets.sig}}"},
    "body": {"user": "ann", "auth": {"token": "tok-123", "scope": "all"}, "items": [{"n": 1}]},
    "secrets": {"sig": "s-456"},
}


def test_credential_keys_inside_a_json_body_and_the_secrets_map_are_sealed() -> None:
    box = SecretBox([OLD])
    sealed = box.seal_target(BODY_TARGET, USER)
    assert sealed["body"]["auth"]["token"].startswith(PREFIX)
    assert sealed["body"]["auth"]["scope"] == "all" and sealed["body"]["user"] == "ann"
    assert sealed["secrets"]["sig"].startswith(PREFIX)
    assert sealed["headers"] == BODY_TARGET["headers"]  # a placeholder is no secret
    assert "tok-123" not in str(sealed) and "s-456" not in str(sealed)
    assert box.open_target(sealed, USER) == BODY_TARGET


def test_kafka_values_and_string_bodies_with_placeholders() -> None:
    box = SecretBox([OLD])
    kafka = {"type": "kafka", "topic": "t", "value": {"password": "pw-1"}, "headers": {}}
    assert box.seal_target(kafka, USER)["value"]["password"].startswith(PREFIX)
    form = {**BODY_TARGET, "body": "token={{ secrets.sig }}&a=1"}
    filled = fill_placeholders(box.open_target(box.seal_target(form, USER), USER))
    assert filled["body"] == "token=s-456&a=1"
    assert filled["headers"] == {"X-Signature": "sig=s-456"}


def test_a_sealed_value_opens_only_for_its_own_tenant() -> None:
    box = SecretBox([OLD])
    stolen = box.seal_target(TARGET, USER)["headers"]["Authorization"]
    copied = {"type": "http", "url": "https://evil.example/", "headers": {"X-Echo": stolen}}
    with pytest.raises(SecretError, match="another tenant"):
        box.open_target(copied, "tenant-b")


def test_redaction_and_scrubbing_use_the_same_definition_of_secret() -> None:
    shown = redact_target(BODY_TARGET)
    assert shown["body"]["auth"] == {"token": REDACTED, "scope": "all"}
    assert shown["secrets"] == {"sig": REDACTED}
    values = secret_values(BODY_TARGET)
    assert values == {"tok-123", "s-456"}
    bearer = {"type": "http", "headers": {"Authorization": "Bearer abcdef0123456789"}}
    assert secret_values(bearer) == {"Bearer abcdef0123456789", "abcdef0123456789"}
    assert scrub("token=abcdef0123456789", secret_values(bearer)) == f"token={REDACTED}"
    assert scrub("echo: tok-123 and s-456", values) == f"echo: {REDACTED} and {REDACTED}"
    assert scrub(None, values) is None


@pytest.mark.parametrize(
    "part",
    [{"headers": {"X-Sig": "{{secrets.missing}}"}}, {"body": {"a": ["{{ secrets.missing }}"]}}],
)
def test_a_placeholder_naming_no_secret_is_refused_at_the_door(part: dict[str, object]) -> None:
    target = {"type": "http", "url": "https://hooks.example/", "secrets": {"sig": "v"}, **part}
    with pytest.raises(ValidationError, match=r"\{\{secrets.missing\}\}, which is not in secrets"):
        HttpTarget.model_validate(target)


def test_secret_names_are_identifiers() -> None:
    with pytest.raises(ValidationError, match="secrets"):
        HttpTarget.model_validate(
            {"type": "http", "url": "https://hooks.example/", "secrets": {"a b": "v"}}
        )
