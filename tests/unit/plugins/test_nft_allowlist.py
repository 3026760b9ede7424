"""The nftables allowlist shared by the RPC and API firewalls."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llamacpp.cluster.plugins.filter.nft_allowlist import nft_allowlist
from ansible_collections.llamacpp.cluster.plugins.module_utils.nft import AllowlistError, parse_sources, ruleset


def test_sources_are_split_by_family_sorted_and_deduplicated():
    v4, v6 = parse_sources(["10.0.0.9", "10.0.0.10/32", "10.0.0.9", "192.168.1.77/24", "fd00::8", "fd00::/64"])
    assert v4 == ["10.0.0.9", "10.0.0.10", "192.168.1.0/24"]
    assert v6 == ["fd00::/64", "fd00::8"]


def test_ruleset_admits_only_loopback_and_the_sources_on_its_port():
    text = ruleset("llamacpp_api", 8080, ["10.89.77.1", "fd00::1"], "llama-server API: not a client")
    lines = [line.strip() for line in text.splitlines()]
    assert lines[:2] == ["table inet llamacpp_api", "delete table inet llamacpp_api"]
    assert "tcp dport != 8080 accept" in lines
    assert 'iif "lo" accept' in lines
    assert "elements = { 10.89.77.1 }" in lines and "elements = { fd00::1 }" in lines
    assert lines.index("ip saddr @allow_v4 accept") < lines.index('counter drop comment "llama-server API: not a client"')
    assert "ip6 saddr @allow_v6 accept" in lines


def test_no_sources_leaves_only_loopback():
    text = ruleset("llamacpp_api", 8080, [], "x")
    assert "saddr" not in text and "set allow" not in text
    assert 'iif "lo" accept' in text and "counter drop" in text


@pytest.mark.parametrize("table, port, sources, comment, match", [
    ("llamacpp_api", 8080, ["example.com"], "x", "not an IP address"),
    ("llamacpp_api", 8080, ["10.0.0.300"], "x", "not an IP address"),
    ("llamacpp_api", 70000, [], "x", "between 1 and 65535"),
    ("llamacpp_api", "http", [], "x", "not a number"),
    ("Bad-Name", 8080, [], "x", "table name"),
    ("llamacpp_api", 8080, [], 'say "hi"', "quotes"),
])
def test_bad_input_is_refused_with_the_reason(table, port, sources, comment, match):
    with pytest.raises(AllowlistError, match=match):
        ruleset(table, port, sources, comment)


def test_the_filter_reports_errors_as_filter_errors():
    with pytest.raises(AnsibleFilterError, match="nft_allowlist: 'nope'"):
        nft_allowlist("llamacpp_api", 8080, ["nope"])
