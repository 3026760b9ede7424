"""The rpc_cache_seed module on this host against the suite's large model: the native
llamacpp-fnv1a (compiled from the build role's source) against the reference hash, cache files
that hold exactly the tensors' bytes, from a file and from a loopback HTTP server with range
requests, and the refusals that change nothing."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import threading
from pathlib import Path

import big_model
import pytest

from ansible_collections.llamacpp.cluster.plugins.module_utils import gguf, rpc_cache

MODULE = "llamacpp.cluster.rpc_cache_seed"
TOP = Path(__file__).resolve().parents[2]
MODEL = big_model.big_model_path()
LAYERS = ["3", "4"]


@pytest.fixture(name="hasher", scope="module")
def fixture_hasher(tmp_path_factory):
    binary = tmp_path_factory.mktemp("hasher") / "llamacpp-fnv1a"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(binary),
                    str(TOP / "roles/build/files/llamacpp-fnv1a.c")], check=True)
    return binary


@pytest.fixture(name="table", scope="module")
def fixture_table():
    assert MODEL.is_file(), f"{MODEL} is missing; run 'make big-model'"
    return gguf.read_file(str(MODEL))


def tensor_bytes(tensor) -> bytes:
    with open(MODEL, "rb") as handle:
        handle.seek(tensor.start)
        return handle.read(tensor.nbytes)


def test_the_native_hash_is_fnv1a(hasher, tmp_path):
    files = {"empty": b"", "a": b"a", "random": os.urandom(300_001)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    out = subprocess.run([str(hasher), *(str(tmp_path / n) for n in files)], capture_output=True, text=True, check=True)
    hashes = rpc_cache.parse_hashes(out.stdout)
    assert {Path(p).name: h for p, h in hashes.items()} == {n: rpc_cache.fnv1a64(d) for n, d in files.items()}
    missing = subprocess.run([str(hasher), str(tmp_path / "nope")], capture_output=True, text=True, check=False)
    assert missing.returncode == 1 and "No such file or directory" in missing.stderr


def test_a_file_source_seeds_the_layers_tensors(ansible_module, hasher, table, tmp_path):
    cache = tmp_path / "cache"
    args = {"cache_dir": str(cache), "source": str(MODEL), "model_sha256": big_model.BIG_MODEL_SHA256,
            "layers": LAYERS, "hasher": str(hasher)}
    result = ansible_module(MODULE, args)
    assert result.get("changed") and not result.get("failed"), result
    wanted = rpc_cache.hashed_tensors(table.tensors, LAYERS)
    assert sorted(result["seeded"]) == sorted(t.name for t in wanted) and len(wanted) == 6
    names = {}
    for t in wanted:
        data = tensor_bytes(t)
        matches = [p for p in (cache / "rpc").iterdir() if p.stat().st_size == t.nbytes and p.read_bytes() == data]
        assert len(matches) == 1, t.name
        names[t.name] = matches[0].name
    # The name is the hash of the bytes, checked for one tensor with the reference.
    first = wanted[0]
    assert names[first.name] == rpc_cache.cache_name(rpc_cache.fnv1a64(tensor_bytes(first)))
    again = ansible_module(MODULE, args)
    assert not again["changed"] and again["bytes_written"] == 0 and len(again["kept"]) == 6
    full = ansible_module(MODULE, dict(args, verify="full"))
    assert not full["changed"] and len(full["verified"]) == 6
    gone = ansible_module(MODULE, {"cache_dir": str(cache), "state": "absent"})
    assert gone["changed"] and not list((cache / "rpc").iterdir())


class RangeHandler(http.server.BaseHTTPRequestHandler):
    served = 0
    ranges = True

    def do_GET(self):  # noqa: N802  (http.server's name)
        size = MODEL.stat().st_size
        match = re.match(r"bytes=(\d+)-(\d+)$", self.headers.get("Range", ""))
        if not match or not self.ranges:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        first, last = int(match.group(1)), min(int(match.group(2)), size - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        with open(MODEL, "rb") as handle:
            handle.seek(first)
            remaining = last - first + 1
            while remaining:
                chunk = handle.read(min(remaining, 1 << 20))
                self.wfile.write(chunk)
                remaining -= len(chunk)
        type(self).served += last - first + 1

    def log_message(self, *args):
        pass


@pytest.fixture(name="model_server")
def fixture_model_server():
    RangeHandler.served, RangeHandler.ranges = 0, True
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/model.gguf"
    server.shutdown()
    server.server_close()


def test_a_url_source_fetches_only_the_workers_tensors(ansible_module, hasher, table, tmp_path, model_server):
    by_file = tmp_path / "by-file"
    by_url = tmp_path / "by-url"
    ansible_module(MODULE, {"cache_dir": str(by_file), "source": str(MODEL), "layers": LAYERS, "hasher": str(hasher)})
    result = ansible_module(MODULE, {"cache_dir": str(by_url), "url": model_server, "layers": LAYERS,
                                     "model_sha256": big_model.BIG_MODEL_SHA256, "hasher": str(hasher)})
    assert result.get("changed") and not result.get("failed"), result
    assert sorted(os.listdir(by_url / "rpc")) == sorted(os.listdir(by_file / "rpc"))
    tensors = sum(t.nbytes for t in rpc_cache.hashed_tensors(table.tensors, LAYERS))
    # The tensors and the model's head (its metadata and tensor table), nothing else.
    assert tensors <= RangeHandler.served <= tensors + 8 * 2 ** 20, (RangeHandler.served, tensors)
    assert RangeHandler.served < MODEL.stat().st_size / 5


def test_a_server_without_ranges_is_refused(ansible_module, hasher, tmp_path, model_server):
    RangeHandler.ranges = False
    result = ansible_module(MODULE, {"cache_dir": str(tmp_path / "c"), "url": model_server, "layers": LAYERS,
                                     "model_sha256": big_model.BIG_MODEL_SHA256, "hasher": str(hasher)})
    assert result.get("failed") and "does not answer range requests (HTTP 200" in result["msg"], result
    assert not list(tmp_path.glob("c/rpc/*")) and not (tmp_path / "c" / rpc_cache.MANIFEST_NAME).exists()


def test_a_wrong_model_and_a_missing_hasher_change_nothing(ansible_module, hasher, tmp_path):
    cache = tmp_path / "cache"
    result = ansible_module(MODULE, {"cache_dir": str(cache), "source": str(MODEL), "layers": LAYERS,
                                     "model_sha256": "0" * 64, "hasher": str(hasher)})
    assert result.get("failed") and f"has sha256 {big_model.BIG_MODEL_SHA256}, not the model's {'0' * 64}" in result["msg"]
    assert not cache.exists()
    result = ansible_module(MODULE, {"cache_dir": str(cache), "source": str(MODEL), "layers": LAYERS,
                                     "hasher": str(tmp_path / "none")})
    assert result.get("failed") and "llamacpp-fnv1a ships with the builds" in result["msg"]
    result = ansible_module(MODULE, {"cache_dir": str(cache), "url": "http://127.0.0.1:9/m.gguf", "layers": LAYERS,
                                     "hasher": str(hasher)})
    assert result.get("failed") and "needs model_sha256" in result["msg"]
    assert not cache.exists()


def test_check_mode_reports_without_writing(ansible_module, hasher, tmp_path):
    cache = tmp_path / "cache"
    result = ansible_module(MODULE, {"cache_dir": str(cache), "source": str(MODEL), "layers": LAYERS,
                                     "hasher": str(hasher)}, check=True)
    assert result["changed"] and len(result["seeded"]) == 6 and not cache.exists()
