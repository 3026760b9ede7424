"""GGUF header reading and model facts, on files written by the independent `gguf` package."""

from __future__ import annotations

import struct

import gguf as gguf_pkg
import numpy as np
import pytest

from ansible_collections.llamacpp.cluster.plugins.module_utils import gguf, inference

N_EMBD, N_FF, N_VOCAB = 64, 128, 96


def write_model(path, n_layer=3, tied=True, split_no=None, split_count=None, layers=None, with_embd=True,
                chat_template=None):
    """A gemma3-shaped GGUF: token_embd (Q8_0 bytes), n_layer blocks of F16/F32 tensors, the
    output norm and, unless tied, an output matrix."""
    writer = gguf_pkg.GGUFWriter(str(path), "gemma3")
    writer.add_block_count(n_layer)
    writer.add_embedding_length(N_EMBD)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(4)
    writer.add_head_count_kv(1)
    writer.add_key_length(32)
    writer.add_value_length(32)
    writer.add_context_length(2048)
    writer.add_sliding_window(512)
    writer.add_token_list([f"t{i}" for i in range(N_VOCAB)])
    if chat_template:
        writer.add_chat_template(chat_template)
    if split_count:
        writer.add_uint16("split.no", split_no)
        writer.add_uint16("split.count", split_count)
    if with_embd:
        # Q8_0: 34 bytes per 32 values, written as raw bytes the way quantised tensors are.
        embd = np.zeros((N_VOCAB, N_EMBD // 32 * 34), dtype=np.uint8)
        writer.add_tensor("token_embd.weight", embd, raw_dtype=gguf_pkg.GGMLQuantizationType.Q8_0)
    for layer in (range(n_layer) if layers is None else layers):
        writer.add_tensor(f"blk.{layer}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(f"blk.{layer}.attn_q.weight", np.zeros((128, N_EMBD), dtype=np.float16))
        writer.add_tensor(f"blk.{layer}.ffn_up.weight", np.zeros((N_FF, N_EMBD), dtype=np.float16))
    if split_count is None or split_no == split_count - 1:
        writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        if not tied:
            writer.add_tensor("output.weight", np.zeros((N_VOCAB, N_EMBD), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


EMBD_BYTES = N_VOCAB * N_EMBD // 32 * 34
LAYER_BYTES = N_EMBD * 4 + 128 * N_EMBD * 2 + N_FF * N_EMBD * 2


def test_reads_metadata_and_tensor_sizes(tmp_path):
    model = gguf.read_file(str(write_model(tmp_path / "m.gguf")))
    assert model.version == 3
    assert model.metadata["general.architecture"] == "gemma3"
    assert model.metadata["gemma3.block_count"] == 3
    assert model.metadata["tokenizer.ggml.tokens"] == N_VOCAB  # a long array: only its length
    sizes = {t.name: (t.type_name, t.nbytes) for t in model.tensors}
    assert sizes["token_embd.weight"] == ("Q8_0", EMBD_BYTES)
    assert sizes["blk.2.ffn_up.weight"] == ("F16", N_FF * N_EMBD * 2)
    assert sizes["output_norm.weight"] == ("F32", N_EMBD * 4)


def test_model_facts_count_layers_input_and_a_tied_output(tmp_path):
    facts = gguf.model_facts(str(write_model(tmp_path / "m.gguf")))
    assert facts["n_layer"] == 3 and facts["layer_bytes"] == [LAYER_BYTES] * 3
    assert facts["layer_repack_bytes"] == [0, 0, 0]  # F16 and F32: nothing for the CPU to repack
    assert facts["input_bytes"] == EMBD_BYTES
    # Tied embeddings: the output layer holds a copy of token_embd besides its norm.
    assert facts["tied_output"] and facts["output_bytes"] == N_EMBD * 4 + EMBD_BYTES
    assert facts["total_bytes"] == EMBD_BYTES + 3 * LAYER_BYTES + N_EMBD * 4
    # f16 K and V: 1 KV head of 32 + 32 values at 2 bytes each.
    assert facts["kv_bytes_per_token_layer"] == 128
    assert (facts["n_embd"], facts["n_vocab"], facts["context_length"], facts["sliding_window"]) == (N_EMBD, N_VOCAB, 2048, 512)


def test_model_facts_say_whether_the_model_has_a_chat_template(tmp_path):
    assert gguf.model_facts(str(write_model(tmp_path / "base.gguf")))["has_chat_template"] is False
    chat = write_model(tmp_path / "chat.gguf", chat_template="{{ messages[0].content }}")
    assert gguf.model_facts(str(chat))["has_chat_template"] is True


def test_model_facts_with_an_output_matrix(tmp_path):
    facts = gguf.model_facts(str(write_model(tmp_path / "m.gguf", tied=False)))
    assert not facts["tied_output"]
    assert facts["output_bytes"] == N_EMBD * 4 + N_VOCAB * N_EMBD * 2


def test_model_facts_of_a_split_model_read_every_part(tmp_path):
    first = write_model(tmp_path / "m-00001-of-00002.gguf", split_no=0, split_count=2, layers=[0, 1])
    write_model(tmp_path / "m-00002-of-00002.gguf", split_no=1, split_count=2, layers=[2], with_embd=False)
    facts = gguf.model_facts(str(first))
    assert facts["parts"] == 2
    assert facts["layer_bytes"] == [LAYER_BYTES] * 3
    assert facts["output_bytes"] == N_EMBD * 4 + EMBD_BYTES


def test_a_missing_part_of_a_split_model_is_named(tmp_path):
    first = write_model(tmp_path / "m-00001-of-00002.gguf", split_no=0, split_count=2, layers=[0, 1])
    with pytest.raises(OSError, match="m-00002-of-00002.gguf"):
        gguf.model_facts(str(first))


def test_split_parts_names_every_file():
    assert gguf.split_parts("/m/a-00001-of-00003.gguf") == [
        "/m/a-00001-of-00003.gguf", "/m/a-00002-of-00003.gguf", "/m/a-00003-of-00003.gguf"]
    assert gguf.split_parts("/m/a.gguf") == ["/m/a.gguf"]


def test_a_model_without_block_count_is_refused(tmp_path):
    path = tmp_path / "m.gguf"
    writer = gguf_pkg.GGUFWriter(str(path), "gemma3")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(gguf.GGUFError, match="no gemma3.block_count"):
        gguf.model_facts(str(path))


@pytest.fixture(name="gguf_bytes")
def fixture_gguf_bytes():
    """A small, whole GGUF v3 file written by hand: three metadata keys (one a string array)
    and two F32 tensors, the second at data offset 64."""
    def build(alignment=32):
        def string(text):
            data = text.encode()
            return struct.pack("<Q", len(data)) + data

        kv = (string("general.architecture") + struct.pack("<I", 8) + string("gemma3")
              + string("general.alignment") + struct.pack("<II", 4, alignment)
              + string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + b"".join(string(t) for t in "abc"))
        tensors = (string("token_embd.weight") + struct.pack("<IQQIQ", 2, 4, 2, 0, 0)
                   + string("output_norm.weight") + struct.pack("<IQIQ", 1, 4, 0, 64))
        head = b"GGUF" + struct.pack("<IQQ", 3, 2, 3) + kv + tensors
        head += b"\0" * (-len(head) % alignment)
        return head + b"\1" * (64 + 16)
    return build


@pytest.mark.parametrize("cut, expected", [
    (None, None),
    (40, "truncated: the file ends inside its GGUF"),
    (-20, "end before the end of tensor output_norm.weight's data"),
])
def test_layout_problem_names_a_truncated_model(tmp_path, gguf_bytes, cut, expected):
    data = gguf_bytes()
    path = tmp_path / "model.gguf"
    path.write_bytes(data if cut is None else data[:cut])
    problem = gguf.layout_problem(str(path))
    assert problem is None if expected is None else expected in problem


def test_layout_problem_names_a_file_that_is_not_gguf(tmp_path, gguf_bytes):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGML" + gguf_bytes()[4:])
    assert "is corrupt: no GGUF magic" in gguf.layout_problem(str(path))


def test_a_failure_without_log_lines_is_diagnosed_from_the_model(tmp_path, gguf_bytes):
    # llama.cpp's logger is asynchronous: an early exit can leave stderr empty.
    path = tmp_path / "model.gguf"
    path.write_bytes(gguf_bytes()[:40])
    assert inference.diagnose(1, "", str(path)).startswith("llama.cpp could not load the model: ")
    path.write_bytes(gguf_bytes())
    assert inference.diagnose(1, "", str(path)) == "llama.cpp exited with rc=1; see stderr_tail"


def test_the_model_info_module_reads_a_model(run_module, tmp_path):
    path = write_model(tmp_path / "m.gguf")
    rc, result = run_module("model_info", {"path": str(path)})
    assert rc == 0 and not result["changed"]
    assert result["model"]["n_layer"] == 3 and result["model"]["layer_bytes"] == [LAYER_BYTES] * 3


def test_the_model_info_module_names_a_missing_part(run_module, tmp_path):
    first = write_model(tmp_path / "m-00001-of-00002.gguf", split_no=0, split_count=2, layers=[0, 1])
    rc, result = run_module("model_info", {"path": str(first)})
    assert rc != 0 and "m-00002-of-00002.gguf" in result["msg"] and "all its parts side by side" in result["msg"]


def test_the_model_info_module_refuses_a_file_that_is_not_gguf(run_module, tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"not a model at all")
    rc, result = run_module("model_info", {"path": str(path)})
    assert rc != 0 and "is not a usable GGUF model: no GGUF magic" in result["msg"]
