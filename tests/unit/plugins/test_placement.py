"""The placement plan: the split llama.cpp applies, balance by memory, the fit check, and the
estimates against buffer sizes llama.cpp b11312 reported for the real fixture model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from ansible_collections.llamacpp.cluster.plugins.module_utils import placement
from ansible_collections.llamacpp.cluster.plugins.module_utils.placement import PlacementError, plan

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "placement"
MIB, GIB = 1024 ** 2, 1024 ** 3
GEMMA = json.loads((FIXTURES / "gemma-3-270m-q4_k_m.facts.json").read_text())


def big_model(n_layer=18, layer=66 * MIB, embd=170 * MIB):
    """A model shaped like the suite's generated one: equal layers, a large tied embedding."""
    return dict(GEMMA, n_layer=n_layer, layer_bytes=[layer] * n_layer, input_bytes=embd,
                output_bytes=embd + 2560, total_bytes=embd + n_layer * layer, n_ff=16384)


def workers(*usable):
    return [{"name": f"w{i}", "endpoint": f"10.0.0.{i + 1}:50052", "usable_bytes": int(u)} for i, u in enumerate(usable)]


MAIN = {"name": "main", "usable_bytes": 24 * GIB}


def llama_cpp_devices(split, n_layer, n_gpu_layers):
    """llama.cpp b11312's layer -> device assignment in float32, as src/llama-model.cpp does it."""
    splits = np.array(split, dtype=np.float32)
    cumulative = np.cumsum(splits, dtype=np.float32) / np.float32(splits.sum(dtype=np.float32))
    start = max(n_layer + 1 - n_gpu_layers, 0)
    offloaded = min(n_gpu_layers, n_layer + 1)
    devices = []
    for layer in range(n_layer + 1):
        if layer < start:
            devices.append(-1)
        else:
            share = np.float32(layer - start) / np.float32(offloaded)
            devices.append(int(np.searchsorted(cumulative, share, side="right")))
    return devices


@pytest.mark.parametrize("counts", [[10, 9], [1, 18], [0, 19], [19, 0], [5, 5, 5, 4], [7, 0, 6, 0, 6],
                                    [1] * 15, [3, 120, 4], [60, 61]])
def test_the_split_gives_each_device_exactly_its_layers(counts):
    offloaded = sum(counts)
    split = placement.tensor_split(counts)
    for n_layer, ngl in ((offloaded - 1, offloaded), (offloaded + 4, offloaded)):
        expected = [-1] * (n_layer + 1 - ngl) + [i for i, c in enumerate(counts) for _layer in range(c)]
        assert llama_cpp_devices(split, n_layer, ngl) == expected
        assert placement.layers_from_split(split, n_layer, ngl) == expected


def test_equal_workers_hold_every_layer_in_equal_shares():
    result = plan(big_model(), MAIN, workers(2 * GIB, 2 * GIB), ctx_size=512, ubatch=128)
    assert result["fits"] and result["main_layers"] == 0 and result["n_gpu_layers"] == 19
    main, first, second = result["nodes"]
    assert main["layers"] == [] and main["weights_bytes"] == 170 * MIB
    layers = first["layers"] + second["layers"]
    assert layers == [str(i) for i in range(18)] + ["output"]
    assert abs(first["total_bytes"] - second["total_bytes"]) <= 66 * MIB + 170 * MIB
    assert llama_cpp_devices(result["tensor_split"], 18, 19).count(0) == first["n_layers"]


def test_unequal_workers_get_bytes_in_proportion_within_a_layer():
    result = plan(big_model(), MAIN, workers(2 * GIB, 1 * GIB), ctx_size=512, ubatch=128)
    assert result["fits"]
    big, small = (node for node in result["nodes"] if node["role"] == "worker")
    share = big["usable_bytes"] / (big["usable_bytes"] + small["usable_bytes"])
    total = big["total_bytes"] + small["total_bytes"]
    assert abs(big["total_bytes"] - share * total) <= 66 * MIB


def test_the_largest_worker_takes_the_output_layer():
    # The output layer (embeddings copy + logits) is the heaviest: its worker goes last in --rpc.
    result = plan(GEMMA, {"name": "main", "usable_bytes": 300 * MIB}, workers(400 * MIB, 300 * MIB),
                  ctx_size=1024, ubatch=128)
    assert result["fits"]
    assert result["rpc"] == ["10.0.0.2:50052", "10.0.0.1:50052"]
    assert result["nodes"][-1]["layers"] == ["output"] and result["nodes"][-1]["name"] == "w0"


