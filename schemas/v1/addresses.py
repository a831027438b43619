"""Where an HTTP target may connect: the SSRF guard.

A job names a URL; the worker would connect to whatever it resolves to. Without a guard, a
tenant could aim a job at the cloud metadata service (169.254.169.254), at the worker's own
loopback services (Kafka, Postgres, admin ports), or at the operator's private network.

An address is refused unless it is globally routable unicast (``ipaddress``'s ``is_global``,
which excludes loopback, link-local, RFC 1918 and ULA private ranges, shared address space
(100.64.0.0/10, where some clouds put their metadata service), reserved and unspecified
addresses); multicast is refused too. IPv4-mapped IPv6 addresses are judged as IPv4.

The operator's allowlist (``KJS_HTTP_ALLOWLIST``) lets chosen targets through: an entry is a
CIDR or single address (``10.1.2.0/24``, ``127.0.0.1``), a host name (``localhost``), or a
domain suffix starting with a dot (``.corp.example``). A host-name entry allows that name
whatever it resolves to; an address entry allows those addresses whatever name led there.

The check runs on the URL's host before the request (a literal address, and every address
the name resolves to), again inside the connection's own resolver (so a name cannot resolve
to a public address for the check and a private one for the connection), and again on every
redirect hop, which the worker follows itself.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRefused(Exception):
    """A target whose address is not allowed; the message says which and why."""


# Hosts and verdicts remembered per process: the same few targets are checked on every
# attempt, and ``ipaddress`` parsing and classification cost a worker as much per attempt as
# a tenth of its HTTP call. Both are pure functions of their inputs, so caching is exact.
_CACHED = 4096


@functools.lru_cache(maxsize=_CACHED)
def parse_address(host: str) -> IpAddress | None:
    """The address a URL host spells literally (``[::1]`` included), or None for a name."""
    candidate = host.strip("[]")
    try:
        return ipaddress.ip_address(candidate.split("%", 1)[0])
    except ValueError:
        return None


@functools.lru_cache(maxsize=_CACHED)
def why_forbidden(address: IpAddress) -> str | None:
    """Why ``address`` may not be a target by default, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local (cloud metadata) address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a reserved, non-global address"
    return None


@dataclass(frozen=True)
class AddressGuard:
    """The operator's allowlist, and the check every HTTP target's address goes through."""

    networks: tuple[IpNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = field(default=())

    @classmethod
    def from_allowlist(cls, entries: Iterable[str]) -> AddressGuard:
        networks: list[IpNetwork] = []
        hosts: set[str] = set()
        suffixes: list[str] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("."):
                suffixes.append(entry)
            else:
                hosts.add(entry.rstrip("."))
        return cls(tuple(networks), frozenset(hosts), tuple(suffixes))

    def host_allowed(self, host: str) -> bool:
        """An allowlisted host name (or domain suffix): allowed whatever it resolves to."""
        name = host.lower().rstrip(".")
        return name in self.hosts or any(name.endswith(s) for s in self.suffixes)

    def address_allowed(self, address: IpAddress) -> bool:
        if any(address in net for net in self.networks if net.version == address.version):
            return True
        return why_forbidden(address) is None

    def check_address(self, host: str, address: IpAddress) -> None:
        """Raise ``AddressRefused`` unless ``host`` may be reached at ``address``."""
        if self.host_allowed(host) or self.address_allowed(address):
            return
        reason = why_forbidden(address)
        shown = host if host.strip("[]") == str(address) else f"{host} ({address})"
        raise AddressRefused(
            f"refused: {shown} is {reason}; an operator can allow it with KJS_HTTP_ALLOWLIST"
        )

    def check_literal(self, host: str) -> None:
        """The checks that need no DNS: a literal address in the URL."""
        refusal = _literal_refusal(self, host)
        if refusal is not None:
            raise AddressRefused(refusal)


# A worker checks every job's URL host, and the policy every target's: few hosts, many jobs.
@functools.lru_cache(maxsize=_CACHED)
def _literal_refusal(guard: AddressGuard, host: str) -> str | None:
    address = parse_address(host)
    if address is None:
        return None
    try:
        guard.check_address(host, address)
    except AddressRefused as exc:
        return str(exc)
    return None
