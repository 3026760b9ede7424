"""benchmarks/placement.py: the layouts' limits, the tightest limits the fit check accepts,
and the fullest node of a run."""

from __future__ import annotations

import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "benchmarks"))
import placement as bench  # noqa: E402  pylint: disable=wrong-import-position


MIB = 1024 ** 2


def model(n_layer=18, layer=70 * MIB, embd=170 * MIB):
    return {"n_layer": n_layer, "layer_bytes": [layer] * n_layer, "layer_repack_bytes": [0] * n_layer,
            "input_bytes": embd, "output_bytes": embd, "tied_output": False, "total_bytes": 2 * embd + n_layer * layer,
            "n_embd": 640, "n_head": 4, "n_ff": 13312, "n_vocab": 262144, "kv_bytes_per_token_layer": 2048,
            "n_head_kv": 1, "architecture": "gemma3"}


WORKERS = [{"name": "w1", "endpoint": "10.0.0.2:50052"}, {"name": "w2", "endpoint": "10.0.0.3:50052"}]


def test_the_layouts_give_equal_then_alternating_limits():
    layouts = bench.layouts(["w1", "w2", "w3"])
    assert set(layouts["equal"].values()) == {900 * MIB}
    assert [layouts["unequal"][w] // MIB for w in ("w1", "w2", "w3")] == [1100, 600, 1100]


def test_the_tightest_scale_is_the_edge_of_the_fit_check():
    m = model()
    limits = {"main": 700 * MIB, "w1": 900 * MIB, "w2": 900 * MIB}
    scale = bench.tightest_scale(m, "main", WORKERS, limits)
    assert scale is not None and 0.5 < scale < 1
    assert bench.fits_scaled(m, "main", WORKERS, limits, scale)
    assert not bench.fits_scaled(m, "main", WORKERS, limits, scale - 0.001)


def test_a_model_that_does_not_fit_at_all_has_no_scale():
    limits = {"main": 700 * MIB, "w1": 900 * MIB, "w2": 900 * MIB}
    assert bench.tightest_scale(model(n_layer=40), "main", WORKERS, limits) is None


def test_peak_over_limit_is_the_fullest_node():
    sample = {"a peak MiB": 450, "a limit MiB": 900, "b peak MiB": 590, "b limit MiB": 600}
    assert bench.peak_over_limit(sample, ["a", "b"]) == 0.983
