"""Checks of the test suite's demo phase (tests/run_suite.py), standard library only: what
`make demo` printed, and the containers an earlier demo left behind.

The demo's inventory is read by pattern, not with a YAML parser: the suite runs before the
venv exists (`make demo` creates it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
LOCAL_INVENTORY = TOP / "inventories" / "local"
# The demo plus the spare worker that the lifecycle test (tests/cluster) starts.
SPARE_INVENTORY = TOP / "inventories" / "local-3-workers"
# site.yml's smoke question, unless the inventory sets llamacpp_smoke_prompt.
SMOKE_PROMPT = "The three primary colours are"
SMOKE_N_PREDICT = 32
TIMING = re.compile(r"(\d+) tokens in (\w+) mode over (\d+) worker\(s\): prompt [0-9.]+ t/s, generation ([0-9.]+)")
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def demo_hosts(inventory: Path = LOCAL_INVENTORY) -> dict[str, list[str]]:
    """{'llama_main': [...], 'llama_workers': [...]} of the local inventory's hosts.yml."""
    groups: dict[str, list[str]] = {}
    group, in_hosts = None, False
    for line in (inventory / "hosts.yml").read_text().splitlines():
        match = re.match(r"^    ([\w-]+):\s*$", line)
        if match:
            group, in_hosts = match.group(1), False
        elif re.match(r"^      \S", line):
            in_hosts = line.strip() == "hosts:"
        elif in_hosts and re.match(r"^        ([\w.-]+):\s*$", line):
            groups.setdefault(group, []).append(line.strip().rstrip(":"))
    return groups


def demo_network(inventory: Path = LOCAL_INVENTORY) -> str:
    text = (inventory / "group_vars" / "all.yml").read_text()
    return re.search(r"^llamacpp_local_network:\s*(\S+)", text, re.M).group(1)


def answer_block(output: str) -> str:
    """The output of the last 'Show the answer' task, up to the next task or play recap."""
    start = output.rfind("TASK [Show the answer]")
    if start < 0:
        return ""
    end = re.compile(r"^(TASK|PLAY) \[|^PLAY RECAP", re.M).search(output, output.index("\n", start) + 1)
    return output[start:end.start() if end else len(output)]


def demo_answer_problems(output: str, hosts: dict[str, list[str]] | None = None) -> list[str]:
    """What is wrong with the answer `make demo` printed; an empty list when it is right:
    the continuation of the smoke prompt in server mode over every worker of the inventory,
    with timings, and a play recap with no failed or unreachable host."""
    hosts = demo_hosts() if hosts is None else hosts
    workers = hosts.get("llama_workers", [])
    block = answer_block(output)
    if not block:
        return ["no 'Show the answer' task in the output: site.yml did not get to its smoke question"]
    problems = []
    items = re.split(r"^ {4}- ", block.split("msg:", 1)[-1], flags=re.M)[1:]
    answer = " ".join(items[0].split()) if items else ""
    answer = re.sub(r"^\|-?\s*", "", answer).strip("'\"")
    if not answer.startswith(SMOKE_PROMPT) or len(answer) < len(SMOKE_PROMPT) + 20:
        problems.append(f"the answer is not a continuation of {SMOKE_PROMPT!r}: {answer[:200]!r}")
    timing = TIMING.search(" ".join(block.split()))
    if not timing:
        problems.append("no timing line ('N tokens in MODE mode over N worker(s)') in the answer")
    else:
        tokens, mode, over, generation = timing.groups()
        if int(tokens) != SMOKE_N_PREDICT:
            problems.append(f"{tokens} tokens generated, expected {SMOKE_N_PREDICT}")
        if mode != "server":
            problems.append(f"answered in {mode} mode, expected llama-server")
        if int(over) != len(workers):
            problems.append(f"answered over {over} worker(s), the inventory has {len(workers)}")
        if float(generation) <= 0:
            problems.append(f"generation speed {generation} t/s")
    recap = {host: tuple(map(int, counts)) for host, *counts in RECAP.findall(output[output.rfind("PLAY RECAP"):])}
    for host in hosts.get("llama_main", []) + workers:
        if host not in recap:
            problems.append(f"{host} is missing from the play recap")
        elif recap[host][2] or recap[host][3]:
            problems.append(f"{host}: unreachable={recap[host][2]} failed={recap[host][3]}")
    return problems


def remove_demo_leftovers(inventory: Path = LOCAL_INVENTORY) -> list[str]:
    """Remove the containers and the network of an earlier demo (by their inventory names),
    so that the suite's demo deploys new nodes as a new user's does. Returns what it removed."""
    if shutil.which("podman") is None:
        return []
    names = {n for inv in (inventory, SPARE_INVENTORY) for group in demo_hosts(inv).values() for n in group}
    present = [n for n in sorted(names)
               if subprocess.run(["podman", "container", "exists", n], check=False).returncode == 0]
    if present:
        subprocess.run(["podman", "rm", "-f", "-t", "5", *present], capture_output=True, check=False)
    network = demo_network(inventory)
    if subprocess.run(["podman", "network", "exists", network], check=False).returncode == 0:
        subprocess.run(["podman", "network", "rm", network], capture_output=True, check=False)
        present.append(f"network {network}")
    return present
