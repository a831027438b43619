"""The SSRF guard: which addresses an HTTP target may reach, before DNS, after it, on redirects.

The servers here are real local ones. The "allowed target" runs on 127.0.0.1 and is let
through by the operator allowlist; the "internal service" runs on 127.0.0.2 (loopback, not
allowlisted) and records any request that reaches it, which must be none.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import pytest
from aiohttp import web
from yarl import URL

from schemas.v1.addresses import AddressGuard, AddressRefused, parse_address, why_forbidden
from schemas.v1.targets import HttpTarget
from workers.targets import Attempt
from workers.targets.http import HttpRunner
from workers.targets.http_client import HttpClient

ATTEMPT = Attempt(execution_id=uuid4(), job_id=uuid4(), user_id="u-1", attempt=1)
STRICT = AddressGuard()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.9.9.9",
        "::1",
        "169.254.169.254",
        "fe80::1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.100.100.200",
        "fd00:ec2::254",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "240.0.0.1",
    ],
)
def test_non_global_addresses_are_forbidden(address: str) -> None:
    assert why_forbidden(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"])
def test_global_addresses_are_allowed(address: str) -> None:
    assert why_forbidden(ipaddress.ip_address(address)) is None


def test_the_allowlist_takes_cidrs_addresses_names_and_suffixes() -> None:
    guard = AddressGuard.from_allowlist(["10.1.0.0/16", "127.0.0.1", "Localhost", ".corp.example"])
    assert guard.address_allowed(ipaddress.ip_address("10.1.2.3"))
    assert not guard.address_allowed(ipaddress.ip_address("10.2.0.1"))
    assert guard.address_allowed(ipaddress.ip_address("127.0.0.1"))
    assert not guard.address_allowed(ipaddress.ip_address("127.0.0.2"))
    assert guard.host_allowed("localhost") and guard.host_allowed("api.corp.example")
    assert not guard.host_allowed("corp.example.evil")
    assert parse_address("[::1]") == ipaddress.ip_address("::1")


@dataclass
class Servers:
    allowed: str
    internal: str
    internal_hits: list[str] = field(default_factory=list)
    seen_headers: list[dict[str, str]] = field(default_factory=list)


async def _serve(app: web.Application, host: str) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, 0).start()
    return runner, f"http://{host}:{runner.addresses[0][1]}"


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    state = Servers("", "")

    async def internal(request: web.Request) -> web.Response:
        state.internal_hits.append(request.path)
        return web.Response(text="secret")

    async def allowed(request: web.Request) -> web.Response:
        state.seen_headers.append(dict(request.headers))
        what = request.match_info["what"]
        if what == "to-internal":
            raise web.HTTPFound(f"{state.internal}/secret")
        if what == "to-metadata":
            raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")
        if what == "to-localhost":
            raise web.HTTPTemporaryRedirect(f"http://localhost:{request.url.port}/done")
        if what == "to-self":
            raise web.HTTPFound("/done")
        if what == "loop":
            raise web.HTTPFound("/loop")
        return web.Response(text=f"{request.method} {what}")

    internal_app = web.Application()
    internal_app.router.add_route("*", "/{what}", internal)
    allowed_app = web.Application()
    allowed_app.router.add_route("*", "/{what}", allowed)
    r1, state.internal = await _serve(internal_app, "127.0.0.2")
    r2, state.allowed = await _serve(allowed_app, "127.0.0.1")
    yield state
    await r1.cleanup()
    await r2.cleanup()


@pytest.fixture
async def runner() -> AsyncIterator[Callable[[AddressGuard], HttpRunner]]:
    """Runners whose clients (and their guards) are closed after the test."""
    clients: list[HttpClient] = []

    def make(guard: AddressGuard) -> HttpRunner:
        clients.append(HttpClient(guard))
        return HttpRunner(clients[-1], 100)

    yield make
    for client in clients:
        await client.close()


def target(url: str, **fields: Any) -> HttpTarget:
    return HttpTarget.model_validate({"type": "http", "url": url, "timeout_s": 5, **fields})


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://10.0.0.1/admin",
        "http://127.0.0.1:9/",
        "http://[::1]:9/",
        "http://[::ffff:169.254.169.254]/",
        "http://localhost:9/",  # a name that resolves to loopback
    ],
)
async def test_private_targets_are_refused_by_default(
    runner: Callable[[AddressGuard], HttpRunner], url: str
) -> None:
    outcome = await runner(STRICT)(target(url), ATTEMPT)
    assert not outcome.succeeded
    assert not outcome.retryable
    assert outcome.error is not None and outcome.error.startswith("refused:")
    assert outcome.http_status is None


async def test_a_hostname_resolving_to_loopback_is_refused_and_the_server_never_hit(
    servers: Servers, runner: Callable[[AddressGuard], HttpRunner]
) -> None:
    port = servers.internal.rsplit(":", 1)[1]
    outcome = await runner(STRICT)(target(f"http://localhost:{port}/x"), ATTEMPT)
    assert outcome.error is not None and "loopback" in outcome.error
    direct = await runner(STRICT)(target(f"{servers.internal}/x"), ATTEMPT)
    assert direct.error is not None and direct.error.startswith("refused:")
    assert servers.internal_hits == []


async def test_the_allowlist_lets_the_operators_target_through(
    servers: Servers, runner: Callable[[AddressGuard], HttpRunner]
) -> None:
    guard = AddressGuard.from_allowlist(["127.0.0.1/32"])
    outcome = await runner(guard)(target(f"{servers.allowed}/ok"), ATTEMPT)
    assert outcome.succeeded and outcome.output_excerpt == "POST ok"


@pytest.mark.parametrize("hook", ["to-internal", "to-metadata"])
async def test_a_redirect_from_an_allowed_target_to_a_private_address_is_refused(
    servers: Servers, runner: Callable[[AddressGuard], HttpRunner], hook: str
) -> None:
    guard = AddressGuard.from_allowlist(["127.0.0.1"])
    outcome = await runner(guard)(target(f"{servers.allowed}/{hook}"), ATTEMPT)
    assert not outcome.succeeded and not outcome.retryable
    assert outcome.error is not None and outcome.error.startswith("refused:")
    assert servers.internal_hits == []


async def test_redirect_hops_are_resolved_and_checked_like_the_first(
    servers: Servers, runner: Callable[[AddressGuard], HttpRunner]
) -> None:
    # A name on a hop is resolved and judged by its address: localhost is 127.0.0.1 here,
    # which this allowlist holds, so the hop is followed (a 307 keeps the method).
    guard = AddressGuard.from_allowlist(["127.0.0.1"])
    outcome = await runner(guard)(target(f"{servers.allowed}/to-localhost"), ATTEMPT)
    assert outcome.succeeded and outcome.output_excerpt == "POST done"
    # A target allowed by its name does not carry that allowance to the next hop.
    by_name = AddressGuard.from_allowlist(["localhost"])
    port = servers.allowed.rsplit(":", 1)[1]
    outcome = await runner(by_name)(target(f"http://localhost:{port}/to-internal"), ATTEMPT)
    assert outcome.error is not None and outcome.error.startswith("refused:")
    assert "loopback" in outcome.error
    assert servers.internal_hits == []


async def test_allowed_redirects_are_followed_re_checked_and_bounded(
    servers: Servers, runner: Callable[[AddressGuard], HttpRunner]
) -> None:
    guard = AddressGuard.from_allowlist(["127.0.0.1"])
    run = runner(guard)
    followed = await run(
        target(f"{servers.allowed}/to-self", headers={"Authorization": "Bearer s3cret"}), ATTEMPT
    )
    assert followed.succeeded and followed.output_excerpt == "GET done"  # 302 after POST: GET
    # Same origin: the job's own headers go along.
    assert servers.seen_headers[-1].get("Authorization") == "Bearer s3cret"
    looping = await run(target(f"{servers.allowed}/loop"), ATTEMPT)
    assert not looping.succeeded and looping.http_status == 302


async def test_the_clients_connections_refuse_what_dns_turns_into_loopback(
    servers: Servers,
) -> None:
    """Even a request that skipped the runner's own check cannot connect (DNS rebinding)."""
    port = servers.internal.rsplit(":", 1)[1]
    client = HttpClient(STRICT)
    with pytest.raises(AddressRefused, match="loopback"):
        await client.request("GET", URL(f"http://localhost:{port}/x"), {}, None, excerpt_bytes=10)
    await client.close()
    assert servers.internal_hits == []
