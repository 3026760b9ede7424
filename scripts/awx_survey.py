"""Check AWX job-template survey specs, and the answers of a launch, the way AWX does.

Spec rules (AWX's survey spec endpoint): a name, a description and a non-empty list of
questions; each question has a question_name, a variable that is a valid, unique Ansible
variable name, a known type and a boolean required; min/max are numbers with min <= max;
a default has the question's type and lies within min/max (lengths for text) or among the
choices. Launch rules: required questions answered, answers of the right type and within
bounds. extra_vars() gives what AWX passes to the playbook: defaults overridden by answers.

Usage: python scripts/awx_survey.py SURVEY.json ...   (exit 1 and one line per problem)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

TYPES = ("text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect")
TEXT_TYPES = ("text", "textarea", "password")
KEYS = {"question_name", "question_description", "variable", "type", "required", "min", "max", "default",
        "choices", "new_question"}
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _number(value, integer=False) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integer else isinstance(value, (int, float))


def _bound(question, key):
    value = question.get(key, "")
    return None if value in ("", None) else value


def _choices(question) -> list:
    choices = question.get("choices", [])
    return [c for c in choices.split("\n") if c] if isinstance(choices, str) else list(choices)


def value_errors(question, value, what="default") -> list[str]:
    """Problems of one value (a default or an answer) for one question."""
    kind, low, high = question["type"], _bound(question, "min"), _bound(question, "max")
    name = question["variable"]
    if kind in ("integer", "float"):
        if not _number(value, integer=kind == "integer"):
            return [f"{name}: {what} {value!r} is not an {kind}" if kind == "integer" else
                    f"{name}: {what} {value!r} is not a number"]
        if (low is not None and value < low) or (high is not None and value > high):
            return [f"{name}: {what} {value} is outside [{low}, {high}]"]
    elif kind in TEXT_TYPES:
        if not isinstance(value, str):
            return [f"{name}: {what} {value!r} is not text"]
        if (low is not None and len(value) < low) or (high is not None and len(value) > high):
            return [f"{name}: {what} has {len(value)} characters, outside [{low}, {high}]"]
    elif kind == "multiplechoice":
        if value not in _choices(question):
            return [f"{name}: {what} {value!r} is not one of {_choices(question)}"]
    elif kind == "multiselect":
        values = value.split("\n") if isinstance(value, str) else value
        if not isinstance(values, list) or not set(values) <= set(_choices(question)):
            return [f"{name}: {what} {value!r} is not a selection of {_choices(question)}"]
    return []


def _question_errors(index, question) -> list[str]:
    where = f"question {index}"
    if not isinstance(question, dict):
        return [f"{where}: must be an object"]
    errors = [f"{where}: unknown key {key!r}" for key in sorted(set(question) - KEYS)]
    for key in ("question_name", "variable", "type", "required"):
        if key not in question:
            errors.append(f"{where}: {key!r} is missing")
    if errors:
        return errors
    if not isinstance(question["question_name"], str) or not question["question_name"].strip():
        errors.append(f"{where}: question_name must be non-empty text")
    if not isinstance(question["variable"], str) or not VARIABLE.match(question["variable"]):
        return errors + [f"{where}: variable {question['variable']!r} is not a valid variable name"]
    if question["type"] not in TYPES:
        return errors + [f"{where}: type {question['type']!r} is not one of {', '.join(TYPES)}"]
    if not isinstance(question["required"], bool):
        errors.append(f"{where}: required must be true or false")
    low, high = _bound(question, "min"), _bound(question, "max")
    for key, bound in (("min", low), ("max", high)):
        if bound is not None and not _number(bound, integer=question["type"] != "float"):
            errors.append(f"{where}: {key} {bound!r} is not a number")
    if _number(low) and _number(high) and low > high:
        errors.append(f"{where}: min {low} is greater than max {high}")
    if question["type"] in ("multiplechoice", "multiselect"):
        choices = _choices(question)
        if not choices or not all(isinstance(c, str) and c for c in choices) or len(set(choices)) != len(choices):
            errors.append(f"{where}: choices must be distinct non-empty texts")
    if errors:
        return errors
    if question.get("default", "") not in ("", None):
        errors += value_errors(question, question["default"])
    return errors


def spec_errors(survey) -> list[str]:
    """Every rule the survey breaks; empty when AWX would accept it."""
    if not isinstance(survey, dict):
        return ["the survey must be an object"]
    errors = [f"{key!r} is missing" for key in ("name", "description", "spec") if key not in survey]
    if errors:
        return errors
    if not isinstance(survey["spec"], list) or not survey["spec"]:
        return ["'spec' must be a non-empty list of questions"]
    seen = set()
    for index, question in enumerate(survey["spec"], 1):
        errors += _question_errors(index, question)
        variable = question.get("variable") if isinstance(question, dict) else None
        if variable in seen:
            errors.append(f"question {index}: variable {variable!r} is used twice")
        seen.add(variable)
    return errors


def answer_errors(survey, answers: dict) -> list[str]:
    """What AWX would refuse in the answers of a launch."""
    errors = []
    for question in survey["spec"]:
        name = question["variable"]
        if name not in answers or answers[name] in ("", None):
            if question["required"] and question.get("default", "") in ("", None):
                errors.append(f"{name}: an answer is required")
            continue
        errors += value_errors(question, answers[name], what="answer")
    return errors


def extra_vars(survey, answers: dict) -> dict:
    """The extra vars of a launch: each question's default unless answered; unanswered
    questions without a default are left out."""
    result = {}
    for question in survey["spec"]:
        name = question["variable"]
        if answers.get(name, "") not in ("", None):
            result[name] = answers[name]
        elif question.get("default", "") not in ("", None):
            result[name] = question["default"]
    return result


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    failed = False
    for path in paths:
        try:
            errors = spec_errors(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            errors = [f"cannot read it: {exc}"]
        for error in errors:
            print(f"{path}: {error}")
        failed = failed or bool(errors)
        if not errors:
            print(f"{path}: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
