"""The placement facts of the real GGUF models of the suite, read by module_utils.gguf and
checked against the independent reader of the `gguf` package (llama.cpp's own gguf-py)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import big_model
import fixtures
import gguf as gguf_pkg
import pytest

from ansible_collections.llamacpp.cluster.plugins.module_utils import gguf

RECORDED = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "placement" / "gemma-3-270m-q4_k_m.facts.json"


def independent_facts(path):
    reader = gguf_pkg.GGUFReader(str(path))
    layers = defaultdict(int)
    other = {}
    for tensor in reader.tensors:
        if tensor.name.startswith("blk."):
            layers[int(tensor.name.split(".")[1])] += int(tensor.n_bytes)
        else:
            other[tensor.name] = int(tensor.n_bytes)
    return reader, [layers[i] for i in range(len(layers))], other


@pytest.mark.parametrize("path", [fixtures.model_path(), big_model.big_model_path()], ids=["fixture", "big"])
def test_facts_agree_with_gguf_py(path):
    assert path.is_file(), f"{path} is missing; run 'make fixtures big-model'"
    facts = gguf.model_facts(str(path))
    reader, layers, other = independent_facts(path)
    assert facts["layer_bytes"] == layers and facts["n_layer"] == len(layers)
    assert facts["total_bytes"] == sum(layers) + sum(other.values())
    assert facts["input_bytes"] == other["token_embd.weight"]
    tied = "output.weight" not in other
    assert facts["tied_output"] is tied
    assert facts["output_bytes"] == other["output_norm.weight"] + (other["token_embd.weight"] if tied else other["output.weight"])
    assert facts["n_vocab"] == len(reader.fields["tokenizer.ggml.tokens"].data)
    assert facts["n_embd"] == reader.fields["gemma3.embedding_length"].contents()


def test_the_unit_tests_recorded_the_fixture_model_as_it_is():
    assert json.loads(RECORDED.read_text()) == gguf.model_facts(str(fixtures.model_path()))


def test_the_big_model_is_bigger_than_any_test_node_and_has_hashable_tensors():
    facts = gguf.model_facts(str(big_model.big_model_path()))
    assert facts["total_bytes"] >= 1.3e9 and not facts["tied_output"]
    sizes = [t.nbytes for t in gguf.read_file(str(big_model.big_model_path())).tensors]
    # llama.cpp's RPC client offers tensors larger than 10 MiB by hash (issue: pre-seeded weights).
    assert sum(size for size in sizes if size > 10 * 2 ** 20) > 0.8 * facts["total_bytes"]
