#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: generate
short_description: Run distributed llama.cpp inference over RPC workers and return the text
version_added: 0.1.0
description:
  - Runs on the cluster's main node. Generates text for a prompt with the model's layers offloaded to the
    llama.cpp RPC workers, and returns the generated text and llama.cpp's timings.
  - V(cli) mode runs C(llama-completion) once with C(--rpc) and C(-ngl); V(server) mode asks the main
    node's C(llama-server) over HTTP; V(auto) uses the server when its health endpoint answers, else the CLI.
  - Before spending minutes on a model load (CLI) it checks that every worker accepts a TCP connection, that
    the model starts with the GGUF magic and that the binary exists. In server mode the server's health
    endpoint stands for the workers it holds.
  - Every run is bounded by O(timeout); on expiry the whole process group is killed. Failures name the
    cause and the fix, with the return code and the end of llama.cpp's stderr.
author:
  - llamacpp.cluster maintainers (@llamacpp-cluster)
requirements:
  - python3-requests on the main node for O(mode=server) and O(mode=auto).
options:
  prompt:
    description: The prompt to continue.
    type: str
    required: true
  model:
    description: Path of the GGUF model on the main node (the first part of a split model). Required for the CLI.
    type: path
  workers:
    description:
      - RPC workers as C(host:port) (IPv6 as C([addr]:port)), usually
        C(groups['llama_workers'] | llamacpp.cluster.rpc_endpoints(hostvars)). Empty runs on the main node alone.
    type: list
    elements: str
    default: []
  n_predict:
    description: Tokens to generate.
    type: int
    default: 128
  temperature:
    description: Sampling temperature; V(0) is greedy and, with a fixed O(seed), reproducible.
    type: float
    default: 0.8
  seed:
    description: Sampling seed; V(-1) is random.
    type: int
    default: -1
  top_k:
    description: Top-k sampling; unset keeps llama.cpp's default.
    type: int
  top_p:
    description: Top-p sampling; unset keeps llama.cpp's default.
    type: float
  stop:
    description:
      - Strings that end the text. The server stops generating at them; in the CLI the text is cut at the first.
    type: list
    elements: str
    default: []
  ctx_size:
    description: Context size in tokens (CLI).
    type: int
    default: 4096
  threads:
    description: CPU threads of the main node (CLI); defaults to its vCPUs.
    type: int
  n_gpu_layers:
    description:
      - Layers to offload; RPC workers count as offload targets. Defaults to all layers when workers are
        given, else 0.
    type: int
  tensor_split:
    description:
      - The share of the offloaded layers each worker gets, in O(workers) order (C(--tensor-split), CLI), as the
        main role's placement plan gives them (C(llamacpp_main_plan.tensor_split)); empty leaves the split to
        llama.cpp.
    type: list
    elements: float
    default: []
  ubatch_size:
    description: Micro-batch size (C(-ub), CLI); the placement plan assumes the main role's C(llamacpp_main_ubatch_size).
    type: int
  timeout:
    description: Seconds the whole generation may take, model load included.
    type: int
    default: 600
  mode:
    description: How to run, see the description.
    type: str
    choices: [auto, cli, server]
    default: auto
  server_url:
    description: Base URL of the main node's llama-server.
    type: str
    default: http://127.0.0.1:8080
  api_key:
    description: API key of llama-server, when it has one.
    type: str
  bin_dir:
    description: Where C(llama-completion) is installed.
    type: path
    default: /opt/llama.cpp/current/bin
extends_documentation_fragment:
  - llamacpp.cluster.attributes
attributes:
  check_mode:
    support: full
    details: Validates the options and runs the preflight checks; generates nothing.
  diff_mode:
    support: none
notes:
  - rpc-server serves one client at a time. While llama-server holds the workers, a CLI run would wait
    behind it until its timeout, so O(mode=cli) fails at once when the server answers, and O(mode=auto)
    picks the server.
"""

EXAMPLES = r"""
- name: Generate over all workers
  llamacpp.cluster.generate:
    prompt: "The three laws of robotics are"
    model: /var/lib/llama.cpp/models/gemma-3-270m-q4_k_m.gguf
    workers: "{{ groups['llama_workers'] | llamacpp.cluster.rpc_endpoints(hostvars) }}"
    n_predict: 64
    temperature: 0
    seed: 42
  register: answer

- name: Show it
  ansible.builtin.debug:
    msg: "{{ answer.text }} ({{ answer.timings.predicted_per_second }} tokens/s)"
"""

RETURN = r"""
text:
  description: The generated text only, without the prompt.
  returned: success, not in check mode
  type: str
  sample: " 9, 10, 11, 12,"
