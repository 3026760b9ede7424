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
  - Three kinds of request - one O(prompt) to continue; several O(prompts), which the server answers
    concurrently on its parallel slots (the CLI runs them one after the other); or a chat of O(messages),
    answered by the server through C(/v1/chat/completions) with the model's or the configured chat template.
  - Before spending minutes on a model load (CLI) it checks that every worker accepts a TCP connection, that
    the model starts with the GGUF magic and that the binary exists. In server mode the server's health
    endpoint stands for the workers it holds.
  - Every run is bounded by O(timeout); on expiry the whole process group is killed. Failures name the
    cause and the fix, with the return code and the end of llama.cpp's stderr.
author:
  - llamacpp.cluster maintainers (@llamacpp-cluster)
options:
  prompt:
    description:
      - The prompt to continue, 1 to 100000 characters. Exactly one of O(prompt), O(prompts) and O(messages) is
        required.
    type: str
  prompts:
    description:
      - Several prompts to continue. The server gets them all at once, at most O(concurrency) at a time, and answers
        them on its parallel slots; the result has one entry per prompt, in order, in RV(results).
    type: list
    elements: str
  messages:
    description:
      - A chat - a list of C(role) (V(system), V(user) or V(assistant)) and C(content), ending with a user message.
        Server mode only - answered through C(/v1/chat/completions); the answer is RV(text).
    type: list
    elements: dict
  concurrency:
    description: With O(prompts), how many requests are in flight at once; defaults to all of them.
    type: int
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
    description: Tokens to generate, V(1) to V(4096).
    type: int
    default: 128
  temperature:
    description: Sampling temperature, V(0) to V(2); V(0) is greedy and, with a fixed O(seed), reproducible.
    type: float
    default: 0.8
  seed:
    description: Sampling seed, V(-1) to V(2147483647); V(-1) is random.
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
    description: Seconds the whole generation may take, model load included, V(1) to V(3600).
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
    description: API key of llama-server. Prefer O(api_key_file), which keeps the key out of Ansible.
    type: str
  validate_certs:
    description: With an C(https) O(server_url), check the server's certificate.
    type: bool
    default: true
  ca_path:
    description:
      - A PEM file of the CA (or the self-signed certificate) to check an C(https) server against, such as
        C(/etc/llama-server/tls-cert.pem) on the main node when the main role made a self-signed one.
    type: path
  api_key_file:
    description:
      - A file on the main node holding llama-server's API key (the first line that is not a C(#) comment), as the
        main role stores it in C(/etc/llama-server/api-key), root's alone - so the task needs C(become).
    type: path
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
  - The bounds of O(prompt), O(prompts), O(n_predict), O(temperature), O(seed) and O(timeout) are the collection's
    one request spec, which C(playbooks/generate.yml) (through the P(llamacpp.cluster.request_problems#filter)
    filter) and the AWX survey of the "Generate text" job template follow too.
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

- name: Chat with the cluster through llama-server
  llamacpp.cluster.generate:
    mode: server
    api_key_file: /etc/llama-server/api-key
    messages:
      - {role: system, content: "You answer in one sentence."}
      - {role: user, content: "What are the three primary colours?"}
    n_predict: 48
  become: true
  register: chat

- name: Ask several questions at once, on the server's parallel slots
  llamacpp.cluster.generate:
    mode: server
    api_key_file: /etc/llama-server/api-key
    prompts: ["The capital of France is", "Water boils at", "The largest planet is"]
    n_predict: 16
    temperature: 0
  become: true
  register: batch

- name: Show the answers, in the prompts' order
  ansible.builtin.debug:
    msg: "{{ batch.results | map(attribute='text') | list }}"
"""

RETURN = r"""
text:
  description: The generated text only, without the prompt; with O(messages), the assistant's answer.
  returned: success with O(prompt) or O(messages), not in check mode
  type: str
  sample: " 9, 10, 11, 12,"
results:
  description:
    - With O(prompts), one entry per prompt, in order - C(prompt), C(text), C(tokens_predicted),
      C(tokens_evaluated) and C(timings) (whose C(wall_s) is that request's own).
  returned: success with O(prompts), not in check mode
  type: list
  elements: dict
finish_reason:
  description: Why the chat answer ended (C(stop) at the end of the answer or a stop string, C(length) at O(n_predict)).
  returned: success with O(messages), not in check mode
  type: str
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
      description: Wall time of the whole request seen by the module (with O(prompts), of all of them).
      type: float
    tokens_per_second:
      description: With O(prompts), the tokens generated for all prompts per second of RV(timings.wall_s).
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
  description: The llama-completion command line (CLI mode; with O(prompts), the first prompt's).
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
status:
  description: The HTTP status llama-server refused the request with (server mode, failures).
  returned: failure
  type: int
"""

import json
import os
import socket
import time
from urllib.error import HTTPError, URLError

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
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
from ansible_collections.llamacpp.cluster.plugins.module_utils import request_spec, server_api


def server_healthy(url, tls, timeout=3):
    try:
        with open_url(f"{url.rstrip('/')}/health", method="GET", timeout=timeout, **tls) as response:
            return response.getcode() == 200
    except (HTTPError, URLError, OSError, ValueError):
        return False


def poster(server_url, api_key, tls):
    """The post(path, body, timeout) -> (status, data) that server_api calls, over open_url."""
    base = server_url.rstrip("/")
    headers = dict(server_api.auth_headers(api_key), **{"Content-Type": "application/json"})

    def post(path, body, timeout):
        try:
            with open_url(base + path, data=json.dumps(body), headers=headers, method="POST",
                          timeout=timeout, **tls) as response:
                raw = response.read()
                status = response.getcode()
        except HTTPError as exc:
            raw, status = exc.read(), exc.code
        except (socket.timeout, TimeoutError):
            raise InferenceError(f"llama-server at {server_url} did not answer within {timeout} s: a worker may "
                                 "have stopped answering; check the workers and restart llama-server")
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if "CERTIFICATE" in str(reason).upper():
                raise InferenceError(f"llama-server at {server_url} has a certificate this node does not trust: {reason}; "
                                     "give ca_path (the main role's self-signed one is /etc/llama-server/tls-cert.pem) "
                                     "or the server's name as it stands in the certificate")
            raise InferenceError(f"cannot reach llama-server at {server_url}: {reason}; start "
                                 "it (llamacpp.cluster.main with llamacpp_main_server) or use mode=cli")
        try:
            return status, json.loads(raw.decode("utf-8", "replace"))
        except ValueError:
            return status, raw.decode("utf-8", "replace")[:300]
    return post


def tls_options(params):
    return {"validate_certs": params["validate_certs"], "ca_path": params["ca_path"]}


def run_server(params, api_key):
    post = poster(params["server_url"], api_key, tls_options(params))
    url = params["server_url"]
    if params["messages"]:
        body = server_api.chat_body(params["messages"], params)
        return server_api.request(post, "/v1/chat/completions", body, params["timeout"], url, server_api.parse_chat)
    if params["prompts"]:
        start = time.monotonic()

        def one(prompt):
            result = server_api.request(post, "/completion", server_api.completion_body(prompt, params),
                                        params["timeout"], url, server_api.parse_completion)
            return dict(result, prompt=prompt)
        results = server_api.run_concurrently(one, params["prompts"], params["concurrency"] or len(params["prompts"]))
        return batch_result(results, time.monotonic() - start)
    return server_api.request(post, "/completion", server_api.completion_body(params["prompt"], params),
                              params["timeout"], url, server_api.parse_completion)


def batch_result(results, wall):
    tokens = sum(r["tokens_predicted"] or 0 for r in results)
    return {"results": results, "timings": {"wall_s": round(wall, 3),
                                            "tokens_per_second": round(tokens / wall, 3) if wall > 0 else None}}


def run_cli(params, cmd):
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


def cli_commands(p, workers):
    """One llama-completion command per prompt, after the CLI's preflight checks."""
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
    return [cli_command(binary, p["model"], prompt, workers, p["n_predict"], p["temperature"], p["seed"],
                        p["ctx_size"], p["threads"] or os.cpu_count() or 1, layers, p["top_k"], p["top_p"],
                        p["tensor_split"], p["ubatch_size"])
            for prompt in (p["prompts"] or [p["prompt"]])]


def check_options(p, workers):
    for name, low in (("ctx_size", 0), ("threads", 1), ("n_gpu_layers", 0),
                      ("ubatch_size", 1), ("concurrency", 1)):
        if p[name] is not None and p[name] < low:
            raise InferenceError(f"{name} must be at least {low}, got {p[name]}")
    bad = request_spec.problems({name: p[name] for name in ("prompt", "n_predict", "temperature", "seed", "timeout")})
    bad += [problem for prompt in p["prompts"] or [] for problem in [request_spec.field_problem("prompt", prompt)]
            if problem]
    if bad:
        raise InferenceError("; ".join(bad))
    if p["prompts"] is not None and not p["prompts"]:
        raise InferenceError("prompts is empty; give at least one prompt")
    if p["messages"] is not None:
        server_api.check_messages(p["messages"])
        if p["mode"] == "cli":
            raise InferenceError("messages (chat) need llama-server: use mode=server or auto")
    check_endpoints(workers)
    if p["tensor_split"] and (len(p["tensor_split"]) != len(workers) or min(p["tensor_split"]) < 0
                              or not any(p["tensor_split"])):
        raise InferenceError(f"tensor_split needs one share >= 0 per worker, not all 0 ({len(workers)} workers, "
                             f"got {p['tensor_split']}); leave it empty to let llama.cpp split the layers")


def main():
    module = AnsibleModule(
        argument_spec={
            "prompt": {"type": "str"},
            "prompts": {"type": "list", "elements": "str"},
            "messages": {"type": "list", "elements": "dict"},
            "concurrency": {"type": "int"},
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
            "api_key_file": {"type": "path"},
            "validate_certs": {"type": "bool", "default": True},
            "ca_path": {"type": "path"},
            "bin_dir": {"type": "path", "default": "/opt/llama.cpp/current/bin"},
        },
        required_one_of=[("prompt", "prompts", "messages")],
        mutually_exclusive=[("prompt", "prompts", "messages"), ("api_key", "api_key_file")],
        required_if=[("mode", "cli", ["model"])],
        supports_check_mode=True,
    )
    p = module.params
    workers = p["workers"]
    result = {"changed": False, "workers": workers, "mode": p["mode"]}
    try:
        check_options(p, workers)
        api_key = server_api.read_api_key(p["api_key_file"]) if p["api_key_file"] else p["api_key"]
        if api_key and p["api_key_file"]:
            module.no_log_values.add(api_key)
        healthy = p["mode"] != "cli" and server_healthy(p["server_url"], tls_options(p))
        if p["mode"] == "cli" and server_healthy(p["server_url"], tls_options(p)):
            raise InferenceError(
                f"llama-server answers at {p['server_url']} and holds the RPC workers (rpc-server serves one client "
                "at a time), so a one-shot CLI run would wait until its timeout: use mode=server, or stop "
                "llama-server first")
        mode = "server" if p["mode"] == "server" or (p["mode"] == "auto" and healthy) else "cli"
        result["mode"] = mode
        if mode == "cli" and p["messages"]:
            raise InferenceError(f"messages (chat) need llama-server, which does not answer at {p['server_url']}: "
                                 "start it (llamacpp_main_server: true) or send a prompt")
        if mode == "cli" and not p["model"]:
            raise InferenceError("model is required when llama-server is not answering (mode=cli or auto)")
        cmds = cli_commands(p, workers) if mode == "cli" else []
        if cmds:
            result["cmd"] = cmds[0]
        if module.check_mode:
            module.exit_json(msg=f"check mode: preflight passed; would generate with mode={mode}", **result)
        if mode == "server":
            result.update(run_server(p, api_key))
        elif p["prompts"]:
            start = time.monotonic()
            results = [dict(run_cli(p, cmd), prompt=prompt) for prompt, cmd in zip(p["prompts"], cmds)]
            result.update(batch_result(results, time.monotonic() - start))
        else:
            result.update(run_cli(p, cmds[0]))
    except InferenceError as exc:
        module.fail_json(msg=exc.msg, **dict(result, **exc.details))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
