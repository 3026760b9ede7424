"""A model bigger than any node, on the demo's cluster with memory limits: the fit check, the
plan against what llama.cpp allocated, each node's peak memory, unequal workers in proportion
(through the placement benchmark), and a refused scale-in.

The limits are set on the containers' cgroups (v1) from the host, as `podman run --memory`
does; rpc-server still reports the host's RAM, so only the collection's plan knows them. The
model is the suite's generated 1.3 GB one (scripts/big_model.py). At the end the limits are
lifted; the large model stays for test_preseed.py, after which the demo's own model and
settings are put back (conftest.py's demo_restore)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import big_model
import pytest
import yaml
from demo_nodes import TOP, INVENTORY, MAIN, WORKERS, invocation, journal_of_invocation, node, playbook, wait_healthy
from local_cgroups import drop_page_cache, memory_limit, memory_peak, oom_kills, reset_memory_peak, set_memory_limit

from ansible_collections.llamacpp.cluster.plugins.module_utils import placement

MIB = 1024 ** 2
BIG = Path(os.environ.get("LLAMACPP_FIXTURE_BIG_MODEL") or big_model.big_model_path())
W1, W2 = WORKERS[:2]
MAIN_LIMIT = 700 * MIB
EQUAL = {MAIN: MAIN_LIMIT, W1: 900 * MIB, W2: 900 * MIB}
UNEQUAL = {MAIN: MAIN_LIMIT, W1: 1100 * MIB, W2: 600 * MIB}
SETTINGS = {
    "llamacpp_main_model_files": [{"src": str(BIG), "sha256": big_model.BIG_MODEL_SHA256}],
    "llamacpp_main_ctx_size": 512,
    "llamacpp_main_ubatch_size": 64,
    "llamacpp_main_memory_reserve_mib": 192,
    "llamacpp_rpc_worker_memory_reserve_mib": 128,
    # The main node reads the weights it sends with direct I/O: no page cache in its cgroup.
    "llamacpp_main_load_mode": "dio",
    "llamacpp_main_server_log_verbosity": 4,
}
EXTRA = ("-e", json.dumps(SETTINGS))
PLAN_TASK = "Plan where the layers go"


# OOM kills counted by each node's cgroup (since it started) when its peak was last reset.
OOM_BEFORE: dict = {}


def reset(name: str) -> None:
    reset_memory_peak(name)
    OOM_BEFORE[name] = oom_kills(name)


def deploy(limits: dict, inventory: Path | str = INVENTORY):
    """New memory limits (as a resized node would come back: llama-server stopped first, so the
    workers hold no tensors that a lower limit would squeeze), then services.yml."""
    node(MAIN).check_output("systemctl stop llama-server")
    for name, limit in limits.items():
        set_memory_limit(name, limit)
        reset(name)
    return playbook("playbooks/services.yml", inventory, *EXTRA)


def reload_measured(limits: dict) -> None:
    """Restarts llama-server with every node's peak reset: the peaks then cover the model's
    load and what follows. The main node's page cache from copying the model in (the deploy
    writes 1.3 GB through it) is reclaimed first: it is the copy's, not the serving's."""
    drop_page_cache(MAIN)
    for name in limits:
        reset(name)
    node(MAIN).check_output("systemctl restart llama-server")
    wait_healthy()


def plan_of(run) -> dict:
    facts = run.results(PLAN_TASK)[MAIN]["ansible_facts"]
    return facts["_llamacpp_main_plan"]


def ask(mode: str) -> dict:
    run = playbook("playbooks/generate.yml", INVENTORY, "-e", json.dumps(
        {"llamacpp_prompt": "The three primary colours are", "llamacpp_n_predict": 8, "llamacpp_mode": mode,
         "llamacpp_timeout": 300}))
    assert run.rc == 0, run.output[-3000:]
    return run.results("Generate")[MAIN]


def assert_llama_cpp_allocated_the_plan(plan: dict) -> None:
    """llama-server's load log: per device the bytes of the plan's layers (within one layer),
    KV cache and compute buffers within the plan's figures."""
    buffers = placement.parse_load_log(journal_of_invocation(MAIN, "llama-server"))
    print("llama.cpp allocated (MiB: model, KV, compute):",
          {device: tuple(round(b[k]) for k in ("model", "kv", "compute")) for device, b in buffers.items()})
    layer = max(SETTINGS_MODEL["layer_bytes"])
    for planned in plan["nodes"]:
        seen = buffers.get("CPU" if planned["role"] == "main" else planned["endpoint"])
        assert seen, f"no buffers of {planned['name']} in llama-server's load log: {buffers}"
        assert abs(seen["model"] * MIB - planned["weights_bytes"]) <= layer, (planned, seen)
        assert seen["kv"] * MIB <= planned["kv_bytes"] and seen["compute"] * MIB <= planned["compute_bytes"], (planned, seen)


