"""Pre-seeding rpc-server's tensor cache: the hash, which tensors a worker receives by hash,
and the seeder's files, manifest, checks, repairs and pruning (pure-Python hash, small
tensors: the threshold is lowered)."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.llamacpp.cluster.plugins.module_utils import gguf, rpc_cache

THRESHOLD = 64


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch):
    monkeypatch.setattr(rpc_cache, "HASH_THRESHOLD", THRESHOLD)


def tensor(name, nbytes, start=0):
    return gguf.Tensor(name, (nbytes,), 24, 0, nbytes, start=start)


def model_bytes(tensors):
    """Distinct bytes per tensor, laid out at the tensors' starts."""
    data = bytearray(max(t.start + t.nbytes for t in tensors))
    for number, t in enumerate(tensors):
        data[t.start:t.start + t.nbytes] = bytes((number * 31 + i * 7) % 251 for i in range(t.nbytes))
    return bytes(data)


def python_hasher(paths):
    out = {}
    for path in paths:
        with open(path, "rb") as handle:
            out[path] = rpc_cache.fnv1a64(handle.read())
    return out


class Model:
    def __init__(self, sizes, seed=0):
        start, self.tensors = 0, []
        for name, size in sizes:
            self.tensors.append(tensor(name, size, start))
            start += size
        self.data = bytearray(model_bytes(self.tensors))
        self.data[0] = seed
        self.fetches = []

    def fetch(self, t, stream):
        self.fetches.append(t.name)
        stream.write(self.data[t.start:t.start + t.nbytes])


LAYERED = [("blk.0.ffn_up.weight", 100), ("blk.0.attn_norm.weight", 16), ("blk.1.ffn_up.weight", 120),
           ("blk.1.ffn_down.weight", 80), ("output.weight", 90), ("token_embd.weight", 200)]


def seed(tmp_path, model, names=None, sha="a" * 64, **kwargs):
    tensors = [t for t in model.tensors if names is None or t.name in names]
    seeder = rpc_cache.Seeder(str(tmp_path), {"sha256": sha}, model.fetch, python_hasher, **kwargs)
    return seeder.run(tensors)


def cache_files(tmp_path):
    return sorted(n for n in os.listdir(tmp_path / "rpc") if rpc_cache.is_cache_file(n))


def test_fnv1a64_matches_the_published_vectors():
    assert rpc_cache.fnv1a64(b"") == 0xCBF29CE484222325
    assert rpc_cache.fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert rpc_cache.fnv1a64(b"foobar") == 0x85944171F73967E8
    # Continuing from a value is hashing the concatenation, as rpc-server's fnv_hash(data, len, hash).
    assert rpc_cache.fnv1a64(b"bar", rpc_cache.fnv1a64(b"foo")) == rpc_cache.fnv1a64(b"foobar")
    assert rpc_cache.cache_name(0xAF63DC4C8601EC8C) == "af63dc4c8601ec8c"
    assert rpc_cache.cache_name(5) == "0000000000000005"


def test_a_worker_receives_by_hash_only_the_large_tensors_of_its_layers():
    tensors = [tensor(n, s) for n, s in LAYERED]
    names = [t.name for t in rpc_cache.hashed_tensors(tensors, ["1"])]
    assert names == ["blk.1.ffn_up.weight", "blk.1.ffn_down.weight"]
    assert [t.name for t in rpc_cache.hashed_tensors(tensors, ["0", "output"])] == \
        ["blk.0.ffn_up.weight", "output.weight"]
    # token_embd stays on the main node, unless --- with whole --- every large tensor is seeded.
    assert "token_embd.weight" in [t.name for t in rpc_cache.hashed_tensors(tensors, [], whole=True)]
    assert "blk.0.attn_norm.weight" not in [t.name for t in rpc_cache.hashed_tensors(tensors, [], whole=True)]


