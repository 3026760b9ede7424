# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pre-seeding of rpc-server's tensor cache (-c) from a worker's own copy of the model.

llama.cpp's RPC client (b11312, ggml-rpc.cpp) offers a tensor of a weights buffer by hash
instead of sending it when the tensor is larger than HASH_THRESHOLD (strictly): the hash is
64-bit FNV-1a over exactly the tensor's bytes, which the model loader sends whole, at offset 0,
as they are in the GGUF file. rpc-server answers from the file $LLAMA_CACHE/rpc/<%016x of the
hash> when it exists and never checks its content. So a worker that writes those files from
its own copy of the model loads its layers without receiving them, provided every file holds
exactly the bytes its name says: this module writes them atomically, names each by the hash
of what was written, and checks them again on every run.

The cache directory belongs to the seeding: files it did not seed (another model, a former
layer assignment, rpc-server's own writes on misses) are removed, so it stays bounded."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import re
import tempfile

HASH_THRESHOLD = 10 * 1024 * 1024
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
_MASK = (1 << 64) - 1
MANIFEST_NAME = "seed-manifest.json"
MANIFEST_VERSION = 1
_CACHE_FILE = re.compile(r"^[0-9a-f]{16}$")
_TEMP_PREFIX = ".seed-"
_LAYER = re.compile(r"^blk\.(\d+)\.")
VERIFY_MODES = ("stat", "full")


class SeedError(Exception):
    """Seeding cannot go on; the message says what is wrong and how to fix it."""


def fnv1a64(data, value=FNV_OFFSET):
    """64-bit FNV-1a of data, continuing from value: the reference for the native
    llamacpp-fnv1a tool (pure Python runs at about 8 MiB/s)."""
    for byte in bytearray(data):
        value = ((value ^ byte) * FNV_PRIME) & _MASK
    return value


def cache_name(value):
    """The cache file's name rpc-server looks up for a hash."""
    return "%016x" % value


def is_cache_file(name):
    return bool(_CACHE_FILE.match(name))


def hashed_tensors(tensors, layers, whole=False):
    """The tensors a worker holding layers (names as placement gives them: "0", "1", ...,
    "output") receives by hash: those above HASH_THRESHOLD of its layers. The output layer
    takes output.* and, when the model ties its output to the embeddings (no output.weight),
    the token_embd copy llama.cpp duplicates onto it. whole: every tensor above the threshold."""
    wanted = set(str(layer) for layer in layers)
    tied = "output.weight" not in set(tensor.name for tensor in tensors)
    chosen = []
    for tensor in tensors:
        if tensor.nbytes <= HASH_THRESHOLD:
            continue
        match = _LAYER.match(tensor.name)
        if whole:
            take = True
        elif match:
            take = match.group(1) in wanted
        elif tensor.name.startswith("output."):
            take = "output" in wanted
        else:
            take = tensor.name == "token_embd.weight" and tied and "output" in wanted
        if take:
            chosen.append(tensor)
    return chosen


def check_bounds(table):
    """Raises SeedError when a tensor's data ends after the end of the model (gguf.GGUFFile)."""
    for tensor in table.tensors:
        if tensor.start + tensor.nbytes > table.size:
            raise SeedError("tensor %s ends at byte %d, after the end of the model (%d bytes): the model is "
                            "truncated" % (tensor.name, tensor.start + tensor.nbytes, table.size))


def _stat_record(path):
    info = os.stat(path)
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "ino": info.st_ino}


def read_manifest(path):
    """The manifest at path, or an empty one when it is missing or unreadable."""
    try:
        with open(path) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        return {}
    return manifest


def write_atomic(path, data, mode=0o600, owner=None):
    """Writes data (bytes) to path through a temporary file in the same directory, fsynced,
    then renamed over it."""
    directory = os.path.dirname(path)
    handle, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, mode)
        if owner is not None:
            os.chown(temp, owner[0], owner[1])
        os.replace(temp, path)
    except BaseException:
        _remove(temp)
        raise
    _sync_dir(directory)


def _sync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path):
    try:
        os.unlink(path)
        return True
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
        return False


