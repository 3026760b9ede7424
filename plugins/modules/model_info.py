#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llamacpp.cluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_info
short_description: Read a GGUF model's size and shape without loading it
version_added: 0.2.0
description:
  - Reads the header, metadata and tensor table of a GGUF model (every part of a split model,
    C(name-00001-of-0000N.gguf)) and returns what placing it needs - bytes per layer, the
    input (embedding) and output bytes, the number of layers, the KV-cache bytes per token.
  - Reads only the headers; a model of hundreds of GiB is read in well under a second.
author:
  - llamacpp.cluster maintainers (@llamacpp-cluster)
options:
  path:
    description:
      - The model's (first) GGUF file.
    type: path
    required: true
notes:
  - The module only reads; check mode returns the same result.
extends_documentation_fragment:
  - llamacpp.cluster.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Read the model's shape
  llamacpp.cluster.model_info:
    path: /var/lib/llama.cpp/models/gemma-3-270m-q4_k_m.gguf
  register: model

- name: Show it
  ansible.builtin.debug:
    msg: "{{ model.model.architecture }}: {{ model.model.n_layer }} layers, {{ model.model.total_bytes }} bytes"
"""

RETURN = r"""
model:
  description: The model's placement facts.
  returned: success
  type: dict
  contains:
    architecture:
      description: C(general.architecture).
      type: str
      sample: gemma3
    parts:
      description: Files of the model.
      type: int
      sample: 1
    total_bytes:
      description: Bytes of all tensor data.
      type: int
      sample: 246587904
    file_bytes:
      description: Bytes of all files.
      type: int
      sample: 253113024
    n_layer:
      description: Repeating layers (C(block_count)).
      type: int
      sample: 18
    layer_bytes:
      description: Tensor bytes of each repeating layer.
      type: list
      elements: int
    input_bytes:
      description: Bytes of the tensors outside the layers and the output (C(token_embd)); they stay on the main node.
      type: int
    output_bytes:
      description: Bytes of the output layer; with tied embeddings this includes the copy of C(token_embd) llama.cpp makes for it.
      type: int
    tied_output:
      description: Whether the model has no C(output.weight) and reuses C(token_embd).
      type: bool
    kv_bytes_per_token_layer:
      description: KV-cache bytes per token and layer at f16.
      type: int
      sample: 1024
    has_chat_template:
      description: Whether the model carries a chat template (C(tokenizer.chat_template)); base models do not.
      type: bool
    n_embd:
      description: Embedding length.
      type: int
    n_ff:
      description: Feed-forward length.
      type: int
    n_head:
      description: Attention heads.
      type: int
    n_head_kv:
      description: KV heads.
      type: int
    n_vocab:
      description: Vocabulary size.
      type: int
    context_length:
      description: The context length the model was trained for.
      type: int
    sliding_window:
      description: The sliding-window size of SWA layers; 0 when none.
      type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llamacpp.cluster.plugins.module_utils.gguf import GGUFError, model_facts


def main():
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "required": True}},
        supports_check_mode=True,
    )
    path = module.params["path"]
    try:
        facts = model_facts(path)
    except OSError as exc:
        module.fail_json(msg=f"cannot read the model {exc.filename or path}: {exc.strerror}; "
                             "check the path (a split model needs all its parts side by side)")
    except GGUFError as exc:
        module.fail_json(msg=f"{path} is not a usable GGUF model: {exc}; re-download or re-copy it")
    module.exit_json(changed=False, model=facts)


if __name__ == "__main__":
    main()
