"""services.yml with --limit on the demo's cluster: a run limited to the main node plans with
the workers it does not configure (their recorded endpoints and memory, read from them) and
changes nothing; a run limited to one worker changes nothing either, and one that would
restart that worker's rpc-server without reaching the main node is refused before anything
changes."""

from __future__ import annotations

import json

from demo_nodes import INVENTORY, MAIN, WORKERS, invocation, playbook

W1, W2 = WORKERS[:2]
UNITS = ((MAIN, "llama-server"), (W1, "llama-rpc-server"), (W2, "llama-rpc-server"))


def invocations() -> dict:
    return {(name, unit): invocation(name, unit) for name, unit in UNITS}


def test_a_run_limited_to_the_main_node_plans_with_the_other_workers_and_changes_nothing(demo_cluster):
    before = invocations()
    run = playbook("playbooks/services.yml", INVENTORY, "--limit", MAIN)
    assert run.rc == 0, run.output[-4000:]
    assert run.changed() == {MAIN: 0}, run.changed()
    plan = run.results("Plan where the layers go")[MAIN]["ansible_facts"]["_llamacpp_main_plan"]
    assert [n["name"] for n in plan["nodes"] if n["role"] == "worker"] == list(WORKERS)
    assert invocations() == before


def test_a_run_limited_to_one_worker_changes_nothing(demo_cluster):
    before = invocations()
    run = playbook("playbooks/services.yml", INVENTORY, "--limit", W1)
    assert run.rc == 0, run.output[-4000:]
    assert run.changed() == {W1: 0}, run.changed()
    assert invocations() == before


def test_restarting_a_worker_without_its_main_node_is_refused_before_any_change(demo_cluster):
    before = invocations()
    run = playbook("playbooks/services.yml", INVENTORY, "--limit", W1, "-e", json.dumps({"llamacpp_rpc_worker_threads": 1}))
    assert run.rc != 0
    assert f"rpc-server on {W1} would (re)start, which drops the connection of llama-server on {MAIN}" in run.output
    assert f"--limit '{W1}:llama_main'" in run.output and "Nothing was changed." in run.output
    assert run.changed() == {W1: 0}, run.changed()
    assert invocations() == before
