"""Verify the build scenario: one build for the family, installed on both nodes."""

import json

import pytest

BUILDER = "llamacpp-build-main"


@pytest.fixture(name="manifest")
def fixture_manifest(host):
    return json.loads(host.file("/opt/llama.cpp/current/manifest.json").content_string)


def test_current_points_at_a_versioned_build(host, manifest):
    current = host.file("/opt/llama.cpp/current")
    assert current.is_symlink
    assert current.linked_to == f"/opt/llama.cpp/{manifest['build_id']}"
    assert manifest["build_id"].startswith("b11312-")


def test_manifest_records_the_pinned_release(manifest):
    assert manifest["version"] == "b11312"
    assert manifest["commit"] == "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
    assert manifest["build_number"] == 11312
    assert manifest["cmake"]["GGML_RPC"] == "ON" and manifest["cmake"]["GGML_NATIVE"] == "OFF"
    assert manifest["built_on"] == BUILDER


def test_rpc_server_runs_under_its_stable_name(host):
    result = host.run("/opt/llama.cpp/current/bin/rpc-server -h")
    assert result.rc == 0
    assert "--threads" in result.stdout + result.stderr


def test_completion_reports_the_release(host):
    result = host.run("/opt/llama.cpp/current/bin/llama-completion --version")
    assert result.rc == 0
    assert "build 11312, commit 0c1e570" in result.stdout + result.stderr


def test_compiled_exactly_once_and_only_on_the_builder(host):
    builds = host.file("/var/cache/llama.cpp/builds.log")
    if host.backend.get_hostname() == BUILDER:
        assert len(builds.content_string.splitlines()) == 1  # converge built, idempotence did not
        assert host.package("cmake").is_installed
    else:
        assert not builds.exists
        assert not host.package("cmake").is_installed and not host.exists("cc")
