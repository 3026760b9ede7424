"""The one request spec, and the three places that follow it: the generate module,
playbooks/check_request.yml (and the defaults of generate.yml) and the AWX survey."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ansible_collections.llamacpp.cluster.plugins.filter.request_problems import request_problems
from ansible_collections.llamacpp.cluster.plugins.module_utils.request_spec import SPEC, field_problem, problems

TOP = Path(__file__).resolve().parents[3]


def test_the_defaults_pass():
    assert problems({name: field["default"] for name, field in SPEC.items()}) == []


@pytest.mark.parametrize("name, value", [
    ("n_predict", "1"), ("n_predict", 4096), ("temperature", "0"), ("temperature", "1.5"), ("temperature", 2),
    ("seed", "-1"), ("seed", 0), ("timeout", " 30 "), ("mode", "server"), ("prompt", "x"),
])
def test_values_in_bounds_pass(name, value):
    assert field_problem(name, value) is None


@pytest.mark.parametrize("name, value, message", [
    ("n_predict", "-5", "llamacpp_n_predict must be a whole number from 1 to 4096, got -5"),
    ("n_predict", "4097", "llamacpp_n_predict must be a whole number from 1 to 4096, got 4097"),
    ("n_predict", "8.5", "llamacpp_n_predict must be a whole number from 1 to 4096, got 8.5"),
    ("n_predict", True, "llamacpp_n_predict must be a whole number from 1 to 4096, got True"),
    ("temperature", "2.5", "llamacpp_temperature must be a number from 0 to 2, got 2.5"),
    ("temperature", "hot", "llamacpp_temperature must be a number from 0 to 2, got hot"),
    ("seed", "-2", "llamacpp_seed must be a whole number from -1 to 2147483647, got -2"),
    ("timeout", "0", "llamacpp_timeout must be a whole number from 1 to 3600, got 0"),
    ("mode", "fast", "llamacpp_mode must be auto, cli or server, got fast"),
    ("prompt", "", "llamacpp_prompt must be text of 1 to 100000 characters, got 0 characters"),
])
def test_values_out_of_bounds_are_named_with_the_rule(name, value, message):
    assert request_problems({name: value}) == [message]


def test_every_problem_is_reported_in_the_spec_order_and_unknown_fields_are_ignored():
    assert problems({"timeout": 0, "n_predict": 0, "top_k": "x"}) == [
        "n_predict must be a whole number from 1 to 4096, got 0", "timeout must be a whole number from 1 to 3600, got 0"]


def yaml_defaults(path):
    """The default(...) of each llamacpp_<field> in a playbook."""
    text = (TOP / path).read_text()
    return {name: m.group(1) for name in SPEC
            for m in [re.search(rf"llamacpp_{name} \| default\(([^)]*)\)", text)] if m}


@pytest.mark.parametrize("path", ["playbooks/check_request.yml", "playbooks/generate.yml"])
def test_the_playbooks_defaults_are_the_specs(path):
    found = yaml_defaults(path)
    assert set(found) == set(SPEC), found
    for name, text in found.items():
        assert json.loads(text.replace("'", '"')) == SPEC[name]["default"], (path, name, text)


def test_check_request_checks_with_the_spec():
    text = (TOP / "playbooks/check_request.yml").read_text()
    assert "llamacpp.cluster.request_problems" in text
    assert re.findall(r"^\s+(\w+): \"\{\{ llamacpp_", text, re.M) == list(SPEC)


def test_the_awx_survey_asks_within_the_spec():
    survey = json.loads((TOP / "awx/surveys/generate_text.json").read_text())
    questions = {q["variable"].removeprefix("llamacpp_"): q for q in survey["spec"]}
    assert set(questions) == set(SPEC)
    for name, field in SPEC.items():
        question = questions[name]
        assert question["default"] == field["default"], name
        if field["kind"] == "choice":
            assert sorted(question["choices"]) == sorted(field["choices"]), name
        else:
            assert (question["min"], question["max"]) == (field["min"], field["max"]), name
            assert question["type"] == {"int": "integer", "float": "float", "text": "textarea"}[field["kind"]], name
