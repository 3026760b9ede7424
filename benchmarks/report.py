"""Medians, ratios, the Markdown report and the plots of a benchmark run."""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def alternate(pairs: int, variants: dict) -> dict[str, list]:
    """Run each variant's callable once per round, in the same order every round (A B A B ...),
    for `pairs` rounds; returns the samples per variant."""
    samples: dict[str, list] = {label: [] for label in variants}
    for _round in range(pairs):
        for label, measure in variants.items():
            samples[label].append(measure())
    return samples


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def summarize(samples: dict[str, list[dict]], metrics: list[str]) -> dict[str, dict]:
    """Median of each metric per variant, and the number of samples."""
    return {label: dict({m: median(s.get(m) for s in runs) for m in metrics}, n=len(runs))
            for label, runs in samples.items()}


def ratios(summary: dict[str, dict], metric: str, baseline: str) -> dict[str, float | None]:
    """Each variant's median of `metric` over the baseline variant's."""
    base = summary[baseline].get(metric)
    return {label: (round(values[metric] / base, 3) if base and values.get(metric) is not None else None)
            for label, values in summary.items()}


def comparison(title: str, samples: dict, metrics: list[str], baseline: str, note: str = "") -> dict:
    summary = summarize(samples, metrics)
    return {"title": title, "note": note, "baseline": baseline, "metrics": metrics, "samples": samples,
            "summary": summary, "ratios": {m: ratios(summary, m, baseline) for m in metrics}}


UNITS = {"predicted_per_second": "gen t/s", "prompt_per_second": "prompt t/s", "wall_s": "wall s",
         "ttft_s": "TTFT s", "load_ms": "load ms", "task_s": "task s", "peak_rss_mib": "peak RSS MiB",
         "total_s": "total s", "start_s": "start s", "worker_peak_rss_mib": "worker RSS MiB",
         "workers_total_rss_mib": "all workers RSS MiB", "compile_s": "compile s", "compiles": "compiles",
         "changed": "changed tasks", "changed_hosts": "changed hosts", "peak_over_limit": "peak/limit",
         "oom_kills": "OOM kills", "limit_hits": "limit hits", "sent_mb": "sent MB", "sent_share": "sent share",
         "cache_misses": "cache misses", "throughput_tps": "throughput t/s"}


def _cell(value) -> str:
    return "–" if value is None else f"{value:g}"


def markdown(result: dict) -> str:
    machine = result["machine"]
    lines = [f"# Benchmark {result['date']}", "",
             f"Controller: {machine['controller_cpu']} ({machine['controller_vcpus']} vCPUs). "
             f"Nodes: {machine['nodes']} ({machine['node_cpu']}). llama.cpp {machine['llama_cpp']}. "
             f"Model: {machine['model']}. Settings: {result['settings']}.", ""]
    for name, comp in result["comparisons"].items():
        lines += [f"## {comp['title']}", ""]
        if comp.get("note"):
            lines += [comp["note"], ""]
        header = "| variant | n | " + " | ".join(f"{UNITS.get(m, m)} (ratio)" for m in comp["metrics"]) + " |"
        lines += [header, "|" + " --- |" * (len(comp["metrics"]) + 2)]
        for label, values in comp["summary"].items():
            cells = [f"{_cell(values[m])} ({_cell(comp['ratios'][m][label])})" for m in comp["metrics"]]
            lines.append(f"| {label} | {values['n']} | " + " | ".join(cells) + " |")
        lines += ["", f"Medians; ratios against \"{comp['baseline']}\" ({name}).", ""]
        lines += [f"- {label}: {_cell(value)}" for label, value in comp.get("derived", {}).items()]
        if comp.get("derived"):
            lines.append("")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    comps = list(result["comparisons"].values())
    fig, axes = plt.subplots(len(comps), 1, figsize=(9, 3.2 * len(comps)), squeeze=False)
    for ax, comp in zip(axes[:, 0], comps):
        metric = comp["metrics"][0]
        labels = list(comp["summary"])
        medians = [comp["summary"][label][metric] or 0 for label in labels]
        spread = [[m - min(_values(comp, label, metric), default=m) for m, label in zip(medians, labels)],
                  [max(_values(comp, label, metric), default=m) - m for m, label in zip(medians, labels)]]
        ax.barh(labels, medians, xerr=spread, color="#4c72b0", capsize=3)
        ax.set_title(comp["title"], fontsize=10)
        ax.set_xlabel(f"{UNITS.get(metric, metric)} (median, min-max)")
        ax.invert_yaxis()
    fig.suptitle(f"llamacpp.cluster benchmark {result['date']}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(result: dict, out: Path) -> Path:
    """<out>/<date>.json, .md and .png; returns the stem."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / result["date"]
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    plot(result, stem.with_suffix(".png"))
    return stem


def _values(comp, label, metric):
    return [s[metric] for s in comp["samples"][label] if s.get(metric) is not None]