def test_the_main_node_keeps_layers_only_when_the_workers_cannot_hold_them():
    model = big_model()
    roomy = plan(model, MAIN, workers(3 * GIB, 3 * GIB), ctx_size=512, ubatch=128)
    assert roomy["main_layers"] == 0
    tight = plan(model, MAIN, workers(500 * MIB, 700 * MIB), ctx_size=512, ubatch=128)
    assert tight["fits"] and tight["main_layers"] > 0
    assert tight["n_gpu_layers"] == 19 - tight["main_layers"]
    assert tight["nodes"][0]["layers"] == [str(i) for i in range(tight["main_layers"])]
    devices = llama_cpp_devices(tight["tensor_split"], 18, tight["n_gpu_layers"])
    assert devices.count(-1) == tight["main_layers"]
    assert all(node["total_bytes"] <= node["usable_bytes"] for node in tight["nodes"])


def test_a_model_too_big_for_the_cluster_is_refused_with_what_would_fit_it():
    model = big_model()
    result = plan(model, {"name": "main", "usable_bytes": 400 * MIB}, workers(600 * MIB, 600 * MIB),
                  ctx_size=512, ubatch=128)
    assert not result["fits"]
    message = result["message"]
    assert message.startswith("the model does not fit the cluster: it needs ")
    for name in ("main", "w0", "w1"):
        assert re.search(rf"{name} [\d.]+ GiB / [\d.]+ GiB", message)
    more = int(re.search(r"(\d+) more worker\(s\) with 0.59 GiB usable each would make it fit", message).group(1))
    grown = workers(*[600 * MIB] * (2 + more))
    assert plan(model, {"name": "main", "usable_bytes": 400 * MIB}, grown, ctx_size=512, ubatch=128)["fits"]
    assert not plan(model, {"name": "main", "usable_bytes": 400 * MIB}, grown[:-1], ctx_size=512, ubatch=128)["fits"]


def test_a_model_no_number_of_workers_can_hold_says_so():
    result = plan(big_model(layer=900 * MIB), {"name": "main", "usable_bytes": 400 * MIB}, workers(600 * MIB),
                  ctx_size=512, ubatch=128)
    assert not result["fits"] and "no number of workers with 0.59 GiB usable each" in result["message"]


def test_the_main_node_alone_holds_everything_or_is_refused():
    alone = plan(GEMMA, MAIN, [], ctx_size=1024, ubatch=128)
    assert alone["fits"] and alone["n_gpu_layers"] == 0 and alone["rpc"] == [] and alone["tensor_split"] == []
    assert alone["nodes"][0]["layers"][-1] == "output" and len(alone["nodes"]) == 1
    small = plan(big_model(), {"name": "main", "usable_bytes": 700 * MIB}, [], ctx_size=512, ubatch=64)
    assert not small["fits"]
    assert re.search(r"main 1\.\d\d GiB / 0\.68 GiB \(over\); \d+ more worker\(s\) with 0\.68 GiB", small["message"])


def test_the_main_node_alone_cannot_hold_what_its_memory_does_not():
    # The main node's share counts too: a main node smaller than the embeddings is refused.
    result = plan(big_model(), {"name": "main", "usable_bytes": 100 * MIB}, workers(4 * GIB, 4 * GIB),
                  ctx_size=512, ubatch=128)
    assert not result["fits"] and "main 0.17 GiB / 0.10 GiB (over)" in result["message"]


def test_more_workers_than_llama_cpp_accepts_are_refused():
    with pytest.raises(PlacementError, match="16 workers, but llama.cpp accepts at most 15 RPC devices"):
        plan(GEMMA, MAIN, workers(*[GIB] * 16))


def test_explicit_weights_split_like_tensor_split():
    result = plan(big_model(), MAIN, workers(4 * GIB, 4 * GIB), ctx_size=512, ubatch=128, weights=[3, 1])
    counts = [node["n_layers"] for node in result["nodes"][1:]]
    assert counts == [llama_cpp_devices([3, 1], 18, 19).count(i) for i in (0, 1)]
    assert result["rpc"] == ["10.0.0.1:50052", "10.0.0.2:50052"]
    with pytest.raises(PlacementError, match="one number >= 0 per worker"):
        plan(GEMMA, MAIN, workers(GIB, GIB), weights=[1])


def test_explicit_weights_that_overfill_a_worker_are_refused():
    result = plan(big_model(), MAIN, workers(400 * MIB, 4 * GIB), ctx_size=512, ubatch=128, weights=[1, 0.1])
    assert not result["fits"] and "explicit placement weights" in result["message"]


def test_the_summary_names_each_node_its_layers_and_bytes():
    result = plan(GEMMA, MAIN, workers(GIB, GIB), ctx_size=1024, ubatch=128)
    assert result["summary"][0] == "-ngl 19 --tensor-split %s --rpc %s" % (
        ",".join(map(str, result["tensor_split"])), ",".join(result["rpc"]))
    assert result["summary"][1].startswith("main: embeddings, no layers; weights 170 MiB")
    assert re.match(r"w\d \(10\.0\.0\.\d:50052\): layers? ", result["summary"][2])


