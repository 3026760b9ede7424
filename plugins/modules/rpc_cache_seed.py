#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rpc_cache_seed
short_description: Fill a worker's rpc-server tensor cache from its own copy of the model
version_added: 0.3.0
description:
  - llama.cpp's RPC client offers every tensor larger than 10 MiB of a weights buffer by its
    64-bit FNV-1a hash first; rpc-server started with C(-c) answers from the file
    C($LLAMA_CACHE/rpc/<hash>) when it exists, so those bytes never cross the network.
  - This module writes those files on a worker before llama-server connects, from a GGUF file
    on the worker or from the model's URL with HTTP range requests (only the worker's own
    tensors), so that even the first load of a model sends the workers only the small tensors
    and the graphs.
  - Each file is written under a temporary name, hashed as written (with the native
    C(llamacpp-fnv1a) of the build) and renamed to that hash. A manifest in O(cache_dir) records
    the model's sha256 and, per tensor, its hash and the file's size, mtime and inode.
  - rpc-server never checks a cache hit, so every run checks the files again, by stat against
    the manifest or (O(verify=full)) by hash, and replaces a corrupt or truncated one.
  - Files in the cache that the manifest does not name (an older model, a former layer
    assignment, rpc-server's own writes on misses) are removed; the module owns the directory.
author:
  - llamacpp.cluster maintainers (@llamacpp-cluster)
options:
  cache_dir:
    description:
      - The rpc-server service's C(LLAMA_CACHE); files go to its C(rpc/) subdirectory, the
        manifest to C(seed-manifest.json) in it.
    type: path
    required: true
  state:
    description:
      - V(present) seeds; V(absent) removes the cache files and the manifest of a seeded
        directory. A directory without a manifest (rpc-server's own C(-c) cache) is left alone.
    type: str
    choices: [present, absent]
    default: present
  source:
    description:
      - The model's single GGUF file on the node (a shared file system, a disk image, a copy).
      - Mutually exclusive with O(url).
    type: path
  url:
    description:
      - The model's GGUF URL; the server must answer range requests (HTTP 206).
    type: str
  model_sha256:
    description:
      - The sha256 of the model file, the same as the main node's. With O(source), the file is
        checked against it (again only when its size, mtime or inode change).
    type: str
  layers:
    description:
      - The layers this worker holds, as the main role's placement plan names them
        (V("0"), V("1"), ..., V(output)). An empty list (the worker holds no layer) empties its cache.
    type: list
    elements: str
    default: []
  whole:
    description:
      - Seed every tensor above the threshold, whatever the worker holds.
    type: bool
    default: false
  verify:
    description:
      - V(stat) re-hashes a file only when its size, mtime or inode differ from the manifest;
        V(full) re-hashes every file.
    type: str
    choices: [stat, full]
    default: stat
  hasher:
    description:
      - The C(llamacpp-fnv1a) binary.
    type: path
    default: /opt/llama.cpp/current/bin/llamacpp-fnv1a
  owner:
    description:
      - The user (the rpc-server service's) that owns the files; they are mode 0600.
    type: str
  group:
    description:
      - The group of the files.
    type: str
  timeout:
    description:
      - Seconds for each HTTP request with O(url).
    type: int
    default: 60
  validate_certs:
    description:
      - Verify the TLS certificate of O(url).
    type: bool
    default: true
notes:
  - The model must be one GGUF file; split models are refused.
  - rpc-server reads the cache only when started with C(-c) and C(LLAMA_CACHE) set to
    O(cache_dir) (the rpc_worker role does both with C(llamacpp_rpc_worker_seed)).
  - A byte flipped with its mtime restored escapes O(verify=stat); run with O(verify=full) to
    catch silent corruption.
extends_documentation_fragment:
  - llamacpp.cluster.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Seed the layers this worker holds from its copy of the model
  llamacpp.cluster.rpc_cache_seed:
    cache_dir: /var/cache/llama-rpc-server
    source: /srv/models/model.gguf
    model_sha256: a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
    layers: ["12", "13", "14", "output"]
    owner: llama-rpc
    group: llama-rpc

- name: Seed from the model's URL, with range requests for this worker's tensors only
  llamacpp.cluster.rpc_cache_seed:
    cache_dir: /var/cache/llama-rpc-server
    url: https://models.example.com/llama-405b-q4_0.gguf
    model_sha256: "{{ model_sha256 }}"
    layers: "{{ my_layers }}"

- name: Decommission
  llamacpp.cluster.rpc_cache_seed:
    cache_dir: /var/cache/llama-rpc-server
    state: absent
"""

RETURN = r"""
seeded:
  description: Tensors written because the cache had no file for them.
  returned: always
  type: list
  elements: str
  sample: [blk.12.ffn_up.weight]
repaired:
  description: Tensors whose file was missing, truncated or corrupt, and was written again.
  returned: always
  type: list
  elements: str
kept:
  description: Tensors whose file was in place and checked.
  returned: always
  type: list
  elements: str
verified:
  description: Tensors whose file was re-hashed in this run.
  returned: always
  type: list
  elements: str
removed:
  description: Files removed from the cache directory (not in the manifest, or on O(state=absent)).
  returned: always
  type: list
  elements: str
bytes_written:
  description: Bytes written to the cache in this run.
  returned: always
  type: int
cache_bytes:
  description: Bytes the cache holds for this worker after the run.
  returned: success
  type: int
files:
  description: Cache files for this worker.
  returned: success
  type: int
manifest:
  description: The manifest's path.
  returned: success
  type: str
seconds:
  description: How long the run took.
  returned: always
  type: float
"""

import grp
import hashlib
import io
import os
import pwd
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.llamacpp.cluster.plugins.module_utils import gguf
from ansible_collections.llamacpp.cluster.plugins.module_utils import rpc_cache

CHUNK = 8 * 1024 * 1024
HEAD_START = 8 * 1024 * 1024
HEAD_MAX = 1024 * 1024 * 1024


class Hasher:
    def __init__(self, module, binary):
        self.module, self.binary = module, binary

    def __call__(self, paths):
        rc, out, err = self.module.run_command([self.binary] + list(paths))
        hashes = rpc_cache.parse_hashes(out)
        if rc != 0 or any(path not in hashes for path in paths):
            raise rpc_cache.SeedError("%s failed (rc=%d): %s" % (self.binary, rc, err.strip()))
        return hashes


class FileSource:
    def __init__(self, path):
        self.path = path

    def table(self):
        return gguf.read_file(self.path)

    def __call__(self, tensor, stream):
        with open(self.path, "rb") as source:
            remaining, offset = tensor.nbytes, tensor.start
            while remaining:
                try:  # in the kernel where it can (Linux >= 4.5, Python >= 3.8)
                    copied = os.copy_file_range(source.fileno(), stream.fileno(), remaining, offset)
                except (AttributeError, OSError):
                    source.seek(offset)
                    chunk = source.read(min(CHUNK, remaining))
                    stream.write(chunk)
                    copied = len(chunk)
                if copied == 0:
                    break
                remaining -= copied
                offset += copied


class UrlSource:
    def __init__(self, url, timeout, validate_certs):
        self.url, self.timeout, self.validate_certs = url, timeout, validate_certs
        self.total = None

    def _open(self, first, last):
        response = open_url(self.url, headers={"Range": "bytes=%d-%d" % (first, last)}, timeout=self.timeout,
                            validate_certs=self.validate_certs)
        span = rpc_cache.parse_content_range(response.headers.get("Content-Range"))
        if response.getcode() != 206 or span is None or span[0] != first:
            raise rpc_cache.SeedError(
                "%s does not answer range requests (HTTP %s, Content-Range %r); seed from a file on the "
                "node (source) or serve the model from a server that supports ranges"
                % (self.url, response.getcode(), response.headers.get("Content-Range")))
        if span[2] is not None:
            self.total = span[2]
        return response

    def table(self):
        size = HEAD_START
        while True:
            head = self._open(0, size - 1).read()
            try:
                return gguf.read_stream(io.BytesIO(head), self.total or len(head), self.url)
            except gguf.Truncated:
                if len(head) < size or size >= HEAD_MAX:
                    raise
                size *= 4

    def __call__(self, tensor, stream):
        if tensor.nbytes == 0:
            return
        for attempt in range(3):
            stream.seek(0)
            stream.truncate()
            try:
                response = self._open(tensor.start, tensor.start + tensor.nbytes - 1)
                while True:
                    data = response.read(CHUNK)
                    if not data:
                        break
                    stream.write(data)
                return
            except rpc_cache.SeedError:
                raise
            # A dropped connection or a timeout: retried twice, then it fails the module.
            except Exception:  # pylint: disable=broad-except
                if attempt == 2:
                    raise
                time.sleep(1 + attempt)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _owner(module):
    owner, group = module.params["owner"], module.params["group"]
    if owner is None and group is None:
        return None
    try:
        uid = pwd.getpwnam(owner).pw_uid if owner else os.getuid()
        gid = grp.getgrnam(group).gr_gid if group else (pwd.getpwnam(owner).pw_gid if owner else os.getgid())
    except KeyError as exc:
        module.fail_json(msg="unknown user or group for the cache files: %s; create it first (the rpc_worker "
                             "role's user tasks) or fix owner/group" % exc)
    return uid, gid


def _check_source(module, manifest):
    """The model's identity; with a file source, the file checked against model_sha256 unless
    it is the file the manifest saw."""
    params = module.params
    if params["source"] is None:
        return {"sha256": params["model_sha256"]}
    path = params["source"]
    if not os.path.isfile(path):
        module.fail_json(msg="the model file %s is not on this node; put the model there or seed from its url" % path)
    found = os.stat(path)
    stat = {"path": path, "size": found.st_size, "mtime_ns": found.st_mtime_ns, "ino": found.st_ino}
    model = manifest.get("model", {})
    if model.get("source") == stat and params["model_sha256"] in (None, model.get("sha256")):
        return model
    digest = _sha256(path)
    if params["model_sha256"] and digest != params["model_sha256"]:
        module.fail_json(msg="the model file %s on this node has sha256 %s, not the model's %s; replace it with the "
                             "main node's model" % (path, digest, params["model_sha256"]))
    return {"sha256": digest, "source": stat}


def main():
    module = AnsibleModule(
        argument_spec={
            "cache_dir": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "source": {"type": "path"},
            "url": {"type": "str"},
            "model_sha256": {"type": "str"},
            "layers": {"type": "list", "elements": "str", "default": []},
            "whole": {"type": "bool", "default": False},
            "verify": {"type": "str", "choices": ["stat", "full"], "default": "stat"},
            "hasher": {"type": "path", "default": "/opt/llama.cpp/current/bin/llamacpp-fnv1a"},
            "owner": {"type": "str"},
            "group": {"type": "str"},
            "timeout": {"type": "int", "default": 60},
            "validate_certs": {"type": "bool", "default": True},
        },
        mutually_exclusive=[("source", "url")],
        required_if=[("state", "present", ("source", "url"), True)],
        supports_check_mode=True,
    )
    params, start = module.params, time.monotonic()
    if params["state"] == "absent":
        removed = rpc_cache.remove_cache(params["cache_dir"], module.check_mode)
        module.exit_json(changed=bool(removed), removed=removed, seeded=[], repaired=[], kept=[], verified=[],
                         bytes_written=0, seconds=round(time.monotonic() - start, 3))
    sha = params["model_sha256"]
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        module.fail_json(msg="model_sha256 must be 64 lowercase hex digits, got %r" % sha)
    if params["url"] is not None and not sha:
        module.fail_json(msg="seeding from a url needs model_sha256 (the model's identity in the manifest)")
    if params["source"] and gguf.split_parts(params["source"]) != [params["source"]]:
        module.fail_json(msg="%s is part of a split model; seeding reads single-file models only" % params["source"])
    if not os.access(params["hasher"], os.X_OK):
        module.fail_json(msg="%s is missing: llamacpp-fnv1a ships with the builds of the llamacpp.cluster build "
                             "role; deploy this collection's build on the node (site.yml) or set hasher"
                             % params["hasher"])
    owner = _owner(module)
    manifest = rpc_cache.read_manifest(os.path.join(params["cache_dir"], rpc_cache.MANIFEST_NAME))
    try:
        model = _check_source(module, manifest)
        source = FileSource(params["source"]) if params["source"] else \
            UrlSource(params["url"], params["timeout"], params["validate_certs"])
        table = source.table()
        rpc_cache.check_bounds(table)
        tensors = rpc_cache.hashed_tensors(table.tensors, params["layers"], params["whole"])
        seeder = rpc_cache.Seeder(params["cache_dir"], model, source, Hasher(module, params["hasher"]),
                                  verify=params["verify"], owner=owner, check_mode=module.check_mode)
        result = seeder.run(tensors)
    except (rpc_cache.SeedError, gguf.GGUFError) as exc:
        module.fail_json(msg="seeding %s failed: %s" % (params["cache_dir"], exc))
    except (OSError, IOError) as exc:
        module.fail_json(msg="seeding %s failed: %s" % (params["cache_dir"], exc))
    # urllib's errors (HTTPError, URLError, socket timeouts) of a url source.
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(msg="seeding %s from %s failed: %s" % (params["cache_dir"], params["url"], exc))
    result["seconds"] = round(time.monotonic() - start, 3)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
