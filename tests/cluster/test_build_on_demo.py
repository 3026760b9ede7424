"""Role llamacpp.cluster.build on the demo's cluster: the nodes are one CPU family, so the
main node (first by name) built once - or, when the controller's artifact cache already held
that build (an earlier demo on this machine), installed it without compiling - and the workers
received that build through the controller; the re-runs before this test (the AWX "Deploy
cluster" job) compiled nothing; a bad setting is refused before anything changes."""

import json
import re

import pytest
from demo_nodes import INVENTORY, MAIN, WORKERS, node, playbook

BUILDER = sorted((MAIN, *WORKERS))[0]
NODES = (MAIN, *WORKERS)


def manifest(name):
    return json.loads(node(name).file("/opt/llama.cpp/current/manifest.json").content_string)


@pytest.mark.parametrize("name", NODES)
def test_current_points_at_a_versioned_build_of_the_pinned_release(name, demo_cluster):
    data = manifest(name)
    current = node(name).file("/opt/llama.cpp/current")
    assert current.is_symlink and current.linked_to == f"/opt/llama.cpp/{data['build_id']}"
    assert data["build_id"].startswith("b11312-")
    assert data["version"] == "b11312" and data["build_number"] == 11312
    assert data["commit"] == "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
    assert data["cmake"]["GGML_RPC"] == "ON" and data["cmake"]["GGML_NATIVE"] == "OFF"
    assert data["built_on"] == BUILDER


def test_every_node_runs_the_one_build(demo_cluster):
    assert len({manifest(name)["build_id"] for name in NODES}) == 1


@pytest.mark.parametrize("name", NODES)
def test_binaries_run_under_their_stable_names(name, demo_cluster):
    host = node(name)
    result = host.run("/opt/llama.cpp/current/bin/rpc-server -h")
    assert result.rc == 0 and "--threads" in result.stdout + result.stderr
    if name == MAIN:
        result = host.run("/opt/llama.cpp/current/bin/llama-completion --version")
        assert result.rc == 0 and "build 11312, commit 0c1e570" in result.stdout + result.stderr


@pytest.mark.parametrize("name", NODES)
def test_compiled_at_most_once_and_only_on_the_builder(name, demo_cluster):
    host = node(name)
    builds = host.file("/var/cache/llama.cpp/builds.log")
    if name == BUILDER:
        # The demo compiled once (or took the controller's copy of an earlier demo's build); the
        # re-runs did not compile.
        assert not builds.exists or len(builds.content_string.splitlines()) == 1
        assert host.package("cmake").is_installed
    else:
        assert not builds.exists
        assert not host.package("cmake").is_installed and not host.exists("cc")


def test_unknown_strategy_is_refused_before_any_change(demo_cluster):
    before = {name: node(name).check_output("readlink /opt/llama.cpp/current") for name in NODES}
    server = node(MAIN).check_output("systemctl show -P InvocationID llama-server")
    run = playbook("site.yml", INVENTORY, "-e", "llamacpp_build_strategy=sometimes")
    assert run.rc != 0
    assert re.search(r"llamacpp_build_strategy.*per_family", run.output), run.output[-3000:]
    assert set(run.changed()) >= {MAIN, *WORKERS} and set(run.changed().values()) == {0}, run.changed()
    assert {name: node(name).check_output("readlink /opt/llama.cpp/current") for name in NODES} == before
    assert node(MAIN).check_output("systemctl show -P InvocationID llama-server") == server
