"""A model named by Hugging Face repository and file, against a loopback server that answers
like the Hub: its tree API (path, size, LFS oid) and its resolve/ downloads. The module
resolves the fixture model and a split one; the main role resolves it on the controller,
before any host is touched (hosts that do not exist show that none was)."""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import threading
import urllib.request

import fixtures
import pytest

REPO = "test-org/gemma-3-270m-GGUF"
MODEL = fixtures.MODEL_FILE
SPLIT = ["split/tiny-00001-of-00002.gguf", "split/tiny-00002-of-00002.gguf"]


class Hub(http.server.BaseHTTPRequestHandler):
    files: dict = {}  # path -> bytes, or a file to serve

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 (http.server's name)
        tree = f"/api/models/{REPO}/tree/main?recursive=true"
        prefix = f"/{REPO}/resolve/main/"
        if self.path == tree:
            body = json.dumps([{"type": "file", "path": path, "size": len(data),
                                "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}}
                               for path, data in self.files.items()]).encode()
        elif self.path.startswith(prefix) and self.path[len(prefix):] in self.files:
            body = self.files[self.path[len(prefix):]]
        else:
            self.send_error(404, "Repository not found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(name="hub", scope="module")
def fixture_hub():
    Hub.files = {MODEL: fixtures.model_path().read_bytes(), SPLIT[0]: b"GGUF part one", SPLIT[1]: b"part two"}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_module_resolves_the_url_and_sha256_and_the_download_matches(ansible_module, hub):
    result = ansible_module("llamacpp.cluster.hf_model", {"repo": REPO, "file": MODEL, "endpoint": hub})
    assert result.get("failed") is not True, result
    [model] = result["files"]
    assert model == {"url": f"{hub}/{REPO}/resolve/main/{MODEL}", "sha256": fixtures.MODEL_SHA256, "name": MODEL,
                     "size": fixtures.model_path().stat().st_size}
    with urllib.request.urlopen(model["url"], timeout=30) as response:
        assert hashlib.sha256(response.read()).hexdigest() == model["sha256"]


def test_a_split_model_resolves_to_its_parts(ansible_module, hub):
    result = ansible_module("llamacpp.cluster.hf_model", {"repo": REPO, "file": SPLIT[0], "endpoint": hub}, check=True)
    assert [f["name"] for f in result["files"]] == ["tiny-00001-of-00002.gguf", "tiny-00002-of-00002.gguf"]
    assert result["files"][1]["sha256"] == hashlib.sha256(b"part two").hexdigest()


def test_unknown_repository_and_file_fail_clearly(ansible_module, hub):
    result = ansible_module("llamacpp.cluster.hf_model", {"repo": "test-org/nothing", "file": MODEL, "endpoint": hub})
    assert result["failed"] and "the Hub answered 404" in result["msg"] and "no such repository" in result["msg"]
    result = ansible_module("llamacpp.cluster.hf_model", {"repo": REPO, "file": "other.gguf", "endpoint": hub})
    assert result["failed"] and result["msg"] == (
        f"{REPO} (revision main) has no file other.gguf; its GGUF files: {MODEL}, {SPLIT[0]}")
    assert "Traceback" not in result["msg"]


def services(top, tool_env, inventory, settings):
    """services.yml on the local inventory with hosts that do not exist: (rc, stdout)."""
    proc = subprocess.run(["ansible-playbook", "playbooks/services.yml", "-i", str(inventory), "-v",
                           "-e", json.dumps({"llamacpp_main_model_files": [], **settings})],
                          cwd=top, env=dict(tool_env, ANSIBLE_FORCE_COLOR="0"), capture_output=True, text=True,
                          check=False)
    return proc.returncode, proc.stdout


def test_the_main_role_resolves_the_model_on_the_controller_first(top, tool_env, nowhere_inventory, hub):
    settings = {"llamacpp_main_model_hf_repo": REPO, "llamacpp_main_model_hf_file": MODEL,
                "llamacpp_main_model_hf_endpoint": hub}
    rc, out = services(top, tool_env, nowhere_inventory, settings)
    assert rc != 0
    assert "TASK [llamacpp.cluster.main : Resolve the model named on Hugging Face]" in out, out[-3000:]
    assert fixtures.MODEL_SHA256 in out and f"{hub}/{REPO}/resolve/main/{MODEL}" in out
    # Resolved and checked: the run went on to the first task that connects, and found no host.
    assert "UNREACHABLE" in out and "llamacpp-nowhere-main" in out


def test_a_wrong_file_name_fails_before_any_host_is_touched(top, tool_env, nowhere_inventory, hub):
    settings = {"llamacpp_main_model_hf_repo": REPO, "llamacpp_main_model_hf_file": "gemma-3-270m-Q8_0.gguf",
                "llamacpp_main_model_hf_endpoint": hub}
    rc, out = services(top, tool_env, nowhere_inventory, settings)
    assert rc != 0
    assert f"has no file gemma-3-270m-Q8_0.gguf; its GGUF files: {MODEL}, {SPLIT[0]}" in out, out[-3000:]
    assert "UNREACHABLE" not in out
