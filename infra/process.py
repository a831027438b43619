"""Process helpers shared by the broker and the database.

Both services must outlive the Python process that starts them (``kjs infra up`` returns, a
test session ends), so they are started detached and known afterwards only by a recorded PID.
Everything here is about doing that safely: a PID may be stale or reused, a port may be held
by a stranger, and a failed start is only explicable with the service's own log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


class InfraError(RuntimeError):
    """A service could not be started or stopped; the message says why and shows its log."""


@dataclass(frozen=True)
class ServiceState:
    """What ``up`` needs to decide and ``status`` reports: our PID, and whether the port answers.

    Only both together mean "running": a live PID with a silent port is a service still
    starting or hung, and an answering port without our PID belongs to someone else.
    """

    pid: int | None
    alive: bool
    answering: bool
    port: int

    @property
    def running(self) -> bool:
        return self.alive and self.answering

    def __str__(self) -> str:
        where = f"{LOOPBACK}:{self.port}"
        if self.running:
            return f"running pid {self.pid} on {where}"
        if self.alive:
            return f"not answering: pid {self.pid} is alive but {where} does not answer"
        if self.answering:
            return f"stopped, but {where} is held by a process kjs did not start"
        return "stopped"


def find_tool(name: str, env_home: str) -> str:
    """``$JAVA_HOME/bin/java`` style first, as the JVM tools' own scripts do, then PATH."""
    home = os.environ.get(env_home)
    if home and (Path(home) / "bin" / name).exists():
        return str(Path(home) / "bin" / name)
    found = shutil.which(name)
    if found is None:
        raise InfraError(f"`{name}` not found on PATH (and ${env_home} is not set)")
    return found


async def run(
    argv: Sequence[str],
    *,
    limit_s: float,
    what: str,
    new_session: bool = False,
) -> str:
    """Run a short-lived command to completion and return its output.

    Output is captured rather than inherited so that a failure can be reported in one
    ``InfraError`` carrying the tool's own explanation.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=new_session,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise InfraError(
            f"{what} did not finish within {limit_s:.0f} s: {' '.join(argv)}"
        ) from None
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise InfraError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{text}")
    return text


async def spawn_detached(argv: Sequence[str], log: Path) -> int:
    """Start a long-lived service that is not our child, and return its PID.

    A plain child would become a zombie (or an unclosed asyncio transport) when this process
    finishes first, so a throw-away ``sh`` starts the service in the background, prints its
    PID and exits. The service then belongs to init, in its own session, so a Ctrl-C aimed at
    ``kjs dev`` in a terminal does not reach it.
    """
    script = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'
    out = await run(
        ["sh", "-c", script, "sh", str(log), *argv], limit_s=30, what="spawn", new_session=True
    )
    return int(out.strip().splitlines()[-1])


def pid_alive(pid: int, marker: str) -> bool:
    """Tell whether ``pid`` is a live process whose command line contains ``marker``.

    The marker guards against PID reuse: after a reboot or a crash, a recorded PID may now
    belong to an unrelated process, which must never be reported as ours or signalled.
    """
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        if Path("/proc/self").exists():
            return False
        try:  # no procfs: fall back to the signal probe, without the marker check
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and marker in cmdline


def processes_in(cwd: Path) -> list[int]:
    """Live processes whose working directory is ``cwd``.

    Postgres' processes all run inside their data directory, so this finds the orphaned
    backends of a crashed postmaster, which would otherwise go unnoticed.
    """
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(entry / "cwd")) != cwd:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


async def terminate(pid: int, marker: str, grace_s: float) -> None:
    """Stop a process politely, then firmly.

    1. Send SIGTERM, which both the broker and Postgres treat as an orderly shutdown.
    2. Poll until it is gone or ``grace_s`` has passed.
    3. Send SIGKILL if it is still alive, and wait (bounded) for it to disappear.
    """
    if not pid_alive(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if await wait_gone(pid, marker, grace_s):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not await wait_gone(pid, marker, 10.0):
        raise InfraError(f"process {pid} survived SIGKILL")


async def wait_gone(pid: int, marker: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid, marker):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def port_open(port: int, host: str = LOOPBACK, timeout_s: float = 1.0) -> bool:
    """A TCP connect, the cheapest sign that something listens, before costlier probes."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def read_pid(path: Path) -> int | None:
    """The first line of a PID file (Postgres' ``postmaster.pid`` has more lines after it)."""
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def write_pid(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def log_tail(path: Path, lines: int = 40, since: int = 0) -> str:
    """The end of a service log, to put the service's own explanation into an error.

    ``since`` is the log's size when the start began: older lines belong to earlier runs and
    would only mislead.
    """
    try:
        with path.open("rb") as f:
            end = f.seek(0, os.SEEK_END)
            since = since if since <= end else 0  # the log was rolled since
            f.seek(max(since, end - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    if not text.strip():
        return f"(nothing new in {path})"
    body = "\n".join(text.splitlines()[-lines:])
    return f"--- last lines of {path} ---\n{body}"
