"""How a worker names itself in claims and results."""

from __future__ import annotations

import os
import socket

from kjs.settings import WorkerSettings


def worker_id(settings: WorkerSettings) -> str:
    # Host and pid by default: unique among live workers, and tells an operator where to look.
    return settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
