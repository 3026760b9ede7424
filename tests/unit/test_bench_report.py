"""benchmarks/report.py: alternation order, medians, ratios, the Markdown table and the plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "benchmarks"))
import report  # noqa: E402  pylint: disable=wrong-import-position
import run  # noqa: E402  pylint: disable=wrong-import-position


def test_variants_alternate_round_by_round():
    calls = []
    samples = report.alternate(3, {"A": lambda: calls.append("A") or 1, "B": lambda: calls.append("B") or 2})
    assert calls == ["A", "B", "A", "B", "A", "B"]
    assert samples == {"A": [1, 1, 1], "B": [2, 2, 2]}


def test_median_ignores_missing_values():
    assert report.median([3.0, None, 1.0, 2.0]) == 2.0
    assert report.median([None]) is None


def test_ratios_are_against_the_baseline_median():
    samples = {"hand": [{"tps": 10.0}, {"tps": 30.0}, {"tps": 20.0}],
               "collection": [{"tps": 21.0}, {"tps": 19.0}, {"tps": 20.5}]}
    comp = report.comparison("t", samples, ["tps"], "hand")
    assert comp["summary"]["hand"] == {"tps": 20.0, "n": 3}
    assert comp["ratios"]["tps"] == {"hand": 1.0, "collection": 1.025}


def result_of(comp):
    return {"date": "2026-11-26", "settings": {"pairs": 3}, "comparisons": {"recipe": comp},
            "machine": {"controller_cpu": "cpu", "controller_vcpus": 2, "nodes": "1 main + 2 workers",
                        "node_cpu": "cpu", "llama_cpp": "b11312", "model": "m.gguf"}}


def test_markdown_has_one_row_per_variant_with_medians_and_ratios():
    comp = report.comparison("Hand vs collection", {"hand": [{"wall_s": 2.0}], "coll": [{"wall_s": 2.04}]},
                             ["wall_s"], "hand")
    text = report.markdown(result_of(comp))
    assert "## Hand vs collection" in text
    assert "| hand | 1 | 2 (1) |" in text and "| coll | 1 | 2.04 (1.02) |" in text


def test_plot_writes_a_png(tmp_path):
    comp = report.comparison("x", {"a": [{"wall_s": 1.0}, {"wall_s": 3.0}], "b": [{"wall_s": None}]},
                             ["wall_s"], "a")
    report.plot(result_of(comp), tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_lists_derived_ratios_under_their_table():
    comp = report.comparison("t", {"a": [{"wall_s": 1.0}]}, ["wall_s"], "a")
    comp["derived"] = {"module over bare": 1.012, "missing": None}
    text = report.markdown(result_of(comp))
    assert "- module over bare: 1.012\n- missing: –\n" in text


def test_the_benchmarks_page_shows_the_latest_result_of_every_comparison():
    results = sorted((TOP / "benchmarks/results").glob("*.json"))
    assert results, "no benchmark result is committed"
    section = (TOP / "benchmarks/README.md").read_text()
    assert "(benchmarks/README.md)" in (TOP / "README.md").read_text().split("\n## Performance", 1)[1]
    latest = {}
    for path in results:  # oldest first: a later run replaces an earlier one's comparisons
        latest.update({name: (path, comp) for name, comp in json.loads(path.read_text())["comparisons"].items()})
    assert set(latest) == set(run.COMPARISONS), "some comparison has never been run"
    for name, (path, comp) in latest.items():
        assert f"results/{path.stem}.md" in section, name
        assert f"(results/{path.stem}.png)" in section, name
        assert path.with_suffix(".png").is_file() and path.with_suffix(".md").is_file()
    summary = latest["recipe"][1]["summary"]
    assert f"{summary['hand: rpc-server default threads']['predicted_per_second']:g} t/s" in section
    workers = latest["workers"][1]["summary"]
    assert f"{workers['main node alone']['predicted_per_second']:g} t/s alone" in section
