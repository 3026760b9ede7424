"""The commands of the README's "Deploy on AWS" and "Run it from AWX" sections, run as
written and in order, with only what this offline machine needs added: AWS is a moto server
on 127.0.0.1 (plus an arm64 image of moto's catalogue, which has no Canonical images);
playbooks that would connect to cloud addresses run with --list-hosts; the AWX job-template
playbook, which needs an AWX server, with --syntax-check; `ansible-builder build`, which
needs a registry, as `ansible-builder create`."""

from __future__ import annotations

import re
import shlex
import subprocess

AMI_ARGS = ["-e", "llamacpp_aws_ami_owner=137112412989", "-e", "llamacpp_aws_ami_name=al2023-ami-2023.*-arm64"]


def commands(top, heading):
    text = (top / "README.md").read_text()
    section = text.split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def run(cmd, top, env):
    proc = subprocess.run(cmd, cwd=top, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{shlex.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def listed_hosts(output):
    """Hosts per play of `ansible-playbook --list-hosts`."""
    plays = re.findall(r"play #\d+ \((?:[^)]*)\): (.*?)\tTAGS.*?\n\s+pattern: .*?\n\s+hosts \(\d+\):\n((?:\s{6}\S+\n)*)",
                       output)
    return {name: sorted(hosts.split()) for name, hosts in plays}


def test_deploy_on_aws_commands(aws, top):
    env, ec2 = aws
    env = dict(env)
    steps = commands(top, "Deploy on AWS")
    assert [c[0] for c in steps] == ["export", "ansible-playbook", "ansible-inventory", "ansible-playbook",
                                     "ansible-playbook", "ansible-playbook"]
    env.update(dict(pair.split("=", 1) for pair in steps[0][1:]))
    cluster = env["LLAMACPP_CLUSTER"]
    main, workers = f"{cluster}-main", [f"{cluster}-worker1", f"{cluster}-worker2"]

    run(steps[1] + AMI_ARGS, top, env)
    assert "\n".join(workers) in "\n".join(sorted(re.findall(r"\|--(\S+)", run(steps[2], top, env))))

    plays = listed_hosts(run(steps[3] + ["--list-hosts"], top, env))
    assert plays["Build llama.cpp for every node's CPU, once per CPU family"] == sorted([main, *workers])
    assert plays["Generate text on the cluster"] == [main]
    plays = listed_hosts(run(steps[4] + ["--list-hosts"], top, env))
    assert plays["Check the request"] == ["localhost"] and plays["Generate text on the cluster"] == [main]

    run(steps[5] + AMI_ARGS, top, env)
    running = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}])
    assert not running["Reservations"]
    assert "@llama_workers" not in run(steps[2], top, env)


def test_run_it_from_awx_commands(top, tool_env, tmp_path):
    steps = commands(top, "Run it from AWX")
    assert [c[:2] for c in steps] == [["ansible-builder", "build"], ["python3", "scripts/awx_survey.py"],
                                      ["ansible-playbook", "playbooks/awx_job_templates.yml"]]
    build = steps[0]
    create = ["ansible-builder", "create"] + [a for a in build[2:] if a not in ("-t", build[build.index("-t") + 1])]
    run(create + ["-c", str(tmp_path / "context")], top, tool_env)
    assert (tmp_path / "context" / "Containerfile").is_file()
    assert run(steps[1], top, tool_env).count(": ok") == 2
    run(steps[2] + ["--syntax-check"], top, tool_env)
