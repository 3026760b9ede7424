"""Renamed settings keep working: a run that sets an old name reads it through the new one and
says that the old name is deprecated (the roles' controller-side settings checks)."""

from __future__ import annotations

import json
import subprocess

import pytest

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Check the {role} settings
      ansible.builtin.include_role:
        name: llamacpp.cluster.{role}
        tasks_from: {entry}
        public: true

    - name: Show what the role reads
      ansible.builtin.debug:
        msg: "READ {{{{ {new} }}}}"
"""

# The main role's settings need a model; one by URL is only checked there, not fetched (and a
# model named on Hugging Face would be resolved over the network).
MODEL = {"llamacpp_main_model_files": [{"url": "http://127.0.0.1:9/model.gguf", "sha256": "0" * 64}]}

CASES = [
    ("rpc_worker", "settings", "llamacpp_rpc_worker_user", "llamacpp_rpc_worker_system_user", "legacy-rpc"),
    ("rpc_worker", "settings", "llamacpp_rpc_worker_group", "llamacpp_rpc_worker_system_group", "legacy-rpc"),
    ("rpc_worker", "settings", "llamacpp_rpc_worker_main_group", "llamacpp_rpc_worker_main_inventory_group", "heads"),
    ("main", "settings", "llamacpp_main_user", "llamacpp_main_system_user", "legacy"),
    ("main", "settings", "llamacpp_main_worker_group", "llamacpp_main_worker_inventory_group", "rpc_hosts"),
    ("build", "validate", "llamacpp_build_main_group", "llamacpp_build_main_inventory_group", "heads"),
    ("rpc_worker", "settings", "llamacpp_rpc_worker_prefix", "llamacpp_rpc_worker_prefix", "/srv/llama.cpp"),
]


@pytest.mark.parametrize("role, entry, old, new, value", CASES)
def test_an_old_name_is_read_and_named_as_deprecated(role, entry, old, new, value, tmp_path, tool_env, top):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK.format(role=role, entry=entry, new=new))
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(playbook),
                           "-e", json.dumps({old: value, **MODEL})],
                          cwd=top, env=dict(tool_env, ANSIBLE_FORCE_COLOR="0"), capture_output=True, text=True,
                          check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert f"READ {value}" in output
    assert f"DEPRECATED: {old} is " in output


def test_the_one_prefix_sets_every_role_and_names_nothing(tmp_path, tool_env, top):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK.format(role="main", entry="settings", new="llamacpp_main_prefix"))
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(playbook),
                           "-e", json.dumps({"llamacpp_prefix": "/srv/llama.cpp", **MODEL})],
                          cwd=top, env=dict(tool_env, ANSIBLE_FORCE_COLOR="0"), capture_output=True, text=True,
                          check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "READ /srv/llama.cpp" in output and "DEPRECATED" not in output
