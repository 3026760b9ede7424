"""llamacpp.cluster.generate against real llama.cpp binaries on this host: two rpc-servers
on 127.0.0.1, installed by the build role itself (bin_dir in conftest.py)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

import fixtures

PROMPT = "1, 2, 3, 4, 5, 6, 7, 8,"
GREEDY = {"n_predict": 16, "temperature": 0, "seed": 42}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Started:
    """Processes this test started, ended by PID."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, log):
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture(name="workers", scope="session")
def fixture_workers(bin_dir, tmp_path_factory):
    started = Started()
    logs = tmp_path_factory.mktemp("rpc")
    endpoints = []
    for index in range(2):
        port = free_port()
        started.start([str(bin_dir / "rpc-server"), "-H", "127.0.0.1", "-p", str(port), "-t", "1"],
                      (logs / f"rpc{index}.log").open("wb"))
        wait_port(port)
        endpoints.append(f"127.0.0.1:{port}")
    yield endpoints
    started.stop()


def generate(ansible_module, bin_dir, **args):
    base = {"model": str(fixtures.model_path()), "bin_dir": str(bin_dir),
            "server_url": "http://127.0.0.1:9", "mode": "cli"}
    if "prompts" not in args and "messages" not in args:
        base["prompt"] = PROMPT
    return ansible_module("llamacpp.cluster.generate", dict(base, **args))


def test_distributed_text_equals_a_local_run_without_repacking(ansible_module, bin_dir, workers):
    result = generate(ansible_module, bin_dir, workers=workers, **GREEDY)
    assert not result.get("failed"), result.get("msg")
    local = subprocess.run([str(bin_dir / "llama-completion"), "-m", str(fixtures.model_path()), "-p", PROMPT,
                            "-n", "16", "--temp", "0", "--seed", "42", "-no-cnv", "--no-display-prompt",
                            "--no-repack", "-ngl", "0"],
                           capture_output=True, text=True, timeout=120, check=True,
                           env=dict(os.environ, GGML_NO_BACKTRACE="1"))
    assert result["text"].strip() and result["text"] == local.stdout
    assert result["workers"] == workers and result["tokens_evaluated"] > 0
    assert result["timings"]["predicted_per_second"] > 0 and result["timings"]["load_ms"] > 0
    print(f"distributed cli: {result['timings']}")


def test_unreachable_worker_fails_fast_naming_it(ansible_module, bin_dir, workers):
    dead = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    result = generate(ansible_module, bin_dir, workers=[workers[0], dead], n_predict=4)
    assert result["failed"] and dead in result["msg"] and workers[0] not in result["msg"]
    assert time.monotonic() - start < 20


def test_worker_that_never_answers_ends_in_a_timeout(ansible_module, bin_dir, workers):
    with socket.socket() as silent:  # accepts connections (kernel backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        mute = f"127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        result = generate(ansible_module, bin_dir, workers=[workers[0], mute], n_predict=4, timeout=10)
    assert result["failed"] and "did not finish within 10 s" in result["msg"] and result["rc"] is None
    assert time.monotonic() - start < 40


def test_corrupt_model_is_refused(ansible_module, bin_dir, workers, tmp_path):
    corrupt = tmp_path / "model.gguf"
    with fixtures.model_path().open("rb") as source:
        corrupt.write_bytes(b"GGUX" + source.read(1 << 20)[4:])
    result = generate(ansible_module, bin_dir, workers=workers, model=str(corrupt), n_predict=4)
    assert result["failed"] and "is not a GGUF model" in result["msg"]


def test_truncated_model_fails_with_a_diagnosis(ansible_module, bin_dir, workers, tmp_path):
    truncated = tmp_path / "model.gguf"
    with fixtures.model_path().open("rb") as source:
        truncated.write_bytes(source.read(1 << 20))
    result = generate(ansible_module, bin_dir, workers=workers, model=str(truncated), n_predict=4)
    assert result["failed"] and "could not load the model" in result["msg"] and result["rc"] != 0


def wait_health(url, wait=120):
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"llama-server at {url} not healthy within {wait} s")


