"""Secrets in job targets, encrypted at rest with keys from the environment.

What is secret in a target (one definition, used to seal, to redact and to scrub):

- credential-like entries of ``headers`` (HTTP, Kafka) and ``env`` (script): those whose name
  says authorization, cookie, token, secret, password or api key;
- credential-like keys anywhere inside a JSON ``body`` (HTTP) or ``value`` (Kafka), e.g.
  ``{"auth": {"token": "..."}}``;
- every value of an HTTP target's ``secrets`` map, which headers and the body reference as
  ``{{secrets.NAME}}`` (for a secret in a string body, a form post, or under any name).

The owning shard seals them before the job is stored: each becomes ``kjs-enc:v2:<Fernet
token>``. They stay sealed in Postgres, in due events on Kafka and in dead letters; the worker
opens them and fills the placeholders just before the request, and scrubs their values from the
execution's output excerpt and error. The API shows them as ``[redacted]``.

A sealed value is bound to its tenant: the plaintext is ``<user_id> NUL <value>``, and opening
checks the user id. A tenant who copied another tenant's sealed value (say, from a due event)
into its own job gets a refused attempt, not the other tenant's secret sent to its server.

Keys are ``KJS_SECRET_KEYS``, a JSON list of Fernet keys (``Fernet.generate_key()``): the first
seals, every one opens (``MultiFernet``), so a key is rotated by putting a new one first and
dropping the old one once no stored job uses it. Without keys, values are stored as given (and
still redacted in responses and scrubbed from excerpts); the processes say so at start-up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

log = logging.getLogger(__name__)

PREFIX = "kjs-enc:v2:"
REDACTED = "[redacted]"
SENSITIVE_NAME = re.compile(r"authorization|cookie|token|secret|password|api[-_]?key", re.I)
SECRETS = "secrets"
_NAMED_PARTS = ("headers", "env")  # flat maps: credential-like names are secret
_JSON_PARTS = ("body", "value")  # JSON values: credential-like keys at any depth are secret
_FILLED_PARTS = ("headers", "body")  # where {{secrets.NAME}} is replaced by the worker
# Values shorter than this are not scrubbed from output: "1" would blank every digit.
_SCRUB_MIN = 4
# A word of a secret value ("Bearer <token>") scrubbed on its own: long enough not to be a
# common word such as the scheme.
_SCRUB_WORD = 12

Change = Callable[[str], str]

# How a target names a secret: {{ secrets.NAME }} (the contract's syntax; schemas.v1.targets).
PLACEHOLDER = re.compile(r"\{\{\s*secrets\.([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")


def json_strings(value: Any) -> Iterator[str]:
    """Every string value inside a JSON value (not the keys)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from json_strings(v)


class SecretError(Exception):
    """A sealed value that cannot be opened: no key opens it, or it belongs to another tenant."""


