"""A child process's stdout and stderr, kept up to a bound as they arrive.

A pipe protocol, not a stream reader: each chunk is taken in the callback the event loop makes
when it arrives, so the worker keeps at most ``limit`` bytes per stream however much a script
writes (the rest is only counted), and no reader task can fall behind and let a buffer grow.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from workers.targets.http import excerpt

STDOUT, STDERR = 1, 2


@dataclass
class BoundedBuffer:
    limit: int
    kept: bytearray = field(default_factory=bytearray)
    total: int = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += data[:room]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.kept)


class CapturingProtocol(asyncio.SubprocessProtocol):
    """Keeps bounded output, and tells apart the two ends a process has.

    ``exited`` is set when the process itself exits; ``finished`` once, in addition, every
    pipe is closed. They differ when the process left children behind that hold its pipes
    (``sleep 100 &``): asyncio's ``Process.wait`` would wait for those too.
    """

    def __init__(self, limit: int) -> None:
        self.output = {STDOUT: BoundedBuffer(limit), STDERR: BoundedBuffer(limit)}
        self.exited = asyncio.Event()
        self.finished = asyncio.Event()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        buffer = self.output.get(fd)
        if buffer is not None:
            buffer.add(data)

    def process_exited(self) -> None:
        self.exited.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.exited.set()
        self.finished.set()

    def excerpt(self, exit_code: int | None) -> str:
        """The stored output excerpt: JSON, so a stream's content cannot pass for the other's."""
        body: dict[str, object] = {"exit_code": exit_code}
        for name, fd in (("stdout", STDOUT), ("stderr", STDERR)):
            buffer = self.output[fd]
            body[name] = excerpt(bytes(buffer.kept))
            body[f"{name}_bytes"] = buffer.total
        return json.dumps(body, ensure_ascii=False)
