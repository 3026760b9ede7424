"""Walk the demo's cluster through its lifecycle with the collection's playbooks.

It runs last on that cluster (it leaves it retuned and rolled back), with a third worker,
llamacpp-worker3 of inventories/local-3-workers, started as a spare for the scale-out. The
no-op re-run of the deployed cluster is test_awx_jobs.py's "Deploy cluster" job.

Each test is one step and depends on the ones before it (pytest -x stops at the first
failure). A step re-runs a playbook against an inventory written for that step, then checks
which services restarted (systemd invocation IDs, not guesses), in which order (monotonic
timestamps: the containers share the host's clock), what llama-server's --rpc list and the
nodes' build manifests say, and that the cluster answers through the current workers.
"""

import json
import shutil
import subprocess
import time

import pytest
import yaml
from demo_nodes import INVENTORY, MAIN, TOP as PROJECT, WORKERS, assert_workers_serve_llama_server, node
from demo_nodes import address, favour_cpu, playbook as run_playbook

W1, W2 = WORKERS
SPARE_INVENTORY = PROJECT / "inventories" / "local-3-workers"
W3 = next(w for w in yaml.safe_load((SPARE_INVENTORY / "hosts.yml").read_text())["all"]["children"]
          ["llama_workers"]["hosts"] if w not in WORKERS)
NODES = (MAIN, W1, W2, W3)
RPC, FIREWALL, SERVER = "llama-rpc-server", "llamacpp-rpc-firewall", "llama-server"
PORT = 50052
PROMPT = "1, 2, 3, 4, 5, 6, 7, 8,"
TIMES = {}
# Each step's inventory is written here (tests/output is git-ignored).
STEP_INVENTORY = PROJECT / "tests" / "output" / "reconfigure-inventory"
# The walk-through's own controller artifact cache, new each run: an upgrade then compiles
# (once), as it does the first time anywhere, instead of taking an earlier run's build.
ARTIFACTS = STEP_INVENTORY / "artifacts"


@pytest.fixture(name="main", scope="module")
def fixture_main(demo_cluster):
    """The demo's main node, with the spare worker started (and removed at the end)."""
    run = run_playbook("playbooks/local_cluster.yml", SPARE_INVENTORY)
    assert run.rc == 0, run.output[-3000:]
    favour_cpu(W3)
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    yield node(MAIN)
    subprocess.run(["podman", "rm", "-f", "-t", "5", W3], capture_output=True, check=False)


def inventory(workers, spare=(), host_vars=None):
    """The step's inventory: the demo's containers and settings (inventories/local's
    group_vars), with these workers and spares."""
    hosts = {name: dict((host_vars or {}).get(name, {})) for name in NODES}
    return {
        "all": {
            "children": {
                "llama_main": {"hosts": {MAIN: hosts[MAIN]}},
                "llama_workers": {"hosts": {w: hosts[w] for w in workers}},
                "llama_spare": {"hosts": {w: hosts[w] for w in spare}},
                "containers": {
                    "hosts": {name: None for name in NODES},
                    "vars": {
                        "ansible_connection": "llamacpp.cluster.podman_exec",
                        "ansible_python_interpreter": "/usr/bin/python3",
                    },
                },
            },
        }
    }


def playbook(path, inv, *args):
    """Run a playbook of the collection against the step's inventory (a PlaybookRun)."""
    (STEP_INVENTORY / "group_vars").mkdir(parents=True, exist_ok=True)
    (STEP_INVENTORY / "hosts.yml").write_text(yaml.safe_dump(inv))
    group_vars = STEP_INVENTORY / "group_vars" / "all.yml"
    if not group_vars.is_symlink():
        group_vars.symlink_to(INVENTORY / "group_vars" / "all.yml")
    return run_playbook(path, STEP_INVENTORY, "-e", f"llamacpp_build_controller_cache={ARTIFACTS}", *args)


