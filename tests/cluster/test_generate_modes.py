"""Both modes of llamacpp.cluster.generate on the converged cluster (generate_modes.yml)."""

import os
import subprocess
from pathlib import Path

SCENARIO = Path(__file__).resolve().parents[1]


def test_server_and_cli_mode_give_the_same_answer_and_use_the_workers():
    proc = subprocess.run(["ansible-playbook", str(SCENARIO / "generate_modes.yml"),
                           "-i", os.environ["MOLECULE_INVENTORY_FILE"]],
                          cwd=os.environ["MOLECULE_PROJECT_DIRECTORY"], capture_output=True, text=True, check=False)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
