"""What an operator lets a job's target do, checked wherever a job enters or runs.

One function, ``check_target``, holds every rule, so the three places that enforce them agree:

- the API answers 422 with the field paths it returns;
- the scheduler dead-letters a create command from Kafka that breaks them;
- the worker refuses to run such a target (failed, not retryable): the last line of defence,
  for jobs accepted before the operator tightened the policy, or by a path that did not check.

The rules depend only on the target, the operator's ``TargetSettings`` and kjs's own topic names,
never on the job body's say: a job cannot widen the policy. The only outside input is the file
system, through ``resolve``, which names the executable a script would run; tests pass their own.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable, Collection, Iterable

from core.settings import TargetSettings
from schemas.v1.addresses import AddressGuard, AddressRefused
from schemas.v1.targets import HttpTarget, KafkaTarget, ScriptTarget, SqlTarget, Target

# The PATH a script's bare command name is looked up in, and the PATH its process starts with.
# Fixed, not the worker's own: the worker's environment must not decide what a name means.
SCRIPT_PATH = "/usr/local/bin:/usr/bin:/bin"

Violation = tuple[str, str]
# A command as written in a job or in the allowlist -> the path that would run, or None.
Resolver = Callable[[str], str | None]


def resolve_executable(command: str, search_path: str = SCRIPT_PATH) -> str | None:
    """The canonical path of the executable ``command`` names, or None if it names none.

    1. A bare name is looked up in ``search_path``; a path must be absolute (a relative one
       would mean different files in different working directories).
    2. The directory part is resolved (symlinks, ``..``), so ``/bin/sh`` and ``/usr/bin/sh``
       on a merged-/usr system are the same entry.
    3. The last component is kept as written, not resolved: multi-call binaries (busybox)
       choose what to be from their name, so resolving ``sh`` to ``busybox`` would let an
       allowlisted ``sh`` stand for every applet (``rm``, ``wget`` ...).
    4. It must be an executable regular file now.
    """
    if "\0" in command or not command:
        return None
    if "/" not in command:
        found = shutil.which(command, path=search_path)
        if found is None:
            return None
        command = found
    elif not os.path.isabs(command):
        return None
    directory, name = os.path.split(os.path.normpath(command))
    path = os.path.join(os.path.realpath(directory), name)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return None
    return path


def allowed_executable(
    command: str, policy: TargetSettings, resolve: Resolver = resolve_executable
) -> str | None:
    """The path to execute for ``command`` if the allowlist holds it, else None."""
    path = resolve(command)
    if path is None:
        return None
    allowed = {resolve(entry) for entry in policy.script_allowlist}
    return path if path in allowed else None


def check_target(
    target: Target,
    policy: TargetSettings,
    reserved_topics: Collection[str],
    *,
    resolve: Resolver = resolve_executable,
) -> list[Violation]:
    """Every way ``target`` breaks the operator's policy, as ``(field path, reason)`` pairs.

    Field paths start at the job (``target.command``), as the API reports them. An empty list
    means the target may run. ``reserved_topics`` are kjs's own topic names
    (``topics.catalog.catalog(kafka).all()``), which a kafka target may not write to unless
    the operator's allowlist names them.
    """
    found = list(_timeout_violations(target, policy))
    if isinstance(target, ScriptTarget):
        found.extend(_script_violations(target, policy, resolve))
    elif isinstance(target, SqlTarget):
        found.extend(_sql_violations(target, policy))
    elif isinstance(target, KafkaTarget):
        found.extend(_kafka_violations(target, policy, reserved_topics))
    elif isinstance(target, HttpTarget):
        found.extend(_http_violations(target, policy))
    return found


def describe(violations: Iterable[Violation]) -> str:
    """One line for a log, a dead letter's reason or a result's error."""
    return "; ".join(f"{path}: {message}" for path, message in violations)


def _timeout_violations(target: Target, policy: TargetSettings) -> Iterable[Violation]:
    timeout_s = getattr(target, "timeout_s", None)
    if timeout_s is not None and timeout_s > policy.max_timeout_s:
        yield (
            "target.timeout_s",
            f"{timeout_s:g} s is above the operator maximum of {policy.max_timeout_s:g} s",
        )


def _script_violations(
    target: ScriptTarget, policy: TargetSettings, resolve: Resolver
) -> Iterable[Violation]:
    if not policy.script_enabled:
        yield ("target.type", "script targets are not enabled")
        return
    if allowed_executable(target.command[0], policy, resolve) is None:
        yield ("target.command", f"{target.command[0]!r} is not on the script allowlist")
    if any("\0" in arg for arg in target.command):
        yield ("target.command", "arguments must not contain NUL characters")
    if target.cwd is not None and not os.path.isabs(target.cwd):
        yield ("target.cwd", "must be an absolute path")
    for name, value in target.env.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            yield (
                f"target.env.{name}",
                "names must be non-empty without '=' or NUL, values without NUL",
            )


def _sql_violations(target: SqlTarget, policy: TargetSettings) -> Iterable[Violation]:
    if target.connection not in policy.sql_connections:
        known = ", ".join(sorted(policy.sql_connections)) or "none are configured"
        yield ("target.connection", f"no SQL connection named {target.connection!r} ({known})")


def _kafka_violations(
    target: KafkaTarget, policy: TargetSettings, reserved_topics: Collection[str]
) -> Iterable[Violation]:
    if policy.kafka_topic_allowlist:
        if target.topic not in policy.kafka_topic_allowlist:
            yield ("target.topic", f"{target.topic!r} is not on the Kafka topic allowlist")
    elif target.topic in reserved_topics:
        yield ("target.topic", f"{target.topic!r} is one of kjs's own topics")


@functools.lru_cache(maxsize=8)
def _guard(allowlist: tuple[str, ...]) -> AddressGuard:
    # Parsed once per allowlist, not per target: the worker checks every attempt, and
    # parsing the networks was a tenth of a worker's CPU in a 10,000-job burst.
    return AddressGuard.from_allowlist(allowlist)


def _http_violations(target: HttpTarget, policy: TargetSettings) -> Iterable[Violation]:
    # A literal address the SSRF guard forbids (loopback, link-local such as the cloud metadata
    # service, private) is refused now; a host name is checked by the worker after DNS.
    host = target.url.host
    if host is not None:
        try:
            _guard(tuple(policy.http_allowlist)).check_literal(host)
        except AddressRefused as exc:
            yield ("target.url", str(exc))
    # Header values travel in the request line's framing: a CR or LF would split it.
    for name, value in target.headers.items():
        if any(c in name + value for c in "\r\n\0"):
            yield (f"target.headers.{name}", "must not contain CR, LF or NUL")
