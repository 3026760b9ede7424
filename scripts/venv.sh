#!/usr/bin/env bash
# Create the project's Python virtual environment from the pinned requirements.txt.
# Skips all work when the venv already matches requirements.txt and the interpreter.
# Usage: scripts/venv.sh [VENV_DIR]   (default: .venv at the repository root)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
venv="${1:-$top/.venv}"
python="${PYTHON:-python3}"

die() { printf 'venv: error: %s\n' "$*" >&2; exit 1; }

command -v "$python" >/dev/null 2>&1 || die "$python not found; fix: apt-get install python3 python3-venv"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$("$python" -V) is too old (ansible-core 2.19 needs 3.11+); fix: set PYTHON to a newer interpreter"

stamp="$(sha256sum "$top/requirements.txt" | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version.split()[0])')"
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements-stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "venv: up to date: $venv (${SECONDS} s)"
  exit 0
fi

if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  command -v apt-get >/dev/null 2>&1 || die "the venv module of $python is missing; fix: install python3-venv"
  echo "venv: installing python3-venv"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; } >/dev/null \
    || die "could not install python3-venv; fix: install it with apt-get, then re-run"
fi

echo "venv: creating $venv from requirements.txt"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip \
  || die "could not upgrade pip in $venv; fix: check that PyPI is reachable"
# --no-compile: byte-compiling every file of the ansible package (its collections) at install
# took about 30 of 100 s; Python compiles what is imported, once, on first use.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile -r "$top/requirements.txt" \
  || die "pip install -r requirements.txt failed; fix: check that PyPI is reachable, then re-run"
echo "$stamp" > "$venv/.requirements-stamp"
# (ansible --version | head would break ansible's pipe: a traceback in the demo's output)
version=$("$venv/bin/python" -c 'import ansible.release as r; print(f"ansible [core {r.__version__}]")')
echo "venv: ready: $venv ($version, ${SECONDS} s)"
