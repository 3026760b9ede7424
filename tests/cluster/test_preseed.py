"""Pre-seeded weights on the demo's cluster, with the suite's large model: the first worker
fills its rpc-server cache from its own copy of the model (a file on the worker), and its
large tensors then arrive as cache hits instead of over the network; a corrupt cache file is
repaired by site.yml, and the answers stay those of a cluster without seeding.

The second worker is left unseeded, as the control. Bytes received are read from the
workers' interface counters (eth0; the connection plugin uses podman exec, not the network),
so they count the RPC traffic from the main node only."""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import big_model
import pytest
import yaml
from demo_nodes import INVENTORY, MAIN, WORKERS, invocation, journal_of_invocation, node, playbook

from ansible_collections.llamacpp.cluster.plugins.module_utils import gguf, rpc_cache

BIG = big_model.big_model_path()
W1, W2 = WORKERS[:2]
SOURCE = f"/var/lib/llama.cpp/seed/{BIG.name}"
CACHE = "/var/cache/llama-rpc-server"
SETTINGS = {
    "llamacpp_main_model_files": [{"src": str(BIG), "sha256": big_model.BIG_MODEL_SHA256}],
    "llamacpp_main_ctx_size": 512,
    "llamacpp_main_ubatch_size": 64,
}
EXTRA = ("-e", json.dumps(SETTINGS))
SEED_TASK = "Seed the tensor cache with this worker's tensors"
PROMPT = {"llamacpp_prompt": "The three primary colours are", "llamacpp_n_predict": 8, "llamacpp_mode": "server",
          "llamacpp_timeout": 300}
SEEN: dict = {}


def rx_bytes(name: str) -> int:
    return int(node(name).check_output("cat /sys/class/net/eth0/statistics/rx_bytes"))


def deploy(path: str, inventory) -> tuple:
    """Runs path; returns the run and the bytes each worker received meanwhile."""
    before = {name: rx_bytes(name) for name in WORKERS}
    run = playbook(path, inventory, *EXTRA)
    assert run.rc == 0, run.output[-4000:]
    return run, {name: rx_bytes(name) - before[name] for name in WORKERS}


def answer(inventory) -> str:
    run = playbook("playbooks/generate.yml", inventory, "-e", json.dumps(PROMPT))
    assert run.rc == 0, run.output[-3000:]
    result = run.results("Generate")[MAIN]
    assert result["tokens_predicted"] == 8
    return result["text"]


def hashed_bytes(layers: list[str]) -> int:
    return sum(t.nbytes for t in rpc_cache.hashed_tensors(gguf.read_file(str(BIG)).tensors, layers))


def cache_files(name: str) -> list[str]:
    out = node(name).check_output(f"ls {CACHE}/rpc 2>/dev/null || true")
    return sorted(n for n in out.split() if rpc_cache.is_cache_file(n))


@pytest.fixture(name="seeded_inventory", scope="module")
def fixture_seeded_inventory(demo_cluster, demo_restore, tmp_path_factory):
    """The demo's inventory with seeding on for the first worker; the model's copy put on it.
    At the end the demo's model is put back, which switches seeding off."""
    demo_restore.take(needs_big_model=True)
    node(W1).check_output(f"mkdir -p {os.path.dirname(SOURCE)}")
    subprocess.run(["podman", "cp", str(BIG), f"{W1}:{SOURCE}"], check=True)
    hosts = yaml.safe_load((INVENTORY / "hosts.yml").read_text())
    hosts["all"]["children"]["llama_workers"]["hosts"][W1] = {
        "llamacpp_rpc_worker_seed": True, "llamacpp_rpc_worker_seed_source": SOURCE,
        "llamacpp_rpc_worker_seed_sha256": big_model.BIG_MODEL_SHA256}
    inventory = tmp_path_factory.mktemp("seeded") / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (inventory / "group_vars").symlink_to(INVENTORY / "group_vars")
    yield inventory
    demo_restore.restore()
    node(W1).check_output(f"rm -rf {os.path.dirname(SOURCE)}")
    # Seeding off: the seeded cache went with it.
    assert cache_files(W1) == [] and not node(W1).file(f"{CACHE}/{rpc_cache.MANIFEST_NAME}").exists