tokens_predicted:
  description: Tokens generated.
  returned: success, not in check mode
  type: int
  sample: 16
tokens_evaluated:
  description: Prompt tokens evaluated.
  returned: success, not in check mode
  type: int
  sample: 24
timings:
  description: llama.cpp's timings.
  returned: success, not in check mode
  type: dict
  contains:
    load_ms:
      description: Model load (CLI only).
      type: float
    prompt_ms:
      description: Prompt processing time.
      type: float
    prompt_per_second:
      description: Prompt tokens per second.
      type: float
    predicted_ms:
      description: Generation time.
      type: float
    predicted_per_second:
      description: Generated tokens per second.
      type: float
    wall_s:
      description: Wall time of the whole request seen by the module.
      type: float
workers:
  description: The workers used, in the order given to llama.cpp.
  returned: always
  type: list
  elements: str
mode:
  description: The mode used (cli or server).
  returned: always
  type: str
cmd:
  description: The llama-completion command line (CLI mode).
  returned: when mode is cli
  type: list
  elements: str
rc:
  description: llama-completion's return code, null after a timeout (CLI mode, failures).
  returned: failure
  type: int
stderr_tail:
  description: The last lines of llama.cpp's stderr (failures).
  returned: failure
  type: str
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.llamacpp.cluster.plugins.module_utils.inference import (
    CLI_BINARY,
    InferenceError,
    check_binary,
    check_endpoints,
    check_model,
    cli_command,
    diagnose,
    parse_timings,
    run_with_timeout,
    tail,
    truncate_at_stop,
    unreachable_workers,
)

try:
    import requests
    HAS_REQUESTS = True
except ImportError:
    HAS_REQUESTS = False


