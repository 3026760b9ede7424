"""playbooks/provision_aws.yml against a moto EC2 server on 127.0.0.1: tagged Graviton
instances, security groups that open the RPC port only to the main node's group, idempotent
re-runs, scaling, tear-down, and bad input refused before anything is created."""

from __future__ import annotations

import re
import subprocess

# moto's catalogue has no Canonical images: the tests pick its arm64 Amazon Linux 2023 image.
AMI_ARGS = ["-e", "llamacpp_aws_ami_owner=137112412989", "-e", "llamacpp_aws_ami_name=al2023-ami-2023.*-arm64"]
CIDR = "192.0.2.0/24"


def provision(env, top, *extra):
    cmd = ["ansible-playbook", "playbooks/provision_aws.yml", "-e", f"llamacpp_aws_ssh_cidr={CIDR}", *AMI_ARGS, *extra]
    proc = subprocess.run(cmd, cwd=top, env=env, capture_output=True, text=True, check=False)
    recap = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", proc.stdout)
    return proc.returncode, int(recap.group(1)) if recap else None, proc.stdout + proc.stderr


def instances(ec2, states=("pending", "running")):
    found = {}
    for reservation in ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": list(states)}])[
            "Reservations"]:
        for instance in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            found[tags.get("Name")] = dict(instance, tags=tags)
    return found


def groups(ec2):
    return {g["GroupName"]: g for g in ec2.describe_security_groups()["SecurityGroups"]}


def test_launches_tagged_graviton_instances_and_a_rerun_changes_nothing(aws, top):
    env, ec2 = aws
    rc, changed, out = provision(env, top)
    assert rc == 0 and changed > 0, out
    nodes = instances(ec2)
    assert set(nodes) == {"llamacpp-main", "llamacpp-worker1", "llamacpp-worker2"}
    assert nodes["llamacpp-main"]["InstanceType"] == "m7g.xlarge"
    assert nodes["llamacpp-main"]["tags"] == {"Name": "llamacpp-main", "Cluster": "llamacpp", "Role": "main"}
    for name in ("llamacpp-worker1", "llamacpp-worker2"):
        assert nodes[name]["InstanceType"] == "m7g.2xlarge"
        assert nodes[name]["tags"]["Role"] == "worker"
    for node in nodes.values():
        assert node["Architecture"] == "arm64"
        assert node["MetadataOptions"]["HttpTokens"] == "required"

    rc, changed, out = provision(env, top)
    assert (rc, changed) == (0, 0), out
    assert {n: i["InstanceId"] for n, i in instances(ec2).items()} == {n: i["InstanceId"] for n, i in nodes.items()}


def test_rpc_port_is_open_only_to_the_main_nodes_group(aws, top):
    env, ec2 = aws
    rc, _changed, out = provision(env, top, "-e", "llamacpp_aws_rpc_port=50099")
    assert rc == 0, out
    sgs = groups(ec2)
    main, workers = sgs["llamacpp-main"], sgs["llamacpp-workers"]
    rules = {(r["IpProtocol"], r["FromPort"], r["ToPort"]): r for r in workers["IpPermissions"]}
    assert set(rules) == {("tcp", 22, 22), ("tcp", 50099, 50099)}
    assert [g["GroupId"] for g in rules[("tcp", 50099, 50099)]["UserIdGroupPairs"]] == [main["GroupId"]]
    assert not rules[("tcp", 50099, 50099)]["IpRanges"]
    assert [r["CidrIp"] for r in rules[("tcp", 22, 22)]["IpRanges"]] == [CIDR]
    assert [(r["FromPort"], [c["CidrIp"] for c in r["IpRanges"]]) for r in main["IpPermissions"]] == [(22, [CIDR])]
    for name, node in instances(ec2).items():
        expected = main if name.endswith("-main") else workers
        assert [g["GroupId"] for g in node["SecurityGroups"]] == [expected["GroupId"]]


def test_scaling_adds_or_terminates_only_workers(aws, top):
    env, ec2 = aws
    assert provision(env, top)[0] == 0
    before = {n: i["InstanceId"] for n, i in instances(ec2).items()}
    rc, _changed, out = provision(env, top, "-e", "llamacpp_aws_worker_count=3")
    assert rc == 0, out
    after = {n: i["InstanceId"] for n, i in instances(ec2).items()}
    assert set(after) == set(before) | {"llamacpp-worker3"}
    assert all(after[n] == before[n] for n in before)
    rc, _changed, out = provision(env, top, "-e", "llamacpp_aws_worker_count=1")
    assert rc == 0, out
    remaining = {n: i["InstanceId"] for n, i in instances(ec2).items()}
    assert remaining == {n: before[n] for n in ("llamacpp-main", "llamacpp-worker1")}


def test_absent_tears_the_cluster_down_and_spares_other_clusters(aws, top):
    env, ec2 = aws
    assert provision(env, top)[0] == 0
    assert provision(dict(env, LLAMACPP_CLUSTER="other"), top, "-e", "llamacpp_aws_worker_count=1")[0] == 0
    rc, changed, out = provision(env, top, "-e", "llamacpp_aws_state=absent")
    assert rc == 0 and changed > 0, out
    assert set(instances(ec2)) == {"other-main", "other-worker1"}
    assert {"llamacpp-main", "llamacpp-workers"}.isdisjoint(groups(ec2))
    assert {"other-main", "other-workers"} <= set(groups(ec2))
    rc, changed, out = provision(env, top, "-e", "llamacpp_aws_state=absent")
    assert (rc, changed) == (0, 0), out


def test_bad_settings_are_refused_before_anything_is_created(aws, top):
    env, ec2 = aws
    for extra, words in ((["-e", "llamacpp_aws_worker_type=m7i.large"], "Graviton"),
                         (["-e", "llamacpp_aws_ssh_cidr="], "llamacpp_aws_ssh_cidr"),
                         (["-e", "llamacpp_aws_worker_count=0"], "llamacpp_aws_worker_count")):
        rc, _changed, out = provision(env, top, *extra)
        assert rc != 0
        assert words in out and "Nothing was changed" in out, out
    assert not instances(ec2, states=("pending", "running", "stopped"))
    assert set(groups(ec2)) == {"default"}


def test_the_inventory_finds_what_was_provisioned(aws, top):
    env, ec2 = aws
    assert provision(env, top, "-e", "llamacpp_aws_worker_count=3")[0] == 0
    proc = subprocess.run(["ansible-inventory", "-i", "inventories/aws", "--graph", "llama_workers"], cwd=top, env=env,
                          capture_output=True, text=True, check=True)
    assert sorted(re.findall(r"\|--(\S+)", proc.stdout)) == ["llamacpp-worker1", "llamacpp-worker2", "llamacpp-worker3"]
    private = {n: i["PrivateIpAddress"] for n, i in instances(ec2).items()}
    proc = subprocess.run(["ansible-inventory", "-i", "inventories/aws", "--host", "llamacpp-main"], cwd=top, env=env,
                          capture_output=True, text=True, check=True)
    assert private["llamacpp-main"] in proc.stdout