def test_without_seeding_the_workers_receive_their_layers(seeded_inventory):
    run, received = deploy("playbooks/services.yml", INVENTORY)
    plan = run.results("Plan where the layers go")[MAIN]["ansible_facts"]["_llamacpp_main_plan"]
    SEEN["layers"] = {n["name"]: n["layers"] for n in plan["nodes"] if n["role"] == "worker"}
    SEEN["pushed"] = received
    SEEN["text"] = answer(INVENTORY)
    w1_hashed = hashed_bytes(SEEN["layers"][W1])
    print("layers:", SEEN["layers"], "received (MB):", {n: round(b / 1e6) for n, b in received.items()},
          f"{W1}'s tensors over 10 MiB: {w1_hashed / 1e6:.0f} MB", "answer:", repr(SEEN["text"]))
    assert w1_hashed > 0 and received[W1] >= w1_hashed


def test_a_seeded_worker_gets_its_large_tensors_from_its_cache(seeded_inventory):
    assert "text" in SEEN, "needs the unseeded run first"
    run, received = deploy("playbooks/services.yml", seeded_inventory)
    seeded = run.results(SEED_TASK)[W1]
    w1_tensors = rpc_cache.hashed_tensors(gguf.read_file(str(BIG)).tensors, SEEN["layers"][W1])
    assert sorted(seeded["seeded"]) == sorted(t.name for t in w1_tensors), seeded
    assert len(cache_files(W1)) == len(w1_tensors) and W2 not in run.results(SEED_TASK)
    print(f"seeded {len(w1_tensors)} tensors ({seeded['bytes_written'] / 1e6:.0f} MB) in {seeded['seconds']} s;",
          "received (MB):", {n: round(b / 1e6) for n, b in received.items()})
    # rpc-server (now with -c) found every large tensor in its cache: it wrote none (it logs
    # "saved to" for each one it had to receive), and the worker received a small part of what
    # it received unseeded (the tensors of 10 MiB or less, the graphs); the control did not change.
    journal = journal_of_invocation(W1, "llama-rpc-server")
    assert "saved to" not in journal, journal[-2000:]
    assert received[W1] < 0.15 * SEEN["pushed"][W1], (received, SEEN["pushed"])
    assert received[W1] < 0.15 * hashed_bytes(SEEN["layers"][W1])
    assert received[W2] > 0.8 * SEEN["pushed"][W2]
    assert answer(seeded_inventory) == SEEN["text"]
    SEEN["seeded"] = True


def test_site_yml_repairs_a_corrupt_cache_file_and_changes_nothing_else(seeded_inventory):
    """The re-run of the seeded cluster, with one cache file spoilt: the repair is its only
    change (the other files kept, no other task changed, no rpc-server restarted)."""
    assert SEEN.get("seeded"), "needs the seeded run first"
    files = cache_files(W1)
    victim = f"{CACHE}/rpc/{files[0]}"
    flip = ("import sys\nwith open(sys.argv[1], 'r+b') as f:\n    f.seek(12345)\n    b = f.read(1)\n"
            "    f.seek(12345)\n    f.write(bytes([b[0] ^ 0xFF]))")
    node(W1).check_output(f"python3 -c {shlex.quote(flip)} {victim}")
    hasher = "/opt/llama.cpp/current/bin/llamacpp-fnv1a"
    assert not node(W1).check_output(f"{hasher} {victim}").startswith(os.path.basename(victim))
    server_before = invocation(MAIN, "llama-server")
    workers_before = {name: invocation(name, "llama-rpc-server") for name in (W1, W2)}
    run, _received = deploy("site.yml", seeded_inventory)
    repaired = run.results(SEED_TASK)[W1]
    assert len(repaired["repaired"]) == 1 and repaired["seeded"] == [], repaired
    assert len(repaired["kept"]) == len(files) - 1 and cache_files(W1) == files, repaired
    assert node(W1).check_output(f"{hasher} {victim}").startswith(os.path.basename(victim) + "  ")
    # The corrupt file may have been loaded: llama-server reloaded; nothing else changed.
    assert invocation(MAIN, "llama-server") != server_before
    assert run.changed()[W1] == 1 and run.changed()[W2] == 0, run.changed()
    assert {name: invocation(name, "llama-rpc-server") for name in (W1, W2)} == workers_before
    assert "saved to" not in journal_of_invocation(W1, "llama-rpc-server")
    assert answer(seeded_inventory) == SEEN["text"]
