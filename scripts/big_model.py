"""The suite's large test model: a GGUF that no single test node can hold, generated offline.

It keeps the fixture model's (Gemma 3 270M) metadata, tokenizer and Q8_0 token embeddings,
and replaces its layers with 18 Gemma 3 blocks of deterministic random F16 weights whose
feed-forward is 13312 wide: each gate, up and down matrix is 17 MB, above the 10 MiB from
which llama.cpp's RPC client offers tensors by hash. The output matrix is a separate copy of
the embeddings (not tied), so every byte llama.cpp holds is a byte of the file. About 1.33 GB;
it loads and generates (gibberish) in the pinned llama.cpp.

The file is written under a temporary name, checked against its expected sha256 (the
generation is deterministic for the pinned gguf and numpy) and cached in
<cache>/fixtures/ beside the other fixtures.

Usage: python scripts/big_model.py [--print-path]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixtures  # noqa: E402  (the sibling script: cache location, verified caching)

BIG_MODEL_FILE = "gemma3-big-random-f16.gguf"
# The generation is deterministic (pinned gguf and numpy, fixed seed): a file that differs is rejected.
BIG_MODEL_SHA256 = "191b98ef5667108dd3e8cb67fd10a2bb032b390f2566e916a46e3af4664fb4a3"
N_LAYER = 18
N_FF = 13312
SEED = 20261201
ATTENTION = {"attn_q": (1024, 640), "attn_k": (256, 640), "attn_v": (256, 640), "attn_output": (640, 1024)}
FEED_FORWARD = {"ffn_gate": (N_FF, 640), "ffn_up": (N_FF, 640), "ffn_down": (640, N_FF)}
NORMS = {"attn_norm": 640, "attn_q_norm": 256, "attn_k_norm": 256, "post_attention_norm": 640,
         "ffn_norm": 640, "post_ffw_norm": 640}
# Keys of the fixture that the generated model sets itself (or that describe the file, not the model).
REPLACED = {"general.name", "gemma3.block_count", "gemma3.feed_forward_length", "general.file_type"}


def big_model_path(cache: Path | None = None) -> Path:
    return (cache or fixtures.cache_dir()) / "fixtures" / BIG_MODEL_FILE


def _copy_metadata(reader, writer, gguf) -> None:
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in REPLACED or key == "general.architecture":
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, field.contents(), kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, field.contents(), kind)


def produce_big_model(tmp: Path, source: Path) -> None:
    import numpy as np
    import gguf

    reader = gguf.GGUFReader(str(source))
    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    writer = gguf.GGUFWriter(str(tmp), "gemma3")
    _copy_metadata(reader, writer, gguf)
    writer.add_name("Gemma 3 270M layout, random F16 layers (llamacpp.cluster test model)")
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    plan = [("token_embd.weight", embd), ("output.weight", embd)]
    for layer in range(N_LAYER):
        for name, length in NORMS.items():
            plan.append((f"blk.{layer}.{name}.weight", ("norm", length)))
        for name, shape in {**ATTENTION, **FEED_FORWARD}.items():
            plan.append((f"blk.{layer}.{name}.weight", ("random", shape)))
    plan.append(("output_norm.weight", ("norm", 640)))

    for name, what in plan:
        if what is embd:
            writer.add_tensor_info(name, embd.data.shape, np.dtype(np.uint8), embd.n_bytes, raw_dtype=embd.tensor_type)
        elif what[0] == "norm":
            writer.add_tensor_info(name, (what[1],), np.dtype(np.float32), what[1] * 4)
        else:
            writer.add_tensor_info(name, what[1], np.dtype(np.float16), what[1][0] * what[1][1] * 2)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(SEED)
    for name, what in plan:
        if what is embd:
            writer.write_tensor_data(np.asarray(embd.data))
        elif what[0] == "norm":
            writer.write_tensor_data(np.ones(what[1], dtype=np.float32))
        else:
            rows, cols = what[1]
            scale = np.float32(1.0 / np.sqrt(cols))
            writer.write_tensor_data((rng.standard_normal((rows, cols), dtype=np.float32) * scale).astype(np.float16))
    writer.close()


def ensure_big_model(cache: Path | None = None) -> Path:
    cache = cache or fixtures.cache_dir()
    source = fixtures.ensure_file(fixtures.model_path(cache), fixtures.MODEL_SHA256, fixtures.produce_model,
                                  "gemma 3 270m model")
    return fixtures.ensure_file(big_model_path(cache), BIG_MODEL_SHA256,
                                lambda tmp: produce_big_model(tmp, source), "large random test model")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--print-path", action="store_true", help="print the model's path")
    args = parser.parse_args()
    start = time.monotonic()
    try:
        path = ensure_big_model()
    except fixtures.FixtureError as exc:
        print(f"big-model: error: {exc}", file=sys.stderr)
        return 1
    if args.print_path:
        print(path)
    else:
        fixtures.log(f"large test model ready: {path} ({path.stat().st_size} bytes, {time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
