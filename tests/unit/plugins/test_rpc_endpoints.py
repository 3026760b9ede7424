"""The rpc_endpoints filter builds the --rpc list from inventory data."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llamacpp.cluster.plugins.filter.rpc_endpoints import rpc_endpoints

HOSTVARS = {
    "w1": {"llamacpp_rpc_worker_endpoint": "10.0.1.7:50052"},
    "w2": {"ansible_facts": {"default_ipv4": {"address": "10.0.1.8"}}, "llamacpp_rpc_worker_port": "50100"},
    "w3": {"llamacpp_rpc_worker_bind": "fd00::9"},
    "bare": {},
}


def test_published_bound_and_default_addresses_in_order():
    assert rpc_endpoints(["w2", "w1", "w3"], HOSTVARS) == ["10.0.1.8:50100", "10.0.1.7:50052", "[fd00::9]:50052"]


def test_worker_without_address_is_named():
    with pytest.raises(AnsibleFilterError, match="no address known for worker bare"):
        rpc_endpoints(["w1", "bare"], HOSTVARS)


def test_unknown_host_and_bad_port_and_duplicates_are_errors():
    with pytest.raises(AnsibleFilterError, match="ghost is not in the inventory"):
        rpc_endpoints(["ghost"], HOSTVARS)
    with pytest.raises(AnsibleFilterError, match="not a number"):
        rpc_endpoints(["x"], {"x": {"llamacpp_rpc_worker_bind": "10.0.0.1", "llamacpp_rpc_worker_port": "http"}})
    with pytest.raises(AnsibleFilterError, match="share the endpoint"):
        rpc_endpoints(["w1", "w1"], HOSTVARS)


def test_a_string_is_not_a_host_list():
    with pytest.raises(AnsibleFilterError, match="expects a list"):
        rpc_endpoints("w1", HOSTVARS)
