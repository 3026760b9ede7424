"""tests/suite_checks.py: the suite's check of what `make demo` printed, and its reading of
the demo's inventory without a YAML parser."""

import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import suite_checks  # noqa: E402  pylint: disable=wrong-import-position

FIXTURE = Path(__file__).parent / "fixtures" / "demo" / "make-demo-tail.txt"
HOSTS = {"llama_main": ["llamacpp-main"], "llama_workers": ["llamacpp-worker1", "llamacpp-worker2"]}


@pytest.fixture(name="output")
def fixture_output():
    return FIXTURE.read_text()


def test_the_recorded_demo_output_passes(output):
    assert suite_checks.demo_answer_problems(output, HOSTS) == []


@pytest.mark.parametrize("inventory", ["local", "local-3-workers"])
def test_inventory_hosts_read_by_pattern_match_the_yaml(top, inventory):
    path = top / "inventories" / inventory
    children = yaml.safe_load((path / "hosts.yml").read_text())["all"]["children"]
    expected = {group: list(spec["hosts"]) for group, spec in children.items() if spec.get("hosts")}
    assert suite_checks.demo_hosts(path) == expected
    assert suite_checks.demo_network(path) == yaml.safe_load(
        (path / "group_vars" / "all.yml").read_text())["llamacpp_local_network"]


@pytest.mark.parametrize("change, problem", [
    (("over 2 worker(s)", "over 1 worker(s)"), "answered over 1 worker(s), the inventory has 2"),
    (("tokens in server mode", "tokens in cli mode"), "answered in cli mode, expected llama-server"),
    (("32 tokens in", "7 tokens in"), "7 tokens generated, expected 32"),
    (("The three primary colours are", "Something else entirely, and more"), "is not a continuation"),
    (("llamacpp-worker2           : ok=", "llamacpp-worker9           : ok="), "llamacpp-worker2 is missing"),
])
def test_a_wrong_answer_is_named(output, change, problem):
    assert output.count(change[0]) >= 1
    problems = suite_checks.demo_answer_problems(output.replace(*change), HOSTS)
    assert any(problem in p for p in problems), problems


def test_a_failed_host_is_named(output):
    recap = output[output.rfind("PLAY RECAP"):]
    broken = output.replace(recap, recap.replace("failed=0", "failed=1", 1))
    assert suite_checks.demo_answer_problems(broken, HOSTS) == ["llamacpp-main: unreachable=0 failed=1"]


def test_a_demo_that_never_asked_is_named():
    output = "TASK [llamacpp.cluster.build : Wait for the build]\nfatal: [llamacpp-main]: FAILED!\n"
    assert suite_checks.demo_answer_problems(output, HOSTS) == [
        "no 'Show the answer' task in the output: site.yml did not get to its smoke question"]


def test_the_suite_runs_the_readme_commands_as_written(top):
    import run_suite  # pylint: disable=import-outside-toplevel

    readme = (top / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start"):]
    start = quick_start.index("```sh\n") + 6
    block = quick_start[start:quick_start.index("\n```", start)]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    assert " ".join(run_suite.DEMO_COMMAND) == commands[0]
    assert run_suite.PHASES[0] == "demo"  # nothing of the suite runs before it
    assert (top / ".ci" / "run").read_text().strip().splitlines()[-1] == "exec make test"
    makefile = (top / "Makefile").read_text()
    # No prerequisite: nothing is set up before the suite's demo phase.
    assert re.search(r"^test: *##[^\n]*\n\t@\$\(SUITE\)\n", makefile, re.M)
    assert re.search(r"^SUITE := python3 tests/run_suite.py$", makefile, re.M)


def test_the_readme_shows_a_demo_output_that_passes_the_check(top):
    readme = (top / "README.md").read_text()
    start = readme.index("```\nTASK [Show the answer]")
    assert suite_checks.demo_answer_problems(readme[start:readme.index("\n```", start + 4)], HOSTS) == []
