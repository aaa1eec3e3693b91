"""Which URLs and addresses the downloader may reach: http(s) only, public addresses only.

Addresses are checked after DNS resolution; `download.py` connects to the very address that
was checked (its network backend calls `resolve_permitted`), so a DNS answer that changes
between check and connect (DNS rebinding) cannot steer a connection into a private network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})
# Longer URLs are not fetched (status url_too_long): 8 KiB is the request-line limit of common
# servers (nginx's large_client_header_buffers, Apache's LimitRequestLine).
MAX_URL_LENGTH = 8192
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_HOST = re.compile(r"[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]+")


class BadURLError(ValueError):
    """The URL is malformed or uses a scheme other than http/https."""

    status = "bad_url"


class URLTooLongError(BadURLError):
    """The URL is longer than MAX_URL_LENGTH characters."""

    status = "url_too_long"


class BlockedAddressError(Exception):
    """Every address the host resolves to is refused by the network policy."""


def normalize_url(url: str) -> str:
    """The URL as it goes on the wire: IDNA host, percent-encoded path and query.

    Raises `BadURLError` for malformed URLs and schemes other than http/https,
    `URLTooLongError` (one) for a URL over MAX_URL_LENGTH characters.
    """
    text = url.strip()
    if len(text) > MAX_URL_LENGTH:
        raise URLTooLongError(f"URL of {len(text)} characters, over {MAX_URL_LENGTH}")
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise BadURLError(f"malformed URL: {exc}") from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise BadURLError(f"scheme {parsed.scheme or '(none)'!r} is not http or https")
    if not parsed.host:
        raise BadURLError("URL has no host")
    if not _HOST.fullmatch(parsed.raw_host.decode("ascii", "replace")):
        raise BadURLError(f"malformed host {parsed.host!r}")
    if parsed.userinfo:
        raise BadURLError("credentials in URL are not allowed")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise BadURLError(f"port {parsed.port} out of range")
    return str(parsed.copy_with(fragment=None))


def parse_networks(specs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse addresses or CIDR blocks (`127.0.0.1`, `10.0.0.0/8`, `::1`); blanks are skipped."""
    networks = []
    for spec in specs:
        spec = spec.strip()
        if spec:
            networks.append(ipaddress.ip_network(spec, strict=False))
    return tuple(networks)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address tunnelled in an IPv6 one (mapped, NAT64, 6to4, Teredo), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    return None


def block_reason(ip: IPAddress) -> str | None:
    """Why the address is refused by default (loopback, private, ...), or None when public."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        reason = block_reason(inner)
        return f"{reason} (embedded in {ip})" if reason else None
    for attribute in (
        "is_loopback",
        "is_link_local",
        "is_multicast",
        "is_unspecified",
        "is_reserved",
        "is_private",
    ):
        if getattr(ip, attribute):
            return attribute.removeprefix("is_").replace("_", "-")
    if not ip.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Refuses non-public addresses unless an allowed network contains them."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_specs(cls, specs: Iterable[str]) -> AddressPolicy:
        """A policy admitting the given addresses / CIDR blocks."""
        return cls(parse_networks(specs))

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why connecting to `address` is refused, or None when it is permitted."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if any(ip.version == net.version and ip in net for net in self.allowed):
            return None
        reason = block_reason(ip)
        return f"{ip} is {reason}" if reason else None


async def resolve(host: str, port: int) -> list[str]:
    """All addresses `host` resolves to (a literal address resolves to itself)."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(info[4][0] for info in infos))


async def resolve_permitted(host: str, port: int, policy: AddressPolicy) -> list[str]:
    """The addresses of `host` the policy permits, in resolver order.

    Raises `BlockedAddressError` when the host resolves only to refused addresses.
    """
    addresses = await resolve(host, port)
    permitted, refusals = [], []
    for address in addresses:
        why = policy.refusal(address)
        if why is None:
            permitted.append(address)
        else:
            refusals.append(why)
    if not permitted:
        raise BlockedAddressError(f"{host}: " + "; ".join(refusals))
    return permitted


def literal_refusal(url: str, policy: AddressPolicy) -> str | None:
    """For a URL whose host is a literal IP address, why the policy refuses it (no DNS)."""
    host = httpx.URL(url).host
    try:
        return policy.refusal(host.strip("[]"))
    except ValueError:
        return None
