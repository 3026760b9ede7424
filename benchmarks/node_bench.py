"""Measurements taken on a cluster node (copied there by benchmarks/run.py with the collection's
plugins/module_utils/inference.py as llamacpp_inference.py; otherwise stdlib only).

  node_bench.py cli    --binary B --model M --prompt P -n N [--rpc A,B] [--threads T] --repeat K
                       [--ctx-size C] [--ubatch U] [--n-gpu-layers L] [--tensor-split S] [--flags "..."]
                       [--keep-log] [--allow-failure]
  node_bench.py server --url U --prompt P -n N --repeat K
  node_bench.py server-batch --url U --prompt P -n N --count K [--concurrency C]
                       (K requests at once: the batch's wall time and tokens)
  node_bench.py server-start --url U      (restart llama-server; seconds until /health is OK)
  node_bench.py server-load --binary B --model M --port P [--rpc A,B] [--threads T] [--ctx-size C]
                       [--ubatch U] [--n-gpu-layers L] [--tensor-split S]
                       (a llama-server of its own on 127.0.0.1:P: seconds from its start until
                       /health is OK, then it is stopped)

Prints one JSON list, one object per request: wall_s, ttft_s (time to the first generated
byte: the first stdout byte of llama-completion, or the first streamed token of llama-server),
prompt/generation tokens per second and, for cli, load_ms and the process's peak RSS (KiB,
which counts the pages of the mapped model file). --keep-log adds llama-completion's stderr
(its load log); with --allow-failure a failed run is reported ({"failed": true, "error": ...})
instead of ending the script.
"""

import argparse
import json
import os
import select
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from llamacpp_inference import cli_command, parse_timings


def run_cli(args):
    # The same command line and timing parser as llamacpp.cluster.generate in cli mode.
    split = [float(v) for v in args.tensor_split.split(",")] if args.tensor_split else None
    cmd = cli_command(args.binary, args.model, args.prompt, [w for w in args.rpc.split(",") if w], args.n_predict,
                      0, 42, args.ctx_size, args.threads, args.n_gpu_layers, tensor_split=split,
                      ubatch_size=args.ubatch) + shlex.split(args.flags)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, GGML_NO_BACKTRACE="1", LC_ALL="C.UTF-8"))
    ttft, out, err = None, b"", b""
    streams = [proc.stdout, proc.stderr]
    while streams:
        for stream in select.select(streams, [], [])[0]:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                streams.remove(stream)
            elif stream is proc.stdout:
                if ttft is None and chunk.strip():
                    ttft = time.monotonic() - start
                out += chunk
            else:
                err += chunk
    status, usage = os.wait4(proc.pid, 0)[1:]
    wall = time.monotonic() - start
    stderr = err.decode("utf-8", "replace")
    log = {"log": stderr} if args.keep_log else {}
    if os.waitstatus_to_exitcode(status) != 0:
        if args.allow_failure:
            return dict(log, failed=True, wall_s=round(wall, 3), error=stderr[-2000:])
        sys.exit(f"llama-completion failed: {stderr[-2000:]}")
    return dict(parse_timings(stderr), wall_s=round(wall, 3), ttft_s=round(ttft or wall, 3), peak_rss_kib=usage.ru_maxrss,
                text=out.decode("utf-8", "replace"), **log)


def run_server(args):
    body = json.dumps({"prompt": args.prompt, "n_predict": args.n_predict, "temperature": 0, "seed": 42,
                       "stream": True, "cache_prompt": False}).encode()
    headers = {"Content-Type": "application/json"}
    if args.api_key_file:
        with open(args.api_key_file, encoding="utf-8") as handle:
            key = next(line for line in handle.read().splitlines() if line and not line.startswith("#"))
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(f"{args.url.rstrip('/')}/completion", data=body, headers=headers)
    start, ttft, text, timings = time.monotonic(), None, "", {}
    with urllib.request.urlopen(request, timeout=600) as response:
        for line in response:
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            if event.get("content") and ttft is None:
                ttft = time.monotonic() - start
            text += event.get("content", "")
            timings = event.get("timings", timings)
    wall = time.monotonic() - start
    return {"wall_s": round(wall, 3), "ttft_s": round(ttft or wall, 3), "load_ms": None,
            "prompt_per_second": timings.get("prompt_per_second"), "prompt_tokens": timings.get("prompt_n"),
            "predicted_per_second": timings.get("predicted_per_second"), "predicted_tokens": timings.get("predicted_n"),
            "text": text}


