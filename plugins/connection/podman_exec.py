# Copyright (c) llamacpp.cluster maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run tasks in running podman containers through `podman exec` or `nsenter`, with pipelining."""

from __future__ import annotations

DOCUMENTATION = r"""
name: podman_exec
short_description: Run tasks in running podman containers, one C(podman exec) per module
description:
  - Runs each task's commands in an existing, running container with C(podman exec), and
    copies files in and out through the same channel.
  - Unlike C(containers.podman.podman), it supports pipelining. With pipelining on (the
    default here) a module runs in one C(podman exec --interactive) that reads the module
    on its standard input, instead of five calls (home directory, temporary directory,
    chmod, run, remove) around a file copy.
    A no-op run of this collection's C(site.yml) on the local cluster takes about half the time.
  - Run as root against rootful podman, it enters the container with C(nsenter) instead
    (see O(exec_method)), with the same namespaces, cgroups and environment as C(podman exec)
    but without starting C(conmon) and C(runc) for every module (about 0.02 s a call instead
    of 0.2-0.4 s).
  - The local inventories (C(inventories/local)) and the molecule scenarios use it.
author:
  - llamacpp.cluster maintainers (@llamacpp-cluster)
version_added: 0.1.0
options:
  remote_addr:
    description: The name or ID of the container.
    type: str
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_podman_host
  remote_user:
    description:
      - The user (name or UID) that runs the commands inside the container; by default the
        container's own user.
    type: str
    vars:
      - name: ansible_user
    env:
      - name: ANSIBLE_REMOTE_USER
    ini:
      - section: defaults
        key: remote_user
  podman_executable:
    description: The podman command.
    type: str
    default: podman
    vars:
      - name: ansible_podman_executable
    env:
      - name: ANSIBLE_PODMAN_EXECUTABLE
  podman_extra_args:
    description: Extra arguments for podman itself, placed before the subcommand (for example C(--remote)).
    type: str
    default: ''
    vars:
      - name: ansible_podman_extra_args
    env:
      - name: ANSIBLE_PODMAN_EXTRA_ARGS
  exec_method:
    description:
      - How commands enter the container.
      - V(podman) runs C(podman exec) for each command.
      - V(nsenter) asks C(podman inspect) once per task for the container's main process and
        environment, puts the command into that process's cgroups (so its memory counts where
        a C(podman exec) would count it) and enters its namespaces with C(nsenter). It needs
        root on the controller, rootful podman on this machine and C(nsenter) (util-linux). The
        command runs with root's full capabilities, without the container's seccomp or
        AppArmor profile. It is meant for test and development clusters of containers, as this
        plugin is.
      - V(auto) takes V(nsenter) when the controller runs as root, C(nsenter) is on the PATH,
        neither O(remote_user) nor O(podman_extra_args) is set and the container's cgroups
        can be joined, and V(podman) otherwise.
    type: str
    default: auto
    choices: [auto, nsenter, podman]
    vars:
      - name: ansible_podman_exec_method
    env:
      - name: ANSIBLE_PODMAN_EXEC_METHOD
  pipelining:
    description:
      - Send each module on the standard input of one C(podman exec) instead of copying it
        into the container first.
      - It is on by default, because a container needs no C(requiretty) work-around, and a
        C(become) plugin that cannot pipeline turns it off by itself.
    type: bool
    default: true
    vars:
      - name: ansible_pipelining
    env:
      - name: ANSIBLE_PIPELINING
    ini:
      - section: defaults
        key: pipelining
      - section: connection
        key: pipelining
"""

EXAMPLES = r"""
# inventory: the nodes are containers on this machine
all:
  children:
    llama_cluster:
      children:
        llama_main:
          hosts:
            llamacpp-main:
        llama_workers:
          hosts:
            llamacpp-worker1:
      vars:
        ansible_connection: llamacpp.cluster.podman_exec
        ansible_python_interpreter: /usr/bin/python3
"""

import json
import os
import shlex
import shutil
import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.connection import ConnectionBase, ensure_connect
from ansible.utils.display import Display

display = Display()


