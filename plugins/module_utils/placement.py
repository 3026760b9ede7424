# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the layers of a model go: each node's weights, KV cache and compute buffers against
its usable memory, and the llama.cpp flags (-ngl, --tensor-split) that put them there.

How llama.cpp b11312 places a model over RPC devices (src/llama-model.cpp, load_tensors):
token_embd (the input layer) always stays on the main node's CPU; with -ngl N the first
n_layer + 1 - N layers stay there too; the rest, the output layer last (it counts as layer
n_layer), go to the RPC devices in --rpc order, split at the cumulative, normalised
--tensor-split proportions: layer j of the offloaded ones goes to the first device whose
cumulative share exceeds j / (offloaded layers). The plan gives each worker a contiguous run
of layers and writes the split with its boundaries half a layer away from any layer index, so
float rounding cannot move a layer.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# llama.cpp b11312: at most 16 devices in all (LLAMA_MAX_DEVICES); the main node's CPU is one.
MAX_WORKERS = 15
MIB = 1024 * 1024
GIB = 1024 * MIB


class PlacementError(ValueError):
    """The request cannot be planned at all (bad settings); the message names the fix."""


def kv_context(ctx_size, parallel):
    """The context llama.cpp b11312 allocates KV cells for (src/llama-context.cpp): -c padded to
    256, split over the parallel sequences, each share padded to 256 again. -c 512 with 4 slots
    holds 4 x 256 = 1024 cells, twice what it says."""
    pad = 256
    total = -(-int(ctx_size) // pad) * pad
    per_seq = -(-(total // int(parallel)) // pad) * pad
    return per_seq * int(parallel)


def compute_bytes(model, ctx_size, ubatch, holds_output=False, main=False):
    """An upper bound of one device's compute buffer, from the shapes llama.cpp reserves its
    worst-case graph with (flash attention off): attention scores of n_head x ctx per token of
    a micro-batch, the feed-forward and embedding activations; the device with the output
    layer also holds the logits of a micro-batch (n_vocab per token). The main node holds the
    inputs (masks of ctx per token, embeddings). All f32. Checked against llama.cpp's
    sched_reserve figures in the tests (tests/unit/fixtures/placement)."""
    n_embd, n_ff, n_head = model["n_embd"], model["n_ff"], max(1, model["n_head"])
    if main:
        per_token = 6 * ctx_size + 20 * n_embd
    else:
        per_token = 3 * n_head * ctx_size + 4 * n_ff + 8 * n_embd
    if holds_output:
        per_token += model["n_vocab"]
    return 4 * ubatch * per_token


def _layer_costs(model, ctx_size):
    """Bytes per placeable layer: the repeating layers with their KV cache at the full context
    (sliding-window layers need less: this errs on the safe side), then the output layer."""
    kv = ctx_size * model["kv_bytes_per_token_layer"]
    return [weights + kv for weights in model["layer_bytes"]] + [model["output_bytes"]]


def _partition(costs, fixed, usable, strict=True):
    """The contiguous split of costs (layers in order, the output layer last) over the devices
    in order that minimises sum(bytes_i ** 2 / usable_i): unconstrained, that puts bytes in
    proportion to usable memory; contiguous and whole layers, it is the closest to that.
    strict: no device may exceed its usable memory. Returns the layer counts per device, or
    None when no split fits, and the minimised sum (dynamic programming, devices x layers^2
    steps)."""
    n, inf = len(costs), float("inf")
    prefix = [0]
    for cost in costs:
        prefix.append(prefix[-1] + cost)
    best = [0.0] + [inf] * n  # best[i]: the first i layers on the devices so far
    choices = []
    for device, capacity in enumerate(usable):
        capacity = max(1, capacity)
        last = device == len(usable) - 1
        row, choice = [inf] * (n + 1), [0] * (n + 1)
        for end in ([n] if last else range(n + 1)):
            for begin in range(end + 1):
                if best[begin] == inf:
                    continue
                load = fixed[device] + prefix[end] - prefix[begin]
                if strict and load > capacity:
                    continue
                value = best[begin] + load * load / capacity
                if value < row[end]:
                    row[end], choice[end] = value, begin
        best = row
        choices.append(choice)
    if best[n] == inf:
        return None, inf
    counts, end = [], n
    for choice in reversed(choices):
        counts.append(end - choice[end])
        end = choice[end]
    return counts[::-1], best[n]


def tensor_split(counts):
    """--tensor-split values that give each device exactly counts[i] of the offloaded layers:
    twice the layer counts, with each inner boundary moved back by one (half a layer)."""
    total = sum(counts)
    bounds, running = [], 0
    for count in counts:
        running += count
        bounds.append(2 * running - (1 if 0 < running < total else 0))
    return [bound - previous for bound, previous in zip(bounds, [0] + bounds[:-1])]


def layers_from_split(split, n_layer, n_gpu_layers):
    """The device index of every layer (0..n_layer, the output last) as llama.cpp b11312
    computes it from --tensor-split and -ngl; -1 is the main node's CPU. Uses exact
    fractions, so a boundary that float rounding could move shows up as equality."""
    from fractions import Fraction
    total = sum(split)
    start = max(n_layer + 1 - n_gpu_layers, 0)
    offloaded = min(n_gpu_layers, n_layer + 1)
    cumulative, running = [], 0
    for value in split:
        running += value
        cumulative.append(Fraction(running) / total)
    devices = []
    for layer in range(n_layer + 1):
        if layer < start:
            devices.append(-1)
            continue
        share = Fraction(layer - start, offloaded)
        devices.append(next(i for i, bound in enumerate(cumulative) if bound > share))
    return devices


def _node(name, role, usable, weights=0, kv=0, compute=0, layers=(), endpoint=None):
    total = weights + kv + compute
    return {
        "name": name, "role": role, "endpoint": endpoint,
        "layers": list(layers), "n_layers": len(layers),
        "weights_bytes": weights, "kv_bytes": kv, "compute_bytes": compute,
        "total_bytes": total, "usable_bytes": usable,
        "fill": round(total / usable, 4) if usable > 0 else None,
    }


def _layer_name(layer, n_layer):
    return "output" if layer == n_layer else str(layer)


def plan(model, main, workers, ctx_size=4096, ubatch=512, parallel=1, weights=None, explain=True):
    """Plans the placement of model (gguf.model_facts) on main ({name, usable_bytes}) and
    workers ([{name, endpoint, usable_bytes}] in --rpc order).

    By default every layer goes to the workers, in contiguous runs as close to in proportion
    to their usable memory as whole layers allow (_partition); only when the workers cannot
    hold them all does the main node keep the first layers. weights (one number per worker) instead splits the
    layers in those proportions, as --tensor-split does. The result says whether it fits,
    the flags, and per node its layers and bytes."""
    if len(workers) > MAX_WORKERS:
        raise PlacementError(
            "%d workers, but llama.cpp accepts at most %d RPC devices besides the main node's CPU "
            "(16 devices in all, at most %d --tensor-split values); remove %d worker(s)"
            % (len(workers), MAX_WORKERS, MAX_WORKERS, len(workers) - MAX_WORKERS))
    if weights is not None:
        if len(weights) != len(workers) or any(w < 0 for w in weights) or not any(weights):
            raise PlacementError(
                "the placement weights need one number >= 0 per worker, not all 0 (%d workers, got %s)"
                % (len(workers), list(weights)))
    for number in (ctx_size, ubatch, parallel):
        if int(number) < 1:
            raise PlacementError("ctx_size, ubatch and parallel must be >= 1")
    n_layer = model["n_layer"]
    ctx_size = kv_context(ctx_size, parallel)
    costs = _layer_costs(model, ctx_size)
    out_extra = 4 * ubatch * model["n_vocab"]
    kv_layer = ctx_size * model["kv_bytes_per_token_layer"]
    worker_compute = compute_bytes(model, ctx_size, ubatch)
    # The main node: token_embd, its compute buffer and the logits of every sequence.
    main_fixed = model["input_bytes"] + compute_bytes(model, ctx_size, ubatch, main=True) \
        + 4 * model["n_vocab"] * parallel
    # A main node that computes layers itself reserves a worker's compute buffer for them
    # (the packing benchmark saw 339 MiB allocated against 332 planned without it).
    main_layer_compute = max(0, worker_compute - compute_bytes(model, ctx_size, ubatch, main=True))
    usable = [w["usable_bytes"] for w in workers]

    if not workers:  # the main node alone: everything on its CPU (-ngl 0)
        kept, counts, order = n_layer + 1, [], []
    elif weights is not None:
        kept, counts, order = 0, _split_counts(weights, n_layer + 1), list(range(len(workers)))
    else:
        kept, counts, order = _auto(costs, _repack_per_layer(model), out_extra, main_fixed,
                                    main_layer_compute, main["usable_bytes"], worker_compute, usable)
    workers = [workers[index] for index in order]
    offloaded = n_layer + 1 - kept

    main_layers = list(range(kept))
    main_repeating = min(kept, n_layer)
    main_output = kept > n_layer
    nodes = [_node(main["name"], "main", main["usable_bytes"],
                   weights=model["input_bytes"] + sum(model["layer_bytes"][:main_repeating])
                   + (model["output_bytes"] if main_output else 0),
                   kv=kv_layer * main_repeating,
                   # llama.cpp repacks some quantised weights of CPU layers into a second copy
                   # (CPU_REPACK); the compute share counts that copy.
                   compute=main_fixed - model["input_bytes"] + _repack(model, main_repeating)
                   + (main_layer_compute if kept else 0) + (out_extra if main_output else 0),
                   layers=[_layer_name(layer, n_layer) for layer in main_layers])]
    first = kept
    for worker, count in zip(workers, counts):
        layers = list(range(first, first + count))
        first += count
        holds_output = n_layer in layers
        repeating = [layer for layer in layers if layer < n_layer]
        nodes.append(_node(
            worker["name"], "worker", worker["usable_bytes"], endpoint=worker.get("endpoint"),
            weights=sum(model["layer_bytes"][layer] for layer in repeating)
            + (model["output_bytes"] if holds_output else 0),
            kv=kv_layer * len(repeating),
            compute=worker_compute + (out_extra if holds_output else 0),
            layers=[_layer_name(layer, n_layer) for layer in layers]))
    over = [node for node in nodes if node["total_bytes"] > node["usable_bytes"]]
    result = {
        "fits": not over,
        "n_gpu_layers": offloaded,
        "tensor_split": tensor_split(counts),
        "main_layers": kept,
        "ctx_size": ctx_size, "ubatch": ubatch, "parallel": parallel,
        "rpc": [worker.get("endpoint") for worker in workers],
        "nodes": nodes,
        "need_bytes": sum(node["total_bytes"] for node in nodes),
        "usable_bytes": sum(node["usable_bytes"] for node in nodes),
        "model_bytes": model["total_bytes"],
    }
    result["summary"] = summary(result)
    if over and explain:
        result["message"] = _refusal(model, result, over, main, workers, ctx_size, ubatch, parallel, weights)
    return result


def _repack_per_layer(model):
    """Bytes of each layer the CPU may repack into a copy (facts without them: every byte)."""
    return model.get("layer_repack_bytes", model["layer_bytes"])


def _repack(model, layers):
    """Bytes of the CPU_REPACK copies of the first layers."""
    return sum(_repack_per_layer(model)[:layers])


def _split_counts(weights, offloaded):
    """Layer counts per device for explicit weights, the way llama.cpp splits."""
    devices = layers_from_split(list(weights), offloaded - 1, offloaded)
    return [devices.count(index) for index in range(len(weights))]


def _auto(costs, repack_bytes, out_extra, main_fixed, main_layer_compute, main_usable, worker_compute, usable):
    """(layers the main node keeps, layer counts per worker, their order): all layers on the
    workers when they fit, else the fewest layers kept on the main node that make the workers
    fit. The worker with the output layer (the heaviest: output weights and the logits) is
    the last in --rpc order, so the given order is tried and the one with the largest worker
    moved last. When nothing fits, the split with none kept that is closest to proportional
    (for the refusal's figures)."""
    fixed = [worker_compute] * len(usable)
    tail = list(costs)
    tail[-1] += out_extra
    orders = [list(range(len(usable)))]
    largest = max(orders[0], key=lambda index: (usable[index], index))
    if largest != orders[0][-1]:
        orders.append([index for index in orders[0] if index != largest] + [largest])
    main_bytes = main_fixed
    for kept in range(len(costs)):
        if main_bytes > main_usable:
            break
        found = []
        for order in orders:
            counts, value = _partition(tail[kept:], fixed, [usable[index] for index in order])
            if counts is not None:
                found.append((value, counts, order))
        if found:
            _value, counts, order = min(found, key=lambda item: item[0])
            return kept, counts, order
        if kept < len(repack_bytes):
            main_bytes += costs[kept] + repack_bytes[kept] + (main_layer_compute if kept == 0 else 0)
    counts, _value = _partition(tail, fixed, usable, strict=False)
    return 0, counts, orders[0]


def _mib(count):
    return "%d MiB" % round(count / MIB)


def _span(layers):
    if not layers:
        return "no layers"
    return "layer %s" % layers[0] if len(layers) == 1 else "layers %s-%s (%d)" % (layers[0], layers[-1], len(layers))


def summary(result):
    """One line per node: its layers and bytes against its usable memory."""
    lines = ["-ngl %d --tensor-split %s --rpc %s" % (
        result["n_gpu_layers"], ",".join(str(v) for v in result["tensor_split"]),
        ",".join(str(endpoint) for endpoint in result["rpc"]))]
    for node in result["nodes"]:
        lines.append("%s%s: %s%s; weights %s + KV %s + compute %s = %s of %s usable (%d%%)" % (
            node["name"], " (%s)" % node["endpoint"] if node["endpoint"] else "",
            "embeddings, " if node["role"] == "main" else "", _span(node["layers"]),
            _mib(node["weights_bytes"]), _mib(node["kv_bytes"]), _mib(node["compute_bytes"]),
            _mib(node["total_bytes"]), _mib(node["usable_bytes"]), round(100 * (node["fill"] or 0))))
    return lines


def _gib(count):
    return "%.2f GiB" % (count / GIB)


def _refusal(model, result, over, main, workers, ctx_size, ubatch, parallel, weights):
    nodes = result["nodes"]
    parts = {
        "weights": sum(node["weights_bytes"] for node in nodes),
        "KV cache": sum(node["kv_bytes"] for node in nodes),
        "compute buffers": sum(node["compute_bytes"] for node in nodes),
    }
    lines = [
        "the model does not fit the cluster: it needs %s (%s; ctx_size %d, ubatch %d, parallel %d) "
        "and the nodes have %s usable in all"
        % (_gib(result["need_bytes"]), ", ".join("%s %s" % (k, _gib(v)) for k, v in parts.items()),
           ctx_size, ubatch, parallel, _gib(result["usable_bytes"])),
        "per node (needs / usable): " + "; ".join(
            "%s %s / %s%s" % (node["name"], _gib(node["total_bytes"]), _gib(node["usable_bytes"]),
                              " (over)" if node in over else "") for node in nodes),
    ]
    size = max(worker["usable_bytes"] for worker in workers) if workers else main["usable_bytes"]
    more = _more_workers(model, main, workers, size, ctx_size, ubatch, parallel)
    if more:
        lines.append("%d more worker(s) with %s usable each would make it fit" % (more, _gib(size)))
    else:
        lines.append("no number of workers with %s usable each (up to %d in all) would hold it"
                     % (_gib(size), MAX_WORKERS))
    if weights is not None:
        lines.append("(with the explicit placement weights %s; without them the plan balances by memory)"
                     % list(weights))
    lines.append("other fixes: a smaller quantisation, a smaller ctx_size or ubatch, more memory per node")
    return "; ".join(lines)


def _more_workers(model, main, workers, size, ctx_size, ubatch, parallel):
    for extra in range(1, MAX_WORKERS - len(workers) + 1):
        grown = list(workers) + [{"name": "new%d" % i, "usable_bytes": size} for i in range(extra)]
        if plan(model, main, grown, ctx_size, ubatch, parallel, explain=False)["fits"]:
            return extra
    return 0


_BUFFER_LINE = re.compile(
    r"(?:load_tensors|llama_kv_cache|sched_reserve|llama_context):\s+"
    r"(?:RPC\d+\[(?P<endpoint>[^\]]+)\]|CPU\w*)\s+"
    r"(?P<kind>model|KV|compute|output) buffer size =\s+(?P<mib>[\d.]+) MiB")
_LOAD_START = "load_tensors: loading model tensors"


def parse_load_log(text):
    """Per device, the MiB llama.cpp allocated in its last model load, from its log:
    {device: {"model", "kv", "compute"}} (the output buffer counts as compute). Devices are
    "CPU" (the main node: CPU, CPU_Mapped, CPU_REPACK) or the RPC endpoint host:port."""
    start = text.rfind(_LOAD_START)
    kinds = {"model": "model", "KV": "kv", "compute": "compute", "output": "compute"}
    devices = {}
    for match in _BUFFER_LINE.finditer(text, max(start, 0)):
        device = match.group("endpoint") or "CPU"
        entry = devices.setdefault(device, {"model": 0.0, "kv": 0.0, "compute": 0.0})
        entry[kinds[match.group("kind")]] += float(match.group("mib"))
    return devices
