# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""llama-server's HTTP API as the generate module uses it: the API key, request bodies for
raw completions (/completion) and chat (/v1/chat/completions), their answers as one result
shape, and several prompts sent at once to the server's parallel slots.

The HTTP call itself is passed in (``post(path, body, timeout) -> (status, data)``), so the
unit tests run everything here without a server and the module uses Ansible's open_url."""

from __future__ import annotations

import threading
import time

from ansible_collections.llamacpp.cluster.plugins.module_utils.inference import InferenceError

ROLES = ("system", "user", "assistant")


def read_api_key(path):
    """The first key of an API-key file (one per line, # comments), as llama-server reads it."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise InferenceError(f"cannot read the API key file {path}: {exc.strerror}; it is root's alone "
                             "(0600), so run the task with become: true")
    for line in lines:
        if line and not line.startswith("#"):
            return line
    raise InferenceError(f"the API key file {path} holds no key; re-run the llamacpp.cluster.main role")


def auth_headers(api_key):
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def check_messages(messages):
    """Chat messages: a non-empty list of {role, content} with a known role and text content."""
    if not messages:
        raise InferenceError("messages is empty; give at least one {role: user, content: ...}")
    for number, message in enumerate(messages, 1):
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise InferenceError(f"message {number} must be a dict of role and content, got {message!r}")
        if message.get("role") not in ROLES:
            raise InferenceError(f"message {number} has role {message.get('role')!r}; use one of {', '.join(ROLES)}")
        if not isinstance(message.get("content"), str):
            raise InferenceError(f"message {number} needs its content as text")
    if messages[-1]["role"] == "assistant":
        raise InferenceError("the last message is the assistant's; end with a user message for it to answer")


def sampling(params):
    body = {"temperature": params["temperature"], "seed": params["seed"], "stop": params["stop"]}
    for key in ("top_k", "top_p"):
        if params.get(key) is not None:
            body[key] = params[key]
    return body


def completion_body(prompt, params):
    return dict(sampling(params), prompt=prompt, n_predict=params["n_predict"], cache_prompt=False)


def chat_body(messages, params):
    return dict(sampling(params), messages=messages, max_tokens=params["n_predict"], stream=False)


def _timings(data, wall):
    t = data.get("timings") or {}
    return {"prompt_ms": t.get("prompt_ms"), "prompt_tokens": t.get("prompt_n"),
            "prompt_per_second": t.get("prompt_per_second"), "predicted_ms": t.get("predicted_ms"),
            "predicted_tokens": t.get("predicted_n"), "predicted_per_second": t.get("predicted_per_second"),
            "wall_s": round(wall, 3)}


def parse_completion(data, wall):
    t = data.get("timings") or {}
    return {"text": data.get("content", ""),
            "tokens_predicted": data.get("tokens_predicted", t.get("predicted_n")),
            "tokens_evaluated": data.get("tokens_evaluated", t.get("prompt_n")),
            "timings": _timings(data, wall)}


def parse_chat(data, wall):
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise InferenceError(f"llama-server's chat answer has no choices[0].message: {str(data)[:300]}")
    usage = data.get("usage") or {}
    return {"text": text, "finish_reason": choice.get("finish_reason"),
            "tokens_predicted": usage.get("completion_tokens"), "tokens_evaluated": usage.get("prompt_tokens"),
            "timings": _timings(data, wall)}


def explain_status(status, data, url):
    detail = str(data)[:300]
    if status == 401:
        return (f"llama-server at {url} refused the API key (HTTP 401): give api_key_file "
                "(/etc/llama-server/api-key on the main node, with become: true) or the right api_key")
    if status == 503:
        return f"llama-server at {url} is still loading the model (HTTP 503); wait for /health or raise timeout"
    return f"llama-server answered HTTP {status}: {detail}; check its journal (journalctl -u llama-server)"


def request(post, path, body, timeout, url, parse):
    """One request: post it, turn a refusal into an InferenceError, parse the answer."""
    start = time.monotonic()
    status, data = post(path, body, timeout)
    if status != 200:
        raise InferenceError(explain_status(status, data, url), status=status)
    if not isinstance(data, dict):
        raise InferenceError(f"llama-server at {url} answered something that is not JSON: {str(data)[:200]}")
    return parse(data, time.monotonic() - start)


def run_concurrently(function, items, concurrency):
    """function(item) for every item, at most concurrency at a time; results in the items'
    order. The first failure (by item order) is raised after all of them ended."""
    results = [None] * len(items)
    errors = [None] * len(items)
    next_index = [0]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                index = next_index[0]
                if index >= len(items):
                    return
                next_index[0] += 1
            try:
                results[index] = function(items[index])
            except Exception as exc:  # pylint: disable=broad-except  # re-raised below, in order
                errors[index] = exc

    threads = [threading.Thread(target=worker, daemon=True) for dummy in range(max(1, min(concurrency, len(items))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, error in enumerate(errors):
        if error is not None:
            if isinstance(error, InferenceError):
                raise InferenceError(f"prompt {index + 1} of {len(items)}: {error.msg}", **error.details)
            raise error
    return results