def server_healthy(url, api_key, timeout=3):
    if not HAS_REQUESTS:
        return False
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        return requests.get(f"{url.rstrip('/')}/health", headers=headers, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def run_server(params):
    if not HAS_REQUESTS:
        raise InferenceError(missing_required_lib("requests") + " (on Debian/Ubuntu: apt-get install python3-requests)")
    body = {"prompt": params["prompt"], "n_predict": params["n_predict"], "temperature": params["temperature"],
            "seed": params["seed"], "stop": params["stop"], "cache_prompt": False}
    for key in ("top_k", "top_p"):
        if params[key] is not None:
            body[key] = params[key]
    headers = {"Authorization": f"Bearer {params['api_key']}"} if params["api_key"] else {}
    url = f"{params['server_url'].rstrip('/')}/completion"
    start = time.monotonic()
    try:
        response = requests.post(url, json=body, headers=headers, timeout=params["timeout"])
    except requests.Timeout:
        raise InferenceError(f"llama-server at {params['server_url']} did not answer within {params['timeout']} s: "
                             "a worker may have stopped answering; check the workers and restart llama-server")
    except requests.RequestException as exc:
        raise InferenceError(f"cannot reach llama-server at {params['server_url']}: {exc}; start it "
                             "(llamacpp.cluster.main with llamacpp_main_server) or use mode=cli")
    if response.status_code != 200:
        raise InferenceError(f"llama-server answered HTTP {response.status_code}: {response.text[:300]}; "
                             "check its journal (journalctl -u llama-server)")
    data = response.json()
    t = data.get("timings") or {}
    return {
        "text": data.get("content", ""),
        "tokens_predicted": data.get("tokens_predicted", t.get("predicted_n")),
        "tokens_evaluated": data.get("tokens_evaluated", t.get("prompt_n")),
        "timings": {"prompt_ms": t.get("prompt_ms"), "prompt_tokens": t.get("prompt_n"),
                    "prompt_per_second": t.get("prompt_per_second"), "predicted_ms": t.get("predicted_ms"),
                    "predicted_tokens": t.get("predicted_n"), "predicted_per_second": t.get("predicted_per_second"),
                    "wall_s": round(time.monotonic() - start, 3)},
    }


def run_cli(params, workers, cmd):
    env = dict(os.environ, GGML_NO_BACKTRACE="1", LC_ALL="C.UTF-8")
    rc, out, err, elapsed = run_with_timeout(cmd, params["timeout"], env=env)
    if rc is None:
        raise InferenceError(
            f"llama-completion did not finish within {params['timeout']} s and was killed: a worker accepted the "
            "connection but stopped answering, or another client holds the workers (rpc-server serves one at a "
            "time); check the workers' journals or raise timeout", rc=None, stderr_tail=tail(err))
    if rc != 0:
        raise InferenceError(f"generation failed: {diagnose(rc, err, params['model'])}", rc=rc,
                             stderr_tail=tail(err))
    timings = parse_timings(err)
    timings["wall_s"] = round(elapsed, 3)
    predicted = timings.get("predicted_tokens")
    return {
        "text": truncate_at_stop(out, params["stop"]),
        "tokens_predicted": predicted + 1 if predicted is not None else None,
        "tokens_evaluated": timings.get("prompt_tokens"),
        "timings": timings,
    }


def main():
    module = AnsibleModule(
        argument_spec={
            "prompt": {"type": "str", "required": True},
            "model": {"type": "path"},
            "workers": {"type": "list", "elements": "str", "default": []},
            "n_predict": {"type": "int", "default": 128},
            "temperature": {"type": "float", "default": 0.8},
            "seed": {"type": "int", "default": -1},
            "top_k": {"type": "int"},
            "top_p": {"type": "float"},
            "stop": {"type": "list", "elements": "str", "default": []},
            "ctx_size": {"type": "int", "default": 4096},
            "threads": {"type": "int"},
            "n_gpu_layers": {"type": "int"},
            "tensor_split": {"type": "list", "elements": "float", "default": []},
            "ubatch_size": {"type": "int"},
            "timeout": {"type": "int", "default": 600},
            "mode": {"type": "str", "choices": ["auto", "cli", "server"], "default": "auto"},
            "server_url": {"type": "str", "default": "http://127.0.0.1:8080"},
            "api_key": {"type": "str", "no_log": True},
            "bin_dir": {"type": "path", "default": "/opt/llama.cpp/current/bin"},
        },
        required_if=[("mode", "cli", ["model"])],
        supports_check_mode=True,
    )
    p = module.params
    workers = p["workers"]
    result = {"changed": False, "workers": workers, "mode": p["mode"]}
    try:
        for name, low in (("n_predict", 1), ("ctx_size", 0), ("timeout", 1), ("threads", 1), ("n_gpu_layers", 0),
                          ("ubatch_size", 1)):
            if p[name] is not None and p[name] < low:
                raise InferenceError(f"{name} must be at least {low}, got {p[name]}")
        if not 0.0 <= p["temperature"] <= 10.0:
            raise InferenceError(f"temperature must be between 0 and 10, got {p['temperature']}")
        check_endpoints(workers)
        if p["tensor_split"] and (len(p["tensor_split"]) != len(workers) or min(p["tensor_split"]) < 0
                                  or not any(p["tensor_split"])):
            raise InferenceError(f"tensor_split needs one share >= 0 per worker, not all 0 ({len(workers)} workers, "
                                 f"got {p['tensor_split']}); leave it empty to let llama.cpp split the layers")

        healthy = p["mode"] != "cli" and server_healthy(p["server_url"], p["api_key"])
        if p["mode"] == "cli" and server_healthy(p["server_url"], p["api_key"]):
            raise InferenceError(
                f"llama-server answers at {p['server_url']} and holds the RPC workers (rpc-server serves one client "
                "at a time), so a one-shot CLI run would wait until its timeout: use mode=server, or stop "
                "llama-server first")
        mode = "server" if p["mode"] == "server" or (p["mode"] == "auto" and healthy) else "cli"
        result["mode"] = mode
        if mode == "cli" and not p["model"]:
            raise InferenceError("model is required when llama-server is not answering (mode=cli or auto)")

        if mode == "cli":
            # Only for the CLI: llama-server already holds the workers, and rpc-server, serving one
            # client at a time, leaves further connections in its listen backlog until it is full.
            down = unreachable_workers(workers)
            if down:
                raise InferenceError(f"{len(down)} of {len(workers)} worker(s) do not accept connections: "
                                     f"{'; '.join(down)}. Start their rpc-server (systemctl start llama-rpc-server) "
                                     "or fix the firewall; nothing was run", unreachable=down)
            binary = os.path.join(p["bin_dir"], CLI_BINARY)
            check_binary(binary)
            check_model(p["model"])
            layers = p["n_gpu_layers"] if p["n_gpu_layers"] is not None else (999 if workers else 0)
            cmd = cli_command(binary, p["model"], p["prompt"], workers, p["n_predict"], p["temperature"], p["seed"],
                              p["ctx_size"], p["threads"] or os.cpu_count() or 1, layers, p["top_k"], p["top_p"],
                              p["tensor_split"], p["ubatch_size"])
            result["cmd"] = cmd
        if module.check_mode:
            module.exit_json(msg=f"check mode: preflight passed; would generate with mode={mode}", **result)
        result.update(run_cli(p, workers, cmd) if mode == "cli" else run_server(p))
    except InferenceError as exc:
        module.fail_json(msg=exc.msg, **dict(result, **exc.details))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
