"""Child processes of one command (``kjs dev``, ``kjs worker --processes N``): start them,
run until a signal or the first one's exit, then stop them all."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

STOP_GRACE_S = 20.0


async def start_children(
    argvs: Mapping[str, Sequence[str]], env: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, asyncio.subprocess.Process]:
    """Start each named command; ``env`` adds variables to a child's environment."""
    extra = env or {}
    return {
        name: await asyncio.create_subprocess_exec(
            *argv, env={**os.environ, **extra[name]} if name in extra else None
        )
        for name, argv in argvs.items()
    }


async def run_until_stopped(children: Mapping[str, asyncio.subprocess.Process]) -> int:
    """Wait for SIGINT/SIGTERM or the first child's exit, then stop every child.

    1. A signal: SIGTERM every child (each drains its own work), exit 0.
    2. A child exits first: that is a failure of the whole (the others cannot take its
       share): log it, stop the rest, exit 1, and let the service manager restart us.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    waits = {asyncio.ensure_future(p.wait()): name for name, p in children.items()}
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait([*waits, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    code = 0
    for fut in done:
        if fut in waits:
            log.error("%s exited with %s; stopping everything", waits[fut], fut.result())
            code = 1
    await stop_children(children)
    stopper.cancel()
    for fut in waits:
        fut.cancel()
    return code


async def stop_children(children: Mapping[str, asyncio.subprocess.Process]) -> None:
    for proc in children.values():
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    for name, proc in children.items():
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
        except TimeoutError:
            log.warning("%s did not stop in %.0fs; killing it", name, STOP_GRACE_S)
            proc.kill()
            await proc.wait()