def cgroup_procs_files(proc_cgroup, mountinfo):
    """The cgroup.procs files, one per mounted hierarchy, that put a process into the cgroups
    of the process whose /proc/PID/cgroup is proc_cgroup; mountinfo is /proc/self/mountinfo.
    Hierarchies that are not mounted here, or mounted below the process's cgroup, are left out."""
    mounts = []  # (controllers or None for cgroup2, mount root, mount point)
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        fstype, _source, superopts = line.split(" - ", 1)[1].split()[:3]
        if fstype == "cgroup2":
            mounts.append((None, fields[3], fields[4]))
        elif fstype == "cgroup":
            mounts.append((set(superopts.split(",")), fields[3], fields[4]))
    files = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hierarchy, controllers, path = parts
        for wanted, root, point in mounts:
            if (wanted is None) != (controllers == ""):
                continue
            if wanted is not None and not set(controllers.split(",")) <= wanted:
                continue
            if root != "/" and not (path == root or path.startswith(root + "/")):
                continue
            relative = path if root == "/" else path[len(root):]
            files.append(os.path.join(point, relative.lstrip("/"), "cgroup.procs"))
            break
    return files


def _join_cgroups(files):
    """Runs in the child between fork and exec: moves it into the container's cgroups."""
    pid = str(os.getpid())
    for name in files:
        with open(name, "w") as handle:
            handle.write(pid)