def run_server_batch(args):
    """--count requests at once (at most --concurrency in flight): the server's slots answer
    them together and queue the rest. One sample: the whole batch's wall time and tokens."""
    results = [None] * args.count
    pending = list(range(args.count))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not pending:
                    return
                index = pending.pop(0)
            results[index] = run_server(args)

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _slot in range(min(args.concurrency or args.count, args.count))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - start
    if any(r is None for r in results):
        sys.exit("a request of the batch failed")
    tokens = sum(r["predicted_tokens"] or 0 for r in results)
    return {"total_s": round(wall, 3), "requests": args.count, "tokens": tokens,
            "ttft_s": round(statistics.median(r["ttft_s"] for r in results), 3),
            "predicted_per_second": round(statistics.median(r["predicted_per_second"] for r in results), 3)}


def wait_healthy(url, start, limit, alive=lambda: True):
    """Seconds from start until url/health answers 200; exits when alive() turns false or
    after limit seconds."""
    while time.monotonic() - start < limit:
        if not alive():
            return None
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=5) as response:
                if response.status == 200:
                    return round(time.monotonic() - start, 3)
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"llama-server did not become healthy within {limit} s")


def server_start(args):
    start = time.monotonic()
    subprocess.run(["systemctl", "restart", "llama-server"], check=True)
    return {"start_s": wait_healthy(args.url, start, 600)}


def server_load(args):
    cmd = [args.binary, "-m", args.model, "--host", "127.0.0.1", "--port", str(args.port), "-t", str(args.threads),
           "-c", str(args.ctx_size), "-ngl", str(args.n_gpu_layers), "--no-webui", "--parallel", "1"]
    cmd += ["-ub", str(args.ubatch)] if args.ubatch else []
    cmd += ["--rpc", args.rpc] if args.rpc else []
    cmd += ["--tensor-split", args.tensor_split] if args.tensor_split else []
    log = tempfile.TemporaryFile()  # not a pipe: a full pipe would stall the server's logging
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, GGML_NO_BACKTRACE="1"))
    try:
        seconds = wait_healthy(f"http://127.0.0.1:{args.port}", start, 900, alive=lambda: proc.poll() is None)
        if seconds is None:
            log.seek(0)
            sys.exit(f"llama-server exited with {proc.returncode}: {log.read().decode('utf-8', 'replace')[-2000:]}")
        return {"start_s": seconds}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["cli", "server", "server-batch", "server-start", "server-load"])
    parser.add_argument("--binary")
    parser.add_argument("--model")
    parser.add_argument("--url")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--api-key-file", help="llama-server's API key (server mode), as the main role stores it")
    parser.add_argument("--prompt", default="")
    parser.add_argument("-n", "--n-predict", type=int, default=128)
    parser.add_argument("--rpc", default="")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--count", type=int, default=1, help="server-batch: requests sent at once")
    parser.add_argument("--concurrency", type=int, default=0, help="server-batch: at most this many in flight (0: all)")
    parser.add_argument("--ctx-size", type=int, default=2048)
    parser.add_argument("--ubatch", type=int)
    parser.add_argument("--n-gpu-layers", type=int, default=99)
    parser.add_argument("--tensor-split", default="")
    parser.add_argument("--flags", default="", help="more llama-completion arguments, one shell-quoted string")
    parser.add_argument("--keep-log", action="store_true")
    parser.add_argument("--allow-failure", action="store_true")
    args = parser.parse_args()
    run = {"cli": run_cli, "server": run_server, "server-batch": run_server_batch, "server-start": server_start,
           "server-load": server_load}[args.mode]
    print(json.dumps([run(args) for _round in range(args.repeat)]))


if __name__ == "__main__":
    main()