def services():
    """(node, unit) -> systemd state of every cluster service on every node."""
    state = {}
    units = {MAIN: (SERVER,), W1: (RPC, FIREWALL), W2: (RPC, FIREWALL), W3: (RPC, FIREWALL)}
    props = "InvocationID,ActiveState,ActiveEnterTimestampMonotonic,InactiveEnterTimestampMonotonic"
    for name, names in units.items():
        host = node(name)
        for unit in names:
            out = host.check_output(f"systemctl show -p {props} {unit}.service")
            values = dict(line.split("=", 1) for line in out.splitlines())
            state[(name, unit)] = {
                "id": values["InvocationID"],
                "active": values["ActiveState"],
                "started": int(values["ActiveEnterTimestampMonotonic"] or 0),
                "stopped": int(values["InactiveEnterTimestampMonotonic"] or 0),
            }
    return state


def restarted(before, after):
    return {key for key in after if after[key]["id"] and after[key]["id"] != before[key]["id"]}


def starts_since(epoch):
    """How often each long-running service was started since epoch (systemd's own journal lines;
    the containers share the host's clock). Journal cursors do not work here: a young journal
    moves to a new file and entries after an old cursor are not found."""
    counts = {}
    for key in ((MAIN, SERVER), (W1, RPC), (W2, RPC), (W3, RPC)):
        name, unit = key
        log = node(name).check_output(f"journalctl -u {unit} --since @{epoch} -o cat --no-pager")
        counts[key] = sum(line.startswith(f"Started {unit}.service") for line in log.splitlines())
    return counts


def step(name, path, inv, *args, expect_rc=0):
    # Whole seconds: the previous step's last start lies several seconds back (its answer check).
    before, epoch = services(), int(time.time())
    run = playbook(path, inv, *args)
    after = services()
    TIMES[name] = run.seconds
    print(f"STEP {name}: {run.seconds:.1f} s")
    assert run.rc == expect_rc, run.output[-4000:]
    # Each service that restarted started exactly once in the step; no other one started.
    starts = starts_since(epoch)
    assert {key: count for key, count in starts.items() if count} == {
        key: 1 for key in restarted(before, after) if key in starts
    }, starts
    return run.changed(), before, after, run.output


def endpoints(names):
    return [f"{address(n)}:{PORT}" for n in names]


def server_rpc_list():
    host = node(MAIN)
    pid = host.check_output(f"systemctl show -P MainPID {SERVER}")
    args = host.check_output(f"ps -o args= -p {pid}").split()
    return args[args.index("--rpc") + 1].split(",")


def manifest(name):
    return json.loads(node(name).check_output("cat /opt/llama.cpp/current/manifest.json"))


def link(name, which):
    return node(name).check_output(f"readlink /opt/llama.cpp/{which}")


def compiles():
    """Builds compiled on the builder of the family (the main node sorts first); none when the
    demo took its build from the controller's artifact cache."""
    return int(node(MAIN).check_output("cat /var/cache/llama.cpp/builds.log 2>/dev/null | wc -l"))


def generate_through(workers):
    """Ask the cluster through generate.yml; check the answer and that each worker holds tensors."""
    run = playbook(
        "playbooks/generate.yml",
        inventory(workers),
        "-e",
        json.dumps({"llamacpp_prompt": PROMPT, "llamacpp_n_predict": 12, "llamacpp_mode": "server"}),
    )
    assert run.rc == 0, run.output[-3000:]
    answer = run.results("Generate")[MAIN]
    print(f"answer: {answer['text']!r} over {answer['workers']}, {answer['timings']['predicted_per_second']} t/s")
    assert answer["text"].startswith(" 9, 10, 11"), answer["text"]
    assert answer["workers"] == endpoints(workers)
    assert_workers_serve_llama_server(workers)


def assert_workers_then_server(before, after, workers):
    """llama-server was stopped before any worker (re)started and started after all of them."""
    first_worker = min(after[(w, RPC)]["started"] for w in workers)
    last_worker = max(after[(w, RPC)]["started"] for w in workers)
    assert after[(MAIN, SERVER)]["stopped"] > before[(MAIN, SERVER)]["started"]
    assert after[(MAIN, SERVER)]["stopped"] <= first_worker
    assert after[(MAIN, SERVER)]["started"] >= last_worker


