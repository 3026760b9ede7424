"""inventories/aws (amazon.aws.aws_ec2) against a moto EC2 server on 127.0.0.1: the cluster's
running instances, and only those, land in llama_main / llama_workers with their vars."""

from __future__ import annotations

import json
import subprocess

import yaml

# An arm64 Amazon Linux image of moto's built-in catalogue.
ARM_AMI_NAME = "al2023-ami-2023.*-arm64"


def arm_ami(ec2) -> str:
    images = ec2.describe_images(Filters=[{"Name": "architecture", "Values": ["arm64"]},
                                          {"Name": "name", "Values": [ARM_AMI_NAME]}])["Images"]
    assert images, "moto's catalogue has no arm64 AL2023 image"
    return images[0]["ImageId"]


def launch(ec2, ami, name, instance_type, tags, state="running"):
    tag_list = [{"Key": "Name", "Value": name}] + [{"Key": k, "Value": v} for k, v in tags.items()]
    instance = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType=instance_type,
                                 TagSpecifications=[{"ResourceType": "instance", "Tags": tag_list}])["Instances"][0]
    if state == "stopped":
        ec2.stop_instances(InstanceIds=[instance["InstanceId"]])
    elif state == "terminated":
        ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    return instance


def seed(ec2):
    """Graviton2/3/4 nodes of cluster 'llamacpp' plus decoys; returns {name: instance}."""
    ami = arm_ami(ec2)
    cluster = {"Cluster": "llamacpp"}
    nodes = {
        "llm-main": launch(ec2, ami, "llm-main", "m7g.xlarge", {**cluster, "Role": "main"}),
        "llm-worker1": launch(ec2, ami, "llm-worker1", "c7g.2xlarge", {**cluster, "Role": "worker"}),
        "llm-worker2": launch(ec2, ami, "llm-worker2", "m6g.large", {**cluster, "Role": "worker"}),
        "llm-worker3": launch(ec2, ami, "llm-worker3", "r8g.large", {**cluster, "Role": "worker"}),
    }
    launch(ec2, ami, "other-main", "m7g.large", {"Cluster": "other", "Role": "main"})
    launch(ec2, ami, "llm-stopped", "c7g.large", {**cluster, "Role": "worker"}, state="stopped")
    launch(ec2, ami, "llm-gone", "c7g.large", {**cluster, "Role": "worker"}, state="terminated")
    return nodes


def inventory(env, top, *args):
    proc = subprocess.run(["ansible-inventory", "-i", "inventories/aws", *args], cwd=top, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


def plain(value):
    """ansible-inventory marks values from the cloud as {"__ansible_unsafe": value}."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def listing(env, top):
    data = plain(json.loads(inventory(env, top, "--list").stdout))
    hostvars = data["_meta"]["hostvars"]
    groups = {name: set(body.get("hosts", [])) for name, body in data.items() if name != "_meta"}
    return hostvars, groups


def test_finds_the_running_nodes_of_the_cluster_by_tag(aws, top):
    env, ec2 = aws
    nodes = seed(ec2)
    hostvars, groups = listing(env, top)
    assert set(hostvars) == set(nodes)
    assert groups["llama_main"] == {"llm-main"}
    assert groups["llama_workers"] == {"llm-worker1", "llm-worker2", "llm-worker3"}
    assert groups["aws_arch_arm64"] == set(nodes)
    assert groups["aws_type_m6g_large"] == {"llm-worker2"}


def test_host_vars_give_private_address_type_and_architecture(aws, top):
    env, ec2 = aws
    nodes = seed(ec2)
    hostvars = listing(env, top)[0]
    for name, instance in nodes.items():
        got = hostvars[name]
        assert got["ansible_host"] == instance["PrivateIpAddress"]
        assert got["llamacpp_instance_type"] == instance["InstanceType"]
        assert got["llamacpp_architecture"] == "arm64"
        assert got["llamacpp_cloud"] == "aws"
        assert got["llamacpp_cluster_name"] == "llamacpp"
        assert got["llamacpp_availability_zone"].startswith("eu-west-1")


def test_group_vars_pin_the_build_role_commit(aws, top):
    env, ec2 = aws
    seed(ec2)
    hostvars = listing(env, top)[0]
    defaults = yaml.safe_load((top / "roles/build/defaults/main.yml").read_text())
    for got in hostvars.values():
        assert got["llamacpp_build_version"] == defaults["llamacpp_build_version"]
        assert got["llamacpp_build_commit"] == defaults["llamacpp_build_commit"]
        assert got["llamacpp_rpc_worker_port"] == 50052
        assert "'admin'" in got["ansible_user"]  # Debian's images (provision_aws.yml)


def test_cluster_name_and_region_come_from_the_environment(aws, top):
    env, ec2 = aws
    seed(ec2)
    hostvars, groups = listing(dict(env, LLAMACPP_CLUSTER="other"), top)
    assert set(hostvars) == {"other-main"}
    assert groups["llama_main"] == {"other-main"}
    hostvars = listing(dict(env, AWS_REGION="us-west-2"), top)[0]
    assert not hostvars


def test_graph_shows_the_groups(aws, top):
    env, ec2 = aws
    seed(ec2)
    graph = inventory(env, top, "--graph").stdout
    assert "@llama_main:" in graph and "|--llm-main" in graph
    assert "@llama_workers:" in graph and "|--llm-worker3" in graph
