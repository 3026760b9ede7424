"""A build the controller's artifact cache already holds (the same fingerprint) is installed by
the build role instead of compiled: a node of a known family that is new, or was rebuilt, costs
a copy, not a compile."""

from __future__ import annotations

import json
import subprocess


def test_a_build_the_controller_holds_is_installed_instead_of_compiled(bin_dir, build_role, tmp_path):
    build = bin_dir.parent.resolve()
    cache = tmp_path / "controller-cache"
    cache.mkdir()
    subprocess.run(["tar", "-C", str(build.parent), "-czf", str(cache / f"{build.name}.tar.gz"), build.name], check=True)

    proc = build_role(tmp_path / "node", cache)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    # Nothing was compiled or even unpacked from source here.
    assert "Start the build of" not in proc.stdout and "Get the source" not in proc.stdout, proc.stdout[-3000:]
    work = tmp_path / "node" / "work"
    assert not (work / "builds.log").exists() and not (work / "src").exists()
    assert "TASK [llamacpp.cluster.build : Copy the build from the controller]" in proc.stdout
    current = tmp_path / "node" / "opt" / "current"
    assert current.resolve().name == build.name
    assert json.loads((current / "manifest.json").read_text())["build_id"] == build.name
    version = subprocess.run([str(current / "bin" / "llama-completion"), "--version"], capture_output=True, text=True,
                             check=False)
    assert version.returncode == 0 and "build 11312" in version.stdout + version.stderr
