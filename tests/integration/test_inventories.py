"""Every inventory under inventories/: the plugin configs use only options their plugins
document (types and choices from ansible-doc, since no GCP/Azure emulator exists here), map
the cluster to llama_main/llama_workers, and pin the build role's llama.cpp commit."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

PLUGIN_CONFIGS = {
    "aws": ("aws_ec2.yml", "amazon.aws.aws_ec2"),
    "gcp": ("gcp_compute.yml", "google.cloud.gcp_compute"),
    "azure": ("azure_rm.yml", "azure.azcollection.azure_rm"),
}
# Python types of the YAML values ansible-doc's option types accept.
TYPES = {"str": str, "string": str, "path": str, "list": list, "dict": dict, "bool": bool, "boolean": bool,
         "int": int, "integer": int}


def plugin_options(env, top, plugin):
    proc = subprocess.run(["ansible-doc", "-t", "inventory", "--json", plugin], cwd=top, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)[plugin]["doc"]["options"]


@pytest.mark.parametrize("cloud", sorted(PLUGIN_CONFIGS))
def test_plugin_config_matches_the_plugin_schema(cloud, top, tool_env):
    filename, plugin = PLUGIN_CONFIGS[cloud]
    config = yaml.safe_load((top / "inventories" / cloud / filename).read_text())
    assert config.pop("plugin") == plugin
    options = plugin_options(tool_env, top, plugin)
    for key, value in config.items():
        assert key in options, f"{cloud}: {key} is not an option of {plugin}"
        spec = options[key]
        if spec.get("type") in TYPES:
            assert isinstance(value, TYPES[spec["type"]]), f"{cloud}: {key} must be a {spec['type']}"
        if spec.get("choices"):
            assert value in spec["choices"], f"{cloud}: {key}={value!r} not in {spec['choices']}"


@pytest.mark.parametrize("cloud", sorted(PLUGIN_CONFIGS))
def test_plugin_config_maps_roles_to_the_cluster_groups(cloud, top):
    filename = PLUGIN_CONFIGS[cloud][0]
    config = yaml.safe_load((top / "inventories" / cloud / filename).read_text())
    groups = config.get("groups") or config.get("conditional_groups")
    assert set(groups) == {"llama_main", "llama_workers"}
    assert re.search(r"== 'main'$", groups["llama_main"]) and re.search(r"== 'worker'$", groups["llama_workers"])
    compose = config.get("compose") or config.get("hostvar_expressions")
    assert {"ansible_host", "llamacpp_cloud", "llamacpp_instance_type", "llamacpp_cluster_name"} <= set(compose)


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_cloud_group_vars_pin_the_build_role_commit(cloud, top):
    defaults = yaml.safe_load((top / "roles/build/defaults/main.yml").read_text())
    group_vars = yaml.safe_load((top / "inventories" / cloud / "group_vars/all.yml").read_text())
    assert group_vars["llamacpp_build_version"] == defaults["llamacpp_build_version"]
    assert group_vars["llamacpp_build_commit"] == defaults["llamacpp_build_commit"]


@pytest.mark.parametrize("name", ["example", "local", "local-3-workers"])
def test_static_inventory_has_one_main_and_workers(name, top, tool_env):
    proc = subprocess.run(["ansible-inventory", "-i", f"inventories/{name}", "--list"], cwd=top, env=tool_env,
                          capture_output=True, text=True, check=True)
    data = json.loads(proc.stdout)
    main, workers = data["llama_main"]["hosts"], data["llama_workers"]["hosts"]
    assert len(main) == 1 and len(workers) >= 2 and not set(main) & set(workers)


def test_local_3_workers_is_the_local_default_plus_one_worker(top, tool_env):
    def inventory(name):
        proc = subprocess.run(["ansible-inventory", "-i", f"inventories/{name}", "--list"], cwd=top, env=tool_env,
                              capture_output=True, text=True, check=True)
        return json.loads(proc.stdout)

    local, three = inventory("local"), inventory("local-3-workers")
    assert three["llama_main"]["hosts"] == local["llama_main"]["hosts"]
    assert three["llama_workers"]["hosts"] == local["llama_workers"]["hosts"] + ["llamacpp-worker3"]
    assert three["_meta"]["hostvars"]["llamacpp-worker3"] == local["_meta"]["hostvars"]["llamacpp-worker1"]
