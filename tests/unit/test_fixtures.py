"""Unit tests for scripts/fixtures.py: verification, rejection and atomic replacement."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

import fixtures


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def writer(data: bytes, calls: list[Path]):
    def produce(tmp: Path) -> None:
        calls.append(tmp)
        tmp.write_bytes(data)
    return produce


def test_verified_file_is_reused_without_producing(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF good")
    calls: list[Path] = []
    fixtures.ensure_file(path, digest(b"GGUF good"), writer(b"other", calls), "model")
    assert calls == []
    assert path.read_bytes() == b"GGUF good"


def test_wrong_file_is_rejected_and_produced_again(tmp_path, capsys):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF truncat")
    calls: list[Path] = []
    fixtures.ensure_file(path, digest(b"GGUF good"), writer(b"GGUF good", calls), "model")
    assert len(calls) == 1 and calls[0] != path
    assert path.read_bytes() == b"GGUF good"
    assert "rejecting" in capsys.readouterr().out


def test_producer_with_wrong_digest_installs_nothing(tmp_path):
    path = tmp_path / "model.gguf"
    with pytest.raises(fixtures.FixtureError, match="expected"):
        fixtures.ensure_file(path, digest(b"GGUF good"), writer(b"corrupt", []), "model")
    assert list(tmp_path.iterdir()) == []


def test_failed_producer_leaves_no_partial_file(tmp_path):
    path = tmp_path / "model.gguf"

    def produce(tmp: Path) -> None:
        tmp.write_bytes(b"half a downl")
        raise fixtures.FixtureError("network went away")

    with pytest.raises(fixtures.FixtureError, match="network went away"):
        fixtures.ensure_file(path, None, produce, "model")
    assert list(tmp_path.iterdir()) == []


def test_unpinned_file_records_and_enforces_its_sidecar(tmp_path):
    path = tmp_path / "src.tar.gz"
    calls: list[Path] = []
    fixtures.ensure_file(path, None, writer(b"archive", calls), "source")
    sidecar = tmp_path / "src.tar.gz.sha256"
    assert sidecar.read_text().split()[0] == digest(b"archive")
    path.write_bytes(b"archivX")  # corrupted in the cache
    fixtures.ensure_file(path, None, writer(b"archive", calls), "source")
    assert len(calls) == 2 and path.read_bytes() == b"archive"


def test_low_disk_space_is_reported_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(fixtures, "MIN_FREE_BYTES", 1 << 62)
    with pytest.raises(fixtures.FixtureError, match="LLAMACPP_CLUSTER_CACHE"):
        fixtures.ensure_file(tmp_path / "x", None, writer(b"x", []), "x")


LONG = "tools/ui/src/lib/components/app/settings/SettingsChat/" + "x" * 60 + ".constants.ts"


def make_sdist(path: Path, with_rpc: bool = True) -> None:
    root = "llama_cpp_python-0.3.36/vendor/llama.cpp"
    files = {f"{root}/CMakeLists.txt": b"project(llama)\n", f"{root}/.git": b"gitdir: ../../.git\n",
             "llama_cpp_python-0.3.36/setup.py": b"", f"{root}/tools/ui/package.json": b"{}\n",
             f"{root}/{LONG}": b"export const x = 1;\n"}
    if with_rpc:
        files[f"{root}/ggml/src/ggml-rpc/ggml-rpc.cpp"] = b"// rpc\n"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.uid = len(data), 12345, 1000
            tar.addfile(info, io.BytesIO(data))


def test_repack_is_reproducible_and_drops_git_link(tmp_path):
    sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    make_sdist(sdist)
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    fixtures.repack_source(sdist, first)
    fixtures.repack_source(sdist, second)
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as tar:
        names = tar.getnames()
        meta = json.load(tar.extractfile("llama.cpp-b11312/LLAMA_CPP_SOURCE.json"))
        assert {m.uid for m in tar.getmembers()} == {0}
    assert "llama.cpp-b11312/CMakeLists.txt" in names
    assert "llama.cpp-b11312/ggml/src/ggml-rpc/ggml-rpc.cpp" in names
    assert not any(n.endswith("/.git") or "setup.py" in n for n in names)
    assert meta["commit"] == fixtures.LLAMA_CPP_COMMIT


def test_repack_keeps_long_paths_under_the_new_prefix(tmp_path):
    # Names over 100 characters live in PAX headers, which once kept the sdist's prefix.
    sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    make_sdist(sdist)
    fixtures.repack_source(sdist, tmp_path / "out.tar.gz")
    with tarfile.open(tmp_path / "out.tar.gz") as tar:
        names = tar.getnames()
        assert tar.extractfile(f"llama.cpp-b11312/{LONG}").read() == b"export const x = 1;\n"
    assert all(n.startswith("llama.cpp-b11312/") for n in names)


def test_repack_carries_the_built_web_ui(tmp_path):
    sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    make_sdist(sdist)
    seen = []

    def build(ui_dir):
        seen.append(sorted(p.relative_to(ui_dir).as_posix() for p in ui_dir.rglob("*") if p.is_file()))
        (ui_dir / "dist" / "_app").mkdir(parents=True)
        (ui_dir / "dist" / "index.html").write_text("<html></html>")
        (ui_dir / "dist" / "_app" / "bundle.js").write_text("app()")
        return ui_dir / "dist"

    fixtures.repack_source(sdist, tmp_path / "out.tar.gz", build)
    assert seen == [sorted(["package.json", LONG[len("tools/ui/"):]])]
    with tarfile.open(tmp_path / "out.tar.gz") as tar:
        assert tar.extractfile("llama.cpp-b11312/tools/ui/dist/index.html").read() == b"<html></html>"
        assert tar.extractfile("llama.cpp-b11312/tools/ui/dist/_app/bundle.js").read() == b"app()"
        meta = json.load(tar.extractfile("llama.cpp-b11312/LLAMA_CPP_SOURCE.json"))
    assert meta["web_ui"].startswith("tools/ui/dist")


def test_a_failed_web_ui_build_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(fixtures.shutil, "which", lambda name: None)
    with pytest.raises(fixtures.FixtureError, match="npm is missing"):
        fixtures.build_web_ui(tmp_path, tmp_path / "npm")


def test_repack_refuses_a_tree_without_the_rpc_backend(tmp_path):
    sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    make_sdist(sdist, with_rpc=False)
    with pytest.raises(fixtures.FixtureError, match="RPC backend"):
        fixtures.repack_source(sdist, tmp_path / "out.tar.gz")