def assert_peaks_below_limits(limits: dict) -> dict:
    peaks = {name: memory_peak(name) for name in limits}
    print("peak cgroup memory (MiB):", {name: round(peak / MIB) for name, peak in peaks.items()},
          "limits:", {name: round(limit / MIB) for name, limit in limits.items()})
    for name, limit in limits.items():
        assert oom_kills(name) == OOM_BEFORE[name], f"{name}: the OOM killer ran"
        assert peaks[name] < limit, f"{name}: peak {peaks[name] // MIB} MiB reached its limit {limit // MIB} MiB"
    return peaks


SETTINGS_MODEL: dict = {}


@pytest.fixture(name="limited_cluster", scope="module")
def fixture_limited_cluster(demo_cluster, demo_restore):
    """The limits are lifted at the end; the large model stays for test_preseed.py, and the
    demo's own comes back after the last test that uses the large one (conftest.py)."""
    demo_restore.take(needs_big_model=True)
    yield demo_cluster
    for name in (MAIN, *WORKERS):
        set_memory_limit(name, None)


def test_equal_workers_serve_a_model_no_node_can_hold(limited_cluster):
    run = deploy(EQUAL)
    assert run.rc == 0, run.output[-4000:]
    plan = plan_of(run)
    SETTINGS_MODEL.update(run.results("Read the model's layers")[MAIN]["model"])
    assert plan["fits"] and plan["main_layers"] == 0 and plan["n_gpu_layers"] == 19
    assert all(n["n_layers"] > 0 for n in plan["nodes"][1:])
    print("\n".join(plan["summary"]))

    # The fit check refuses the model on the main node alone.
    main_memory = run.results("Read what the main node can hold")[MAIN]["ansible_facts"]["llamacpp_memory"]
    assert main_memory["cgroup_limit_bytes"] == MAIN_LIMIT
    alone = placement.plan(SETTINGS_MODEL, {"name": MAIN, "usable_bytes": main_memory["usable_bytes"]}, [],
                           ctx_size=512, ubatch=64)
    assert not alone["fits"] and SETTINGS_MODEL["total_bytes"] > MAIN_LIMIT
    print("main node alone:", alone["message"])

    reload_measured(EQUAL)
    assert_llama_cpp_allocated_the_plan(plan)
    server = ask("server")
    assert server["tokens_predicted"] == 8 and server["text"].strip()
    assert_peaks_below_limits(EQUAL)

    # generate's CLI run puts the layers where llama-server does and gives the same answer. It
    # maps the model (page cache up to the main node's limit): the workers' peaks count here.
    node(MAIN).check_output("systemctl stop llama-server")
    for name in (MAIN, *WORKERS):
        reset(name)
    cli = ask("cli")
    assert cli["cmd"][cli["cmd"].index("--tensor-split") + 1] == ",".join(map(str, plan["tensor_split"]))
    # Random weights leave near-ties in the logits: the batch shapes of the two programs may
    # break one differently late in the answer, so the start is compared.
    assert cli["tokens_predicted"] == 8 and cli["text"].split()[:4] == server["text"].split()[:4]
    assert_peaks_below_limits({name: EQUAL[name] for name in WORKERS})
    assert oom_kills(MAIN) == OOM_BEFORE[MAIN]
    node(MAIN).check_output("systemctl start llama-server")


