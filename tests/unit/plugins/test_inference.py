"""Inference helpers: endpoints, preflight, timings and diagnosis from real llama.cpp stderr."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.llamacpp.cluster.plugins.module_utils import inference
from ansible_collections.llamacpp.cluster.plugins.module_utils.inference import (
    InferenceError,
    check_binary,
    check_endpoints,
    check_model,
    cli_command,
    diagnose,
    parse_endpoint,
    parse_timings,
    run_with_timeout,
    truncate_at_stop,
    unreachable_workers,
)

STDERR = Path(__file__).resolve().parent.parent / "fixtures" / "stderr"


@pytest.mark.parametrize("endpoint, expected", [
    ("10.0.1.7:50052", ("10.0.1.7", 50052)),
    ("worker-1.internal:1", ("worker-1.internal", 1)),
    ("[fd00::7]:50052", ("fd00::7", 50052)),
])
def test_endpoints_parse(endpoint, expected):
    assert parse_endpoint(endpoint) == expected


@pytest.mark.parametrize("endpoint", ["10.0.1.7", "10.0.1.7:0", "10.0.1.7:70000", "fd00::7:50052", "", "a b:1"])
def test_malformed_endpoints_are_refused(endpoint):
    with pytest.raises(InferenceError, match="is not host:port"):
        parse_endpoint(endpoint)


def test_duplicate_endpoints_are_refused():
    with pytest.raises(InferenceError, match="listed twice: 10.0.1.7:50052"):
        check_endpoints(["10.0.1.7:50052", "10.0.1.8:50052", "10.0.1.7:50052"])


def test_unreachable_workers_are_listed_exactly():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        up = f"127.0.0.1:{listening.getsockname()[1]}"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            down = f"127.0.0.1:{probe.getsockname()[1]}"  # bound, not listening: refused
            result = unreachable_workers([up, down], timeout=1)
    assert len(result) == 1 and result[0].startswith(down)


def test_model_must_be_gguf(tmp_path):
    good, bad = tmp_path / "good.gguf", tmp_path / "bad.gguf"
    good.write_bytes(b"GGUF\x03\x00")
    bad.write_bytes(b"<html>")
    check_model(str(good))
    with pytest.raises(InferenceError, match="not a GGUF model"):
        check_model(str(bad))
    with pytest.raises(InferenceError, match="cannot read the model"):
        check_model(str(tmp_path / "missing.gguf"))


def test_binary_must_be_executable(tmp_path):
    with pytest.raises(InferenceError, match="run the llamacpp.cluster.build role"):
        check_binary(str(tmp_path / "llama-completion"))


def test_cli_command_is_the_rpc_recipe():
    cmd = cli_command("/b/llama-completion", "/m.gguf", "Hi", ["a:1", "b:2"], 16, 0.0, 42, 2048, 4, 999, top_k=40)
    assert cmd[:5] == ["/b/llama-completion", "-m", "/m.gguf", "-p", "Hi"]
    assert cmd[cmd.index("--rpc") + 1] == "a:1,b:2" and cmd[cmd.index("-ngl") + 1] == "999"
    assert "-no-cnv" in cmd and "--no-display-prompt" in cmd and cmd[cmd.index("--top-k") + 1] == "40"
    assert "--rpc" not in cli_command("/b", "/m", "Hi", [], 1, 0.0, 1, 0, 1, 0)
    planned = cli_command("/b", "/m", "Hi", ["a:1", "b:2"], 1, 0.0, 1, 512, 1, 14, tensor_split=[13.0, 15.0], ubatch_size=256)
    assert planned[planned.index("--tensor-split") + 1] == "13,15" and planned[planned.index("-ub") + 1] == "256"


def test_timings_from_a_real_distributed_run():
    timings = parse_timings((STDERR / "distributed_success.txt").read_text())
    assert timings["load_ms"] > 0 and timings["prompt_tokens"] == 24 and timings["predicted_tokens"] == 15
    assert timings["predicted_per_second"] == pytest.approx(15 * 1000 / timings["predicted_ms"], rel=1e-3)


@pytest.mark.parametrize("sample, rc, expected", [
    ("failed_to_connect.txt", 134, "worker 127.0.0.1:59999 refused or dropped the connection"),
    ("corrupt_model.txt", 1, "could not load the model"),
])
def test_diagnosis_of_real_failures(sample, rc, expected):
    assert expected in diagnose(rc, (STDERR / sample).read_text())


def test_diagnosis_of_rpc_protocol_messages():
    # Messages as ggml-rpc.cpp prints them (negotiate_hello, RPC_STATUS_ASSERT).
    mismatch = "RPC server version mismatch: 3.0.0\nRPC handshake failed for 10.0.1.7:50052\n"
    assert "worker 10.0.1.7:50052 runs a different llama.cpp build: rebuild all nodes" in diagnose(134, mismatch)
    crashed = "ggml-rpc.cpp:612: Remote RPC server crashed or returned malformed response\n"
    assert "a worker crashed" in diagnose(134, crashed)
    assert "rc=3" in diagnose(3, "something else")


def test_stop_strings_cut_the_text():
    assert truncate_at_stop(" 9, 10\nUser: hi", ["\nUser:", "zzz"]) == " 9, 10"
    assert truncate_at_stop("abc", []) == "abc"


def test_timeout_kills_the_whole_process_group():
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); " \
           "print('started', flush=True); time.sleep(60)"
    rc, out, _err, elapsed = run_with_timeout([sys.executable, "-c", code], timeout=2)
    assert rc is None and "started" in out and elapsed < 10


def test_a_connection_failure_is_diagnosed_before_the_model():
    assert "refused or dropped" in inference.diagnose(134, "Failed to connect to 10.0.0.1:50052", "/nonexistent.gguf")


def test_the_file_runs_on_its_own_as_the_benchmark_copies_it(tmp_path):
    # benchmarks/cluster.py copies inference.py to the main node as llamacpp_inference.py,
    # where the collection is not installed: only the standard library may be imported at the top.
    copy = tmp_path / "llamacpp_inference.py"
    copy.write_text(Path(inference.__file__).read_text())
    code = "import sys; sys.path.insert(0, sys.argv[1]); import llamacpp_inference; print(llamacpp_inference.CLI_BINARY)"
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(tmp_path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "llama-completion", proc.stderr
