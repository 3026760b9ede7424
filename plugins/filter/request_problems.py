# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: request_problems
short_description: What is wrong with a generation request, by the collection's one request spec
version_added: 0.1.0
description:
  - Checks the fields of a generation request (C(prompt), C(n_predict), C(temperature), C(seed), C(mode),
    C(timeout)) against the spec that the P(llamacpp.cluster.generate#module) module and the AWX survey of
    the "Generate text" job template follow too, and returns one message per bad field.
  - Values may be text, as extra vars and survey answers are. Fields the spec does not know are ignored.
author:
  - llamacpp.cluster maintainers (@llamacpp-cluster)
options:
  _input:
    description: The request, field name to value.
    type: dict
    required: true
  prefix:
    description: Put before each field's name in the messages (the playbooks' variables are C(llamacpp_*)).
    type: str
    default: llamacpp_
"""

EXAMPLES = r"""
- name: Require a valid request
  ansible.builtin.fail:
    msg: "Bad request: {{ _problems | join('; ') }}"
  when: _problems | length > 0
  vars:
    _problems: "{{ {'n_predict': llamacpp_n_predict, 'temperature': llamacpp_temperature} | llamacpp.cluster.request_problems }}"
"""

RETURN = r"""
_value:
  description: One message per bad field, naming the field, its allowed values and the value given; empty when the request is valid.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError
from ansible_collections.llamacpp.cluster.plugins.module_utils.request_spec import problems


def request_problems(request, prefix="llamacpp_"):
    if not isinstance(request, dict):
        raise AnsibleFilterError(f"request_problems needs a dict of the request's fields, got {type(request).__name__}")
    return problems(request, prefix)


class FilterModule:
    def filters(self):
        return {"request_problems": request_problems}
