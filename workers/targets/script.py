"""The ``script`` target: an allowlisted executable, run without a shell, in its own group.

What a script can do is the operator's call (``TargetSettings``), never the job's:

- off unless ``script_enabled``; only executables on ``script_allowlist``, compared as
  ``schemas.v1.target_policy.resolve_executable`` names them, and the path that was checked
  is the one executed (a job's ``env`` PATH cannot make a name mean another file);
- the environment is a minimal one, the job's ``env`` over it, and the idempotency key
  (``KJS_EXECUTION_ID``, ``KJS_IDEMPOTENCY_KEY``) over both;
- the process gets its own session, hence its own process group, and the whole group is
  killed when it times out, when the worker cuts it off at shutdown, and when the script
  itself exits leaving children behind: a job's processes never outlive its attempt.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import subprocess

from core.settings import TargetSettings
from schemas.v1.target_policy import SCRIPT_PATH, Resolver, allowed_executable, resolve_executable
from schemas.v1.targets import ScriptTarget
from workers.targets.base import Attempt, Outcome
from workers.targets.capture import CapturingProtocol

log = logging.getLogger(__name__)

EXECUTION_ID_VAR = "KJS_EXECUTION_ID"
IDEMPOTENCY_VAR = "KJS_IDEMPOTENCY_KEY"
BASE_ENVIRONMENT = {"PATH": SCRIPT_PATH, "LANG": "C.UTF-8"}
# After the group is killed, how long its pipes may take to close: a process that left the
# group (setsid) could hold them for ever, and the attempt must still end.
PIPE_GRACE_S = 2.0
# A failure to start that may pass: the machine is out of processes or memory right now.
_TRANSIENT_SPAWN_ERRORS = frozenset({errno.EAGAIN, errno.ENOMEM})


def script_environment(env: dict[str, str], attempt: Attempt) -> dict[str, str]:
    key = str(attempt.execution_id)
    return {**BASE_ENVIRONMENT, **env, EXECUTION_ID_VAR: key, IDEMPOTENCY_VAR: key}


def kill_group(pgid: int) -> None:
    """SIGKILL every process of the group; a group already gone is fine."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class ScriptRunner:
    def __init__(
        self,
        policy: TargetSettings,
        excerpt_bytes: int,
        *,
        resolve: Resolver = resolve_executable,
    ) -> None:
        self._policy = policy
        self._excerpt_bytes = excerpt_bytes
        self._resolve = resolve

    async def __call__(self, target: ScriptTarget, attempt: Attempt) -> Outcome:
        if not self._policy.script_enabled:
            return Outcome.failure("script targets are not enabled", retryable=False)
        path = allowed_executable(target.command[0], self._policy, self._resolve)
        if path is None:
            return Outcome.failure(
                f"{target.command[0]!r} is not on the script allowlist", retryable=False
            )
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: CapturingProtocol(self._excerpt_bytes),
                path,
                *target.command[1:],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=target.cwd,
                env=script_environment(target.env, attempt),
                start_new_session=True,
            )
        except OSError as exc:
            # A missing cwd or a permission problem will be there next time too.
            return Outcome.failure(
                f"could not start {path}: {exc}", retryable=exc.errno in _TRANSIENT_SPAWN_ERRORS
            )
        return await self._supervise(target, transport, protocol)

    async def _supervise(
        self,
        target: ScriptTarget,
        transport: asyncio.SubprocessTransport,
        protocol: CapturingProtocol,
    ) -> Outcome:
        """Wait for the process, within its timeout, and always leave nothing running.

        1. Wait for the process to exit, up to ``timeout_s``.
        2. Whatever happened (exit, timeout, cancellation at shutdown), SIGKILL its group:
           the whole tree on a timeout, the children it left behind on an exit.
        3. Give the pipes a short grace to deliver what was written, then close them.
        """
        pgid = transport.get_pid()
        timed_out = False
        try:
            async with asyncio.timeout(target.timeout_s):
                await protocol.exited.wait()
        except TimeoutError:
            timed_out = True
        finally:
            kill_group(pgid)
            try:
                async with asyncio.timeout(PIPE_GRACE_S):
                    await protocol.finished.wait()
            except TimeoutError:
                log.warning("pipes of script pid %d still open after its group was killed", pgid)
            finally:
                transport.close()
        code = transport.get_returncode()
        output = protocol.excerpt(code)
        if timed_out:
            return Outcome.failure(
                f"timed out after {target.timeout_s:g} s; its process group was killed",
                retryable=True,
                output_excerpt=output,
            )
        assert code is not None  # exited was set, so the process was reaped
        if code == 0:
            return Outcome(succeeded=True, output_excerpt=output)
        return Outcome.failure(
            describe_exit(code),
            retryable=code not in target.non_retryable_exit_codes,
            output_excerpt=output,
        )