class SecretBox:
    def __init__(self, keys: Sequence[SecretStr | str] = ()) -> None:
        raw = [k.get_secret_value() if isinstance(k, SecretStr) else k for k in keys]
        self._fernet = MultiFernet([Fernet(k.encode()) for k in raw]) if raw else None

    @property
    def enabled(self) -> bool:
        return self._fernet is not None

    def seal(self, value: str, user_id: str) -> str:
        if self._fernet is None or value.startswith(PREFIX):
            return value
        return PREFIX + self._fernet.encrypt(f"{user_id}\0{value}".encode()).decode()

    def open(self, value: str, user_id: str) -> str:
        if not value.startswith(PREFIX):
            return value
        if self._fernet is None:
            raise SecretError("a sealed secret, and no KJS_SECRET_KEYS to open it")
        try:
            plain = self._fernet.decrypt(value[len(PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise SecretError("a sealed secret that none of KJS_SECRET_KEYS opens") from exc
        owner, _, secret = plain.partition("\0")
        if owner != user_id:
            raise SecretError("a sealed secret that belongs to another tenant")
        return secret

    def seal_target(self, target: Mapping[str, Any], user_id: str) -> dict[str, Any]:
        """The target (as JSON) with its secret values sealed for ``user_id``."""
        return map_secrets(target, lambda value: self.seal(value, user_id))

    def open_target(self, target: Mapping[str, Any], user_id: str) -> dict[str, Any]:
        """The target (as JSON) with every sealed value opened, wherever it is."""
        opened = _every_string(target, lambda value: self.open(value, user_id))
        assert isinstance(opened, dict)
        return opened


def is_sealed(target: Any) -> bool:
    """Whether any string of the target is a sealed value (else there is nothing to open).

    A plain walk, not ``json_strings``: a worker asks it of every due event, and the nested
    generators cost several times more."""
    if isinstance(target, str):
        return target.startswith(PREFIX)
    if isinstance(target, Mapping):
        target = target.values()
    elif not isinstance(target, list):
        return False
    for value in target:
        if is_sealed(value):
            return True
    return False


def map_secrets(target: Mapping[str, Any], change: Change) -> dict[str, Any]:
    """The target with ``change`` applied to each of its secret values (see the module doc)."""
    shown = dict(target)
    for part in _NAMED_PARTS:
        values = shown.get(part)
        if isinstance(values, Mapping):
            shown[part] = {
                name: change(v) if isinstance(v, str) and SENSITIVE_NAME.search(name) else v
                for name, v in values.items()
            }
    for part in _JSON_PARTS:
        if part in shown:
            shown[part] = _credential_keys(shown[part], change)
    values = shown.get(SECRETS)
    if isinstance(values, Mapping):
        shown[SECRETS] = {
            name: change(v) if isinstance(v, str) else v for name, v in values.items()
        }
    return shown


def redact_target(target: Any) -> Any:
    """The target as the API shows it: every secret value ``[redacted]``."""
    return map_secrets(target, lambda _: REDACTED) if isinstance(target, Mapping) else target


def secret_values(target: Mapping[str, Any]) -> set[str]:
    """The (opened) secret values of a target: what must not leave the worker in output."""
    found: set[str] = set()

    def keep(value: str) -> str:
        found.add(value)
        return value

    map_secrets(target, keep)
    # "Bearer <token>": an echo may repeat the token alone, so its words count on their own.
    words = {word for value in found for word in value.split() if len(word) >= _SCRUB_WORD}
    return {v for v in found | words if len(v) >= _SCRUB_MIN}


def fill_placeholders(target: Mapping[str, Any]) -> dict[str, Any]:
    """Replace ``{{secrets.NAME}}`` in header values and body strings by the (opened) secret."""
    secrets = target.get(SECRETS) or {}
    if not secrets:
        return dict(target)

    def fill(text: str) -> str:
        return PLACEHOLDER.sub(lambda m: str(secrets.get(m.group(1), m.group(0))), text)

    filled = dict(target)
    for part in _FILLED_PARTS:
        if part in filled:
            filled[part] = _every_string(filled[part], fill)
    return filled


def scrub(text: str | None, values: Collection[str]) -> str | None:
    """``text`` with every secret value replaced by ``[redacted]``, longest first."""
    if not text or not values:
        return text
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def _credential_keys(value: Any, change: Change) -> Any:
    if isinstance(value, Mapping):
        return {
            k: change(v)
            if isinstance(v, str) and SENSITIVE_NAME.search(str(k))
            else _credential_keys(v, change)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_credential_keys(v, change) for v in value]
    return value


def _every_string(value: Any, change: Change) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, Mapping):
        return {k: _every_string(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_every_string(v, change) for v in value]
    return value


def box_from(keys: Sequence[SecretStr], process: str) -> SecretBox:
    box = SecretBox(keys)
    if not box.enabled:
        log.warning(
            "%s: KJS_SECRET_KEYS is not set; secrets in job targets are stored unencrypted",
            process,
        )
    return box
