"""Secrets in job targets, encrypted at rest with keys from the environment.

A target's credential-like values (HTTP headers and script environment variables whose name
says authorization, cookie, token, secret, password or api key) are sealed by the owning shard
before the job is stored: each becomes ``kjs-enc:v1:<Fernet token>``. They stay sealed in
Postgres, in due events on Kafka and in dead letters; the worker opens them just before the
request. The API shows them as ``[redacted]`` (``api.views.redact_target``).

Keys are ``KJS_SECRET_KEYS``, a JSON list of Fernet keys (``Fernet.generate_key()``): the first
seals, every one opens (``MultiFernet``), so a key is rotated by putting a new one first and
dropping the old one once no stored job uses it. Without keys, values are stored as given (and
still redacted in responses); the processes say so at start-up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

log = logging.getLogger(__name__)

PREFIX = "kjs-enc:v1:"
SENSITIVE_NAME = re.compile(r"authorization|cookie|token|secret|password|api[-_]?key", re.I)
_SEALED_PARTS = ("headers", "env")


class SecretError(Exception):
    """A sealed value that no configured key opens."""


class SecretBox:
    def __init__(self, keys: Sequence[SecretStr | str] = ()) -> None:
        raw = [k.get_secret_value() if isinstance(k, SecretStr) else k for k in keys]
        self._fernet = MultiFernet([Fernet(k.encode()) for k in raw]) if raw else None

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def seal(self, value: str) -> str:
        if self._fernet is None or value.startswith(PREFIX):
            return value
        return PREFIX + self._fernet.encrypt(value.encode()).decode()

    def open(self, value: str) -> str:
        if not value.startswith(PREFIX):
            return value
        if self._fernet is None:
            raise SecretError("a sealed secret, and no KJS_SECRET_KEYS to open it")
        try:
            return self._fernet.decrypt(value[len(PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise SecretError("a sealed secret that none of KJS_SECRET_KEYS opens") from exc

    def seal_target(self, target: Mapping[str, Any]) -> dict[str, Any]:
        """The target (as JSON) with its credential-like values sealed."""
        return _map_sensitive(target, self.seal)

    def open_target(self, target: Mapping[str, Any]) -> dict[str, Any]:
        """The target (as JSON) with every sealed value opened."""
        shown = dict(target)
        for part in _SEALED_PARTS:
            values = shown.get(part)
            if isinstance(values, Mapping):
                shown[part] = {
                    k: self.open(v) if isinstance(v, str) else v for k, v in values.items()
                }
        return shown


def _map_sensitive(target: Mapping[str, Any], change: Any) -> dict[str, Any]:
    shown = dict(target)
    for part in _SEALED_PARTS:
        values = shown.get(part)
        if isinstance(values, Mapping):
            shown[part] = {
                name: change(value)
                if isinstance(value, str) and SENSITIVE_NAME.search(name)
                else value
                for name, value in values.items()
            }
    return shown


def box_from(keys: Sequence[SecretStr], process: str) -> SecretBox:
    box = SecretBox(keys)
    if not box.enabled:
        log.warning(
            "%s: KJS_SECRET_KEYS is not set; secrets in job targets are stored unencrypted",
            process,
        )
    return box