class Seeder:
    """Brings one worker's cache directory (its $LLAMA_CACHE) to exactly the files of the given
    tensors. fetch(tensor, stream) writes the tensor's bytes to a binary stream; hasher(paths)
    returns {path: hash as int} (the native tool, or fnv1a64 in tests)."""

    def __init__(self, cache_dir, model, fetch, hasher, verify="stat", owner=None, check_mode=False):
        if verify not in VERIFY_MODES:
            raise SeedError("verify must be one of %s, not %r" % (", ".join(VERIFY_MODES), verify))
        self.cache_dir = cache_dir
        self.rpc_dir = os.path.join(cache_dir, "rpc")
        self.manifest_path = os.path.join(cache_dir, MANIFEST_NAME)
        self.model, self.fetch, self.hasher = model, fetch, hasher
        self.verify, self.owner, self.check_mode = verify, owner, check_mode
        self.result = {"seeded": [], "repaired": [], "verified": [], "kept": [], "removed": [],
                       "bytes_written": 0, "changed": False}

    # --- one tensor ---------------------------------------------------------------------------
    def _healthy(self, entry, tensor):
        """Whether the cache file of a manifest entry holds the tensor: the file's size and
        stat against the manifest, or its hash (verify=full, or the stat differs)."""
        path = os.path.join(self.rpc_dir, entry["hash"])
        try:
            found = _stat_record(path)
        except OSError:
            return False
        if found["size"] != tensor.nbytes:
            return False
        recorded = {key: entry.get(key) for key in ("size", "mtime_ns", "ino")}
        if self.verify == "stat" and found == recorded:
            return True
        self.result["verified"].append(tensor.name)
        if cache_name(self.hasher([path])[path]) != entry["hash"]:
            return False
        entry.update(found)
        return True

    def _write(self, tensor):
        """Writes the tensor's bytes to a temporary file, names it by the hash of what was
        written, and renames it into place; returns its manifest entry."""
        handle, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".tmp", dir=self.rpc_dir)
        try:
            with os.fdopen(handle, "wb") as stream:
                self.fetch(tensor, stream)
                stream.flush()
                os.fsync(stream.fileno())
            size = os.path.getsize(temp)
            if size != tensor.nbytes:
                raise SeedError("the source gave %d bytes for tensor %s, which has %d; is the source the "
                                "same model file as the main node's?" % (size, tensor.name, tensor.nbytes))
            name = cache_name(self.hasher([temp])[temp])
            os.chmod(temp, 0o600)
            if self.owner is not None:
                os.chown(temp, self.owner[0], self.owner[1])
            final = os.path.join(self.rpc_dir, name)
            os.replace(temp, final)
        except BaseException:
            _remove(temp)
            raise
        self.result["bytes_written"] += size
        entry = {"hash": name}
        entry.update(_stat_record(final))
        return entry

    # --- the whole directory ------------------------------------------------------------------
    def run(self, tensors):
        manifest = read_manifest(self.manifest_path)
        same_model = manifest.get("model", {}).get("sha256") == self.model["sha256"]
        old = manifest.get("tensors", {}) if same_model else {}
        if not self.check_mode:
            self._make_dirs()
        entries = {}
        for tensor in tensors:
            entry = dict(old[tensor.name]) if tensor.name in old else None
            if entry is not None and self._healthy(entry, tensor):
                entries[tensor.name] = entry
                self.result["kept"].append(tensor.name)
                continue
            self.result["repaired" if entry is not None else "seeded"].append(tensor.name)
            if self.check_mode:
                continue
            if entry is not None:
                _remove(os.path.join(self.rpc_dir, entry["hash"]))
            entries[tensor.name] = self._write(tensor)
        wanted = set(entry["hash"] for entry in entries.values())
        self._prune(wanted)
        self.result["changed"] = bool(self.result["seeded"] or self.result["repaired"] or self.result["removed"])
        new_manifest = {"version": MANIFEST_VERSION, "model": self.model,
                        "tensors": dict(sorted(entries.items()))}
        if not self.check_mode and (new_manifest != manifest or self.result["changed"]):
            write_atomic(self.manifest_path, (json.dumps(new_manifest, indent=1, sort_keys=True) + "\n").encode(),
                         mode=0o644)
        self.result["files"] = len(entries)
        self.result["cache_bytes"] = sum(tensor.nbytes for tensor in tensors)
        self.result["manifest"] = self.manifest_path
        return self.result

    def _make_dirs(self):
        for directory in (self.cache_dir, self.rpc_dir):
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o700)
                self.result["changed"] = True
            if self.owner is not None:
                os.chown(directory, self.owner[0], self.owner[1])

    def _prune(self, wanted):
        """Removes every cache file the manifest does not name, and leftover temporary files."""
        try:
            names = sorted(os.listdir(self.rpc_dir))
        except OSError:
            return
        for name in names:
            stale = (is_cache_file(name) and name not in wanted) or name.startswith(_TEMP_PREFIX)
            if stale:
                self.result["removed"].append(name)
                if not self.check_mode:
                    _remove(os.path.join(self.rpc_dir, name))


def remove_cache(cache_dir, check_mode=False):
    """Removes the cache files and the manifest of a seeded cache directory; returns what it
    removed. A directory without a manifest was not seeded (rpc-server's own -c cache): it is
    left alone."""
    removed = []
    manifest = os.path.join(cache_dir, MANIFEST_NAME)
    if not os.path.exists(manifest):
        return removed
    rpc_dir = os.path.join(cache_dir, "rpc")
    if os.path.isdir(rpc_dir):
        for name in sorted(os.listdir(rpc_dir)):
            if is_cache_file(name) or name.startswith(_TEMP_PREFIX):
                removed.append(name)
                if not check_mode:
                    _remove(os.path.join(rpc_dir, name))
    removed.append(MANIFEST_NAME)
    if not check_mode:
        _remove(manifest)
    return removed


def parse_hashes(text):
    """{path: hash} from llamacpp-fnv1a's output ("<16 hex>  <path>" per line)."""
    hashes = {}
    for line in text.splitlines():
        value, sep, path = line.partition("  ")
        if sep and _CACHE_FILE.match(value):
            hashes[path] = int(value, 16)
    return hashes


def parse_content_range(header):
    """(first, last, total) from an HTTP Content-Range header ('bytes 0-99/1234'), or None."""
    match = re.match(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", header or "")
    if not match:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total