def test_a_tied_output_layer_receives_the_embedding_copy():
    tensors = [tensor(n, s) for n, s in LAYERED if n != "output.weight"]
    assert [t.name for t in rpc_cache.hashed_tensors(tensors, ["output"])] == ["token_embd.weight"]
    assert rpc_cache.hashed_tensors(tensors, ["0"])[0].name == "blk.0.ffn_up.weight"


def test_the_threshold_is_strict():
    tensors = [tensor("blk.0.a.weight", THRESHOLD), tensor("blk.0.b.weight", THRESHOLD + 1)]
    assert [t.name for t in rpc_cache.hashed_tensors(tensors, ["0"])] == ["blk.0.b.weight"]


def test_seeding_writes_each_tensor_under_the_hash_of_its_bytes(tmp_path):
    model = Model(LAYERED)
    result = seed(tmp_path, model)
    assert result["changed"] and len(result["seeded"]) == len(LAYERED)
    for t in model.tensors:
        chunk = bytes(model.data[t.start:t.start + t.nbytes])
        path = tmp_path / "rpc" / rpc_cache.cache_name(rpc_cache.fnv1a64(chunk))
        assert path.read_bytes() == chunk
        assert path.stat().st_mode & 0o777 == 0o600
    manifest = json.loads((tmp_path / rpc_cache.MANIFEST_NAME).read_text())
    assert manifest["model"] == {"sha256": "a" * 64}
    assert set(manifest["tensors"]) == {t.name for t in model.tensors}
    assert result["bytes_written"] == sum(s for _n, s in LAYERED) == result["cache_bytes"]
    assert not [n for n in os.listdir(tmp_path / "rpc") if n.startswith(".seed-")]


def test_a_second_run_changes_nothing_and_reads_nothing(tmp_path):
    model = Model(LAYERED)
    seed(tmp_path, model)
    before = {n: (tmp_path / "rpc" / n).stat().st_mtime_ns for n in cache_files(tmp_path)}
    model.fetches.clear()
    result = seed(tmp_path, model)
    assert not result["changed"] and result["bytes_written"] == 0 and model.fetches == []
    assert result["verified"] == [] and len(result["kept"]) == len(LAYERED)
    assert {n: (tmp_path / "rpc" / n).stat().st_mtime_ns for n in cache_files(tmp_path)} == before


