# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one specification of a generation request.

The generate module, playbooks/check_request.yml (through the request_problems filter) and the
AWX survey of the "Generate text" job template all follow it; tests/unit/plugins/test_request_spec.py
fails when one of them drifts from it. Values may come as text (extra vars, survey answers)."""

from __future__ import annotations

import re

# name -> kind, default (of the playbooks and the survey), bounds or choices.
SPEC = {
    "prompt": {"kind": "text", "default": "The three primary colours are", "min": 1, "max": 100000},
    "n_predict": {"kind": "int", "default": 64, "min": 1, "max": 4096},
    "temperature": {"kind": "float", "default": 0.0, "min": 0.0, "max": 2.0},
    # -1: a random seed (llama.cpp's LLAMA_DEFAULT_SEED).
    "seed": {"kind": "int", "default": 42, "min": -1, "max": 2147483647},
    "mode": {"kind": "choice", "default": "auto", "choices": ["auto", "cli", "server"]},
    "timeout": {"kind": "int", "default": 600, "min": 1, "max": 3600},
}

_INT = re.compile(r"^-?[0-9]+$")
_FLOAT = re.compile(r"^-?[0-9]+([.][0-9]*)?$")


def _number(value, pattern, cast):
    """value as a number, or None: bools are not numbers, text must look like one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if cast is int and isinstance(value, float) and not value.is_integer():
            return None
        return cast(value)
    if isinstance(value, str) and pattern.match(value.strip()):
        return cast(value.strip())
    return None


def _bounds(field):
    low, high = (f"{v:g}" if isinstance(v, float) else str(v) for v in (field["min"], field["max"]))
    return f"from {low} to {high}"


def field_problem(name, value, prefix=""):
    """What is wrong with one field's value, or None."""
    field = SPEC[name]
    label = prefix + name
    kind = field["kind"]
    if kind == "text":
        if not isinstance(value, str) or not field["min"] <= len(value) <= field["max"]:
            size = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
            return f"{label} must be text of {field['min']} to {field['max']} characters, got {size}"
        return None
    if kind == "choice":
        if value not in field["choices"]:
            return f"{label} must be {', '.join(field['choices'][:-1])} or {field['choices'][-1]}, got {value}"
        return None
    number = _number(value, _INT if kind == "int" else _FLOAT, int if kind == "int" else float)
    what = "a whole number" if kind == "int" else "a number"
    if number is None or not field["min"] <= number <= field["max"]:
        return f"{label} must be {what} {_bounds(field)}, got {value}"
    return None


def problems(request, prefix=""):
    """The problems of a request (a dict of some of SPEC's fields), in SPEC's order; unknown
    fields are not this spec's business (the module has more options)."""
    found = []
    for name in SPEC:
        if name in request and request[name] is not None:
            problem = field_problem(name, request[name], prefix)
            if problem:
                found.append(problem)
    return found
