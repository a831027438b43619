"""A local HTTP endpoint standing in for a user's target, which records every call.

One server for every suite: the acceptance tests script answers per hook and read bodies and
headers, the fault tests count calls per ``Idempotency-Key``, and the worker tests hold
requests open (``gate``) to watch the worker's concurrency. Hooks are ``/hook/<name>`` (any
method); ``/hook`` is the hook named "".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from aiohttp import web


@dataclass(frozen=True)
class Hit:
    """One call, as it arrived."""

    name: str
    at: datetime
    headers: dict[str, str]
    body: bytes

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("Idempotency-Key")


@dataclass
class RecordingTarget:
    base_url: str = ""
    hits: list[Hit] = field(default_factory=list)
    # Scripted answers per hook, used in order; then 200.
    script: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    # Seconds each call of a hook takes (``slow``), or of every hook (``slow_s``).
    slow: dict[str, float] = field(default_factory=dict)
    slow_s: float = 0.0
    # Hooks that answer with what they were sent (headers and body), as a careless echo
    # endpoint would: what the worker keeps of the answer must not reveal a secret.
    echo: set[str] = field(default_factory=set)
    # Calls wait here until it is set (it is, unless a test clears it to hold calls open).
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    open_requests: int = 0
    most_open: int = 0

    def url(self, name: str = "") -> str:
        return f"{self.base_url}/hook/{name}" if name else f"{self.base_url}/hook"

    def answer(self, name: str, *replies: tuple[int, dict[str, str]]) -> None:
        self.script[name] = list(replies)

    def answer_slowly(self, name: str, seconds: float) -> None:
        self.slow[name] = seconds

    def calls(self, name: str) -> list[Hit]:
        return [h for h in self.hits if h.name == name]

    def hits_for(self, execution_id: UUID) -> list[Hit]:
        return [h for h in self.hits if h.idempotency_key == str(execution_id)]

    def keys(self) -> dict[str, Counter[str]]:
        """Per hook, how many calls each ``Idempotency-Key`` made."""
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for h in self.hits:
            out[h.name][h.idempotency_key or ""] += 1
        return out

    async def _hook(self, request: web.Request) -> web.Response:
        name = request.match_info.get("name", "")
        body = await request.read()
        self.hits.append(Hit(name, datetime.now(UTC), dict(request.headers), body))
        self.open_requests += 1
        self.most_open = max(self.most_open, self.open_requests)
        try:
            await self.gate.wait()
            delay = self.slow.get(name, self.slow_s)
            if delay:
                await asyncio.sleep(delay)  # the slow target being simulated
        finally:
            self.open_requests -= 1
        sent = {"headers": dict(request.headers), "body": body.decode(errors="replace")}
        answer = sent if name in self.echo else {}
        replies = self.script.get(name)
        if replies:
            status, headers = replies.pop(0)
            return web.json_response({"ok": False, **answer}, status=status, headers=headers)
        return web.json_response({"ok": True, **answer})


@contextlib.asynccontextmanager
async def serve_target(host: str = "127.0.0.1") -> AsyncIterator[RecordingTarget]:
    """A recording target listening on a free port of ``host`` until the block ends."""
    target = RecordingTarget()
    target.gate.set()
    app = web.Application()
    app.router.add_route("*", "/hook", target._hook)
    app.router.add_route("*", "/hook/{name}", target._hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, 0).start()
    target.base_url = f"http://{host}:{runner.addresses[0][1]}"
    try:
        yield target
    finally:
        target.gate.set()  # let held calls finish, so the runner closes promptly
        await runner.cleanup()
