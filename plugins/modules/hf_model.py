#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_model
short_description: Resolve a GGUF model named by Hugging Face repository and file into URLs and sha256s
version_added: 0.3.0
description:
  - Names a model as llama.cpp's C(-hf) does, by repository and file, and asks the Hub's API
    (C(/api/models/REPO/tree/REVISION)) for the file's size and sha256 (its Git LFS oid).
  - Returns the files in the form of the main role's C(llamacpp_main_model_files) (C(url), C(sha256),
    C(name)), so that the download is verified against the sha256 the Hub published.
  - A split model (C(NAME-00001-of-00003.gguf)) is resolved to all of its parts, in order.
  - The main role runs it on the controller before any host is touched, when C(llamacpp_main_model_hf_repo) is set.
author:
  - llamacpp.cluster maintainers (@llamacpp-cluster)
options:
  repo:
    description: The repository, C(owner/name), e.g. C(ggml-org/gemma-3-4b-it-GGUF).
    type: str
    required: true
  file:
    description: The GGUF file's path in the repository; for a split model, its first part.
    type: str
    required: true
  revision:
    description: A branch, tag or commit of the repository. A commit pins the model.
    type: str
    default: main
  endpoint:
    description: The Hub's address (a mirror's, or a test server's).
    type: str
    default: https://huggingface.co
  token:
    description: A Hugging Face access token, for gated or private repositories.
    type: str
  timeout:
    description: Seconds the Hub may take to answer.
    type: int
    default: 30
notes:
  - The module only reads; check mode resolves the same files.
extends_documentation_fragment:
  - llamacpp.cluster.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Resolve the model
  llamacpp.cluster.hf_model:
    repo: ggml-org/gemma-3-4b-it-GGUF
    file: gemma-3-4b-it-Q4_K_M.gguf
  delegate_to: localhost
  run_once: true
  register: model

- name: Serve it
  ansible.builtin.include_role:
    name: llamacpp.cluster.main
  vars:
    llamacpp_main_model_files: "{{ model.files }}"
"""

RETURN = r"""
files:
  description: The model's files, the one llama.cpp loads first.
  returned: success
  type: list
  elements: dict
  contains:
    url:
      description: The download address.
      type: str
    sha256:
      description: The file's sha256, as the Hub published it (its LFS oid).
      type: str
    name:
      description: The file's name, without the repository's folders.
      type: str
    size:
      description: The file's size in bytes.
      type: int
  sample: [{"url": "https://huggingface.co/ggml-org/gemma-3-4b-it-GGUF/resolve/main/gemma-3-4b-it-Q4_K_M.gguf",
            "sha256": "...", "name": "gemma-3-4b-it-Q4_K_M.gguf", "size": 2489757856}]
"""

import json
from urllib.error import HTTPError, URLError

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.llamacpp.cluster.plugins.module_utils.hf_hub import HubError, resolve


def fetcher(token, timeout):
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"

    def fetch(url):
        try:
            with open_url(url, method="GET", headers=headers, timeout=timeout) as response:
                return json.loads(response.read())
        except HTTPError as exc:
            hint = {401: "the repository is gated or private: give a token", 403: "the token may not read it",
                    404: "no such repository or revision"}.get(exc.code, "")
            raise HubError(f"the Hub answered {exc.code} for {url}" + (f": {hint}" if hint else "")) from exc
        except (URLError, OSError) as exc:
            raise HubError(f"could not reach the Hub at {url}: {getattr(exc, 'reason', exc)}") from exc
        except ValueError as exc:
            raise HubError(f"the Hub's answer for {url} is not JSON") from exc
    return fetch


def main():
    module = AnsibleModule(
        argument_spec={
            "repo": {"type": "str", "required": True},
            "file": {"type": "str", "required": True},
            "revision": {"type": "str", "default": "main"},
            "endpoint": {"type": "str", "default": "https://huggingface.co"},
            "token": {"type": "str", "no_log": True},
            "timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        files = resolve(p["repo"], p["file"], p["revision"], p["endpoint"], fetcher(p["token"], p["timeout"]))
    except HubError as exc:
        module.fail_json(msg=f"{exc}", repo=p["repo"], file=p["file"], revision=p["revision"])
    module.exit_json(changed=False, files=files)


if __name__ == "__main__":
    main()