def test_converged_cluster_answers(main):
    assert main.service(SERVER).is_running
    assert server_rpc_list() == endpoints([W1, W2])
    assert len({manifest(n)["build_id"] for n in (MAIN, W1, W2)}) == 1
    generate_through([W1, W2])


RETUNED = {W1: {"llamacpp_rpc_worker_threads": 1}}


def test_retune_and_scale_out_restart_only_that_worker_the_new_one_and_llama_server(main):
    """One site.yml run with two changes: W1's threads, and W3 added. W1 restarts, W3 starts
    with the cluster's build (no compile), W2 is untouched, llama-server restarts once after
    both workers."""
    builds = compiles()
    stats, before, after, _output = step("retune and scale out", "site.yml", inventory([W1, W2, W3], [], RETUNED))
    assert restarted(before, after) == {(W1, RPC), (W3, RPC), (W3, FIREWALL), (MAIN, SERVER)}
    assert_workers_then_server(before, after, [W1, W3])
    assert {h for h, n in stats.items() if n} == {W1, W3, MAIN}, stats
    assert " -t 1" in node(W1).check_output(f"ps -o args= -p $(systemctl show -P MainPID {RPC})")
    assert compiles() == builds  # W3 received the cluster's build, compiled nothing
    assert manifest(W3)["build_id"] == manifest(MAIN)["build_id"]
    assert server_rpc_list() == endpoints([W1, W2, W3])
    generate_through([W1, W2, W3])


def test_scale_in_drops_worker3_from_llama_server(main):
    _stats, before, after, _output = step("scale in", "site.yml", inventory([W1, W2], [W3], RETUNED))
    assert restarted(before, after) == {(MAIN, SERVER)}
    assert server_rpc_list() == endpoints([W1, W2])
    generate_through([W1, W2])


def test_decommission_refuses_a_worker_in_use(main):
    stats, before, after, output = step(
        "decommission refused",
        "playbooks/decommission.yml",
        inventory([W1, W2], [W3], RETUNED),
        "-e",
        f"llamacpp_decommission_hosts={W1}",
        expect_rc=2,
    )
    assert "still in llama_main or llama_workers" in output
    assert stats[W1] == 0 and restarted(before, after) == set()


def test_decommission_removes_worker3(main):
    args = ("-e", f"llamacpp_decommission_hosts={W3}", "-e", "llamacpp_decommission_builds=true")
    w3 = node(W3)
    # A tensor cache as seeding leaves it (tests/cluster/test_preseed.py seeds a real one).
    w3.check_output(f"mkdir -p /var/cache/{RPC}/rpc && echo x > /var/cache/{RPC}/rpc/0123456789abcdef "
                    f"&& echo '{{}}' > /var/cache/{RPC}/seed-manifest.json")
    stats, before, after, _output = step("decommission", "playbooks/decommission.yml", inventory([W1, W2], [W3]), *args)
    assert stats[W3] > 0 and restarted(before, after) == set()
    assert not w3.file(f"/var/cache/{RPC}").exists
    assert not w3.file(f"/etc/systemd/system/{RPC}.service").exists
    assert after[(W3, RPC)]["active"] == "inactive" and after[(W3, FIREWALL)]["active"] == "inactive"
    assert "llamacpp_rpc" not in w3.check_output("nft list tables")
    assert not w3.file("/opt/llama.cpp").exists and not w3.user("llama-rpc").exists
    stats = step("decommission again", "playbooks/decommission.yml", inventory([W1, W2], [W3]), *args)[0]
    assert stats[W3] == 0