def recorded(name):
    """A recorded llama-completion run: its flags and the buffers llama.cpp reported."""
    text = (FIXTURES / f"{name}.log").read_text()
    flags = text.splitlines()[0]

    def value(flag):
        return re.search(rf" {flag} (\S+)", flags).group(1)
    return {"rpc": value("--rpc").split(","), "ngl": int(value("-ngl")),
            "split": [int(v) for v in value("--tensor-split").split(",")],
            "ctx": int(value("-c")), "ub": int(value("-ub"))}, placement.parse_load_log(text)


CASES = {
    # name: worker usable MiB, main usable MiB (the plans that produced the recorded runs)
    "equal-c4096-ub512": ((24576, 24576), 300),
    "unequal-c1024-ub128": ((400, 300), 300),
    "tight-c2048-ub256": ((120, 500), 400),
    "main-keeps-c2048-ub256": ((80, 500), 400),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_plan_matches_what_llama_cpp_allocated(name):
    flags, buffers = recorded(name)
    usable, main_usable = CASES[name]
    nodes = [{"name": f"w{i}", "endpoint": f"127.0.0.1:{50152 + i}", "usable_bytes": u * MIB} for i, u in enumerate(usable)]
    result = plan(GEMMA, {"name": "main", "usable_bytes": main_usable * MIB}, nodes,
                  ctx_size=flags["ctx"], ubatch=flags["ub"])
    # The recorded run used this very plan.
    assert (result["rpc"], result["n_gpu_layers"], result["tensor_split"]) == (flags["rpc"], flags["ngl"], flags["split"])
    for node in result["nodes"]:
        seen = buffers["CPU" if node["role"] == "main" else node["endpoint"]]
        # Weights: exact but for alignment padding and CPU_REPACK copies (within one layer).
        assert abs(seen["model"] * MIB - node["weights_bytes"]) <= max(GEMMA["layer_bytes"]), node["name"]
        # KV cache and compute buffers: the plan is an upper bound.
        assert seen["kv"] * MIB <= node["kv_bytes"], node["name"]
        assert seen["compute"] * MIB <= node["compute_bytes"], node["name"]
        assert (seen["model"] + seen["kv"] + seen["compute"]) * MIB <= node["total_bytes"], node["name"]


def test_the_load_log_parser_reads_only_the_last_load():
    text = ("load_tensors: loading model tensors, this can take a while...\n"
            "load_tensors: RPC0[10.0.0.1:50052] model buffer size =     0.00 MiB\n"
            "sched_reserve: RPC0[10.0.0.1:50052] compute buffer size =    41.57 MiB\n"
            "load_tensors: loading model tensors, this can take a while...\n"
            "load_tensors:   CPU_Mapped model buffer size =   188.29 MiB\n"
            "load_tensors:   CPU_REPACK model buffer size =     3.16 MiB\n"
            "load_tensors: RPC0[10.0.0.1:50052] model buffer size =    24.77 MiB\n"
            "llama_kv_cache: RPC0[10.0.0.1:50052] KV buffer size =     4.00 MiB\n"
            "llama_kv_cache: RPC0[10.0.0.1:50052] KV buffer size =     3.75 MiB\n"
            "llama_context:        CPU  output buffer size =     1.00 MiB\n"
            "sched_reserve: RPC0[10.0.0.1:50052] compute buffer size =    15.00 MiB\n")
    assert placement.parse_load_log(text) == {
        "CPU": {"model": 191.45, "kv": 0.0, "compute": 1.0},
        "10.0.0.1:50052": {"model": 24.77, "kv": 7.75, "compute": 15.0},
    }


@pytest.mark.parametrize("ctx_size, parallel, cells", [
    (4096, 1, 4096), (4096, 4, 4096), (512, 1, 512), (1000, 1, 1024),
    # llama.cpp pads each sequence's share to 256 cells: 4 slots of 128 hold 4 x 256.
    (512, 4, 1024), (4096, 3, 4608), (1024, 4, 1024),
])
def test_the_kv_cache_holds_each_slots_padded_share(ctx_size, parallel, cells):
    assert placement.kv_context(ctx_size, parallel) == cells


def test_parallel_slots_count_their_padded_kv_cache():
    main = {"name": "main", "usable_bytes": 8 * placement.GIB}
    workers = [{"name": "w1", "endpoint": "w1:50052", "usable_bytes": 8 * placement.GIB}]
    one = placement.plan(GEMMA, main, workers, ctx_size=512, ubatch=64, parallel=1)
    four = placement.plan(GEMMA, main, workers, ctx_size=512, ubatch=64, parallel=4)
    kv = {p["parallel"]: sum(n["kv_bytes"] for n in p["nodes"]) for p in (one, four)}
    assert kv[4] == 2 * kv[1] == 2 * 512 * GEMMA["kv_bytes_per_token_layer"] * GEMMA["n_layer"]
