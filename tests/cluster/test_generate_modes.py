"""Both modes of llamacpp.cluster.generate on the demo's cluster (generate_modes.yml)."""

from demo_nodes import INVENTORY, assert_workers_serve_llama_server, playbook


def test_server_and_cli_mode_give_the_same_answer_and_use_the_workers(demo_cluster):
    run = playbook("tests/cluster/generate_modes.yml", INVENTORY)
    assert run.rc == 0, run.output[-6000:]
    # The restarted llama-server connects to every worker and loads its layers there.
    assert_workers_serve_llama_server()