def test_failed_upgrade_keeps_the_old_build_everywhere(main):
    current = {n: link(n, "current") for n in (MAIN, W1, W2)}
    bad = json.dumps({"llamacpp_build_number": 11313, "llamacpp_build_cmake_extra": {"CMAKE_C_FLAGS": "-march=no-such-cpu"}})
    _stats, before, after, output = step(
        "failed upgrade", "site.yml", inventory([W1, W2], [], RETUNED), "-e", bad, expect_rc=2
    )
    assert "no-such-cpu" in output
    assert {n: link(n, "current") for n in (MAIN, W1, W2)} == current
    assert restarted(before, after) == set()
    generate_through([W1, W2])


def test_upgrade_builds_once_then_restarts_workers_before_llama_server(main):
    old = manifest(MAIN)["build_id"]
    builds = compiles()
    _stats, before, after, _output = step(
        "upgrade", "site.yml", inventory([W1, W2], [], RETUNED), "-e", "llamacpp_build_number=11313"
    )
    assert compiles() == builds + 1
    new = {n: manifest(n) for n in (MAIN, W1, W2)}
    assert {m["build_id"] for m in new.values()} == {new[MAIN]["build_id"]} != {old}
    assert {m["build_number"] for m in new.values()} == {11313}
    assert all(link(n, "previous").endswith(old) for n in (MAIN, W1, W2))
    assert restarted(before, after) == {(W1, RPC), (W2, RPC), (MAIN, SERVER)}
    assert_workers_then_server(before, after, [W1, W2])
    version = main.run("/opt/llama.cpp/current/bin/llama-completion --version")
    assert "11313" in version.stdout + version.stderr
    generate_through([W1, W2])


def test_mixed_builds_are_refused_before_any_restart(main):
    w2 = node(W2)
    upgraded = link(W2, "current")
    w2.check_output("ln -sfn \"$(readlink /opt/llama.cpp/previous)\" /opt/llama.cpp/current")
    try:
        _stats, before, after, output = step(
            "mixed refused", "playbooks/services.yml", inventory([W1, W2], [], RETUNED), expect_rc=2
        )
    finally:
        w2.check_output(f"ln -sfn {upgraded} /opt/llama.cpp/current")
    assert "must run one llama.cpp" in output and f"{W2}: " in output
    assert "build 11312" in output and "build 11313" in output
    assert restarted(before, after) == set()


def test_rollback_refuses_part_of_the_cluster(main):
    current = {n: link(n, "current") for n in (MAIN, W1, W2)}
    _stats, before, after, output = step(
        "rollback refused", "playbooks/rollback.yml", inventory([W1, W2], [], RETUNED), "--limit", W1, expect_rc=2
    )
    assert "must switch every node at once" in output
    assert {n: link(n, "current") for n in (MAIN, W1, W2)} == current
    assert restarted(before, after) == set()


def test_rollback_returns_every_node_to_the_previous_build(main):
    upgraded = manifest(MAIN)["build_id"]
    _stats, before, after, _output = step("rollback", "playbooks/rollback.yml", inventory([W1, W2], [], RETUNED))
    back = {n: manifest(n) for n in (MAIN, W1, W2)}
    assert {m["build_number"] for m in back.values()} == {11312}
    assert all(link(n, "previous").endswith(upgraded) for n in (MAIN, W1, W2))
    assert restarted(before, after) == {(W1, RPC), (W2, RPC), (MAIN, SERVER)}
    assert_workers_then_server(before, after, [W1, W2])
    generate_through([W1, W2])


def test_site_with_the_old_version_is_then_a_noop_in_check_mode_too(main):
    """site.yml --check --diff on the deployed cluster: it fails nothing and would change nothing
    (the AWX "Deploy cluster" job and test_preseed.py re-run site.yml and services.yml for real)."""
    stats, before, after, output = step("no-op after rollback, --check --diff", "site.yml",
                                        inventory([W1, W2], [], RETUNED), "--check", "--diff")
    assert stats == {MAIN: 0, W1: 0, W2: 0, "localhost": 0}
    assert "failed=0" in output and "fatal:" not in output
    assert restarted(before, after) == set()
    print("STEP TIMES: " + ", ".join(f"{k} {v:.0f} s" for k, v in TIMES.items()))
