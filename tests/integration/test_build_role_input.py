"""The build role refuses bad input before any task changes anything."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the build role
      ansible.builtin.include_role:
        name: llamacpp.cluster.build
      vars: {vars}
"""


@pytest.mark.parametrize("bad_vars, message", [
    ({"llamacpp_build_strategy": "sometimes"}, "per_family"),
    ({"llamacpp_build_keep": "many"}, "llamacpp_build_keep"),
    ({"llamacpp_build_cpu_flags": "fast"}, "llamacpp_build_cpu_flags"),
    ({"llamacpp_build_source": "archive"}, "needs exactly one of llamacpp_build_archive_path"),
    ({"llamacpp_build_source": "archive", "llamacpp_build_archive_url": "https://example.invalid/x.tar.gz"},
     "llamacpp_build_archive_sha256"),
    ({"llamacpp_build_source": "archive", "llamacpp_build_archive_path": "/nonexistent/llama.tar.gz"},
     "is missing on the controller"),
    ({"llamacpp_build_cpu_flags": "explicit"}, "llamacpp_build_cpu_cmake is used exactly when"),
])
def test_bad_input_fails_before_any_change(bad_vars, message, tmp_path, tool_env, top):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK.format(vars=json.dumps(bad_vars)))
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(playbook),
                           "-e", f"ansible_python_interpreter={sys.executable}"],
                          cwd=top, env=tool_env, capture_output=True, text=True, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert message in output
    assert "changed=0" in output
