"""The main role's model provisioning from an URL: resumed downloads, verified before they
replace anything. Served from 127.0.0.1 by an HTTP server with byte-range support."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with 'Range: bytes=N-' support, as CDNs do, and counts the bytes sent."""

    sent = 0

    def log_message(self, *args):  # keep pytest output quiet
        pass

    def do_GET(self):  # noqa: N802 (the http.server API)
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if self.headers.get("Range", "").startswith("bytes="):
            start = int(self.headers["Range"][6:].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])
        RangeHandler.sent += len(data) - start


@pytest.fixture(name="server")
def fixture_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    RangeHandler.sent = 0
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def model_bytes(seed: bytes, size=4 << 20) -> bytes:
    block = hashlib.sha256(seed).digest() * (size // 32)
    return b"GGUF" + block[4:]


def provision(tmp_path, files):
    """Run the main role's preflight and model tasks on this host."""
    playbook = tmp_path / "play.yml"
    role_vars = {"llamacpp_main_model_files": files, "llamacpp_main_models_dir": str(tmp_path / "models"),
                 "llamacpp_main_workers": ["127.0.0.1:1"]}
    tasks = [{"name": f"main role {part}", "ansible.builtin.include_role": {
        "name": "llamacpp.cluster.main", "tasks_from": part}, "vars": role_vars} for part in ("preflight", "model")]
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(playbook),
                           "-e", f"ansible_python_interpreter={sys.executable}"],
                          cwd=TOP, env=env, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_download_resumes_a_partial_file_and_verifies_it(server, tmp_path):
    root, url = server
    data = model_bytes(b"v1")
    (root / "m.gguf").write_bytes(data)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.gguf.part").write_bytes(data[: len(data) // 2])
    rc, out = provision(tmp_path, [{"url": f"{url}/m.gguf", "sha256": hashlib.sha256(data).hexdigest()}])
    assert rc == 0, out
    assert (tmp_path / "models" / "m.gguf").read_bytes() == data
    assert not (tmp_path / "models" / "m.gguf.part").exists()
    assert RangeHandler.sent == len(data) - len(data) // 2  # only the missing half was fetched
    rc, out = provision(tmp_path, [{"url": f"{url}/m.gguf", "sha256": hashlib.sha256(data).hexdigest()}])
    assert rc == 0 and "changed=0" in out  # present and verified: nothing fetched again


def test_corrupt_download_never_replaces_the_good_file(server, tmp_path):
    root, url = server
    good, wanted = model_bytes(b"v1"), model_bytes(b"v2")
    (root / "m.gguf").write_bytes(wanted[:-1] + b"X")  # corrupt in transit
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.gguf").write_bytes(good)
    rc, out = provision(tmp_path, [{"url": f"{url}/m.gguf", "sha256": hashlib.sha256(wanted).hexdigest()}])
    assert rc == 2 and "the download was dropped" in out
    assert (tmp_path / "models" / "m.gguf").read_bytes() == good
    assert not (tmp_path / "models" / "m.gguf.part").exists()


def test_split_model_parts_are_all_provisioned_and_the_first_is_the_model(server, tmp_path):
    root, url = server
    parts = [model_bytes(b"p1", 1 << 20), model_bytes(b"p2", 1 << 20)]
    names = ["m-00001-of-00002.gguf", "m-00002-of-00002.gguf"]
    for name, data in zip(names, parts):
        (root / name).write_bytes(data)
    files = [{"url": f"{url}/{n}", "sha256": hashlib.sha256(d).hexdigest()} for n, d in zip(names, parts)]
    rc, out = provision(tmp_path, files)
    assert rc == 0, out
    assert [(tmp_path / "models" / n).read_bytes() for n in names] == parts


def test_url_without_checksum_is_refused_before_any_download(server, tmp_path):
    _root, url = server
    rc, out = provision(tmp_path, [{"url": f"{url}/m.gguf"}])
    assert rc == 2 and "needs its sha256" in out and RangeHandler.sent == 0