def flip_byte(path, keep_mtime=False):
    info = os.stat(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def test_a_flipped_byte_is_found_by_its_stat_and_repaired(tmp_path):
    model = Model(LAYERED)
    seed(tmp_path, model)
    victim = tmp_path / "rpc" / cache_files(tmp_path)[0]
    good = victim.read_bytes()
    flip_byte(victim)
    result = seed(tmp_path, model)
    assert len(result["repaired"]) == 1 and result["changed"]
    assert victim.read_bytes() == good


def test_a_flip_that_keeps_the_mtime_needs_the_full_check(tmp_path):
    model = Model(LAYERED)
    seed(tmp_path, model)
    victim = tmp_path / "rpc" / cache_files(tmp_path)[0]
    good = victim.read_bytes()
    flip_byte(victim, keep_mtime=True)
    assert not seed(tmp_path, model)["changed"]  # the stat check cannot see it
    result = seed(tmp_path, model, verify="full")
    assert len(result["repaired"]) == 1 and len(result["verified"]) == len(LAYERED)
    assert victim.read_bytes() == good


def test_truncated_and_missing_files_are_written_again(tmp_path):
    model = Model(LAYERED)
    seed(tmp_path, model)
    first, second = cache_files(tmp_path)[:2]
    with open(tmp_path / "rpc" / first, "r+b") as handle:
        handle.truncate(10)
    os.unlink(tmp_path / "rpc" / second)
    result = seed(tmp_path, model)
    assert len(result["repaired"]) == 2
    assert len(cache_files(tmp_path)) == len(LAYERED)


def test_a_new_model_replaces_the_old_models_files(tmp_path):
    seed(tmp_path, Model(LAYERED, seed=1), sha="a" * 64)
    old = set(cache_files(tmp_path))
    new_model = Model([(n, s + 8) for n, s in LAYERED], seed=2)
    result = seed(tmp_path, new_model, sha="b" * 64)
    assert len(result["seeded"]) == len(LAYERED)
    assert set(result["removed"]) == old
    assert not old & set(cache_files(tmp_path)) and len(cache_files(tmp_path)) == len(LAYERED)


def test_files_of_other_layers_and_leftovers_are_removed(tmp_path):
    model = Model(LAYERED)
    seed(tmp_path, model)
    (tmp_path / "rpc" / "0123456789abcdef").write_bytes(b"x" * 100)
    (tmp_path / "rpc" / ".seed-abc.tmp").write_bytes(b"partial")
    (tmp_path / "rpc" / "notes.txt").write_text("not ours")
    result = seed(tmp_path, model, names={"blk.1.ffn_up.weight"})
    assert len(result["removed"]) == len(LAYERED) - 1 + 2
    assert len(cache_files(tmp_path)) == 1 and (tmp_path / "rpc" / "notes.txt").exists()


def test_check_mode_reports_and_changes_nothing(tmp_path):
    model = Model(LAYERED)
    result = seed(tmp_path, model, check_mode=True)
    assert len(result["seeded"]) == len(LAYERED) and not (tmp_path / "rpc").exists()
    seed(tmp_path, model)
    victim = tmp_path / "rpc" / cache_files(tmp_path)[0]
    flip_byte(victim)
    bad = victim.read_bytes()
    result = seed(tmp_path, model, check_mode=True)
    assert len(result["repaired"]) == 1 and victim.read_bytes() == bad


def test_a_short_source_fails_and_leaves_no_file(tmp_path):
    model = Model(LAYERED)

    def short(t, stream):
        stream.write(b"x")

    seeder = rpc_cache.Seeder(str(tmp_path), {"sha256": "a" * 64}, short, python_hasher)
    with pytest.raises(rpc_cache.SeedError, match="gave 1 bytes for tensor blk.0.ffn_up.weight"):
        seeder.run(model.tensors)
    assert os.listdir(tmp_path / "rpc") == []
    assert not (tmp_path / rpc_cache.MANIFEST_NAME).exists()


def test_remove_cache_takes_the_seeded_files_and_the_manifest(tmp_path):
    seed(tmp_path, Model(LAYERED))
    (tmp_path / "rpc" / "keep.txt").write_text("not a cache file")
    removed = rpc_cache.remove_cache(str(tmp_path))
    assert len(removed) == len(LAYERED) + 1 and rpc_cache.MANIFEST_NAME in removed
    assert os.listdir(tmp_path / "rpc") == ["keep.txt"]
    assert rpc_cache.remove_cache(str(tmp_path)) == []
    # Without a manifest the directory is rpc-server's own -c cache: not touched.
    (tmp_path / "rpc" / "0123456789abcdef").write_bytes(b"written by rpc-server")
    assert rpc_cache.remove_cache(str(tmp_path)) == [] and (tmp_path / "rpc" / "0123456789abcdef").exists()


def test_an_unknown_verify_mode_is_refused(tmp_path):
    with pytest.raises(rpc_cache.SeedError, match="verify must be one of stat, full"):
        rpc_cache.Seeder(str(tmp_path), {"sha256": "a"}, None, None, verify="quick")


def test_a_truncated_model_is_refused():
    table = gguf.GGUFFile("m", 3, {}, [tensor("blk.0.a.weight", 100, start=50)], 32, 120)
    with pytest.raises(rpc_cache.SeedError, match="ends at byte 150, after the end of the model"):
        rpc_cache.check_bounds(table)


def test_parsers():
    assert rpc_cache.parse_hashes("af63dc4c8601ec8c  /a b\nnoise\n") == {"/a b": 0xAF63DC4C8601EC8C}
    assert rpc_cache.parse_content_range("bytes 0-99/1234") == (0, 99, 1234)
    assert rpc_cache.parse_content_range("bytes 5-9/*") == (5, 9, None)
    assert rpc_cache.parse_content_range(None) is None
    assert rpc_cache.read_manifest("/nonexistent/manifest.json") == {}