def test_server_mode_matches_cli_and_cli_is_refused_while_it_serves(ansible_module, bin_dir, workers, tmp_path):
    cli = generate(ansible_module, bin_dir, workers=workers, **GREEDY)
    port = free_port()
    started = Started()
    try:
        started.start([str(bin_dir / "llama-server"), "-m", str(fixtures.model_path()), "--rpc", ",".join(workers),
                       "-ngl", "999", "-c", "2048", "--host", "127.0.0.1", "--port", str(port), "--no-webui"],
                      (tmp_path / "server.log").open("wb"))
        url = f"http://127.0.0.1:{port}"
        wait_health(url)
        server = generate(ansible_module, bin_dir, workers=workers, mode="server", server_url=url, **GREEDY)
        refused = generate(ansible_module, bin_dir, workers=workers, mode="cli", server_url=url, **GREEDY)
        auto = generate(ansible_module, bin_dir, workers=workers, mode="auto", server_url=url, **GREEDY)
    finally:
        started.stop()
    assert not server.get("failed"), server.get("msg")
    assert server["text"].strip() == cli["text"].strip() and server["mode"] == "server"
    assert server["timings"]["predicted_per_second"] > 0 and server["tokens_predicted"] == 16
    assert refused["failed"] and "holds the RPC workers" in refused["msg"]
    assert auto["mode"] == "server" and auto["text"] == server["text"]
    print(f"server: {server['timings']}")


def test_server_with_a_key_chat_and_parallel_prompts(ansible_module, bin_dir, workers, tmp_path, top):
    """llama-server as the main role runs it: its key from a file, the role's chat template for
    a model without one, 2 slots, the web UI of the fixture's build."""
    key_file = tmp_path / "api-key"
    key_file.write_text("# test key\nintegration-key-0123456789\n")
    key_file.chmod(0o600)
    template = top / "roles" / "main" / "files" / "chat-template-transcript.jinja"
    port = free_port()
    started = Started()
    try:
        started.start([str(bin_dir / "llama-server"), "-m", str(fixtures.model_path()), "--rpc", ",".join(workers),
                       "-ngl", "999", "-c", "2048", "--parallel", "2", "--host", "127.0.0.1", "--port", str(port),
                       "--api-key-file", str(key_file), "--chat-template-file", str(template)],
                      (tmp_path / "server.log").open("wb"))
        url = f"http://127.0.0.1:{port}"
        wait_health(url)
        # The UI's files are embedded gzip-compressed, for browsers, which accept that.
        with urllib.request.urlopen(urllib.request.Request(f"{url}/", headers={"Accept-Encoding": "gzip"}),
                                    timeout=10) as page:
            ui = gzip.decompress(page.read())
        common = {"workers": workers, "mode": "server", "server_url": url, **GREEDY}
        keyless = generate(ansible_module, bin_dir, prompt=PROMPT, **common)
        wrong = generate(ansible_module, bin_dir, prompt=PROMPT, api_key="not-the-key-0123456789", **common)
        keyed = generate(ansible_module, bin_dir, prompt=PROMPT, api_key_file=str(key_file), **common)
        chat = generate(ansible_module, bin_dir, api_key_file=str(key_file), workers=workers, mode="server",
                        server_url=url, n_predict=24, temperature=0, seed=42, stop=["\nUser:"],
                        messages=[{"role": "system", "content": "You are a helpful assistant."},
                                  {"role": "user", "content": "Count from one to five."}])
        prompts = [PROMPT, "10, 20, 30, 40,", "a, b, c, d, e,"]
        batch = generate(ansible_module, bin_dir, api_key_file=str(key_file), prompts=prompts, **common)
        props = json.load(urllib.request.urlopen(urllib.request.Request(
            f"{url}/props", headers={"Authorization": "Bearer integration-key-0123456789"}), timeout=10))
    finally:
        started.stop()
    assert b"<html" in ui.lower(), ui[:200]
    for refused in (keyless, wrong):
        assert refused["failed"] and "HTTP 401" in refused["msg"] and refused["status"] == 401, refused["msg"]
    assert not keyed.get("failed"), keyed.get("msg")
    assert "9" in keyed["text"] and keyed["tokens_predicted"] == 16
    assert "integration-key" not in json.dumps(keyed)
    assert not chat.get("failed"), chat.get("msg")
    assert chat["text"].strip() and chat["tokens_evaluated"] > 10 and chat["finish_reason"] in ("stop", "length")
    assert "Assistant:" in props["chat_template"] and props["default_generation_settings"]["n_ctx"] == 1024
    assert not batch.get("failed"), batch.get("msg")
    assert [r["prompt"] for r in batch["results"]] == prompts
    assert all(r["tokens_predicted"] == 16 for r in batch["results"])
    assert "9" in batch["results"][0]["text"] and "50" in batch["results"][1]["text"]
    assert batch["timings"]["tokens_per_second"] > 0
    print(f"chat: {chat['text']!r}; batch: {batch['timings']}")
