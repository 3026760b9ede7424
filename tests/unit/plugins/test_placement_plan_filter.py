"""The placement_plan filter reads each node's llamacpp_memory fact from ansible_facts, as it
is with injected fact variables off (ansible.cfg), and still from a top-level variable."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llamacpp.cluster.plugins.filter.placement_plan import _usable


@pytest.mark.parametrize("variables", [
    {"ansible_facts": {"llamacpp_memory": {"usable_bytes": 1024}}},
    {"ansible_facts": {}, "llamacpp_memory": {"usable_bytes": 1024}},
])
def test_the_memory_fact_is_read_where_ansible_puts_it(variables):
    assert _usable({"w1": variables}, "w1") == 1024


def test_a_node_without_the_fact_is_named():
    with pytest.raises(AnsibleFilterError, match="w2 has no llamacpp_memory fact"):
        _usable({"w2": {"ansible_facts": {}}}, "w2")
