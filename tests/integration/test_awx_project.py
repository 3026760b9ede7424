"""The repository as an AWX project: the execution environment builds its context offline,
collections/requirements.yml resolves, and the job templates of playbooks/awx_job_templates.yml
point at playbooks and valid surveys whose variables those playbooks use."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.galaxy.dependency_resolution.versioning import meets_requirements

import awx_survey

FQCN = re.compile(r"\b([a-z0-9_]+)\.([a-z0-9_]+)\.[a-z0-9_]+\b")
NOT_COLLECTIONS = {("ansible", "builtin"), ("llamacpp", "cluster")}


def ansible_collections():
    """The collections of the pinned `ansible` package, in the venv this test runs in."""
    proc = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True)
    path = Path(proc.stdout.strip()) / "ansible_collections"
    assert (path / "ansible" / "posix").is_dir(), f"no collections of the ansible package under {path}"
    return path


def job_templates(top):
    play = yaml.safe_load((top / "playbooks/awx_job_templates.yml").read_text())[0]
    return play["vars"]["_templates"]


def test_execution_environment_context_is_created_offline(top, tool_env, tmp_path):
    proc = subprocess.run(["ansible-builder", "create", "-f", "execution-environment.yml", "-c", str(tmp_path / "ctx")],
                          cwd=top, env=tool_env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    build = tmp_path / "ctx" / "_build"
    containerfile = (tmp_path / "ctx" / "Containerfile").read_text()
    definition = yaml.safe_load((top / "execution-environment.yml").read_text())
    assert f'EE_BASE_IMAGE="{definition["images"]["base_image"]["name"]}"' in containerfile
    assert yaml.safe_load((build / "requirements.yml").read_text()) == \
        yaml.safe_load((top / "collections/requirements.yml").read_text())
    python = (build / "requirements.txt").read_text()
    assert "boto3" in python and "requests" in python
    assert "openssh-clients" in (build / "bindep.txt").read_text()
    assert "ansible-core>=2.16,<2.20" in containerfile


def test_collection_requirements_are_installed_at_matching_versions(top):
    for requirement in yaml.safe_load((top / "collections/requirements.yml").read_text())["collections"]:
        namespace, name = requirement["name"].split(".")
        manifest = ansible_collections() / namespace / name / "MANIFEST.json"
        assert manifest.is_file(), f"{requirement['name']} is not in the pinned ansible package"
        version = yaml.safe_load(manifest.read_text())["collection_info"]["version"]
        assert meets_requirements(version, requirement["version"]), f"{requirement['name']} {version}"


def test_every_collection_the_project_uses_is_required(top):
    listed = {tuple(r["name"].split(".")) for r in
              yaml.safe_load((top / "collections/requirements.yml").read_text())["collections"]}
    used = set()
    for path in [*top.glob("playbooks/*.yml"), *top.glob("roles/*/tasks/*.yml"), *top.glob("roles/*/handlers/*.yml"),
                 top / "inventories/aws/aws_ec2.yml"]:
        used |= set(FQCN.findall(path.read_text()))
    installed = ansible_collections()
    used = {pair for pair in used if (installed / pair[0] / pair[1]).is_dir()}
    # The playbooks use at least these; an empty set would mean the filter above found nothing.
    assert {("containers", "podman"), ("amazon", "aws"), ("awx", "awx")} <= used, sorted(used)
    assert used - NOT_COLLECTIONS <= listed, sorted(used - NOT_COLLECTIONS - listed)


def test_job_template_playbook_passes_a_syntax_check(top, tool_env):
    proc = subprocess.run(["ansible-playbook", "--syntax-check", "playbooks/awx_job_templates.yml"], cwd=top,
                          env=tool_env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("index", [0, 1])
def test_job_template_runs_a_playbook_of_the_project_with_a_valid_survey(top, index):
    template = job_templates(top)[index]
    playbook = top / template["playbook"]
    assert playbook.is_file()
    survey = yaml.safe_load((top / "awx/surveys" / template["survey"]).read_text())
    assert awx_survey.spec_errors(survey) == []
    # Every survey variable must mean something to the playbook it feeds (or its roles).
    text = playbook.read_text() + "".join(p.read_text() for p in top.glob("playbooks/*.yml")) \
        + "".join(p.read_text() for p in top.glob("roles/*/defaults/main.yml"))
    for question in survey["spec"]:
        assert question["variable"] in text, f"{template['name']}: {question['variable']} is not used"
