# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reads a GGUF model's header, metadata and tensor table without loading its weights, and
derives the facts that placement needs: bytes per layer, embedding and output bytes, the
KV-cache bytes per token. Split models (name-0000K-of-0000N.gguf) are read part by part."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import struct

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
# Arrays longer than this (vocabularies, merges) are not kept, only counted.
MAX_KEPT_ARRAY = 64

# ggml type id -> (name, elements per block, bytes per block), as in ggml/src/ggml.c (b11312).
GGML_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18), 42: ("Q2_0", 64, 18),
}

# Metadata value types: id -> struct format; 8 is a string, 9 an array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_SPLIT_NAME = re.compile(r"^(?P<prefix>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
_LAYER = re.compile(r"^blk\.(\d+)\.")
# Types ggml's CPU backend may repack into a second, interleaved copy (ggml-cpu/repack.cpp, b11312).
REPACKABLE = frozenset((2, 12, 10, 13, 14, 20, 39, 8, 41))
_ENDS_EARLY = "the file ends inside its GGUF header, metadata or tensor table"


class GGUFError(ValueError):
    """The file is not a readable GGUF model; the message says what is wrong."""


class Truncated(GGUFError):
    """The file ends inside its header, metadata or tensor table."""


class Tensor:
    __slots__ = ("name", "dims", "type_id", "offset", "nbytes", "start")

    def __init__(self, name, dims, type_id, offset, nbytes, start=None):
        self.name, self.dims, self.type_id, self.offset, self.nbytes = name, dims, type_id, offset, nbytes
        # The data's position in the file (data start + offset), once the data start is known.
        self.start = start

    @property
    def type_name(self):
        return GGML_TYPES.get(self.type_id, ("type%d" % self.type_id,))[0]

    def __repr__(self):
        return "Tensor(%s, %s, %s, %d bytes)" % (self.name, self.type_name, list(self.dims), self.nbytes)


class GGUFFile:
    """One GGUF file: version, metadata (long arrays as their length), tensors, data start."""

    def __init__(self, path, version, metadata, tensors, data_start, size):
        self.path, self.version, self.metadata = path, version, metadata
        self.tensors, self.data_start, self.size = tensors, data_start, size


def tensor_nbytes(type_id, dims):
    """Bytes of a tensor's data, or None for a type this table does not know."""
    if type_id not in GGML_TYPES:
        return None
    _name, block, size = GGML_TYPES[type_id]
    elements = 1
    for dim in dims:
        elements *= dim
    if dims and dims[0] % block:
        raise GGUFError("a %s tensor's rows (%d) are not a multiple of its block size %d"
                        % (GGML_TYPES[type_id][0], dims[0], block))
    return elements // block * size


class _Reader:
    def __init__(self, handle, size):
        self.handle, self.size = handle, size

    def unpack(self, fmt):
        count = struct.calcsize(fmt)
        data = self.handle.read(count)
        if len(data) < count:
            raise Truncated(_ENDS_EARLY)
        return struct.unpack(fmt, data)[0]

    def skip(self, count):
        if self.handle.tell() + count > self.size:
            raise Truncated(_ENDS_EARLY)
        self.handle.seek(count, os.SEEK_CUR)

    def string(self):
        length = self.unpack("<Q")
        if self.handle.tell() + length > self.size:
            raise Truncated(_ENDS_EARLY)
        return self.handle.read(length).decode("utf-8", "replace")

    def value(self, kind):
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.unpack("<I"), self.unpack("<Q")
            if count > MAX_KEPT_ARRAY and item in _SCALARS:
                self.skip(struct.calcsize(_SCALARS[item]) * count)
                return ArrayLength(count)
            if count > MAX_KEPT_ARRAY and item == _STRING:
                for _index in range(count):
                    self.skip(self.unpack("<Q"))
                return ArrayLength(count)
            values = [self.value(item) for _index in range(count)]
            return ArrayLength(count) if count > MAX_KEPT_ARRAY else values
        raise GGUFError("unknown GGUF metadata value type %d" % kind)


class ArrayLength(int):
    """A metadata array too long to keep: only its length."""


def read_file(path):
    """Reads one GGUF file's header, metadata and tensor table. Raises GGUFError (Truncated
    for a file that ends too early) and OSError."""
    with open(path, "rb") as handle:
        return read_stream(handle, os.path.getsize(path), path)


