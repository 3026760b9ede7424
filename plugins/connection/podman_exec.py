# Copyright (c) llamacpp.cluster maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run tasks in running podman containers through `podman exec`, with pipelining."""

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

import os
import shlex
import shutil
import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.connection import ConnectionBase, ensure_connect
from ansible.utils.display import Display

display = Display()


class Connection(ConnectionBase):
    """`podman exec` into a running container; modules go in on standard input."""

    transport = "llamacpp.cluster.podman_exec"
    has_pipelining = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._podman_bin = None

    def _container(self):
        return self.get_option("remote_addr")

    def _podman_cmd(self, *args):
        """The podman command line for one subcommand, as bytes."""
        cmd = [self._podman_bin]
        cmd += shlex.split(self.get_option("podman_extra_args") or "")
        cmd += list(args)
        return [to_bytes(a, errors="surrogate_or_strict") for a in cmd]

    def _run(self, cmd, stdin=None, in_data=None):
        display.vvv(f"RUN {[to_text(c) for c in cmd]}", host=self._container())
        try:
            proc = subprocess.Popen(cmd, stdin=stdin if stdin is not None else subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise AnsibleConnectionFailure(f"cannot run {to_text(cmd[0])}: {exc}") from exc
        stdout, stderr = proc.communicate(input=in_data)
        return proc.returncode, stdout, stderr

    def _connect(self):
        super()._connect()
        if not self._connected:
            podman = self.get_option("podman_executable")
            self._podman_bin = shutil.which(podman)
            if not self._podman_bin:
                raise AnsibleConnectionFailure(
                    f"podman_exec: '{podman}' is not on PATH; install podman or set ansible_podman_executable")
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
        argv = self._podman_cmd(*self._exec_args(in_data is not None),
                                *shlex.split(to_native(cmd, errors="surrogate_or_strict")))
        rc, stdout, stderr = self._run(argv, in_data=in_data)
        # 125: podman itself failed (no such container, container not running, ...), as
        # opposed to the command's own exit status.
        if rc == 125 and stderr.startswith(b"Error:"):
            raise AnsibleConnectionFailure(
                f"podman exec into {self._container()} failed: {to_text(stderr).strip()}; "
                "is the container running (podman ps)?")
        return rc, stdout, stderr

    @ensure_connect
    def put_file(self, in_path, out_path):
        """Stream a local file into the container (cat > out_path)."""
        super().put_file(in_path, out_path)
        display.vvv(f"PUT {in_path} TO {out_path}", host=self._container())
        if not os.path.exists(to_bytes(in_path, errors="surrogate_or_strict")):
            raise AnsibleFileNotFound(f"file or module does not exist: {in_path}")
        script = "cat > " + shlex.quote(to_native(out_path, errors="surrogate_or_strict"))
        argv = self._podman_cmd(*self._exec_args(True), "/bin/sh", "-c", script)
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
        argv = self._podman_cmd(*self._exec_args(False), "cat", to_native(in_path, errors="surrogate_or_strict"))
        partial = to_bytes(out_path, errors="surrogate_or_strict") + b".part"
        with open(partial, "wb") as dst:
            display.vvv(f"RUN {[to_text(c) for c in argv]}", host=self._container())
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=dst, stderr=subprocess.PIPE)
            _stdout, stderr = proc.communicate()
            rc = proc.returncode
        if rc != 0:
            os.unlink(partial)
            raise AnsibleError(
                f"failed to fetch {in_path} from container {self._container()}: {to_text(stderr).strip()}")
        os.replace(partial, to_bytes(out_path, errors="surrogate_or_strict"))

    def close(self):
        self._connected = False