class Connection(ConnectionBase):
    """`podman exec` (or, as root, `nsenter`) into a running container; modules go in on standard input."""

    transport = "llamacpp.cluster.podman_exec"
    has_pipelining = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._podman_bin = None
        self._nsenter = None  # [argv prefix, environment, cgroup.procs files] when entering with nsenter

    def _container(self):
        return self.get_option("remote_addr")

    def _podman_cmd(self, *args):
        """The podman command line for one subcommand, as bytes."""
        cmd = [self._podman_bin]
        cmd += shlex.split(self.get_option("podman_extra_args") or "")
        cmd += list(args)
        return [to_bytes(a, errors="surrogate_or_strict") for a in cmd]

    def _popen(self, cmd, stdin, stdout):
        display.vvv(f"RUN {[to_text(c) for c in cmd]}", host=self._container())
        extra = {}
        if self._nsenter:
            # A session of its own, as a podman exec's process has under conmon: Ansible ends
            # a worker with killpg on the worker's group, which must not reach what a task
            # started in the background (a hand-started server, say).
            extra = {"env": self._nsenter[1], "start_new_session": True,
                     "preexec_fn": lambda: _join_cgroups(self._nsenter[2])}
        try:
            return subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, **extra)
        except (OSError, subprocess.SubprocessError) as exc:
            raise AnsibleConnectionFailure(f"cannot run {to_text(cmd[0])}: {exc}") from exc

    def _run(self, cmd, stdin=None, in_data=None):
        proc = self._popen(cmd, stdin if stdin is not None else subprocess.PIPE, subprocess.PIPE)
        stdout, stderr = proc.communicate(input=in_data)
        return proc.returncode, stdout, stderr

    def _command(self, argv, interactive):
        """The command line that runs argv (a list) in the container."""
        if self._nsenter:
            return self._nsenter[0] + [to_bytes(a, errors="surrogate_or_strict") for a in argv]
        return self._podman_cmd(*self._exec_args(interactive), *argv)

    def _unreachable(self, detail):
        return AnsibleConnectionFailure(
            f"podman exec into {self._container()} failed: {detail}; is the container running (podman ps)?")

    def _nsenter_setup(self):
        """[nsenter argv prefix, environment, cgroup.procs files] for the container, or None
        when exec_method is auto and nsenter cannot be used."""
        method = self.get_option("exec_method")
        if method == "podman":
            return None
        nsenter = shutil.which("nsenter")
        reasons = []
        if os.geteuid() != 0:
            reasons.append("the controller does not run as root")
        if not nsenter:
            reasons.append("nsenter is not on PATH")
        if self.get_option("remote_user"):
            reasons.append("remote_user is set")
        if self.get_option("podman_extra_args"):
            reasons.append("podman_extra_args is set")
        if not reasons:
            rc, out, err = self._run(self._podman_cmd(
                "inspect", "--type", "container", "--format", "{{.State.Pid}} {{json .Config.Env}}", self._container()))
            if rc != 0 or not out.strip():
                raise self._unreachable(to_text(err).strip() or "no such container")
            pid, env_json = to_text(out).strip().split(" ", 1)
            if pid == "0":
                raise self._unreachable("the container is not running")
            try:
                with open(f"/proc/{pid}/cgroup") as cgroup, open("/proc/self/mountinfo") as mountinfo:
                    files = cgroup_procs_files(cgroup.read(), mountinfo.read())
            except OSError as exc:
                files = []
                reasons.append(f"cannot read its cgroups: {exc}")
            unwritable = [name for name in files if not os.access(name, os.W_OK)]
            if not files or unwritable:
                reasons.append(f"cannot join its cgroups ({', '.join(unwritable) or 'none found'})")
        if reasons:
            if method == "nsenter":
                raise AnsibleConnectionFailure(f"exec_method nsenter cannot enter {self._container()}: "
                                               + "; ".join(reasons) + ". Use exec_method podman (or auto).")
            display.vvv(f"podman_exec: podman exec, not nsenter: {'; '.join(reasons)}", host=self._container())
            return None
        env = dict(item.split("=", 1) for item in json.loads(env_json) if "=" in item)
        argv = [nsenter, "--target", pid, "--all", "--root", "--wd", "--"]
        return [[to_bytes(a, errors="surrogate_or_strict") for a in argv], env, files]

    def _connect(self):
        super()._connect()
        if not self._connected:
            podman = self.get_option("podman_executable")
            self._podman_bin = shutil.which(podman)
            if not self._podman_bin:
                raise AnsibleConnectionFailure(
                    f"podman_exec: '{podman}' is not on PATH; install podman or set ansible_podman_executable")
            self._nsenter = self._nsenter_setup()
            self._connected = True
        return self

    def _exec_args(self, interactive):
        args = ["exec"]
        if interactive:
            args.append("--interactive")
        user = self.get_option("remote_user")
        if user:
            args += ["--user", user]
        return args + [self._container()]

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        """Run cmd (a shell command line) in the container; in_data goes to its stdin."""
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        argv = self._command(shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data is not None)
        rc, stdout, stderr = self._run(argv, in_data=in_data)
        # 125: podman itself failed (no such container, container not running, ...); nsenter
        # names itself when it cannot enter: as opposed to the command's own exit status.
        if (rc == 125 and stderr.startswith(b"Error:")) or (self._nsenter and rc != 0 and stderr.startswith(b"nsenter:")):
            raise self._unreachable(to_text(stderr).strip())
        return rc, stdout, stderr

    @ensure_connect
    def put_file(self, in_path, out_path):
        """Stream a local file into the container (cat > out_path)."""
        super().put_file(in_path, out_path)
        display.vvv(f"PUT {in_path} TO {out_path}", host=self._container())
        if not os.path.exists(to_bytes(in_path, errors="surrogate_or_strict")):
            raise AnsibleFileNotFound(f"file or module does not exist: {in_path}")
        script = "cat > " + shlex.quote(to_native(out_path, errors="surrogate_or_strict"))
        argv = self._command(["/bin/sh", "-c", script], True)
        with open(to_bytes(in_path, errors="surrogate_or_strict"), "rb") as src:
            rc, _stdout, stderr = self._run(argv, stdin=src)
        if rc != 0:
            raise AnsibleError(
                f"failed to copy {in_path} to {out_path} in container {self._container()}: "
                f"{to_text(stderr).strip()}")

    @ensure_connect
    def fetch_file(self, in_path, out_path):
        """Stream a file out of the container (cat in_path)."""
        super().fetch_file(in_path, out_path)
        display.vvv(f"FETCH {in_path} TO {out_path}", host=self._container())
        argv = self._command(["cat", to_native(in_path, errors="surrogate_or_strict")], False)
        partial = to_bytes(out_path, errors="surrogate_or_strict") + b".part"
        with open(partial, "wb") as dst:
            proc = self._popen(argv, subprocess.DEVNULL, dst)
            _stdout, stderr = proc.communicate()
            rc = proc.returncode
        if rc != 0:
            os.unlink(partial)
            raise AnsibleError(
                f"failed to fetch {in_path} from container {self._container()}: {to_text(stderr).strip()}")
        os.replace(partial, to_bytes(out_path, errors="surrogate_or_strict"))

    def close(self):
        self._connected = False
        self._nsenter = None
