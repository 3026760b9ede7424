"""The cached offline fixtures are the pinned, verified artifacts."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import fixtures


def test_cached_fixtures_verify(top):
    result = subprocess.run([sys.executable, "scripts/fixtures.py", "--check"], cwd=top,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_source_archive_is_the_pinned_llama_cpp_release():
    with tarfile.open(fixtures.source_archive_path()) as tar:
        meta = json.load(tar.extractfile("llama.cpp-b11312/LLAMA_CPP_SOURCE.json"))
        names = set(tar.getnames())
    assert meta["commit"] == "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
    for needed in ("CMakeLists.txt", "tools/rpc/CMakeLists.txt", "ggml/src/ggml-rpc/ggml-rpc.cpp",
                   "tools/completion/CMakeLists.txt", "tools/server/CMakeLists.txt", "tools/ui/dist/index.html",
                   # a path over 100 characters, once lost to the sdist's prefix
                   "tools/ui/src/lib/constants/recommended-mcp-servers.constants.ts"):
        assert f"llama.cpp-b11312/{needed}" in names, needed


def test_model_is_a_gguf_of_the_pinned_size():
    path = fixtures.model_path()
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"
    assert path.stat().st_size == 253113024


def test_check_reports_a_corrupt_cache_without_touching_it(tmp_path, top):
    (tmp_path / "fixtures").mkdir()
    bad = tmp_path / "fixtures" / fixtures.MODEL_FILE
    bad.write_bytes(b"GGUF but truncated")
    result = subprocess.run([sys.executable, "scripts/fixtures.py", "--check"], cwd=top,
                            env={"LLAMACPP_CLUSTER_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "does not match its sha256" in result.stderr and "make fixtures" in result.stderr
    assert bad.read_bytes() == b"GGUF but truncated"