def read_stream(handle, size, path):
    """read_file for a seekable binary stream positioned at the start of a GGUF file of size
    bytes: it may hold only the file's head (a prefix fetched over HTTP); a prefix too short
    for the tensor table raises Truncated."""
    reader = _Reader(handle, size)
    if handle.read(4) != GGUF_MAGIC:
        raise GGUFError("no GGUF magic: this is not a GGUF file")
    version = reader.unpack("<I")
    if version not in (2, 3):
        raise GGUFError("GGUF version %d is not supported (2 and 3 are)" % version)
    n_tensors, n_kv = reader.unpack("<Q"), reader.unpack("<Q")
    metadata = {}
    for _index in range(n_kv):
        key = reader.string()
        metadata[key] = reader.value(reader.unpack("<I"))
    raw = []
    for _index in range(n_tensors):
        name, n_dims = reader.string(), reader.unpack("<I")
        if n_dims > 8:
            raise GGUFError("tensor %s has %d dimensions" % (name, n_dims))
        dims = tuple(reader.unpack("<Q") for _dim in range(n_dims))
        raw.append((name, dims, reader.unpack("<I"), reader.unpack("<Q")))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT) or DEFAULT_ALIGNMENT
    data_start = -(-handle.tell() // alignment) * alignment
    tensors = _with_sizes(raw, size - data_start)
    for tensor in tensors:
        tensor.start = data_start + tensor.offset
    return GGUFFile(path, version, metadata, tensors, data_start, size)


def _with_sizes(raw, data_size):
    """Tensors with their byte sizes: from the type table, else from the gap to the next one."""
    ends = sorted(offset for _n, _d, _t, offset in raw) + [data_size]
    tensors = []
    for name, dims, type_id, offset in raw:
        nbytes = tensor_nbytes(type_id, dims)
        if nbytes is None:
            nbytes = next(end for end in ends if end > offset) - offset if offset < data_size else 0
        tensors.append(Tensor(name, dims, type_id, offset, nbytes))
    return tensors


def layout_problem(path):
    """Why the GGUF file at path cannot be whole, or None when its header, metadata and tensor
    table are complete and every tensor's data lies inside the file."""
    try:
        gguf = read_file(path)
    except OSError as exc:
        return "cannot read %s: %s" % (path, exc.strerror)
    except Truncated as exc:
        return "%s is truncated: %s" % (path, exc)
    except GGUFError as exc:
        return "%s is corrupt: %s" % (path, exc)
    for tensor in sorted(gguf.tensors, key=lambda t: t.offset, reverse=True)[:1]:
        end = gguf.data_start + tensor.offset + tensor.nbytes
        if end > gguf.size:
            return ("%s is truncated: its %d bytes end before the end of tensor %s's data (byte %d)"
                    % (path, gguf.size, tensor.name, end))
    return None


def split_parts(path):
    """All files of a split model, in order, given its first part; [path] for a single file."""
    match = _SPLIT_NAME.match(os.path.basename(path))
    if not match:
        return [path]
    count = int(match.group("count"))
    directory = os.path.dirname(path)
    return [os.path.join(directory, "%s-%05d-of-%05d.gguf" % (match.group("prefix"), number, count))
            for number in range(1, count + 1)]


def _meta(metadata, arch, key, default=None):
    value = metadata.get("%s.%s" % (arch, key), default)
    if isinstance(value, list):  # per-layer values: placement takes the largest
        value = max(value) if value else default
    return value


def model_facts(path, kv_type_bytes=2):
    """The placement facts of the model whose first (or only) file is path.

    Bytes of: every repeating layer (blk.N.*), the input (token_embd and any other tensor
    outside the layers and the output), the output layer (output_norm, output; with tied
    embeddings llama.cpp holds a second copy of token_embd on the output's device), and the
    KV cache per token and layer at kv_type_bytes per element (2: f16, llama.cpp's default)."""
    parts = split_parts(path)
    files = [read_file(part) for part in parts]
    first = files[0]
    metadata = first.metadata
    arch = metadata.get("general.architecture")
    if not arch:
        raise GGUFError("%s has no general.architecture" % path)
    n_layer = _meta(metadata, arch, "block_count")
    if not isinstance(n_layer, int) or n_layer < 1:
        raise GGUFError("%s has no %s.block_count" % (path, arch))
    declared = metadata.get("split.count", 1)
    if declared != len(files):
        raise GGUFError("%s declares split.count %s but is named as one of %d parts"
                        % (path, declared, len(files)))
    layers, repack = [0] * n_layer, [0] * n_layer
    input_bytes = output_bytes = total = 0
    embd_bytes, has_output = 0, False
    for gguf in files:
        for tensor in gguf.tensors:
            total += tensor.nbytes
            layer = _LAYER.match(tensor.name)
            if layer and int(layer.group(1)) < n_layer:
                layers[int(layer.group(1))] += tensor.nbytes
                if tensor.type_id in REPACKABLE and len(tensor.dims) == 2:
                    repack[int(layer.group(1))] += tensor.nbytes
            elif tensor.name.startswith("output"):
                output_bytes += tensor.nbytes
                has_output = has_output or tensor.name == "output.weight"
            else:
                input_bytes += tensor.nbytes
                if tensor.name == "token_embd.weight":
                    embd_bytes = tensor.nbytes
    if not has_output:
        output_bytes += embd_bytes
    n_embd = _meta(metadata, arch, "embedding_length", 0)
    n_head = _meta(metadata, arch, "attention.head_count", 0)
    n_head_kv = _meta(metadata, arch, "attention.head_count_kv", n_head)
    head_dim = n_embd // n_head if n_head else 0
    key_length = _meta(metadata, arch, "attention.key_length", head_dim)
    value_length = _meta(metadata, arch, "attention.value_length", head_dim)
    vocab = metadata.get("tokenizer.ggml.tokens")
    return {
        "architecture": arch,
        "parts": len(files),
        "total_bytes": total,
        "file_bytes": sum(gguf.size for gguf in files),
        "n_layer": n_layer,
        "layer_bytes": layers,
        "layer_repack_bytes": repack,
        "input_bytes": input_bytes,
        "output_bytes": output_bytes,
        "tied_output": not has_output,
        "n_embd": n_embd,
        "n_head": n_head,
        "n_head_kv": n_head_kv,
        "n_ff": _meta(metadata, arch, "feed_forward_length", 0),
        "n_vocab": int(vocab) if vocab is not None and not isinstance(vocab, list) else len(vocab or []),
        "context_length": _meta(metadata, arch, "context_length", 0),
        "sliding_window": _meta(metadata, arch, "attention.sliding_window", 0),
        "kv_bytes_per_token_layer": n_head_kv * (key_length + value_length) * kv_type_bytes,
        # A base model has no chat template: llama-server then needs one for chat requests.
        "has_chat_template": bool(metadata.get("tokenizer.chat_template")),
    }
