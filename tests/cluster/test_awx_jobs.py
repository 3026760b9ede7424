"""The AWX job templates "Generate text" and "Deploy cluster" on the demo's cluster, run the
way AWX runs a job: ansible-runner with a private data directory, the project checkout as the
working directory, the inventory (inventories/local) copied in, and the survey's answers (over
its defaults) as extra vars."""

import json
import os
import shutil

import ansible_runner
import awx_survey
import pytest
import yaml
from demo_nodes import INVENTORY, MAIN, TOP as PROJECT, WORKERS, node

TEMPLATES = {t["name"]: t for t in
             yaml.safe_load((PROJECT / "playbooks/awx_job_templates.yml").read_text())[0]["vars"]["_templates"]}
PROMPT = "1, 2, 3, 4, 5, 6, 7, 8,"


def survey(template):
    return json.loads((PROJECT / "awx/surveys" / TEMPLATES[template]["survey"]).read_text())


def invocations():
    """(node, unit) -> systemd invocation ID of every cluster service: a restart changes it."""
    units = {MAIN: ("llama-server",), **{w: ("llama-rpc-server", "llamacpp-rpc-firewall") for w in WORKERS}}
    return {(name, unit): node(name).check_output(f"systemctl show -P InvocationID {unit}")
            for name, names in units.items() for unit in names}


@pytest.fixture(name="launch")
def fixture_launch(tmp_path, monkeypatch, demo_cluster):
    """Launch a job template with survey answers; returns the runner (status, rc, events, stats)."""
    for name in [n for n in os.environ if n.startswith("ANSIBLE_")]:
        monkeypatch.delenv(name)  # AWX jobs see the project's ansible.cfg, not this test's settings

    def run(template, answers):
        data = tmp_path / template.replace(" ", "_")
        shutil.copytree(INVENTORY, data / "inventory")
        (data / "requirements_collections").mkdir()
        runner = ansible_runner.run(
            private_data_dir=str(data), project_dir=str(PROJECT), playbook=TEMPLATES[template]["playbook"],
            inventory=str(data / "inventory"), extravars=awx_survey.extra_vars(survey(template), answers),
            envvars={"ANSIBLE_COLLECTIONS_PATH": f"{data / 'requirements_collections'}:{PROJECT / 'collections'}",
                     "ANSIBLE_FORCE_COLOR": "False"},
            settings={"suppress_ansible_output": True}, quiet=True)
        print(f"{template}: {runner.status} rc={runner.rc} stats={runner.stats}")
        return runner

    return run


def events(runner, kind):
    return [e["event_data"] for e in runner.events if e.get("event") == kind]


def test_generate_text_job_returns_the_answer_in_its_events(launch):
    answers = {"llamacpp_prompt": PROMPT, "llamacpp_n_predict": 8}
    assert awx_survey.answer_errors(survey("Generate text"), answers) == []
    runner = launch("Generate text", answers)
    assert (runner.status, runner.rc) == ("successful", 0), runner.stdout.read()[-4000:]
    results = {e["task"]: e["res"] for e in events(runner, "runner_on_ok") if e["host"] == MAIN}
    assert results["Generate"]["text"].startswith(" 9, 10,")
    assert results["Generate"]["tokens_predicted"] == 8
    assert PROMPT + results["Generate"]["text"] in results["Show the answer"]["msg"][0]


def test_bad_survey_answer_fails_early_and_changes_nothing(launch):
    answers = {"llamacpp_prompt": PROMPT, "llamacpp_n_predict": -5}
    assert awx_survey.answer_errors(survey("Generate text"), answers) == [
        "llamacpp_n_predict: answer -5 is outside [1, 4096]"]
    before = invocations()
    runner = launch("Generate text", answers)  # what the API or a CLI launch would still pass on
    assert runner.status == "failed" and runner.rc != 0
    failed = events(runner, "runner_on_failed")
    assert [(e["host"], e["task"]) for e in failed] == [("localhost", "Require a valid request")]
    assert "llamacpp_n_predict must be a whole number from 1 to 4096, got -5" in failed[0]["res"]["msg"]
    assert not [e for e in runner.events if e.get("event_data", {}).get("host") not in (None, "localhost")]
    assert invocations() == before


def test_deploy_cluster_job_with_survey_defaults_changes_and_restarts_nothing(launch):
    before = invocations()
    assert all(before.values()), before
    runner = launch("Deploy cluster", {})
    assert (runner.status, runner.rc) == ("successful", 0), runner.stdout.read()[-4000:]
    # The re-run of site.yml: every node processed, no task changed, no service restarted.
    assert set(runner.stats["processed"]) == {"localhost", MAIN, *WORKERS}, runner.stats
    assert sum(runner.stats["changed"].values()) == 0, runner.stats["changed"]
    answer = [e["res"]["msg"][0] for e in events(runner, "runner_on_ok")
              if e["host"] == MAIN and e["task"] == "Show the answer"]
    assert answer and answer[0].startswith("The three primary colours are") and len(answer[0]) > 30
    assert invocations() == before
