"""The URL and address policy, checked directly: nothing here opens a connection."""

from __future__ import annotations

import asyncio

import pytest

from featuregen_assets.core.ingest import netpolicy
from featuregen_assets.core.ingest.netpolicy import (
    AddressPolicy,
    BadURLError,
    BlockedAddressError,
    literal_refusal,
    normalize_url,
    resolve_permitted,
)

DEFAULT = AddressPolicy()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.0.0.2",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:a00:1::",  # 6to4 of 10.0.0.1
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert DEFAULT.refusal(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_are_permitted(address: str) -> None:
    assert DEFAULT.refusal(address) is None


def test_allow_list_admits_only_its_networks() -> None:
    policy = AddressPolicy.from_specs(["127.0.0.1/32", " 10.0.0.0/8 ", "", "::1"])
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("10.9.9.9") is None
    assert policy.refusal("::1") is None
    assert policy.refusal("127.0.0.2")
    assert policy.refusal("192.168.0.1")


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.jpg",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "http://",
        "http://exa mple.com/a.jpg",
        "http://example.com:99999/a.jpg",
        "not a url",
        "//example.com/a.jpg",
        "http://user:pw@example.com/a.jpg",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(BadURLError):
        normalize_url(url)


def test_idn_host_and_spaces_are_normalised() -> None:
    assert (
        normalize_url(" http://Bücher.example/a b/ç.jpg?q=x y#frag ")
        == "http://xn--bcher-kva.example/a%20b/%C3%A7.jpg?q=x%20y"
    )
    assert normalize_url("https://example.com/a%20b.jpg") == "https://example.com/a%20b.jpg"


def test_literal_addresses_are_checked_without_dns() -> None:
    assert literal_refusal("http://10.0.0.1/a.jpg", DEFAULT)
    assert literal_refusal("http://[::1]:8080/a.jpg", DEFAULT)
    assert literal_refusal("http://8.8.8.8/a.jpg", DEFAULT) is None
    assert literal_refusal("http://example.com/a.jpg", DEFAULT) is None


def test_resolved_addresses_are_filtered(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"mixed.test": ["10.0.0.5", "93.184.216.34"], "inside.test": ["192.168.0.7"]}

    async def fake_resolve(host: str, port: int) -> list[str]:
        return answers[host]

    monkeypatch.setattr(netpolicy, "resolve", fake_resolve)
    assert asyncio.run(resolve_permitted("mixed.test", 80, DEFAULT)) == ["93.184.216.34"]
    with pytest.raises(BlockedAddressError, match="192.168.0.7 is private"):
        asyncio.run(resolve_permitted("inside.test", 80, DEFAULT))


def test_literal_host_resolves_to_itself() -> None:
    assert asyncio.run(netpolicy.resolve("[::1]", 80)) == ["::1"]
    assert asyncio.run(netpolicy.resolve("127.0.0.2", 80)) == ["127.0.0.2"]
