"""The collection builds into an installable tarball without test or cache files, and
its FQCNs resolve from a plain checkout as well as from the installed tarball."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (TOP / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
ROLES = sorted(p.name for p in (TOP / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file()) \
    if (TOP / "roles").is_dir() else []


def run(cmd, env, cwd):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(name="installed", scope="module")
def fixture_installed(tmp_path_factory):
    """Build the collection tarball and install it offline into a fresh collections path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{TOP / '.venv' / 'bin'}:{env['PATH']}"
    out = tmp_path_factory.mktemp("build")
    run(["ansible-galaxy", "collection", "build", "--output-path", str(out), str(TOP)], env, TOP)
    tarball = next(out.glob("llamacpp-cluster-*.tar.gz"))
    path = tmp_path_factory.mktemp("collections")
    run(["ansible-galaxy", "collection", "install", "--offline", "--force", "-p", str(path), str(tarball)], env, out)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(path)
    return tarball, path, env


def test_tarball_excludes_tests_caches_and_the_checkout_link(installed):
    tarball = installed[0]
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "MANIFEST.json" in names
    for unwanted in ("tests/", "molecule/", ".config/", ".venv", "collections/", "__pycache__", ".ci/", "scripts/"):
        assert not [n for n in names if unwanted in n], unwanted
    for wanted in ("README.md", "LICENSE", "meta/runtime.yml", "playbooks/site.yml"):
        assert wanted in names, wanted


def test_installed_collection_is_listed(installed):
    path, env = installed[1:]
    assert (path / "ansible_collections" / "llamacpp" / "cluster" / "MANIFEST.json").is_file()
    out = run(["ansible-galaxy", "collection", "list", "llamacpp.cluster"], env, path)
    assert str(path) in out and "0.1.0" in out


def test_installed_site_playbook_resolves_by_fqcn(installed):
    path, env = installed[1:]
    run(["ansible-playbook", "llamacpp.cluster.site", "--syntax-check", "-i", str(TOP / "inventories" / "local")],
        env, path)


def test_site_resolves_from_checkout_root(tool_env, top):
    run(["ansible-playbook", "site.yml", "--syntax-check", "-i", "inventories/local"], tool_env, top)


def test_site_resolves_from_elsewhere_via_adjacent_collections(tool_env, top, tmp_path):
    run(["ansible-playbook", str(top / "site.yml"), "--syntax-check", "-i", str(top / "inventories" / "local")],
        tool_env, tmp_path)


@pytest.mark.parametrize("module", MODULES)
def test_module_doc_renders_from_checkout_and_install(module, installed, tool_env, top):
    path, env = installed[1:]
    doc = run(["ansible-doc", "-t", "module", f"llamacpp.cluster.{module}"], tool_env, top)
    assert f"llamacpp.cluster.{module}" in doc
    run(["ansible-doc", "-t", "module", f"llamacpp.cluster.{module}"], env, path)


@pytest.mark.parametrize("role", ROLES)
def test_role_doc_renders_from_checkout(role, tool_env, top):
    run(["ansible-doc", "-t", "role", f"llamacpp.cluster.{role}"], tool_env, top)
