"""Benchmark a deployed llamacpp.cluster against the hand-run llama.cpp recipe.

Runs on the cluster of an inventory (default: inventories/local, the containers of
`make demo`; deploy it with site.yml first) and writes <out>/<date>.json, <date>.md and
<date>.png. Every comparison runs its variants alternately (A B A B ...) for --pairs rounds
and reports medians and ratios against a baseline, measured side by side in this one run:

  recipe     hand recipe (rpc-server by hand, default threads and -t vCPUs, bare llama-completion)
             vs the collection (its services, bare llama-completion, and llamacpp.cluster.generate)
  threads    rpc-server's default thread count vs vCPUs (from the recipe rounds)
  modes      cli vs server mode for batches of K prompts
  concurrent K prompts: K CLI calls vs K sequential requests to llama-server vs all K at once on its
             parallel slots (the chatbot's case), by throughput
  workers    the main node alone vs 1..N RPC workers, with peak memory per node
  cache      model load time with and without rpc-server's tensor cache (-c)
  placement  a model no node can hold, on memory-limited local containers: the collection's plan vs
             llama.cpp's default split (allocated and peak memory per node), and the packing
  preseed    on local containers, the main node's link throttled: a cold load of the large model with
             every weight pushed vs workers whose rpc-server caches were pre-seeded, and a local-only load
  automation a no-op site.yml, generate.yml, and a bare request to llama-server
  deploy     on new local containers: a cold site.yml, a no-op one, scale-out by one worker
  ccache     on a new local container: a worker's build with an empty vs a warm compiler cache
  strategy   on 3 new local containers: per_family vs per_host builds (compiles, wall time)

The cluster is put back as deployed at the end (services running, nothing left behind).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import report
from cluster import TOP, BenchError, Cluster
from fresh_nodes import bench_ccache, bench_deploy, bench_strategy
from placement import SkipComparison, bench_placement
from preseed import bench_preseed

sys.path.insert(0, str(TOP / "scripts"))
import big_model  # noqa: E402  pylint: disable=wrong-import-position

PROMPT = "Explain in a few sentences why the sky is blue."
COMPARISONS = ("recipe", "threads", "modes", "concurrent", "workers", "cache", "placement", "preseed", "automation", "deploy",
               "ccache", "strategy")


def cli_sample(run: dict) -> dict:
    return {k: run.get(k) for k in ("wall_s", "ttft_s", "load_ms", "prompt_per_second", "predicted_per_second")} | {
        "peak_rss_mib": round(run["peak_rss_kib"] / 1024, 1) if run.get("peak_rss_kib") else None}


def bench_recipe(c: Cluster, args) -> tuple[dict, dict]:
    c.llama_server(running=False)  # it would hold the workers: one-shot runs only here
    state = {"now": None}

    def workers(kind):
        if state["now"] != kind:
            if kind == "service":
                c.stop_hand_rpc_servers()
                c.rpc_services(running=True)
            else:
                c.hand_rpc_servers(threads=kind == "hand-vcpus")
            state["now"] = kind

    def bare(kind):
        def measure():
            workers(kind)
            return cli_sample(c.cli(PROMPT, args.n_predict, c.endpoints)[0])
        return measure

    def module():
        workers("service")
        result, seconds = c.module(c.main, "llamacpp.cluster.generate", {
            "prompt": PROMPT, "model": c.model, "workers": c.endpoints, "n_predict": args.n_predict,
            "temperature": 0, "seed": 42, "mode": "cli", "ctx_size": 2048, "threads": c.vcpus[c.main],
            "n_gpu_layers": 99, "timeout": 900})
        t = result["timings"]
        return {"wall_s": t["wall_s"], "task_s": round(seconds, 3), "load_ms": t.get("load_ms"),
                "prompt_per_second": t.get("prompt_per_second"), "predicted_per_second": t.get("predicted_per_second")}

    labels = ("hand: rpc-server default threads", "hand: rpc-server -t vCPUs", "collection services, bare command",
              "collection: generate module (cli)")
    samples = report.alternate(args.pairs, dict(zip(labels, (bare("hand-default"), bare("hand-vcpus"),
                                                             bare("service"), module))))
    workers("service")
    recipe = report.comparison(
        "Hand recipe vs the collection (cli, one request)", samples,
        ["predicted_per_second", "prompt_per_second", "wall_s", "task_s"], labels[0],
        "wall s: the llama-completion run (for the module, as timed inside it); task s: the whole Ansible task "
        "on the controller. The module's overhead is its wall over the bare command's on the same services.")
    summary = recipe["summary"]
    recipe["derived"] = {
        "generate module's wall over the bare command's (same services)":
            _ratio(summary[labels[3]]["wall_s"], summary[labels[2]]["wall_s"]),
        "whole Ansible task over the bare command's wall": _ratio(summary[labels[3]]["task_s"],
                                                                  summary[labels[2]]["wall_s"]),
        "collection services' generation t/s over the hand recipe's (default threads)":
            _ratio(summary[labels[2]]["predicted_per_second"], summary[labels[0]]["predicted_per_second"]),
    }
    threads = report.comparison(
        "rpc-server threads: default (half the cores) vs vCPUs", {k: samples[k] for k in labels[:2]},
        ["predicted_per_second", "prompt_per_second"], labels[0], "The same rounds as the recipe comparison.")
    return recipe, threads


def _ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def bench_modes(c: Cluster, args) -> dict:
    samples = {}
    for k in args.batch:
        def cli():
            c.llama_server(running=False)
            runs = c.cli(PROMPT, args.n_predict, c.endpoints, repeat=k)
            return _batch(runs, start_s=0.0)

        def server():
            start_s = c.llama_server(running=True)
            return _batch(c.server(PROMPT, args.n_predict, repeat=k), start_s)

        for label, runs in report.alternate(args.pairs, {f"cli x{k}": cli, f"server x{k}": server}).items():
            samples[label] = runs
    c.llama_server(running=True)
    return report.comparison(
        "cli vs server mode for a batch of K prompts", samples,
        ["total_s", "ttft_s", "predicted_per_second", "start_s"], f"cli x{args.batch[0]}",
        "total s: the whole batch, for server mode including its restart until healthy (start s), paid once; "
        "TTFT: median time to the first generated text per request.")


def bench_concurrent(c: Cluster, args) -> dict:
    k, n = args.concurrent_k, args.n_predict

    def throughput(total_s, tokens):
        return round(tokens / total_s, 3) if total_s else None

    def cli():
        c.llama_server(running=False)
        runs = c.cli(PROMPT, n, c.endpoints, repeat=k)
        total = sum(r["wall_s"] for r in runs)
        # llama-completion's eval count leaves out the first token (sampled from the prompt's logits).
        tokens = sum((r["predicted_tokens"] or 0) + 1 for r in runs)
        return {"total_s": round(total, 3), "throughput_tps": throughput(total, tokens), "start_s": 0.0}

    def sequential():
        start_s = c.llama_server(running=True)
        runs = c.server(PROMPT, n, repeat=k)
        total = start_s + sum(r["wall_s"] for r in runs)
        return {"total_s": round(total, 3), "start_s": start_s,
                "throughput_tps": throughput(total, sum(r["predicted_tokens"] or 0 for r in runs))}

    def concurrent():
        start_s = c.llama_server(running=True)
        batch = c.server_batch(PROMPT, n, k)
        total = start_s + batch["total_s"]
        return {"total_s": round(total, 3), "start_s": start_s, "throughput_tps": throughput(total, batch["tokens"])}

    samples = report.alternate(args.pairs, {f"{k} CLI calls": cli, f"{k} server requests, one by one": sequential,
                                            f"{k} server requests at once": concurrent})
    c.llama_server(running=True)
    return report.comparison(
        f"{k} prompts of {n} tokens: CLI calls vs llama-server, one by one and all at once", samples,
        ["total_s", "throughput_tps", "start_s"], f"{k} CLI calls",
        "Throughput: tokens generated for all prompts per second of the whole batch. The server variants "
        "include llama-server's restart until healthy (start s), paid once; its parallel slots "
        "(llamacpp_main_server_parallel) answer the requests sent at once together, queueing the rest.")


def _batch(runs: list[dict], start_s: float) -> dict:
    return {"total_s": round(start_s + sum(r["wall_s"] for r in runs), 3), "start_s": start_s,
            "ttft_s": report.median(r["ttft_s"] for r in runs),
            "predicted_per_second": report.median(r["predicted_per_second"] for r in runs)}


def bench_workers(c: Cluster, args) -> dict:
    c.llama_server(running=False)

    def measure(count):
        def run():
            c.rpc_services(running=True)  # a fresh peak RSS per round
            sample = cli_sample(c.cli(PROMPT, args.n_predict, c.endpoints[:count])[0])
            peaks = list(c.peak_rss_kib(c.workers[:count]).values()) if count else []
            sample["worker_peak_rss_mib"] = round(max(peaks) / 1024, 1) if peaks else None
            sample["workers_total_rss_mib"] = round(sum(peaks) / 1024, 1) if peaks else None
            return sample
        return run

    variants = {("main node alone" if n == 0 else f"{n} RPC worker{'s' if n > 1 else ''}"): measure(n)
                for n in range(len(c.workers) + 1)}
    samples = report.alternate(args.pairs, variants)
    c.rpc_services(running=True)
    return report.comparison(
        "Main node alone vs RPC workers", samples,
        ["predicted_per_second", "prompt_per_second", "peak_rss_mib", "worker_peak_rss_mib", "workers_total_rss_mib"],
        "main node alone",
        "What the memory columns measure, plainly: peak RSS MiB is llama-completion's on the main node "
        "(getrusage), which counts the pages of the memory-mapped model file it touched - file-backed page cache "
        "that the kernel can reclaim, so it overstates what the main node needs; worker RSS MiB is the largest "
        "rpc-server peak RSS (VmHWM; all workers: their sum), which is anonymous memory (the tensors it "
        "received) plus about 4 MiB of its binary's file pages - rpc-server maps no model file. The placement "
        "comparison measures cgroup peaks instead. "
        "All nodes of a local run share the same CPU, so more workers cannot be faster here; memory is the point.")


def bench_cache(c: Cluster, args) -> dict:
    c.llama_server(running=False)
    c.clear_rpc_cache()
    c.hand_rpc_servers(threads=True, cache=True)
    c.cli(PROMPT, 1, c.endpoints)  # fills the cache

    def measure(cache):
        def run():
            c.hand_rpc_servers(threads=True, cache=cache)  # a restarted cluster
            return cli_sample(c.cli(PROMPT, args.n_predict, c.endpoints)[0])
        return run

    samples = report.alternate(args.pairs, {"rpc-server without -c": measure(False), "rpc-server -c": measure(True)})
    c.stop_hand_rpc_servers()
    c.clear_rpc_cache()
    c.rpc_services(running=True)
    return report.comparison("Tensor cache (-c): model load after an rpc-server restart", samples,
                             ["load_ms", "wall_s"], "rpc-server without -c")


def bench_automation(c: Cluster, args) -> dict:
    c.llama_server(running=True)
    variants = {
        "site.yml, no change": lambda: {"wall_s": round(c.playbook("site.yml"), 3)},
        "generate.yml (server mode)": lambda: {"wall_s": round(c.playbook(
            "playbooks/generate.yml", "-e", f"llamacpp_n_predict={args.n_predict}", "-e", "llamacpp_mode=server",
            "-e", f"llamacpp_prompt={PROMPT}"), 3)},
        "bare request to llama-server": lambda: {"wall_s": c.server(PROMPT, args.n_predict)[0]["wall_s"]},
    }
    samples = report.alternate(args.pairs, variants)
    return report.comparison("Automation cost", samples, ["wall_s"], "bare request to llama-server",
                             "Wall time on the controller for the playbooks; on the main node for the bare request.")


def timed(c: Cluster, name: str, bench):
    """Runs one comparison, printing its name, then its time and ad-hoc command count."""
    print(f"bench: {name}", flush=True)
    start, calls = time.monotonic(), c.calls
    result = bench()
    print(f"bench: {name} took {time.monotonic() - start:.0f} s, {c.calls - calls} ad-hoc commands", flush=True)
    return result


def machine(c: Cluster, args) -> dict:
    manifest = c.info["manifest"]
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"controller_cpu": cpu, "controller_vcpus": os.cpu_count(),
            "nodes": f"1 main + {len(c.workers)} workers, vCPUs {c.vcpus}", "node_cpu": c.info["cpu_model"],
            "llama_cpp": f"{manifest.get('version')} ({manifest.get('commit', '')[:12]}, build "
                         f"{manifest.get('build_number')})", "model": Path(c.model).name, "inventory": args.inventory}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-i", "--inventory", default="inventories/local")
    parser.add_argument("--pairs", type=int, default=3, help="rounds of each comparison (default 3)")
    parser.add_argument("-n", "--n-predict", type=int, default=128)
    parser.add_argument("--batch", type=lambda v: [int(k) for k in v.split(",")], default=[1, 5, 20],
                        help="batch sizes K of the modes comparison (default 1,5,20)")
    parser.add_argument("--concurrent-k", type=int, default=20, help="prompts of the concurrent comparison (default 20)")
    parser.add_argument("--only", type=lambda v: v.split(","), default=None,
                        help=f"comma-separated subset of {','.join(COMPARISONS)}")
    parser.add_argument("--deploy-workers", type=int, default=2,
                        help="workers of the deploy comparison's new cluster before scale-out (default 2)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny settings: 1 round, 8 tokens, K=1,2, deploy 1 worker then 2")
    parser.add_argument("--big-model", type=Path, default=None,
                        help="the placement and preseed comparisons' model (default: scripts/big_model.py's cached one)")
    parser.add_argument("--out", type=Path, default=TOP / "benchmarks" / "results")
    parser.add_argument("--report", type=Path, metavar="RESULT.json",
                        help="only render the Markdown and the plot of an earlier result again")
    args = parser.parse_args(argv)
    if args.report:
        stem = report.write(json.loads(args.report.read_text()), args.out)
        print(f"bench: wrote {stem}.json, .md and .png")
        return 0
    # Without --only every comparison runs, and placement and preseed only where they can (local containers).
    args.placement_optional = args.only is None
    args.only = args.only or list(COMPARISONS)
    if args.big_model is None:
        args.big_model = Path(os.environ.get("LLAMACPP_FIXTURE_BIG_MODEL") or big_model.big_model_path())
    if args.smoke:
        args.pairs, args.n_predict, args.batch, args.deploy_workers, args.concurrent_k = 1, 8, [1, 2], 1, 3
    unknown = set(args.only) - set(COMPARISONS)
    if unknown or min(args.pairs, args.n_predict, args.deploy_workers, args.concurrent_k, *args.batch) < 1:
        parser.error(f"bad settings: unknown comparisons {sorted(unknown)}, or pairs, n-predict, batch or "
                     "deploy-workers below 1")

    c = Cluster(args.inventory)
    try:
        c.discover()
        server_enabled = "active" in c.sh(c.main, "systemctl is-active llama-server || true")
        comparisons = {}
        try:
            if "recipe" in args.only or "threads" in args.only:
                recipe, threads = timed(c, "recipe and threads", lambda: bench_recipe(c, args))
                comparisons.update({k: v for k, v in (("recipe", recipe), ("threads", threads)) if k in args.only})
            for name, bench in (("modes", bench_modes), ("concurrent", bench_concurrent), ("workers", bench_workers),
                                ("cache", bench_cache),
                                ("placement", bench_placement), ("preseed", bench_preseed),
                                ("automation", bench_automation)):
                if name in args.only:
                    try:
                        comparisons[name] = timed(c, name, lambda bench=bench: bench(c, args))
                    except SkipComparison as exc:
                        if not args.placement_optional:
                            raise BenchError(str(exc)) from exc
                        print(f"bench: {name} skipped: {exc}", flush=True)
        finally:
            c.restore(server_enabled)
        for name, bench in (("deploy", bench_deploy), ("ccache", bench_ccache), ("strategy", bench_strategy)):
            if name in args.only:
                print(f"bench: {name} (new local containers)", flush=True)
                comparisons[name] = bench(args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    result = {"date": date, "machine": machine(c, args), "comparisons": comparisons,
              "settings": {"pairs": args.pairs, "n_predict": args.n_predict, "batch": args.batch,
                           "concurrent_k": args.concurrent_k, "prompt": PROMPT}}
    stem = report.write(result, args.out)
    print(report.markdown(result))
    print(f"bench: wrote {stem}.json, .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
