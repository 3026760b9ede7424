# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Distributed llama.cpp inference: endpoints, preflight, the one-shot CLI run, timing
parsing and error diagnosis. No Ansible imports, so the unit tests use it directly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time

GGUF_MAGIC = b"GGUF"
CLI_BINARY = "llama-completion"

_ENDPOINT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>\d{1,5})$")
_TIMING = re.compile(
    r"common_perf_print:\s+(?P<name>load time|prompt eval time|eval time|total time)\s*=\s*(?P<ms>[0-9.]+) ms"
    r"(?:\s*/\s*(?P<count>\d+) (?:tokens|runs))?"
)


class InferenceError(Exception):
    """A failure with a message that names the cause and the fix."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


def parse_endpoint(endpoint):
    """Split 'host:port' or '[v6]:port' into (host, port); raise on anything else."""
    match = _ENDPOINT.match(endpoint or "")
    port = int(match.group("port")) if match else 0
    if not match or not 1 <= port <= 65535:
        raise InferenceError(f"worker endpoint '{endpoint}' is not host:port (port 1-65535, IPv6 in brackets)")
    return match.group("v6") or match.group("host"), port


def check_endpoints(workers):
    """Validate the worker list: well-formed, no duplicates. Returns (host, port) pairs."""
    pairs = [parse_endpoint(w) for w in workers]
    duplicates = sorted({w for w in workers if workers.count(w) > 1})
    if duplicates:
        raise InferenceError(f"worker endpoint(s) listed twice: {', '.join(duplicates)}; list each worker once")
    return pairs


def unreachable_workers(workers, timeout=3.0):
    """The workers that do not accept a TCP connection within timeout seconds."""
    down = []
    for endpoint in workers:
        host, port = parse_endpoint(endpoint)
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except OSError as exc:
            down.append(f"{endpoint} ({exc.strerror or exc})")
    return down


def check_model(path):
    """The model must exist and start with the GGUF magic."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise InferenceError(f"cannot read the model {path}: {exc.strerror}; check the model path on the main node")
    if magic != GGUF_MAGIC:
        raise InferenceError(f"{path} is not a GGUF model (it starts with {magic!r}, not b'GGUF'); "
                             "re-download it or point model at a .gguf file")


def check_binary(path):
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise InferenceError(f"{path} is missing or not executable; run the llamacpp.cluster.build role "
                             "on the main node or set bin_dir")


def cli_command(binary, model, prompt, workers, n_predict, temperature, seed, ctx_size, threads,
                n_gpu_layers, top_k=None, top_p=None, tensor_split=None, ubatch_size=None):
    cmd = [binary, "-m", model, "-p", prompt, "-n", str(n_predict), "--temp", str(temperature),
           "--seed", str(seed), "-c", str(ctx_size), "-t", str(threads), "-no-cnv", "--no-display-prompt"]
    if ubatch_size is not None:
        cmd += ["-ub", str(ubatch_size)]
    if tensor_split:
        cmd += ["--tensor-split", ",".join("%g" % value for value in tensor_split)]
    if top_k is not None:
        cmd += ["--top-k", str(top_k)]
    if top_p is not None:
        cmd += ["--top-p", str(top_p)]
    if workers:
        cmd += ["--rpc", ",".join(workers)]
    cmd += ["-ngl", str(n_gpu_layers)]
    return cmd


def parse_timings(stderr):
    """Timings from llama.cpp's common_perf_print lines."""
    found = {}
    for match in _TIMING.finditer(stderr or ""):
        found[match.group("name")] = (float(match.group("ms")), int(match.group("count") or 0))
    timings = {}
    if "load time" in found:
        timings["load_ms"] = found["load time"][0]
    if "prompt eval time" in found:
        ms, count = found["prompt eval time"]
        timings.update(prompt_ms=ms, prompt_tokens=count,
                       prompt_per_second=round(count * 1000.0 / ms, 2) if ms else None)
    if "eval time" in found:
        ms, count = found["eval time"]
        timings.update(predicted_ms=ms, predicted_tokens=count,
                       predicted_per_second=round(count * 1000.0 / ms, 2) if ms else None)
    if "total time" in found:
        timings["total_ms"] = found["total time"][0]
    return timings


def truncate_at_stop(text, stop):
    cut = min((text.find(s) for s in stop or [] if s and s in text), default=-1)
    return text[:cut] if cut >= 0 else text


_DIAGNOSES = [
    (re.compile(r"Failed to connect to (\S+)"),
     "worker {0} refused or dropped the connection: check that its rpc-server runs and that its firewall "
     "admits this node"),
    (re.compile(r"RPC handshake failed for (\S+)"),
     "worker {0} runs a different llama.cpp build: rebuild all nodes at one version"),
    (re.compile(r"RPC server version mismatch"),
     "a worker runs a different llama.cpp build: rebuild all nodes at one version"),
    (re.compile(r"crashed or returned malformed response"),
     "a worker crashed or closed the connection mid-run (out of memory, restarted, or a different build): "
     "check the workers' journals (journalctl -u llama-rpc-server)"),
    (re.compile(r"Failed to parse endpoint: (\S+)"),
     "llama.cpp could not parse the worker endpoint {0}: use host:port"),
    (re.compile(r"failed to load model|error loading model"),
     "llama.cpp could not load the model: the file is corrupt, truncated or of an unsupported architecture"),
    (re.compile(r"failed to allocate|out of memory|cannot allocate", re.I),
     "a node ran out of memory for the model: add workers, use a smaller quantisation or reduce ctx_size"),
]


def diagnose(rc, stderr, model=None):
    """A sentence naming the cause and the fix for a failed llama.cpp run. llama.cpp may exit
    before its asynchronous log reaches stderr; then a model that is not whole is named by
    reading its GGUF layout."""
    for pattern, sentence in _DIAGNOSES:
        match = pattern.search(stderr or "")
        if match:
            subject = next((g for g in match.groups() if g), "?") if match.groups() else ""
            return sentence.format(subject.rstrip(".,"))
    # Imported here: benchmarks/node_bench.py runs this file on its own, without the collection.
    from ansible_collections.llamacpp.cluster.plugins.module_utils import gguf

    problem = gguf.layout_problem(model) if model else None
    if problem:
        return f"llama.cpp could not load the model: {problem}; re-download or re-copy it"
    return f"llama.cpp exited with rc={rc}; see stderr_tail"


def run_with_timeout(cmd, timeout, env=None):
    """Run cmd in its own process group; on timeout kill the whole group.

    Returns (rc, stdout, stderr, elapsed_seconds); rc is None when the timeout expired.
    """
    start = time.monotonic()
    # The command runs from an argument list; no shell is involved.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        rc = None
    return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), time.monotonic() - start


def tail(text, lines=20):
    return "\n".join((text or "").strip().splitlines()[-lines:])
