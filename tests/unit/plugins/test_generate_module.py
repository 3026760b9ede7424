"""The generate module's validation, preflight and check mode (no model is run here)."""

from __future__ import annotations

import json
import socket
import struct

import pytest


@pytest.fixture(name="worker")
def fixture_worker():
    """A TCP listener standing in for an rpc-server that accepts connections."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        yield f"127.0.0.1:{listening.getsockname()[1]}"


@pytest.fixture(name="cli_files")
def fixture_cli_files(tmp_path):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 0))  # whole, with no tensors
    binary = tmp_path / "bin" / "llama-completion"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\nexit 99\n")
    binary.chmod(0o755)
    return {"model": str(model), "bin_dir": str(binary.parent), "mode": "cli",
            "server_url": "http://127.0.0.1:9"}


def test_check_mode_runs_the_preflight_and_generates_nothing(run_module, worker, cli_files):
    code, result = run_module("generate", dict(cli_files, prompt="Hi", workers=[worker], _ansible_check_mode=True))
    assert code == 0 and result["changed"] is False and "text" not in result
    assert "preflight passed" in result["msg"]
    assert result["cmd"][result["cmd"].index("--rpc") + 1] == worker
    assert result["cmd"][result["cmd"].index("-ngl") + 1] == "999"
    assert "--tensor-split" not in result["cmd"] and "-ub" not in result["cmd"]


def test_the_cli_takes_the_placement_plan(run_module, worker, cli_files):
    # generate.yml passes llama-server's plan, so the CLI puts the layers where the server does.
    code, result = run_module("generate", dict(cli_files, prompt="Hi", workers=[worker, worker.replace("127.0.0.1", "localhost")],
                                               tensor_split=[35, 3], n_gpu_layers=17, ubatch_size=128,
                                               _ansible_check_mode=True))
    cmd = result["cmd"]
    assert code == 0, result
    assert cmd[cmd.index("--tensor-split") + 1] == "35,3" and cmd[cmd.index("-ngl") + 1] == "17"
    assert cmd[cmd.index("-ub") + 1] == "128"


def test_unreachable_workers_are_named_and_nothing_runs(run_module, worker, cli_files):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{probe.getsockname()[1]}"
        code, result = run_module("generate", dict(cli_files, prompt="Hi", workers=[worker, down]))
    assert code == 1 and "1 of 2 worker(s)" in result["msg"] and down in result["msg"] and worker not in result["msg"]
    assert "rc" not in result  # llama-completion (which would exit 99) never ran


def test_cli_failure_reports_rc_and_diagnosis(run_module, worker, cli_files):
    code, result = run_module("generate", dict(cli_files, prompt="Hi", workers=[worker]))
    assert code == 1 and result["rc"] == 99 and "rc=99" in result["msg"]


def test_cli_failure_without_log_lines_names_a_truncated_model(run_module, worker, cli_files):
    with open(cli_files["model"], "r+b") as model:
        model.truncate(8)
    code, result = run_module("generate", dict(cli_files, prompt="Hi", workers=[worker]))
    assert code == 1 and result["rc"] == 99 and "could not load the model" in result["msg"]
    assert "is truncated" in result["msg"]


@pytest.mark.parametrize("args, message", [
    ({"workers": ["10.0.0.1"]}, "is not host:port"),
    ({"workers": ["10.0.0.1:1", "10.0.0.1:1"]}, "listed twice"),
    ({"temperature": 2.5}, "temperature must be a number from 0 to 2, got 2.5"),
    ({"n_predict": 0}, "n_predict must be a whole number from 1 to 4096, got 0"),
    ({"prompt": ""}, "prompt must be text of 1 to 100000 characters"),
    ({"prompt": None, "prompts": ["a", ""]}, "prompt must be text of 1 to 100000 characters"),
    ({"mode": "cli", "model": None}, "model"),
    ({"mode": "sometimes"}, "value of mode must be one of"),
    ({"workers": ["10.0.0.1:1"], "tensor_split": [1, 2]}, "tensor_split needs one share >= 0 per worker"),
    ({"workers": ["10.0.0.1:1"], "tensor_split": [0]}, "not all 0"),
    ({"ubatch_size": 0}, "ubatch_size must be at least 1"),
])
def test_bad_options_fail_clearly(run_module, cli_files, args, message):
    given = {"prompt": "Hi", **args}
    code, result = run_module("generate", dict(cli_files, **{k: v for k, v in given.items() if k != "prompt" or v is not None}))
    assert code == 1 and message in result["msg"]
    assert "Traceback" not in result["msg"]


def test_a_corrupt_model_is_refused_before_running(run_module, worker, cli_files, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"\x00" * 64)
    code, result = run_module("generate", dict(cli_files, prompt="Hi", workers=[worker], model=str(bad)))
    assert code == 1 and "is not a GGUF model" in result["msg"] and "rc" not in result


@pytest.fixture(name="https_server")
def fixture_https_server(tmp_path):
    """A loopback HTTPS server with a self-signed certificate for 127.0.0.1, answering as
    llama-server does: /health, and /completion for the right key only."""
    import http.server  # pylint: disable=import-outside-toplevel
    import ssl  # pylint: disable=import-outside-toplevel
    import subprocess  # pylint: disable=import-outside-toplevel
    import threading  # pylint: disable=import-outside-toplevel

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", "/CN=test", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self._send(200, {"status": "ok"})

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Authorization") != "Bearer unit-test-key-0123456789":
                self._send(401, {"error": {"message": "Invalid API Key", "type": "authentication_error"}})
            else:
                self._send(200, {"content": " 9, 10", "tokens_predicted": 4, "tokens_evaluated": 8, "timings": {}})

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    key_file = tmp_path / "api-key"
    key_file.write_text("# key\nunit-test-key-0123456789\n")
    yield {"url": f"https://127.0.0.1:{server.server_address[1]}", "ca": str(cert), "key_file": str(key_file)}
    server.shutdown()


def test_https_needs_the_servers_ca_and_the_key(run_module, https_server):
    base = {"prompt": "1, 2,", "mode": "server", "server_url": https_server["url"], "n_predict": 4}
    code, untrusted = run_module("generate", dict(base, api_key_file=https_server["key_file"]))
    assert code != 0 and "certificate this node does not trust" in untrusted["msg"] and "ca_path" in untrusted["msg"]
    code, keyless = run_module("generate", dict(base, ca_path=https_server["ca"]))
    assert code != 0 and keyless["status"] == 401 and "api_key_file" in keyless["msg"]
    code, answer = run_module("generate", dict(base, ca_path=https_server["ca"], api_key_file=https_server["key_file"]))
    assert code == 0 and answer["text"] == " 9, 10" and answer["mode"] == "server"
    assert "unit-test-key" not in json.dumps(answer)