def test_the_benchmark_compares_the_plan_with_llama_cpps_split(limited_cluster, tmp_path):
    """benchmarks/run.py --only placement --smoke, on these containers with the limits it sets:
    the plan serves within every limit, with unequal workers in proportion to their memory
    (from memory_facts, as the main role plans), llama.cpp's even split overfills the smaller
    worker, and the packing run serves at the tightest limits the fit check accepts."""
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "-i", str(INVENTORY), "--smoke", "--only", "placement",
                           "--big-model", str(BIG), "--out", str(tmp_path)],
                          cwd=TOP, capture_output=True, text=True, check=False)
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [result_file] = tmp_path.glob("*.json")
    comp = json.loads(result_file.read_text())["comparisons"]["placement"]
    runs = {label: samples[0] for label, samples in comp["samples"].items()}
    for label in ("equal: collection plan", "unequal: collection plan", "packed: collection plan at the tightest limits"):
        assert runs[label]["served"] == 1 and runs[label]["oom_kills"] == 0, (label, runs[label])
        assert all(runs[label][f"{name} allocated MiB"] for name in (MAIN, *WORKERS)), (label, runs[label])
    # With room to spare, no node comes near its limit; packed to the edge, a node may reach
    # it (the kernel then reclaims page cache), but nobody is killed.
    for label in ("equal: collection plan", "unequal: collection plan"):
        assert runs[label]["peak_over_limit"] < 1 and runs[label]["limit_hits"] == 0, (label, runs[label])
    default = runs["unequal: llama.cpp default split"]
    assert default["served"] == 0 or default["oom_kills"] > 0, default
    # Unequal workers (1100 and 600 MiB, so about 2:1 usable): the larger holds about twice
    # what the smaller does; an even split would give them the same.
    unequal = runs["unequal: collection plan"]
    assert unequal[f"{W1} allocated MiB"] > 1.5 * unequal[f"{W2} allocated MiB"], unequal
    share = comp["derived"]["packing: model bytes over the cluster's usable memory at the tightest limits the fit "
                            "check accepts"]
    assert 0.5 < share < 1, share
    # The OOM kills left no file in the checkout: a container's conmon writes an empty "oom"
    # into the directory it was started from, which local_cluster.yml makes the cache's.
    assert not [path for path in (TOP / "playbooks" / "oom", TOP / "oom") if path.exists()]
    # The limits are back as the benchmark found them, the benchmark's copy of the model is gone.
    assert {name: memory_limit(name) for name in EQUAL} == EQUAL
    assert not node(MAIN).file("/var/tmp/llamacpp-bench").exists


def test_a_scale_in_that_would_not_fit_is_refused_before_anything_restarts(limited_cluster, tmp_path):
    # Without the larger worker, the smaller one and the main node cannot hold the model
    # (without the smaller one they can: the main node then keeps the first layers).
    for name, limit in UNEQUAL.items():
        set_memory_limit(name, limit)
    before = {name: invocation(name, unit) for name, unit in
              ((MAIN, "llama-server"), (W1, "llama-rpc-server"), (W2, "llama-rpc-server"))}
    hosts = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
    del hosts["all"]["children"]["llama_workers"]["hosts"][W1]
    smaller = tmp_path / "inventory"
    smaller.mkdir()
    (smaller / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (smaller / "group_vars").symlink_to(INVENTORY / "group_vars")
    run = playbook("playbooks/services.yml", smaller, *EXTRA)
    assert run.rc != 0
    message = next(e["event_data"]["res"]["msg"] for e in run.events if e.get("event") == "runner_on_failed")
    print(message)
    assert message.startswith("the model does not fit the cluster: it needs ")
    assert re.search(rf"{W2} [\d.]+ GiB / 0\.46 GiB \(over\)", message)
    assert re.search(r"\d+ more worker\(s\) with 0\.46 GiB usable each would make it fit", message)
    assert message.endswith("No service was started or restarted.")
    after = {name: invocation(name, unit) for name, unit in
             ((MAIN, "llama-server"), (W1, "llama-rpc-server"), (W2, "llama-rpc-server"))}
    assert after == before


def test_bad_placement_weights_are_refused_before_any_change(limited_cluster):
    before = {name: invocation(name, unit) for name, unit in
              ((MAIN, "llama-server"), (W1, "llama-rpc-server"), (W2, "llama-rpc-server"))}
    run = playbook("playbooks/services.yml", INVENTORY, "-e", json.dumps({"llamacpp_main_placement_weights": [1]}))
    assert run.rc != 0
    message = " ".join(e["event_data"]["res"].get("msg", "") for e in run.events
                       if e.get("event") in ("runner_on_failed", "runner_item_on_failed"))
    assert "llamacpp_main_placement_weights needs one number >= 0 per worker, not all 0 (2 workers, got [1])" in message
    assert not run.changed().get(MAIN)
    assert {name: invocation(name, unit) for name, unit in
            ((MAIN, "llama-server"), (W1, "llama-rpc-server"), (W2, "llama-rpc-server"))} == before
