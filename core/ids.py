"""How a process names itself: in shard ownership (schedulers) and in claims and results
(workers)."""

from __future__ import annotations

import os
import socket


def process_id(configured: str | None) -> str:
    """The configured name, or host and pid: unique among live processes, and it tells an
    operator where to look."""
    return configured or f"{socket.gethostname()}-{os.getpid()}"
