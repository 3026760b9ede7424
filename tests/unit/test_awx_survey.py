"""scripts/awx_survey.py: AWX's survey rules for specs and launch answers, and the
project's surveys under awx/surveys/."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import awx_survey

TOP = Path(__file__).resolve().parents[2]
SURVEYS = sorted((TOP / "awx/surveys").glob("*.json"))
GENERATE = json.loads((TOP / "awx/surveys/generate_text.json").read_text())


def question(**fields):
    base = {"question_name": "Q", "variable": "x", "type": "integer", "required": True, "min": 1, "max": 10,
            "default": 5}
    base.update(fields)
    return base


def survey(*questions):
    return {"name": "s", "description": "", "spec": list(questions)}


@pytest.mark.parametrize("path", SURVEYS, ids=lambda p: p.name)
def test_project_surveys_follow_the_rules(path):
    assert awx_survey.spec_errors(json.loads(path.read_text())) == []


def test_a_valid_question_passes():
    assert awx_survey.spec_errors(survey(question())) == []


@pytest.mark.parametrize("spec, words", [
    ([], "non-empty list"),
    ([question(type="number")], "type 'number'"),
    ([question(variable="n predict")], "not a valid variable name"),
    ([question(), question(question_name="R")], "used twice"),
    ([{"question_name": "Q", "variable": "x", "type": "text"}], "'required' is missing"),
    ([question(required="yes")], "required must be true or false"),
    ([question(min=10, max=1)], "greater than max"),
    ([question(default=11)], "outside [1, 10]"),
    ([question(default="5")], "is not an integer"),
    ([question(type="float", default="high", min=0, max=2)], "is not a number"),
    ([question(type="text", min=3, max=5, default="ab")], "2 characters"),
    ([question(type="multiplechoice", choices=["a", "b"], default="c", min="", max="")], "not one of"),
    ([question(type="multiplechoice", choices=["a", "a"], default="a", min="", max="")], "distinct"),
    ([question(type="multiselect", choices="a\nb", default="a\nz", min="", max="")], "not a selection"),
    ([question(mn=1)], "unknown key 'mn'"),
])
def test_broken_questions_are_reported(spec, words):
    errors = awx_survey.spec_errors(survey(*spec))
    assert any(words in e for e in errors), errors


def test_a_survey_without_name_is_reported():
    assert awx_survey.spec_errors({"description": "", "spec": [question()]}) == ["'name' is missing"]


def test_answers_out_of_bounds_are_refused():
    errors = awx_survey.answer_errors(GENERATE, {"llamacpp_n_predict": -5})
    assert errors == ["llamacpp_n_predict: answer -5 is outside [1, 4096]"]
    assert awx_survey.answer_errors(GENERATE, {"llamacpp_mode": "fast"}) == [
        "llamacpp_mode: answer 'fast' is not one of ['auto', 'server', 'cli']"]


def test_required_questions_without_default_need_an_answer():
    spec = survey(question(default=""))
    assert awx_survey.answer_errors(spec, {}) == ["x: an answer is required"]
    assert awx_survey.answer_errors(spec, {"x": 3}) == []


def test_extra_vars_are_defaults_overridden_by_answers():
    got = awx_survey.extra_vars(GENERATE, {"llamacpp_prompt": "Hi", "llamacpp_n_predict": 8})
    assert got == {"llamacpp_prompt": "Hi", "llamacpp_n_predict": 8, "llamacpp_temperature": 0, "llamacpp_seed": 42,
                   "llamacpp_mode": "auto", "llamacpp_timeout": 600}
    optional = survey(question(required=False, default=""))
    assert awx_survey.extra_vars(optional, {}) == {}


def test_command_line_reports_each_problem(tmp_path, capsys):
    broken = copy.deepcopy(GENERATE)
    broken["spec"][1]["default"] = 0
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    assert awx_survey.main([str(path), str(SURVEYS[0])]) == 1
    out = capsys.readouterr().out
    assert "llamacpp_n_predict: default 0 is outside [1, 4096]" in out and f"{SURVEYS[0]}: ok" in out
